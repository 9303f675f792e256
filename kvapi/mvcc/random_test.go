package mvcc

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"
)

// rop is one randomly generated write.
type rop struct {
	put     *pb.PutRequest
	del     *pb.DeleteRangeRequest
	txn     *pb.TxnRequest
	compact *pb.CompactionRequest
	grant   [2]int64 // id, ttl
	revoke  int64
	cp      [2]int64 // id, remaining
}

type opGen struct {
	r    *rand.Rand
	keys []string
}

func (g *opGen) key() string { return g.keys[g.r.IntN(len(g.keys))] }

func (g *opGen) value() []byte {
	if g.r.IntN(8) == 0 {
		return nil
	}
	return []byte(fmt.Sprint("v", g.r.IntN(1000)))
}

func (g *opGen) putReq(k string) *pb.PutRequest {
	p := &pb.PutRequest{Key: []byte(k), Value: g.value(), PrevKv: g.r.IntN(3) == 0}
	switch g.r.IntN(10) {
	case 0:
		p.IgnoreValue, p.Value = true, nil
	case 1:
		p.IgnoreLease = true
	case 2, 3:
		p.Lease = int64(1 + g.r.IntN(4))
	}
	return p
}

func (g *opGen) delReq(k string) *pb.DeleteRangeRequest {
	d := &pb.DeleteRangeRequest{Key: []byte(k), PrevKv: g.r.IntN(2) == 0}
	if g.r.IntN(4) == 0 {
		d.RangeEnd = []byte(g.key() + "\x00")
	}
	return d
}

func (g *opGen) rangeReq(cur int64) *pb.RangeRequest {
	r := &pb.RangeRequest{Key: []byte(g.key())}
	switch g.r.IntN(4) {
	case 0:
		r.RangeEnd = []byte("\x00")
	case 1:
		r.RangeEnd = []byte(g.key())
	}
	if g.r.IntN(3) == 0 {
		r.Revision = cur - int64(g.r.IntN(5))
	}
	r.Limit = int64(g.r.IntN(4))
	r.SortOrder = pb.RangeRequest_SortOrder(g.r.IntN(3))
	r.SortTarget = pb.RangeRequest_SortTarget(g.r.IntN(5))
	r.KeysOnly = g.r.IntN(4) == 0
	r.CountOnly = g.r.IntN(6) == 0
	return r
}

func (g *opGen) compare() *pb.Compare {
	c := &pb.Compare{Key: []byte(g.key()), Result: pb.Compare_CompareResult(g.r.IntN(4))}
	if g.r.IntN(4) == 0 {
		c.RangeEnd = []byte("\x00")
	}
	switch g.r.IntN(4) {
	case 0:
		c.Target, c.TargetUnion = pb.Compare_VALUE, &pb.Compare_Value{Value: g.value()}
	case 1:
		c.Target, c.TargetUnion = pb.Compare_VERSION, &pb.Compare_Version{Version: int64(g.r.IntN(4))}
	case 2:
		c.Target, c.TargetUnion = pb.Compare_MOD, &pb.Compare_ModRevision{ModRevision: int64(g.r.IntN(40))}
	case 3:
		c.Target, c.TargetUnion = pb.Compare_LEASE, &pb.Compare_Lease{Lease: int64(g.r.IntN(3))}
	}
	return c
}

// txnReq builds a txn whose writes mostly use distinct keys (so that most
// pass the duplicate check).
func (g *opGen) txnReq(cur int64, depth int, free *[]string) *pb.TxnRequest {
	t := &pb.TxnRequest{}
	for range g.r.IntN(3) {
		t.Compare = append(t.Compare, g.compare())
	}
	next := func() string {
		if len(*free) == 0 || g.r.IntN(20) == 0 {
			return g.key()
		}
		k := (*free)[0]
		*free = (*free)[1:]
		return k
	}
	branch := func() []*pb.RequestOp {
		var out []*pb.RequestOp
		for range g.r.IntN(4) {
			switch n := g.r.IntN(10); {
			case n < 4:
				out = append(out, &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: g.putReq(next())}})
			case n < 6:
				d := g.delReq(next())
				d.RangeEnd = nil
				out = append(out, &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: d}})
			case n < 9 || depth >= 2:
				out = append(out, &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: g.rangeReq(cur)}})
			default:
				out = append(out, &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: g.txnReq(cur, depth+1, free)}})
			}
		}
		return out
	}
	t.Success = branch()
	t.Failure = branch()
	return t
}

