package raftadapter

import (
	"bytes"
	"errors"
	"io"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestDedupAdmit(t *testing.T) {
	d := newDedup()
	d.startTerm(3)
	admit := func(proposer, seq, low uint64) bool {
		return d.admit(envelope{proposer: proposer, term: 3, seq: seq, low: low})
	}
	steps := []struct {
		proposer, seq, low uint64
		want               bool
	}{
		{1, 1, 1, true},
		{1, 3, 1, true},  // out of order: 2 is still pending
		{1, 1, 1, false}, // second copy, caught by the applied set
		{2, 1, 1, true},  // proposers are independent
		{1, 2, 1, true},
		{1, 3, 2, false},
		{1, 5, 4, true}, // 1..3 resolved on the proposer: floor 4
		{1, 2, 1, false},
		{1, 1, 1, false}, // below the floor
		{1, 4, 4, true},  // at the floor, not applied yet
		{1, 4, 4, false},
	}
	for i, s := range steps {
		if got := admit(s.proposer, s.seq, s.low); got != s.want {
			t.Fatalf("step %d: admit(%d, seq %d, low %d) = %v, want %v", i, s.proposer, s.seq, s.low, got, s.want)
		}
	}
	p := d.proposers[1]
	if p.floor != 4 || !slices.Equal(p.applied(), []uint64{4, 5}) {
		t.Fatalf("proposer 1: floor %d applied %v, want 4 and [4 5]", p.floor, p.applied())
	}

	d.startTerm(3) // same term: nothing changes
	if len(d.proposers) != 2 {
		t.Fatal("startTerm of the current term cleared the state")
	}
	d.startTerm(4)
	if len(d.proposers) != 0 || d.term != 4 {
		t.Fatalf("after a new term: term %d, %d proposers", d.term, len(d.proposers))
	}
	if !d.admit(envelope{proposer: 1, term: 4, seq: 9, low: 9}) {
		t.Fatal("first entry of a new term refused")
	}
}

func TestDedupEncoding(t *testing.T) {
	d := newDedup()
	d.startTerm(7)
	for _, e := range []envelope{
		{proposer: 9, seq: 10, low: 10}, {proposer: 9, seq: 14, low: 10}, {proposer: 9, seq: 12, low: 11},
		{proposer: 1 << 40, seq: 1 << 50, low: 1<<50 - 3},
	} {
		e.term = 7
		d.admit(e)
	}
	d.proposers[3] = &proposerSeqs{floor: 5} // nothing above the floor
	enc := d.appendTo(nil)
	got, err := decodeDedup(enc)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if got.term != 7 || len(got.proposers) != 3 {
		t.Fatalf("decoded term %d with %d proposers", got.term, len(got.proposers))
	}
	for id, p := range d.proposers {
		q := got.proposers[id]
		if q == nil || q.floor != p.floor || !slices.Equal(q.applied(), p.applied()) {
			t.Fatalf("proposer %x: decoded %+v, want %+v", id, q, p)
		}
	}
	if !bytes.Equal(got.appendTo(nil), enc) {
		t.Fatal("encoding is not deterministic")
	}
	empty, err := decodeDedup(newDedup().appendTo(nil))
	if err != nil || empty.term != 0 || len(empty.proposers) != 0 {
		t.Fatalf("empty state: %+v %v", empty, err)
	}

	for name, data := range map[string][]byte{
		"empty":          nil,
		"truncated":      enc[:len(enc)-1],
		"trailing":       append(bytes.Clone(enc), 0),
		"huge count":     {1, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"zero proposer":  {1, 1, 0, 0, 0},
		"repeated":       {1, 2, 5, 0, 0, 5, 0, 0},
		"not increasing": {1, 1, 5, 0, 2, 1, 0},
		"overflow":       {1, 1, 5, 0, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 2},
	} {
		if _, err := decodeDedup(data); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}

// TestDedupExactness simulates one proposer against the dedup state, with
// copies of proposals delivered late, twice or never, periodic re-proposal
// and callers whose deadline passes. A copy must be applied iff no copy of
// it was applied before, except that a late first copy of a proposal nobody
// waits for any more may be skipped. The state kept above the floor must
// stay small: about what the proposer hands out while a caller waits.
func TestDedupExactness(t *testing.T) {
	const (
		steps    = 5000
		deadline = 60 // steps a caller waits
		sweep    = 20 // steps between re-proposal rounds
	)
	var totalDups, totalLate int
	for seed := range uint64(10) {
		rng := rand.New(rand.NewPCG(seed, 1))
		d := newDedup()
		d.startTerm(1)
		var (
			lastSeq   uint64
			pending   = map[uint64]int{} // seq -> step proposed
			applied   = map[uint64]bool{}
			stamps    = map[uint64]uint64{} // seq -> low it was stamped with
			inFlight  []uint64              // copies not yet in the log
			maxWindow int
			dups      int
			late      int
		)
		low := func(limit uint64) uint64 {
			m := limit
			for s := range pending {
				m = min(m, s)
			}
			return m
		}
		for step := range steps {
			for s, at := range pending {
				if step-at > deadline {
					delete(pending, s) // the caller's context ended
				}
			}
			if step%sweep == 0 {
				for _, s := range slices.Sorted(maps.Keys(pending)) { // deterministic order
					inFlight = append(inFlight, s) // same seq, same stamp
				}
			}
			if rng.IntN(10) < 3 { // propose a batch
				first := lastSeq + 1
				lw := low(first)
				for range 1 + rng.IntN(3) {
					lastSeq++
					pending[lastSeq] = step
					stamps[lastSeq] = lw
					inFlight = append(inFlight, lastSeq)
				}
			}
			for range 2 {
				if len(inFlight) == 0 {
					break
				}
				// A copy is lost, or reaches the log, in any order.
				i := rng.IntN(len(inFlight))
				s := inFlight[i]
				inFlight[i] = inFlight[len(inFlight)-1]
				inFlight = inFlight[:len(inFlight)-1]
				if rng.IntN(10) < 4 {
					continue
				}
				_, waiting := pending[s]
				got := d.admit(envelope{proposer: 1, term: 1, seq: s, low: stamps[s]})
				switch {
				case got && applied[s]:
					t.Fatalf("seed %d: seq %d applied twice", seed, s)
				case !got && !applied[s] && waiting:
					t.Fatalf("seed %d: first copy of seq %d skipped while its caller waits", seed, s)
				}
				switch {
				case got:
					applied[s] = true
					delete(pending, s)
				case applied[s]:
					dups++
				default:
					late++ // first copy of a proposal whose caller gave up
				}
				maxWindow = max(maxWindow, len(d.proposers[1].applied()))
			}
		}
		t.Logf("seed %d: %d seqs, %d applied, %d duplicates and %d late first copies skipped, window up to %d",
			seed, lastSeq, len(applied), dups, late, maxWindow)
		totalDups, totalLate = totalDups+dups, totalLate+late
		// About 0.6 seqs are handed out per step, 36 per deadline; copies
		// in flight hold the floor back a little longer.
		if maxWindow > 2*deadline {
			t.Errorf("seed %d: up to %d seqs kept above the floor; want at most %d", seed, maxWindow, 2*deadline)
		}
	}
	if totalDups == 0 || totalLate == 0 {
		t.Errorf("the simulation skipped %d duplicates and %d late first copies; want both cases", totalDups, totalLate)
	}
}

func TestSnapshotData(t *testing.T) {
	d := newDedup()
	d.startTerm(5)
	d.admit(envelope{proposer: 2, term: 5, seq: 8, low: 6})
	state := strings.Repeat("state machine bytes ", 10)
	removed := map[uint64]struct{}{7: {}, 9: {}}
	data, err := writeSnapshot(d.appendTo(nil), appendRemoved(nil, removed), rewriter(state))
	if err != nil {
		t.Fatal(err)
	}
	gotD, gotRemoved, sm, err := decodeSnapshot(data)
	if err != nil {
		t.Fatalf("decodeSnapshot: %v", err)
	}
	if string(sm) != state || gotD.term != 5 || gotD.proposers[2] == nil || gotD.proposers[2].floor != 6 {
		t.Fatalf("decoded %q and %+v", sm, gotD)
	}
	if !maps.Equal(gotRemoved, removed) {
		t.Fatalf("removed set %v, want %v", gotRemoved, removed)
	}
	empty, err := writeSnapshot(newDedup().appendTo(nil), appendRemoved(nil, nil), rewriter(""))
	if err != nil {
		t.Fatal(err)
	}
	if _, rm, sm, err := decodeSnapshot(empty); err != nil || len(sm) != 0 || len(rm) != 0 {
		t.Fatalf("empty state machine: %q %v", sm, err)
	}

	flipped := bytes.Clone(data)
	flipped[len(flipped)/2] ^= 1
	badVersion := bytes.Clone(data)
	badVersion[len(snapMagic)] = 9
	for name, bad := range map[string][]byte{
		"nil":         nil,
		"short":       data[:6],
		"magic":       append([]byte("XXXX"), data[4:]...),
		"version":     badVersion,
		"bit flip":    flipped,
		"truncated":   data[:len(data)-1],
		"raw kv data": []byte(state),
	} {
		if _, _, _, err := decodeSnapshot(bad); !errors.Is(err, ErrBadSnapshot) {
			t.Errorf("%s: err = %v, want ErrBadSnapshot", name, err)
		}
	}
}

func TestLowWater(t *testing.T) {
	l := &loop{waiters: map[uint64]*waiter{}, lowSeq: 1}
	add := func(conf bool) *waiter {
		w := &waiter{seq: l.nextSeq()}
		if conf {
			w.conf = &confRequest{}
		}
		l.waiters[w.seq] = w
		return w
	}
	if got := l.lowWater(1); got != 1 {
		t.Fatalf("nothing pending: %d, want 1", got)
	}
	w1, w2 := add(false), add(false)
	add(true) // membership changes do not hold the watermark back
	if got := l.lowWater(l.lastSeq + 1); got != w1.seq {
		t.Fatalf("low = %d, want %d", got, w1.seq)
	}
	delete(l.waiters, w1.seq)
	if got := l.lowWater(l.lastSeq + 1); got != w2.seq {
		t.Fatalf("low = %d, want %d", got, w2.seq)
	}
	delete(l.waiters, w2.seq)
	l.nextSeq() // handed out but never proposed
	if got, want := l.lowWater(l.lastSeq+1), l.lastSeq+1; got != want {
		t.Fatalf("low = %d, want %d (the next batch)", got, want)
	}
}

// BenchmarkDedupAdmit measures the per-entry cost of the at-most-once check
// with 32 proposals in flight per proposer and three proposers.
func BenchmarkDedupAdmit(b *testing.B) {
	d := newDedup()
	d.startTerm(1)
	b.ReportAllocs()
	for i := range uint64(b.N) {
		seq := i/3 + 1
		d.admit(envelope{proposer: i%3 + 1, term: 1, seq: seq, low: max(seq, 32) - 31})
	}
}

// rewriter is a capture that writes the same string on every WriteTo.
type rewriter string

func (r rewriter) WriteTo(w io.Writer) (int64, error) {
	n, err := io.WriteString(w, string(r))
	return int64(n), err
}
