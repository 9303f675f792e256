package mvcc

import (
	"bytes"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// Readers running while the writer works see whole writes only: a txn writes
// x and y with one value and each read of both sees them equal; revisions
// never go backwards; snapshots, hashes, history and lease reads work
// throughout. Run with -race.
func TestConcurrentReadersDuringWrites(t *testing.T) {
	s := New()
	if err := s.LeaseGrant(1, 100, 0); err != nil {
		t.Fatal(err)
	}
	var events atomic.Int64
	s.SetObserver(func(rev int64, evs []mvccpb.Event) { events.Add(int64(len(evs))) })

	const writes = 500
	var done atomic.Bool
	var wg sync.WaitGroup
	errc := make(chan error, 16)
	report := func(err error) {
		select {
		case errc <- err:
		default:
		}
	}

	reader := func(check func(last *int64) error) {
		defer wg.Done()
		var last int64
		for !done.Load() {
			if err := check(&last); err != nil {
				report(err)
				return
			}
		}
	}
	wg.Add(5)
	go reader(func(last *int64) error {
		resp, err := s.Range(&pb.RangeRequest{Key: []byte("x"), RangeEnd: []byte("z")})
		if err != nil {
			return err
		}
		if resp.Header.Revision < *last {
			return fmt.Errorf("revision went back from %d to %d", *last, resp.Header.Revision)
		}
		*last = resp.Header.Revision
		if len(resp.Kvs) == 2 && !bytes.Equal(resp.Kvs[0].Value, resp.Kvs[1].Value) {
			return fmt.Errorf("torn txn at %d: x=%s y=%s", resp.Header.Revision, resp.Kvs[0].Value, resp.Kvs[1].Value)
		}
		return nil
	})
	go reader(func(last *int64) error {
		// Historical reads of a revision never change.
		rev := s.Rev()
		if rev < 3 {
			return nil
		}
		r := &pb.RangeRequest{Key: []byte("\x00"), RangeEnd: []byte("\x00"), Revision: rev - 1}
		a, err1 := s.Range(r)
		b, err2 := s.Range(r)
		if err1 != nil || err2 != nil {
			return nil // compacted meanwhile is fine
		}
		if fmt.Sprint(toKVs(a.Kvs)) != fmt.Sprint(toKVs(b.Kvs)) {
			return fmt.Errorf("historical read at %d changed", rev-1)
		}
		return nil
	})
	go reader(func(last *int64) error {
		if _, err := s.Snapshot().WriteTo(io.Discard); err != nil {
			return err
		}
		if _, _, err := s.Hash(0); err != nil {
			return err
		}
		return nil
	})
	go reader(func(last *int64) error {
		err := s.History(s.CompactRev(), 0, func(rev int64, evs []mvccpb.Event) bool {
			if rev < *last {
				return true
			}
			*last = rev
			return len(evs) > 0
		})
		if err != nil && err != ErrCompacted {
			return err
		}
		return nil
	})
	go reader(func(last *int64) error {
		s.Lease(1)
		s.Leases()
		_, err := s.Txn(&pb.TxnRequest{Compare: []*pb.Compare{cmpValue("x", pb.Compare_EQUAL, "v1")}, Success: ops(opGet("x", "")), Failure: ops(opGet("y", ""))})
		return err
	})

	for i := range writes {
		v := fmt.Sprint("v", i)
		if _, err := s.Txn(&pb.TxnRequest{Success: ops(opPut("x", v), opPut("y", v, withLease(1)))}); err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			mustPut(t, s, fmt.Sprint("k", i%50), v)
		}
		if i%50 == 49 {
			mustCompact(t, s, s.Rev()-20)
		}
	}
	done.Store(true)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if events.Load() == 0 {
		t.Fatal("observer saw no events")
	}
	checkInvariants(t, s)
}