func (g *opGen) next(cur, compact int64) rop {
	switch n := g.r.IntN(100); {
	case n < 40:
		return rop{put: g.putReq(g.key())}
	case n < 52:
		return rop{del: g.delReq(g.key())}
	case n < 80:
		free := append([]string(nil), g.keys...)
		g.r.Shuffle(len(free), func(i, j int) { free[i], free[j] = free[j], free[i] })
		return rop{txn: g.txnReq(cur, 0, &free)}
	case n < 86:
		// Mostly lag well behind, so that history stays readable.
		span := int(cur-compact) + 2
		if g.r.IntN(4) != 0 {
			span = span/4 + 1
		}
		rev := compact + int64(g.r.IntN(span)) - 1
		return rop{compact: &pb.CompactionRequest{Revision: rev}}
	case n < 92:
		return rop{grant: [2]int64{int64(1 + g.r.IntN(4)), int64(g.r.IntN(100))}}
	case n < 96:
		return rop{revoke: int64(1 + g.r.IntN(5))}
	default:
		return rop{cp: [2]int64{int64(1 + g.r.IntN(5)), int64(g.r.IntN(50))}}
	}
}

// applyRop applies o and returns a comparable rendering of the outcome.
func applyRop(s *Store, o rop) string {
	var resp proto.Message
	var err error
	switch {
	case o.put != nil:
		resp, err = s.Put(o.put)
	case o.del != nil:
		resp, err = s.DeleteRange(o.del)
	case o.txn != nil:
		resp, err = s.Txn(o.txn)
	case o.compact != nil:
		resp, err = s.Compact(o.compact)
	case o.grant[0] != 0:
		err = s.LeaseGrant(o.grant[0], o.grant[1], 0)
	case o.revoke != 0:
		resp, err = s.LeaseRevoke(o.revoke)
	default:
		err = s.LeaseCheckpoint(o.cp[0], o.cp[1])
	}
	if err != nil {
		return "error: " + err.Error()
	}
	if resp == nil || reflect.ValueOf(resp).IsNil() {
		return "ok"
	}
	b, merr := proto.MarshalOptions{Deterministic: true}.Marshal(resp)
	if merr != nil {
		return "marshal: " + merr.Error()
	}
	return fmt.Sprintf("%x", b)
}

// Random writes applied to several stores — the original, one restored from
// a snapshot half way, one restored late from a snapshot taken earlier (and
// caught up by replay) — give identical responses and identical state, and
// every historical read matches what was read at the time.
func TestRandomizedDeterminism(t *testing.T) {
	seeds := 12
	steps := 600
	if testing.Short() {
		seeds, steps = 3, 200
	}
	for seed := range seeds {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			g := &opGen{r: rand.New(rand.NewPCG(uint64(seed), 99)), keys: []string{"a", "b", "c", "d", "e", "f", "g", "h"}}
			a := New()
			var observed []revEvents
			a.SetObserver(func(rev int64, evs []mvccpb.Event) { observed = append(observed, revEvents{rev, evs}) })
			states := map[int64]string{1: allAt(a, 1)}
			stores := []*Store{a}
			var log []rop
			var early *Snapshot
			earlyAt := steps / 3
			for i := range steps {
				switch i {
				case steps / 2:
					stores = append(stores, restored(t, snapshotBytes(t, a)))
				case earlyAt:
					early = a.Snapshot()
				case earlyAt + 30:
					var buf bytes.Buffer
					if _, err := early.WriteTo(&buf); err != nil {
						t.Fatal(err)
					}
					c := restored(t, buf.Bytes())
					for _, o := range log[earlyAt:] {
						applyRop(c, o)
					}
					sameStore(t, a, c)
					stores = append(stores, c)
				}
				o := g.next(a.Rev(), a.CompactRev())
				log = append(log, o)
				want := applyRop(a, o)
				for j, s := range stores[1:] {
					if got := applyRop(s, o); got != want {
						t.Fatalf("step %d: store %d answered %s, original %s", i, j+1, got, want)
					}
				}
				if _, ok := states[a.Rev()]; !ok {
					states[a.Rev()] = allAt(a, a.Rev())
				}
				if i%50 == 0 {
					checkInvariants(t, a)
				}
			}
			for _, s := range stores[1:] {
				sameStore(t, a, s)
			}
			checkInvariants(t, a)
			for rev := int64(1); rev <= a.Rev(); rev++ {
				got := allAt(a, rev)
				if rev < a.CompactRev() {
					if got != ErrCompacted.Error() {
						t.Fatalf("read at %d below compact revision %d: %s", rev, a.CompactRev(), got)
					}
					continue
				}
				if got != states[rev] {
					t.Fatalf("read at %d: %s\nwas %s", rev, got, states[rev])
				}
			}
			// History from the compact revision equals what the observer
			// saw, minus what compaction removed at exactly that revision.
			from := a.CompactRev()
			h := history(t, a, from+1, 0)
			var tail []revEvents
			for _, re := range observed {
				if re.rev > from {
					tail = append(tail, re)
				}
			}
			if !reflect.DeepEqual(h, tail) {
				t.Fatalf("history after %d differs from observed events", from)
			}
		})
	}
}
