package kvapi

import (
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshkv/meshkv/api/v3electionpb"
)

func electionWantUnknown(t *testing.T, err error, msg string) {
	t.Helper()
	st := status.Convert(err)
	if err == nil || st.Code() != codes.Unknown || st.Message() != msg {
		t.Fatalf("error = %v, want Unknown %q", err, msg)
	}
}

func TestElection(t *testing.T) {
	ts := newLeaseTestServer(t, LeaseConfig{})
	ctx := leaseTestCtx(t)
	ec := v3electionpb.NewElectionClient(ts.conn)
	name := []byte("elect")

	_, err := ec.Leader(ctx, &v3electionpb.LeaderRequest{Name: name})
	electionWantUnknown(t, err, "election: no leader")

	g1, err := ts.cli.Grant(ctx, 30)
	if err != nil {
		t.Fatal(err)
	}
	g2, err := ts.cli.Grant(ctx, 30)
	if err != nil {
		t.Fatal(err)
	}

	c1, err := ec.Campaign(ctx, &v3electionpb.CampaignRequest{Name: name, Lease: int64(g1.ID), Value: []byte("one")})
	if err != nil {
		t.Fatal(err)
	}
	l1 := c1.Leader
	if string(l1.Name) != "elect" || string(l1.Key) != fmt.Sprintf("elect/%x", g1.ID) || l1.Lease != int64(g1.ID) || l1.Rev != ts.store.Rev() {
		t.Fatalf("campaign leader key = %v (store at %d)", l1, ts.store.Rev())
	}
	if c1.Header == nil || c1.Header.MemberId != 0x31 {
		t.Fatalf("campaign header = %v", c1.Header)
	}

	obs, err := ec.Observe(ctx, &v3electionpb.LeaderRequest{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	observe := func(wantValue string) {
		t.Helper()
		r, err := obs.Recv()
		if err != nil {
			t.Fatalf("observe: %v", err)
		}
		if string(r.Kv.Value) != wantValue {
			t.Fatalf("observed %q, want %q", r.Kv.Value, wantValue)
		}
	}
	observe("one")

	lr, err := ec.Leader(ctx, &v3electionpb.LeaderRequest{Name: name})
	if err != nil || string(lr.Kv.Value) != "one" || string(lr.Kv.Key) != string(l1.Key) || lr.Kv.Lease != int64(g1.ID) {
		t.Fatalf("leader = %v, %v", lr, err)
	}

	pr, err := ec.Proclaim(ctx, &v3electionpb.ProclaimRequest{Leader: l1, Value: []byte("uno")})
	if err != nil || pr.Header == nil || pr.Header.Revision != ts.store.Rev() {
		t.Fatalf("proclaim = %v, %v", pr, err)
	}
	observe("uno")

	// A second candidate waits for the first to resign.
	type campaignResult struct {
		resp *v3electionpb.CampaignResponse
		err  error
	}
	done := make(chan campaignResult, 1)
	go func() {
		r, err := ec.Campaign(ctx, &v3electionpb.CampaignRequest{Name: name, Lease: int64(g2.ID), Value: []byte("two")})
		done <- campaignResult{r, err}
	}()
	leaseWaitFor(t, "the second candidate's key", func() bool { return leaseKeyExists(t, ts.store, fmt.Sprintf("elect/%x", g2.ID)) })
	select {
	case r := <-done:
		t.Fatalf("second Campaign returned while the first leads: %v, %v", r.resp, r.err)
	default:
	}

	rr, err := ec.Resign(ctx, &v3electionpb.ResignRequest{Leader: l1})
	if err != nil || rr.Header == nil {
		t.Fatalf("resign = %v, %v", rr, err)
	}
	r := <-done
	if r.err != nil || r.resp.Leader.Lease != int64(g2.ID) {
		t.Fatalf("second campaign = %v, %v", r.resp, r.err)
	}
	observe("two")

	// The resigned key no longer leads.
	_, err = ec.Proclaim(ctx, &v3electionpb.ProclaimRequest{Leader: l1, Value: []byte("again")})
	electionWantUnknown(t, err, "election: not leader")
	_, err = ec.Proclaim(ctx, &v3electionpb.ProclaimRequest{Value: []byte("x")})
	electionWantUnknown(t, err, `"leader" field must be provided`)
	_, err = ec.Resign(ctx, &v3electionpb.ResignRequest{})
	electionWantUnknown(t, err, `"leader" field must be provided`)

	// Leadership follows the lease: revoking it ends the term.
	if _, err := ts.cli.Revoke(ctx, g2.ID); err != nil {
		t.Fatal(err)
	}
	_, err = ec.Leader(ctx, &v3electionpb.LeaderRequest{Name: name})
	electionWantUnknown(t, err, "election: no leader")
}
