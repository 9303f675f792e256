package difftest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// historyLen is how many preceding ops a failure report shows.
const historyLen = 12

// runner sends each request to both servers and fails the test on the first
// difference.
type runner struct {
	t        *testing.T
	ref, sut *target
	label    string         // printed with a failure, e.g. how to reproduce it
	n        int            // ops sent so far
	history  []string       // the last historyLen ops, oldest first
	outcomes map[string]int // request type and answer (OK or error) -> count
}

func newRunner(t *testing.T) *runner {
	t.Helper()
	ref, sut := startPair(t)
	return &runner{t: t, ref: ref, sut: sut}
}

// step sends req to both servers, compares the answers, and returns the
// reference server's answer.
func (r *runner) step(req message) result {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(r.t.Context(), 30*time.Second)
	defer cancel()
	a := do(ctx, r.ref, req)
	b := do(ctx, r.sut, req)
	if !same(a, b) {
		r.t.Fatalf("op %d: %s and %s differ (%s)\nrequest: %s\n%-7s %s\n%-7s %s\npreceding ops (oldest first):\n%s",
			r.n, r.ref.name, r.sut.name, r.label, describe(req), r.ref.name+":", a, r.sut.name+":", b, r.context())
	}
	r.record(fmt.Sprintf("op %d: %s\n      -> %s", r.n, describe(req), a))
	r.n++
	if r.outcomes == nil {
		r.outcomes = map[string]int{}
	}
	outcome := "OK"
	if a.resp == nil {
		outcome = a.msg
	} else if tr, ok := a.resp.(*pb.TxnResponse); ok {
		outcome = fmt.Sprintf("OK succeeded=%v", tr.Succeeded)
	}
	r.outcomes[fmt.Sprintf("%T: %s", req, outcome)]++
	return a
}

// expect is step for scripted scenarios: it also checks the reference's
// answer against what etcd is documented to do, so that a scenario that no
// longer tests what it says fails loudly instead of passing vacuously.
func (r *runner) expect(req message, code codes.Code, msgPart string) result {
	r.t.Helper()
	a := r.step(req)
	if a.code != code || !strings.Contains(a.msg, msgPart) {
		r.t.Fatalf("op %d: etcd answered %s, the scenario expects code %v with %q\nrequest: %s", r.n-1, a, code, msgPart, describe(req))
	}
	return a
}

// summary lists how often each kind of request got each answer, to show
// what a run covered.
func (r *runner) summary() string {
	keys := slices.Sorted(maps.Keys(r.outcomes))
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "\n  %6d  %s", r.outcomes[k], strings.TrimPrefix(k, "*etcdserverpb."))
	}
	return b.String()
}

func (r *runner) record(s string) {
	if len(r.history) == historyLen {
		r.history = r.history[1:]
	}
	r.history = append(r.history, s)
}

func (r *runner) context() string {
	if len(r.history) == 0 {
		return "  (none)"
	}
	return "  " + strings.Join(r.history, "\n  ")
}

// allKeys is a Range over the whole key space.
func allKeys() *pb.RangeRequest {
	return &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}}
}

// leasesSupported grants a lease on both servers and reports whether the
// server under test serves the Lease service. The lease is revoked again.
func (r *runner) leasesSupported() bool {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(r.t.Context(), 30*time.Second)
	defer cancel()
	probe := &pb.LeaseGrantRequest{ID: 0x7e57, TTL: 600}
	b := do(ctx, r.sut, probe)
	if b.code == codes.Unimplemented {
		r.t.Logf("%s answers LeaseGrant with %s: lease ops are left out of this run", r.sut.name, b)
		return false
	}
	if a := do(ctx, r.ref, probe); !same(a, b) {
		r.t.Fatalf("LeaseGrant differs\nrequest: %s\n%s: %s\n%s: %s", describe(probe), r.ref.name, a, r.sut.name, b)
	}
	r.step(&pb.LeaseRevokeRequest{ID: probe.ID})
	return true
}
