package meshkv_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshkv/meshkv"
)

func startNode(t *testing.T, cfg meshkv.Config) *meshkv.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := meshkv.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return n
}

func TestInMemoryClient(t *testing.T) {
	n := startNode(t, meshkv.Config{})
	if got := n.ClientAddrs(); len(got) != 0 {
		t.Fatalf("ClientAddrs = %v, want none without ListenClientURLs", got)
	}
	ctx := context.Background()
	cli := n.Client()
	put, err := cli.Put(ctx, "k", "v1")
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	if put.Header.Revision != 2 {
		t.Fatalf("first Put revision = %d, want 2", put.Header.Revision)
	}
	if put.Header.MemberId != n.ID() {
		t.Fatalf("header member id = %x, want %x", put.Header.MemberId, n.ID())
	}
	get, err := cli.Get(ctx, "k")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if len(get.Kvs) != 1 || string(get.Kvs[0].Value) != "v1" {
		t.Fatalf("Get = %v, want k=v1", get.Kvs)
	}
	if _, err := cli.Put(ctx, "", "v"); !errors.Is(err, rpctypes.ErrEmptyKey) {
		t.Fatalf("Put empty key: err = %v, want %v", err, rpctypes.ErrEmptyKey)
	}
}

func TestTCPListenerAndStatus(t *testing.T) {
	n := startNode(t, meshkv.Config{Name: "tcp", ListenClientURLs: []string{"http://127.0.0.1:0"}})
	addrs := n.ClientAddrs()
	if len(addrs) != 1 {
		t.Fatalf("ClientAddrs = %v, want one", addrs)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: addrs, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "a", "b"); err != nil {
		t.Fatalf("Put over TCP: %v", err)
	}
	st, err := cli.Status(ctx, addrs[0])
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if st.Leader != n.ID() || st.Version == "" || st.RaftTerm == 0 || st.RaftIndex == 0 {
		t.Fatalf("Status = %+v: want this member as leader, a version, term and index", st)
	}
	ml, err := cli.MemberList(ctx)
	if err != nil {
		t.Fatalf("MemberList: %v", err)
	}
	if len(ml.Members) != 1 || ml.Members[0].Name != "tcp" || len(ml.Members[0].ClientURLs) != 1 {
		t.Fatalf("MemberList = %+v, want one member named tcp with its client URL", ml.Members)
	}
}

func TestRequestTooLarge(t *testing.T) {
	n := startNode(t, meshkv.Config{MaxRequestBytes: 1024})
	_, err := n.Client().Put(context.Background(), "big", string(make([]byte, 2048)))
	if !errors.Is(err, rpctypes.ErrRequestTooLarge) {
		t.Fatalf("Put of 2 KiB with a 1 KiB limit: err = %v, want %v", err, rpctypes.ErrRequestTooLarge)
	}
}

func TestStartFailsOnTakenPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = meshkv.Start(context.Background(), meshkv.Config{ListenClientURLs: []string{"http://" + l.Addr().String()}})
	if err == nil {
		t.Fatal("Start on a taken port succeeded")
	}
}

func TestConfigValidate(t *testing.T) {
	for name, cfg := range map[string]meshkv.Config{
		"https":          {ListenClientURLs: []string{"https://127.0.0.1:2379"}},
		"no port":        {ListenClientURLs: []string{"http://127.0.0.1"}},
		"bare host:port": {ListenClientURLs: []string{"127.0.0.1:2379"}},
		"negative limit": {MaxRequestBytes: -1},
		"short election": {TickInterval: time.Second, ElectionTimeout: time.Second},
		"open mesh":      {MeshListen: "0.0.0.0:2380"},
		"open mesh host": {MeshListen: "10.0.0.1:2380"},
		"empty password": {MeshListen: "127.0.0.1:2380", MeshPassword: []byte{}},
	} {
		if err := cfg.Validate(); !errors.Is(err, meshkv.ErrInvalidConfig) {
			t.Errorf("%s: Validate = %v, want ErrInvalidConfig", name, err)
		}
	}
	if err := (meshkv.Config{}).Validate(); err != nil {
		t.Errorf("zero Config: Validate = %v, want nil", err)
	}
	for name, cfg := range map[string]meshkv.Config{
		"loopback mesh":       {MeshListen: "127.0.0.1:2380"},
		"localhost mesh":      {MeshListen: "localhost:2380"},
		"open with password":  {MeshListen: "0.0.0.0:2380", MeshPassword: []byte("secret")},
		"open, said insecure": {MeshListen: "0.0.0.0:2380", MeshInsecureAllowAnyone: true},
	} {
		if err := cfg.Validate(); err != nil {
			t.Errorf("%s: Validate = %v, want nil", name, err)
		}
	}
}

func TestCloseIdempotent(t *testing.T) {
	n, err := meshkv.Start(context.Background(), meshkv.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func BenchmarkPutSingleNode(b *testing.B) {
	n, err := meshkv.Start(context.Background(), meshkv.Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close()
	kv := n.Client().KV
	val := string(make([]byte, 256))
	b.SetParallelism(32) // many clients in flight, as a loaded server sees
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if _, err := kv.Put(ctx, "bench", val); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
