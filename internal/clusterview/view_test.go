package clusterview

import (
	"context"
	"errors"
	"slices"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshkv/meshkv/internal/ids"
	"github.com/meshkv/meshkv/internal/membership"
	"github.com/meshkv/meshkv/kvapi"
	"github.com/meshkv/meshkv/meshtransport"
	"github.com/meshkv/meshkv/raftadapter"
)

// fakeRaft is a raft member with a fixed status; its calls return err and
// are recorded.
type fakeRaft struct {
	st    raftadapter.Status
	err   error
	calls []string
}

func (f *fakeRaft) Propose(context.Context, []byte) (any, error) {
	f.calls = append(f.calls, "propose")
	return "applied", f.err
}
func (f *fakeRaft) ReadIndex(context.Context) error { f.calls = append(f.calls, "read"); return f.err }
func (f *fakeRaft) Status() raftadapter.Status      { return f.st }
func (f *fakeRaft) LeaderTerm() (uint64, uint64)    { return f.st.Leader, f.st.Term }
func (f *fakeRaft) RemoveMember(context.Context, uint64) error {
	f.calls = append(f.calls, "remove")
	return f.err
}
func (f *fakeRaft) Promote(context.Context, uint64) error {
	f.calls = append(f.calls, "promote")
	return f.err
}
func (f *fakeRaft) TransferLeadership(context.Context, uint64) error {
	f.calls = append(f.calls, "transfer")
	return f.err
}

type fakeMembership map[ids.MemberID]membership.PeerInfo

func (f fakeMembership) Peers() map[ids.MemberID]membership.PeerInfo { return f }
func (f fakeMembership) Errors() []string                            { return []string{"conflict"} }

type fakeMesh map[meshtransport.MemberID]string

func (f fakeMesh) PeerAddrs() map[meshtransport.MemberID]string { return f }

type noForward struct{ asked []uint64 }

func (f *noForward) Client(id uint64, _ []string) (*clientv3.Client, error) {
	f.asked = append(f.asked, id)
	return nil, errors.New("unreachable")
}

// newView returns a view of member 1 over rn (nil: not in a cluster yet),
// with a membership and a mesh when peers is not nil.
func newView(rn *fakeRaft, peers fakeMembership, fw *noForward) *View {
	return New(Config{
		ID: 1, Name: "one", ClientURLs: []string{"http://one:2379"},
		ClusterID: func() uint64 { return 7 },
		Raft: func() Raft {
			if rn == nil {
				return nil
			}
			return rn
		},
		Membership: func() Membership {
			if peers == nil {
				return nil
			}
			return peers
		},
		Mesh:      func() Mesh { return fakeMesh{2: "10.0.0.2:6783"} },
		Forwarder: fw,
	})
}

func TestNotMember(t *testing.T) {
	v := newView(nil, nil, nil)
	ctx := t.Context()
	for name, err := range map[string]error{
		"remove":  v.RemoveMember(ctx, 2),
		"promote": v.PromoteMember(ctx, 2),
		"move":    v.MoveLeader(ctx, 2),
		"read":    NewReplicator(v.cfg.Raft).ReadIndex(ctx),
	} {
		if !errors.Is(err, ErrNotMember) || !errors.Is(err, kvapi.ErrNoLeader) {
			t.Errorf("%s: got %v, want ErrNotMember (no leader)", name, err)
		}
	}
	if got := v.Members(); len(got) != 1 || got[0].ID != 1 || got[0].Name != "one" {
		t.Errorf("members: got %v, want only self", got)
	}
	if l, term := v.LeaderTerm(); l != 0 || term != 0 {
		t.Errorf("leader, term: got %d, %d, want 0, 0", l, term)
	}
	if v.Errors() != nil {
		t.Errorf("errors: got %v, want none", v.Errors())
	}
}

func TestErrorMapping(t *testing.T) {
	for _, tc := range []struct {
		err, want error
	}{
		{raftadapter.ErrNoLeader, kvapi.ErrNoLeader},
		{raftadapter.ErrLeaderChanged, kvapi.ErrLeaderChanged},
		{raftadapter.ErrStopped, kvapi.ErrStopped},
		{raftadapter.ErrRemoved, kvapi.ErrStopped},
		{raftadapter.ErrTimeout, kvapi.ErrTimeout},
		{raftadapter.ErrOutcomeUnknown, kvapi.ErrTimeout},
	} {
		rn := &fakeRaft{err: tc.err}
		if _, err := NewReplicator(func() Raft { return rn }).Propose(t.Context(), nil); !errors.Is(err, tc.want) || !errors.Is(err, tc.err) {
			t.Errorf("propose with %v: got %v, want %v", tc.err, err, tc.want)
		}
	}
	for _, tc := range []struct {
		err, want error
	}{
		{raftadapter.ErrUnknownMember, kvapi.ErrMemberNotFound},
		{raftadapter.ErrMemberExists, kvapi.ErrMemberExists},
		{raftadapter.ErrNotLeader, kvapi.ErrNotLeader},
		{raftadapter.ErrInvalidConfChange, kvapi.ErrTooFewVoters},
		{raftadapter.ErrTimeout, kvapi.ErrTimeout},
	} {
		if err := membershipError(tc.err); !errors.Is(err, tc.want) {
			t.Errorf("membership change with %v: got %v, want %v", tc.err, err, tc.want)
		}
	}
}

