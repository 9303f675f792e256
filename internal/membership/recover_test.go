package membership

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/meshkv/meshkv/internal/ids"
)

func TestPlanRecovery(t *testing.T) {
	qa := Config{}.withDefaults().QueryAfter
	base := func() RecoveryInput {
		return RecoveryInput{
			Self:          Survivor{ID: 1, Cluster: testCluster, Applied: 100},
			Voters:        mids(1, 2, 3),
			Learners:      mids(4),
			LeaderlessFor: qa,
			Nonce:         7,
		}
	}
	for _, tc := range []struct {
		name string
		edit func(in *RecoveryInput)
		want error
	}{
		{"lost quorum, alone", func(in *RecoveryInput) {}, nil},
		{"a learner answered with less", func(in *RecoveryInput) {
			in.Others = []Survivor{{ID: 4, Cluster: testCluster, Applied: 90}}
		}, nil},
		{"a learner applied more", func(in *RecoveryInput) {
			in.Others = []Survivor{{ID: 4, Cluster: testCluster, Applied: 101}}
		}, ErrNotHighest},
		{"a learner applied more, forced", func(in *RecoveryInput) {
			in.Others = []Survivor{{ID: 4, Cluster: testCluster, Applied: 101}}
			in.Force = true
		}, nil},
		{"tie broken by the higher id", func(in *RecoveryInput) {
			in.Others = []Survivor{{ID: 4, Cluster: testCluster, Applied: 100}}
		}, ErrNotHighest},
		{"tie, we have the higher id", func(in *RecoveryInput) {
			in.Self.ID = 9
			in.Voters = mids(9, 2, 3)
			in.Others = []Survivor{{ID: 4, Cluster: testCluster, Applied: 100}}
		}, nil},
		{"answers from another cluster or a non-member are ignored", func(in *RecoveryInput) {
			in.Others = []Survivor{{ID: 2, Cluster: 0xdd, Applied: 500}, {ID: 8, Cluster: testCluster, Applied: 500}}
		}, nil},
		{"a majority of voters answered", func(in *RecoveryInput) {
			in.Others = []Survivor{{ID: 2, Cluster: testCluster, Applied: 10}}
		}, ErrQuorumReachable},
		{"forced never overrides a reachable quorum", func(in *RecoveryInput) {
			in.Others = []Survivor{{ID: 2, Cluster: testCluster, Applied: 10}}
			in.Force = true
		}, ErrQuorumReachable},
		{"we follow a leader", func(in *RecoveryInput) { in.Self.Lead = 2 }, ErrLeaderKnown},
		{"a survivor follows a leader", func(in *RecoveryInput) {
			in.Others = []Survivor{{ID: 4, Cluster: testCluster, Lead: 3}}
		}, ErrLeaderKnown},
		{"too soon", func(in *RecoveryInput) { in.LeaderlessFor = qa - time.Millisecond }, ErrTooSoon},
		{"removed", func(in *RecoveryInput) { in.Self.Removed = true }, ErrNotMember},
		{"not in the configuration", func(in *RecoveryInput) { in.Voters = mids(2, 3, 5) }, ErrNotMember},
		{"no cluster", func(in *RecoveryInput) { in.Self.Cluster = 0 }, ErrNotMember},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := base()
			tc.edit(&in)
			plan, err := PlanRecovery(Config{}, in)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if err != nil {
				return
			}
			if plan.Voter != in.Self.ID || plan.Applied != in.Self.Applied || plan.Supersedes != testCluster ||
				plan.Cluster == 0 || plan.Cluster == testCluster {
				t.Fatalf("plan = %+v", plan)
			}
			var want []ids.MemberID
			for _, id := range append(slices.Clone(in.Voters), in.Learners...) {
				if id != in.Self.ID {
					want = append(want, id)
				}
			}
			slices.Sort(want)
			if !slices.Equal(plan.Removed, want) {
				t.Fatalf("removed = %v, want %v", plan.Removed, want)
			}
		})
	}
}

// The recovered cluster's id depends on the nonce (two recoveries of the
// same member differ) and is never 0 or the old id.
func TestRecoveredClusterID(t *testing.T) {
	seen := map[ids.ClusterID]bool{}
	for nonce := range uint64(1000) {
		id := recoveredClusterID(testCluster, 1, 100, nonce)
		if id == 0 || id == testCluster || seen[id] {
			t.Fatalf("nonce %d: id %s", nonce, id)
		}
		seen[id] = true
	}
}
