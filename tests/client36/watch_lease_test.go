package client36

import (
	"errors"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestWatchPrevKV(t *testing.T) {
	cli := startNode(t).client(t)
	ctx := testCtx(t)

	start, err := cli.Put(ctx, "w/a", "1")
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	wc := cli.Watch(ctx, "w/", clientv3.WithPrefix(), clientv3.WithPrevKV(), clientv3.WithRev(start.Header.Revision))
	for _, op := range []clientv3.Op{
		clientv3.OpPut("w/a", "2"),
		clientv3.OpPut("w/b", "1"),
		clientv3.OpDelete("w/a"),
	} {
		if _, err := cli.Do(ctx, op); err != nil {
			t.Fatalf("Do: %v", err)
		}
	}
	want := []struct {
		typ       mvccpb.Event_EventType
		key, val  string
		prevValue string // "" when there is no previous key-value
	}{
		{mvccpb.PUT, "w/a", "1", ""},
		{mvccpb.PUT, "w/a", "2", "1"},
		{mvccpb.PUT, "w/b", "1", ""},
		{mvccpb.DELETE, "w/a", "", "2"},
	}
	var got []*clientv3.Event
	deadline := time.After(30 * time.Second)
	for len(got) < len(want) {
		select {
		case resp, ok := <-wc:
			if !ok {
				t.Fatalf("watch closed after %d events", len(got))
			}
			if err := resp.Err(); err != nil {
				t.Fatalf("watch: %v", err)
			}
			got = append(got, resp.Events...)
		case <-deadline:
			t.Fatalf("%d of %d events after 30s", len(got), len(want))
		}
	}
	for i, w := range want {
		ev := got[i]
		if ev.Type != w.typ || string(ev.Kv.Key) != w.key || string(ev.Kv.Value) != w.val {
			t.Errorf("event %d = %v %s=%s, want %v %s=%s", i, ev.Type, ev.Kv.Key, ev.Kv.Value, w.typ, w.key, w.val)
		}
		switch {
		case w.prevValue == "" && ev.PrevKv != nil:
			t.Errorf("event %d has prev_kv %v, want none", i, ev.PrevKv)
		case w.prevValue != "" && (ev.PrevKv == nil || string(ev.PrevKv.Value) != w.prevValue):
			t.Errorf("event %d prev_kv = %v, want value %s", i, ev.PrevKv, w.prevValue)
		}
	}
	if !got[0].IsCreate() || !got[1].IsModify() {
		t.Errorf("first events: create %v, modify %v", got[0].IsCreate(), got[1].IsModify())
	}
}

func TestLease(t *testing.T) {
	cli := startNode(t).client(t)
	ctx := testCtx(t)

	// A short TTL: clientv3 sends keepalives every third of it, and the last
	// one tells the client the lease is gone.
	const ttl = 6
	grant, err := cli.Grant(ctx, ttl)
	if err != nil {
		t.Fatalf("Grant: %v", err)
	}
	if grant.TTL != ttl || grant.ID == 0 {
		t.Fatalf("Grant = %v", grant)
	}
	if _, err := cli.Put(ctx, "l/a", "1", clientv3.WithLease(grant.ID)); err != nil {
		t.Fatalf("Put with lease: %v", err)
	}
	once, err := cli.KeepAliveOnce(ctx, grant.ID)
	if err != nil || once.ID != grant.ID || once.TTL != ttl {
		t.Fatalf("KeepAliveOnce = %v, %v", once, err)
	}
	kac, err := cli.KeepAlive(ctx, grant.ID)
	if err != nil {
		t.Fatalf("KeepAlive: %v", err)
	}
	select {
	case ka, ok := <-kac:
		if !ok || ka.ID != grant.ID || ka.TTL <= 0 {
			t.Fatalf("keepalive response = %v (open %v)", ka, ok)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no keepalive response within 30s")
	}
	left, err := cli.TimeToLive(ctx, grant.ID, clientv3.WithAttachedKeys())
	if err != nil || left.GrantedTTL != ttl || left.TTL <= 0 || left.TTL > ttl || len(left.Keys) != 1 || string(left.Keys[0]) != "l/a" {
		t.Fatalf("TimeToLive = %v, %v", left, err)
	}
	leases, err := cli.Leases(ctx)
	if err != nil || len(leases.Leases) != 1 || leases.Leases[0].ID != grant.ID {
		t.Fatalf("Leases = %v, %v", leases, err)
	}

	if _, err := cli.Revoke(ctx, grant.ID); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	get, err := cli.Get(ctx, "l/a")
	if err != nil || len(get.Kvs) != 0 {
		t.Fatalf("key of a revoked lease: %v, %v", get, err)
	}
	if _, err := cli.Revoke(ctx, grant.ID); !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		t.Fatalf("second Revoke: err = %v, want %v", err, rpctypes.ErrLeaseNotFound)
	}
	// The keepalive channel closes once the lease is gone.
	deadline := time.After(30 * time.Second)
	for open := true; open; {
		select {
		case _, open = <-kac:
		case <-deadline:
			t.Fatal("keepalive channel still open 30s after Revoke")
		}
	}
}
