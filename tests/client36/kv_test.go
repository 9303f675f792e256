package client36

import (
	"errors"
	"fmt"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestKV(t *testing.T) {
	cli := startNode(t).client(t)
	ctx := testCtx(t)

	first, err := cli.Put(ctx, "k/a", "1")
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	for i, k := range []string{"k/b", "k/c", "other"} {
		if _, err := cli.Put(ctx, k, fmt.Sprint(i+2)); err != nil {
			t.Fatalf("Put %s: %v", k, err)
		}
	}
	put, err := cli.Put(ctx, "k/a", "10", clientv3.WithPrevKV())
	if err != nil {
		t.Fatalf("Put with prev_kv: %v", err)
	}
	if put.PrevKv == nil || string(put.PrevKv.Value) != "1" || put.PrevKv.ModRevision != first.Header.Revision {
		t.Fatalf("prev_kv = %v, want k/a=1 at revision %d", put.PrevKv, first.Header.Revision)
	}

	get, err := cli.Get(ctx, "k/a")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if len(get.Kvs) != 1 || string(get.Kvs[0].Value) != "10" || get.Kvs[0].Version != 2 ||
		get.Kvs[0].CreateRevision != first.Header.Revision || get.Header.Revision != put.Header.Revision {
		t.Fatalf("Get k/a = %v at revision %d", get.Kvs, get.Header.Revision)
	}

	rng, err := cli.Get(ctx, "k/", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(2))
	if err != nil {
		t.Fatalf("range: %v", err)
	}
	if got := keys(rng.Kvs); got != "k/c k/b" || rng.Count != 3 || !rng.More {
		t.Fatalf("range = %q count %d more %v, want \"k/c k/b\" count 3 more", got, rng.Count, rng.More)
	}
	cnt, err := cli.Get(ctx, "k/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || cnt.Count != 3 || len(cnt.Kvs) != 0 {
		t.Fatalf("count only = %v, %v", cnt, err)
	}
	old, err := cli.Get(ctx, "k/a", clientv3.WithRev(first.Header.Revision))
	if err != nil || len(old.Kvs) != 1 || string(old.Kvs[0].Value) != "1" {
		t.Fatalf("Get at revision %d = %v, %v", first.Header.Revision, old, err)
	}

	// A compare-and-swap that succeeds, then one that fails.
	txn, err := cli.Txn(ctx).
		If(clientv3.Compare(clientv3.Value("k/a"), "=", "10")).
		Then(clientv3.OpPut("k/a", "11"), clientv3.OpGet("k/b")).
		Else(clientv3.OpGet("k/a")).
		Commit()
	if err != nil {
		t.Fatalf("Txn: %v", err)
	}
	if !txn.Succeeded || len(txn.Responses) != 2 || string(txn.Responses[1].GetResponseRange().Kvs[0].Value) != "2" {
		t.Fatalf("Txn = %v", txn)
	}
	txn, err = cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision("k/a"), "<", first.Header.Revision)).
		Then(clientv3.OpDelete("k/", clientv3.WithPrefix())).
		Else(clientv3.OpGet("k/a")).
		Commit()
	if err != nil {
		t.Fatalf("Txn: %v", err)
	}
	if txn.Succeeded || string(txn.Responses[0].GetResponseRange().Kvs[0].Value) != "11" {
		t.Fatalf("failing Txn = %v", txn)
	}

	del, err := cli.Delete(ctx, "k/", clientv3.WithPrefix(), clientv3.WithPrevKV())
	if err != nil || del.Deleted != 3 || keys(del.PrevKvs) != "k/a k/b k/c" {
		t.Fatalf("Delete = %v, %v", del, err)
	}

	// Compaction: history before the compacted revision is gone.
	if _, err := cli.Compact(ctx, del.Header.Revision); err != nil {
		t.Fatalf("Compact: %v", err)
	}
	if _, err := cli.Get(ctx, "k/a", clientv3.WithRev(first.Header.Revision)); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Fatalf("Get at a compacted revision: err = %v, want %v", err, rpctypes.ErrCompacted)
	}
	if _, err := cli.Compact(ctx, del.Header.Revision+100); !errors.Is(err, rpctypes.ErrFutureRev) {
		t.Fatalf("Compact in the future: err = %v, want %v", err, rpctypes.ErrFutureRev)
	}
	left, err := cli.Get(ctx, "", clientv3.WithFromKey())
	if err != nil || keys(left.Kvs) != "other" {
		t.Fatalf("after compaction: %v, %v", left, err)
	}
}

func keys(kvs []*mvccpb.KeyValue) string {
	s := ""
	for i, kv := range kvs {
		if i > 0 {
			s += " "
		}
		s += string(kv.Key)
	}
	return s
}
