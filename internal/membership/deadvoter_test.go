package membership

import (
	"slices"
	"testing"
	"time"
)

// A dead voter's entry expires everywhere before a learner can replace it:
// the transports stop listing it as unreachable, but its expired entry is
// evidence enough, so it is replaced once a learner is ready.
func TestDeadVoterReplacedAfterItsEntryExpired(t *testing.T) {
	f := newFx(t, testCfg, mids(1, 2, 3), nil)
	f.kill(3)
	f.run(testCfg.DeadMemberTimeout / 2)
	f.peer(3).Expired = true
	f.peer(2).Unreachable = nil // a transport forgets an expired peer
	if d := f.until(2 * testCfg.DeadMemberTimeout); !d.Change.IsZero() {
		t.Fatalf("change without a learner: %q", d.Change)
	}
	f.v.Raft.Learners = mids(4)
	f.acks[4] = true
	f.peer(4).Role = RoleLearner
	d := f.until(10 * time.Second)
	if o := ops(d.Change); !slices.Equal(o[OpPromote], mids(4)) || !slices.Equal(o[OpRemove], mids(3)) {
		t.Fatalf("change %q, want promote 4 and remove 3", d.Change)
	}
}

// A voter whose entry is live again in our view, which no other voter
// reports, is alive: only the leader misses it, and it stays.
func TestReportsEndWhenTheVoterIsSeenAgain(t *testing.T) {
	f := newFx(t, testCfg, mids(1, 2, 3), mids(4))
	f.kill(3)
	f.run(tick)
	f.peer(3).Expired = true
	f.peer(2).Unreachable = nil
	f.run(tick)
	f.peer(3).Expired = false // its entry is relayed to us again
	if d := f.until(3 * testCfg.DeadMemberTimeout); !d.Change.IsZero() {
		t.Fatalf("removed a voter only the leader misses: %q", d.Change)
	}
}
