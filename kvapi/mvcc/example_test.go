package mvcc_test

import (
	"bytes"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/meshkv/meshkv/kvapi/mvcc"
)

func Example() {
	s := mvcc.New()
	s.SetObserver(func(rev int64, evs []mvccpb.Event) {
		for evi := range evs {
			ev := &evs[evi]
			fmt.Printf("event at %d: %s %s\n", rev, ev.Type, ev.Kv.Key)
		}
	})

	// Writes come from one goroutine, in log order.
	if _, err := s.Put(&pb.PutRequest{Key: []byte("lock/a"), Value: []byte("owner1")}); err != nil {
		panic(err)
	}
	// Compare-and-swap: only if nobody changed the key since revision 2.
	txn, err := s.Txn(&pb.TxnRequest{
		Compare: []*pb.Compare{{Key: []byte("lock/a"), Target: pb.Compare_MOD, Result: pb.Compare_EQUAL,
			TargetUnion: &pb.Compare_ModRevision{ModRevision: 2}}},
		Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("lock/a"), Value: []byte("owner2")}}}},
	})
	if err != nil {
		panic(err)
	}
	fmt.Println("swapped:", txn.Succeeded, "at revision", txn.Header.Revision)

	// Reads may come from any goroutine, at the current or an older revision.
	old, _ := s.Range(&pb.RangeRequest{Key: []byte("lock/a"), Revision: 2})
	fmt.Printf("at 2: %s\n", old.Kvs[0].Value)

	// A snapshot restores into an identical store.
	var buf bytes.Buffer
	if _, err := s.Snapshot().WriteTo(&buf); err != nil {
		panic(err)
	}
	copyOf := mvcc.New()
	if err := copyOf.Restore(&buf); err != nil {
		panic(err)
	}
	h1, _, _ := s.Hash(0)
	h2, _, _ := copyOf.Hash(0)
	fmt.Println("same hash:", h1 == h2)

	// Output:
	// event at 2: PUT lock/a
	// event at 3: PUT lock/a
	// swapped: true at revision 3
	// at 2: owner1
	// same hash: true
}
