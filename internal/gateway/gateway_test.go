package gateway

import (
	"net/http/httptest"
	"testing"
)

func TestCrossOrigin(t *testing.T) {
	for _, tc := range []struct {
		host, origin string
		cross        bool
	}{
		{"127.0.0.1:2379", "", false},
		{"127.0.0.1:2379", "http://127.0.0.1:2379", false},
		{"etcd.example:2379", "https://ETCD.example:2379", false},
		{"127.0.0.1:2379", "http://127.0.0.1:8080", true},
		{"127.0.0.1:2379", "http://evil.example", true},
		{"127.0.0.1:2379", "null", true},
		{"127.0.0.1:2379", "::garbage", true},
	} {
		r := httptest.NewRequest("POST", "http://"+tc.host+"/v3/kv/put", nil)
		if tc.origin != "" {
			r.Header.Set("Origin", tc.origin)
		}
		if got := crossOrigin(r); got != tc.cross {
			t.Errorf("Host %s, Origin %q: crossOrigin = %v, want %v", tc.host, tc.origin, got, tc.cross)
		}
	}
}

func TestNewNeedsConn(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("New without a connection succeeded")
	}
}
