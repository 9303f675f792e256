package kvapi

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/status"
)

func TestKVHeadersAndErrors(t *testing.T) {
	ts := newTestServer(t, Config{MaxRequestBytes: 4096, MaxTxnOps: 2})
	ctx := context.Background()
	kv := pb.NewKVClient(ts.conn)

	put, err := kv.Put(ctx, &pb.PutRequest{Key: []byte("a"), Value: []byte("1")})
	if err != nil {
		t.Fatal(err)
	}
	if h := put.Header; h.ClusterId != 0xc1 || h.MemberId != 0x31 || h.RaftTerm != 2 || h.Revision != 2 {
		t.Fatalf("put header = %+v, want cluster c1 member 31 term 2 revision 2", h)
	}
	rng, err := kv.Range(ctx, &pb.RangeRequest{Key: []byte("a")})
	if err != nil {
		t.Fatal(err)
	}
	if rng.Header.Revision != 2 || rng.Header.MemberId != 0x31 || len(rng.Kvs) != 1 {
		t.Fatalf("range = %+v", rng)
	}

	for name, tc := range map[string]struct {
		call func() error
		want error
	}{
		"empty key put":   {func() error { _, err := kv.Put(ctx, &pb.PutRequest{}); return err }, rpctypes.ErrGRPCEmptyKey},
		"empty key range": {func() error { _, err := kv.Range(ctx, &pb.RangeRequest{}); return err }, rpctypes.ErrGRPCEmptyKey},
		"too large": {func() error {
			_, err := kv.Put(ctx, &pb.PutRequest{Key: []byte("b"), Value: make([]byte, 5000)})
			return err
		}, rpctypes.ErrGRPCRequestTooLarge},
		"too many ops": {func() error {
			op := &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("a")}}}
			_, err := kv.Txn(ctx, &pb.TxnRequest{Success: []*pb.RequestOp{op, op, op}})
			return err
		}, rpctypes.ErrGRPCTooManyOps},
		"future revision": {func() error {
			_, err := kv.Range(ctx, &pb.RangeRequest{Key: []byte("a"), Revision: 100})
			return err
		}, rpctypes.ErrGRPCFutureRev},
		"lease not found": {func() error {
			_, err := kv.Put(ctx, &pb.PutRequest{Key: []byte("c"), Lease: 99})
			return err
		}, rpctypes.ErrGRPCLeaseNotFound},
	} {
		err := tc.call()
		if status.Code(err) != status.Code(tc.want) || !strings.Contains(err.Error(), rpctypes.ErrorDesc(tc.want)) {
			t.Errorf("%s: err = %v, want %v", name, err, tc.want)
		}
	}
}

func TestKVThroughClientv3(t *testing.T) {
	ts := newTestServer(t, Config{})
	ctx := context.Background()
	if _, err := ts.cli.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	resp, err := ts.cli.Txn(ctx).If(clientv3.Compare(clientv3.Value("k"), "=", "v")).
		Then(clientv3.OpPut("k", "w")).Else(clientv3.OpGet("k")).Commit()
	if err != nil || !resp.Succeeded {
		t.Fatalf("txn: %v %v", resp, err)
	}
	if _, err := ts.cli.Compact(ctx, resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	_, err = ts.cli.Get(ctx, "k", clientv3.WithRev(1))
	if !errors.Is(err, rpctypes.ErrCompacted) {
		t.Fatalf("get below compaction: %v, want %v", err, rpctypes.ErrCompacted)
	}
	st, err := ts.cli.Status(ctx, "kvapi-test:0")
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != ServerVersion || st.Leader != 0x31 {
		t.Fatalf("status = %+v", st)
	}
}

// TestStatusEmptyStore: etcdctl's endpoint status divides by DbSize, so even
// an empty store reports a positive size.
func TestStatusEmptyStore(t *testing.T) {
	ts := newTestServer(t, Config{})
	st, err := ts.cli.Status(context.Background(), "kvapi-test:0")
	if err != nil {
		t.Fatal(err)
	}
	if st.DbSize <= 0 || st.DbSizeInUse <= 0 || st.DbSizeInUse > st.DbSize {
		t.Fatalf("empty store: DbSize %d, DbSizeInUse %d; want 0 < in use <= size", st.DbSize, st.DbSizeInUse)
	}
}

func TestQuota(t *testing.T) {
	ts := newTestServer(t, Config{QuotaBytes: 4096})
	ctx := context.Background()
	kv := pb.NewKVClient(ts.conn)
	var err error
	for i := 0; err == nil && i < 100; i++ {
		_, err = kv.Put(ctx, &pb.PutRequest{Key: []byte(fmt.Sprintf("k%03d", i)), Value: make([]byte, 200)})
	}
	if !errors.Is(err, rpctypes.ErrGRPCNoSpace) {
		t.Fatalf("filling past the quota: err = %v, want %v", err, rpctypes.ErrGRPCNoSpace)
	}
	alarms, err := ts.cli.AlarmList(ctx)
	if err != nil || len(alarms.Alarms) != 1 || alarms.Alarms[0].Alarm != pb.AlarmType_NOSPACE {
		t.Fatalf("alarm list = %v, %v; want one NOSPACE", alarms, err)
	}
	st, err := ts.cli.Status(ctx, "kvapi-test:0")
	if err != nil || st.DbSizeQuota != 4096 {
		t.Fatalf("status quota = %v, %v", st, err)
	}
	// Deleting frees space (compaction reclaims the history), and writes work again.
	if _, err := ts.cli.Delete(ctx, "k", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.cli.Compact(ctx, ts.store.Rev()); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.cli.Put(ctx, "again", "ok"); err != nil {
		t.Fatalf("put after freeing space: %v", err)
	}
}
