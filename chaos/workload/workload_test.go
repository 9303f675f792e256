package workload

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/meshkv/meshkv/chaos/check"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestCounterEncoding(t *testing.T) {
	v := encodeCounter("L1/694d7c1a", 4242, 17)
	h, tok, n, err := decodeCounter(v)
	if err != nil || h != "L1/694d7c1a" || tok != 4242 || n != 17 {
		t.Errorf("decode(%q) = %q, %d, %d, %v", v, h, tok, n, err)
	}
	for _, bad := range []string{"", "17", "holder=x token=y counter=1"} {
		if _, _, _, err := decodeCounter(bad); err == nil {
			t.Errorf("decode(%q): no error", bad)
		}
	}
}

func TestWriteOutcome(t *testing.T) {
	tests := []struct {
		err  error
		want check.Outcome
	}{
		{context.DeadlineExceeded, check.Indeterminate},
		{fmt.Errorf("wrapped: %w", context.Canceled), check.Indeterminate},
		{rpctypes.ErrNoLeader, check.Indeterminate},
		{rpctypes.ErrTimeout, check.Indeterminate},
		{status.Error(codes.Unavailable, "connection refused"), check.Indeterminate},
		{errors.New("something odd"), check.Indeterminate},
		{rpctypes.ErrEmptyKey, check.Failed},
		{rpctypes.ErrRequestTooLarge, check.Failed},
		{status.Error(codes.Unimplemented, "no lease service"), check.Failed},
	}
	for _, tc := range tests {
		if got := writeOutcome(tc.err); got != tc.want {
			t.Errorf("writeOutcome(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	if !isUnimplemented(status.Error(codes.Unimplemented, "x")) || isUnimplemented(rpctypes.ErrNoLeader) {
		t.Error("isUnimplemented misclassifies")
	}
}

func TestConfig(t *testing.T) {
	if err := (Config{}).Validate(); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("no endpoints: %v, want ErrInvalidConfig", err)
	}
	if err := (Config{Endpoints: []string{"http://127.0.0.1:1"}, Keys: -1}).Validate(); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("negative keys: %v, want ErrInvalidConfig", err)
	}
	d := Config{Endpoints: []string{"x"}, MultiClients: -1, LockWorkers: -1}.withDefaults()
	if d.MultiClients != 0 || d.LockWorkers != 0 || d.Keys != DefaultKeys || d.OpTimeout != DefaultOpTimeout {
		t.Errorf("defaults = %+v", d)
	}
}

// TestUnreachableCluster runs the workload against an endpoint nobody
// listens on: every read fails, every write is indeterminate, Stop and Close
// return, and nothing is acknowledged.
func TestUnreachableCluster(t *testing.T) {
	w, err := Start(Config{Endpoints: []string{"http://127.0.0.1:1"}, LockWorkers: -1, NoWatch: true, OpTimeout: 50e6})
	if err != nil {
		t.Fatal(err)
	}
	deadline := w.Now() + 5e9
	for {
		w.mu.Lock()
		n := len(w.ops)
		w.mu.Unlock()
		if n >= 10 {
			break
		}
		if w.Now() > deadline {
			t.Fatal("the workers recorded fewer than 10 ops in 5s")
		}
		sleep(context.Background(), 10e6) // polling interval
	}
	w.Close()
	w.Close()
	w.mu.Lock()
	ops := slices.Clone(w.ops)
	w.mu.Unlock()
	for _, op := range ops {
		switch {
		case op.Outcome == check.OK:
			t.Errorf("op acknowledged by nobody: %v", op)
		case op.Kind == check.Get && op.Outcome != check.Failed:
			t.Errorf("failed read not marked failed: %v", op)
		case op.IsWrite() && op.Outcome != check.Indeterminate:
			t.Errorf("unanswered write not indeterminate: %v", op)
		}
	}
	if err := w.AddEndpoint("http://127.0.0.1:2"); !errors.Is(err, ErrStopped) {
		t.Errorf("AddEndpoint after Close = %v, want ErrStopped", err)
	}
}