func TestMembershipChanges(t *testing.T) {
	leader := raftadapter.Status{ID: 1, Leader: 1, IsLeader: true, Voters: []uint64{1, 3}, Learners: []uint64{2},
		Progress: map[uint64]raftadapter.Progress{1: {Match: 100}, 2: {Match: 80, RecentActive: true}}}
	follower := raftadapter.Status{ID: 1, Leader: 3, Voters: []uint64{1, 3}, Learners: []uint64{2}}
	alone := raftadapter.Status{ID: 1, Leader: 1, IsLeader: true, Voters: []uint64{1}}
	peers := fakeMembership{3: {Name: "three", ClientURLs: []string{"http://three:2379"}}}
	for _, tc := range []struct {
		name  string
		st    raftadapter.Status
		peers fakeMembership
		do    func(*View) error
		want  error
		call  string // the raft call made, if any
		fwd   bool   // forwarded to the leader
	}{
		{"remove unknown", leader, nil, func(v *View) error { return v.RemoveMember(t.Context(), 9) }, kvapi.ErrMemberNotFound, "", false},
		{"remove only voter", alone, nil, func(v *View) error { return v.RemoveMember(t.Context(), 1) }, kvapi.ErrTooFewVoters, "", false},
		{"remove on leader", leader, nil, func(v *View) error { return v.RemoveMember(t.Context(), 2) }, nil, "remove", false},
		{"remove on follower", follower, peers, func(v *View) error { return v.RemoveMember(t.Context(), 2) }, kvapi.ErrNotLeader, "", true},
		{"remove, leader without URL", follower, fakeMembership{}, func(v *View) error { return v.RemoveMember(t.Context(), 2) }, kvapi.ErrNotLeader, "", false},
		{"remove, no membership", follower, nil, func(v *View) error { return v.RemoveMember(t.Context(), 2) }, kvapi.ErrNoLeader, "", false},
		{"promote voter", leader, nil, func(v *View) error { return v.PromoteMember(t.Context(), 3) }, kvapi.ErrMemberNotLearner, "", false},
		{"promote unknown", leader, nil, func(v *View) error { return v.PromoteMember(t.Context(), 9) }, kvapi.ErrMemberNotFound, "", false},
		{"promote lagging", leader, nil, func(v *View) error { return v.PromoteMember(t.Context(), 2) }, kvapi.ErrLearnerNotReady, "", false},
		{"move on follower", follower, nil, func(v *View) error { return v.MoveLeader(t.Context(), 3) }, kvapi.ErrNotLeader, "", false},
		{"move to learner", leader, nil, func(v *View) error { return v.MoveLeader(t.Context(), 2) }, kvapi.ErrBadLeaderTransferee, "", false},
		{"move", leader, nil, func(v *View) error { return v.MoveLeader(t.Context(), 3) }, nil, "transfer", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rn, fw := &fakeRaft{st: tc.st}, &noForward{}
			err := tc.do(newView(rn, tc.peers, fw))
			if (tc.want == nil && err != nil) || !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
			if tc.call == "" && len(rn.calls) > 0 || tc.call != "" && !slices.Equal(rn.calls, []string{tc.call}) {
				t.Errorf("raft calls: got %v, want %q", rn.calls, tc.call)
			}
			if got := len(fw.asked) > 0; got != tc.fwd {
				t.Errorf("forwarded: got %v (%v), want %v", got, fw.asked, tc.fwd)
			}
		})
	}
}

func TestLearnerReady(t *testing.T) {
	for _, tc := range []struct {
		pr   raftadapter.Progress
		want bool
	}{
		{raftadapter.Progress{Match: 90, RecentActive: true}, true},
		{raftadapter.Progress{Match: 89, RecentActive: true}, false},
		{raftadapter.Progress{Match: 100}, false},
		{raftadapter.Progress{RecentActive: true}, false},
	} {
		st := raftadapter.Status{ID: 1, Progress: map[uint64]raftadapter.Progress{1: {Match: 100}, 2: tc.pr}}
		if got := learnerReady(st, 2); got != tc.want {
			t.Errorf("learner %+v: got %v, want %v", tc.pr, got, tc.want)
		}
	}
}

func TestMembers(t *testing.T) {
	rn := &fakeRaft{st: raftadapter.Status{ID: 1, Leader: 1, Term: 4, Voters: []uint64{3, 1}, Learners: []uint64{2}}}
	v := newView(rn, fakeMembership{2: {Name: "two", ClientURLs: []string{"http://two:2379"}}}, nil)
	got := v.Members()
	type member struct {
		id      uint64
		name    string
		learner bool
		peer    string
	}
	var list []member
	for _, m := range got {
		var peer string
		if len(m.PeerURLs) > 0 {
			peer = m.PeerURLs[0]
		}
		list = append(list, member{m.ID, m.Name, m.IsLearner, peer})
	}
	want := []member{{1, "one", false, ""}, {3, "", false, ""}, {2, "two", true, "https://10.0.0.2:6783"}}
	if !slices.Equal(list, want) {
		t.Errorf("members: got %+v, want %+v", list, want)
	}
	if l, term := v.LeaderTerm(); l != 1 || term != 4 {
		t.Errorf("leader, term: got %d, %d, want 1, 4", l, term)
	}
	if got := v.Errors(); !slices.Equal(got, []string{"meshkv: conflict"}) {
		t.Errorf("errors: got %v", got)
	}
	if v.ClusterID() != 7 || v.MemberID() != 1 {
		t.Errorf("ids: got cluster %d member %d, want 7, 1", v.ClusterID(), v.MemberID())
	}
}
