// Membership over whole clusters on the in-memory network (startMemCluster),
// under -race.

package meshkv_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshkv/meshkv"
	"github.com/meshkv/meshkv/internal/netproxy"
)

func TestDeadVoterReplacedByLearner(t *testing.T) {
	tc := startMemCluster(t, 201, 4, 3, withDeadMember)
	tc.waitVoters(3, 20*time.Second)
	if err := put(tc.nodes[0].Client(), "durable", "yes", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	voters, learners := tc.membership()
	if len(learners) != 1 {
		t.Fatalf("want one spare learner, got voters %x learners %x", voters, learners)
	}
	victim := slices.IndexFunc(tc.nodes, func(n *meshkv.Node) bool { return n.ID() == voters[0] })
	killedAt := time.Now()
	tc.kill(victim)
	tc.waitVoters(3, testDeadMember+15*time.Second)
	t.Logf("dead voter replaced %v after the kill (dead-member timeout %v)", time.Since(killedAt), testDeadMember)
	// The cluster tolerates another failure.
	v, _ := tc.membership()
	second := slices.IndexFunc(tc.nodes, func(n *meshkv.Node) bool { return n.ID() == v[0] })
	tc.kill(second)
	if err := put(tc.live().Client(), "after-two-failures", "ok", 10*time.Second); err != nil {
		t.Fatalf("no write after the second failure: %v", err)
	}
	if v, err := getValue(tc.live().Client(), "durable", 5*time.Second); err != nil || v != "yes" {
		t.Fatalf("lost a write: %q %v", v, err)
	}
}

// Kill a voter and start a fresh node, ten times: the cluster never loses
// data, and each cycle costs at most about one election of unavailability.
func TestKillReplaceCycles(t *testing.T) {
	cycles := 10
	if testing.Short() {
		cycles = 3
	}
	tc := startMemCluster(t, 202, 3, 3, withDeadMember)
	var acked []string
	for c := range cycles {
		l := tc.leader(keys(tc.killed)...)
		victim := (l + 1) % len(tc.nodes)
		for tc.killed[victim] || victim == l {
			victim = (victim + 1) % len(tc.nodes)
		}
		if c%3 == 2 {
			victim = l // every third cycle the leader dies
		}
		tc.kill(victim)
		// Three voters and no spare: the dead voter stays until a new node
		// joins (the cluster never applies an even voter count), so writes
		// are measured over an election and the dead-member timeout.
		killedAt := time.Now()
		gap := measureUnavailabilityVia(t, tc, 500*time.Millisecond, func() bool {
			return time.Since(killedAt) > testDeadMember+2*time.Second
		})
		tc.add(t)
		// The dead voter goes once a majority of voters report it
		// unreachable; a voter whose path view still says "relayed" delays
		// that until the dead node's gossip entry expires (30 s), the
		// planner's fallback. Allow for it.
		tc.waitVoters(3, testDeadMember+45*time.Second)
		key := fmt.Sprintf("cycle-%d", c)
		if err := put(tc.live().Client(), key, "v", 5*time.Second); err != nil {
			t.Fatalf("cycle %d: %v", c, err)
		}
		acked = append(acked, key)
		t.Logf("cycle %d: killed n%d (leader %v), longest write gap %v", c, victim, victim == l, gap)
		if gap > 3*time.Second {
			t.Fatalf("cycle %d: writes stalled for %v", c, gap)
		}
	}
	for i, nd := range tc.nodes {
		if tc.killed[i] {
			continue
		}
		for _, k := range acked {
			if v, err := getValue(nd.Client(), k, 5*time.Second); err != nil || v != "v" {
				t.Fatalf("node %d lost %s: %q %v", i, k, v, err)
			}
		}
	}
}

// measureUnavailabilityVia writes through live nodes until done reports true
// (or a deadline) and returns the longest gap between successful writes.
func measureUnavailabilityVia(t *testing.T, tc *testCluster, every time.Duration, done func() bool) time.Duration {
	t.Helper()
	last, longest := time.Now(), time.Duration(0)
	deadline := time.Now().Add(testDeadMember + 20*time.Second)
	for n := 0; !done() && time.Now().Before(deadline); n++ {
		if err := put(tc.live().Client(), "probe", fmt.Sprint(n), time.Second); err == nil {
			longest = max(longest, time.Since(last))
			last = time.Now()
		}
		time.Sleep(every / 10)
	}
	return max(longest, time.Since(last))
}

// Every member is closed and replaced by a fresh node, one at a time: every
// acknowledged key survives.
func TestRollingRestartKeepsData(t *testing.T) {
	tc := startMemCluster(t, 203, 3, 3, withDeadMember)
	for i := range 20 {
		if err := put(tc.nodes[0].Client(), fmt.Sprintf("k%d", i), "v", 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		start := time.Now()
		if err := tc.nodes[i].Close(); err != nil {
			t.Fatalf("close %d: %v", i, err)
		}
		tc.kill(i)
		tc.add(t)
		tc.waitVoters(3, 30*time.Second)
		t.Logf("member %d replaced in %v", i, time.Since(start))
	}
	for _, nd := range tc.nodes[3:] {
		for i := range 20 {
			if v, err := getValue(nd.Client(), fmt.Sprintf("k%d", i), 5*time.Second); err != nil || v != "v" {
				t.Fatalf("k%d lost after the rolling restart: %q %v", i, v, err)
			}
		}
	}
}

// A member cut off with a minority never removes anyone, and when healed it
// is either still a member or cleanly replaced.
func TestMinorityNeverRemoves(t *testing.T) {
	tc := startMemCluster(t, 204, 3, 3, withDeadMember)
	l := tc.leader()
	before, _ := tc.membership()
	for j := range 3 {
		if j != l {
			tc.cut(l, j, netproxy.Blackhole)
		}
	}
	// Longer than the dead-member timeout: the majority replaces nobody
	// either (it has no spare), and the isolated old leader removes nobody.
	meshkv.Always(t, testDeadMember+2*time.Second, "the isolated member's view of the membership", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := tc.nodes[l].Client().MemberList(ctx, clientv3.WithSerializable())
		if err != nil {
			t.Fatal(err)
		}
		return len(st.Members) == len(before)
	})
	for j := range 3 {
		if j != l {
			tc.heal(l, j)
		}
	}
	waitFor(t, 20*time.Second, "the healed member to serve again or be replaced", func() bool {
		v, err := getValue(tc.nodes[l].Client(), "x", time.Second)
		return err == nil && v == "" || tc.nodes[l].Err() != nil
	})
	ids := map[uint64]int{}
	voters, learners := tc.membership()
	for _, id := range append(voters, learners...) {
		ids[id]++
		if ids[id] > 1 {
			t.Fatalf("member %x listed twice", id)
		}
	}
}
