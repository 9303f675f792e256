package membership

import (
	"time"

	"github.com/meshkv/meshkv/internal/ids"
)

// tracked is what the leader remembers about one member across steps of one
// leadership term. Raft's progress is per leader and per term, so all of it
// is dropped when leadership changes.
type tracked struct {
	firstSeen  time.Duration // first step of this term that listed the member
	lastActive time.Duration // last step that saw RecentActive (valid if seenActive)
	seenActive bool
	// caughtUp is set while every step since caughtUpSince saw the learner
	// caught up (see Planner.observeCatchUp).
	caughtUp      bool
	caughtUpSince time.Duration
}

// commitSample is the leader's commit index at one step.
type commitSample struct {
	at     time.Duration
	commit uint64
}

// leaderState is the planner's memory while this node leads.
type leaderState struct {
	term    uint64
	since   time.Duration
	members map[ids.MemberID]*tracked
	commits []commitSample
}

func newLeaderState(term uint64, now time.Duration) *leaderState {
	return &leaderState{term: term, since: now, members: map[ids.MemberID]*tracked{}}
}

// observe records one step's raft progress.
func (ls *leaderState) observe(now time.Duration, self ids.MemberID, v *View, window time.Duration) {
	seen := map[ids.MemberID]bool{}
	for _, list := range [][]ids.MemberID{v.Raft.Voters, v.Raft.Learners} {
		for _, id := range list {
			if id == self {
				continue
			}
			seen[id] = true
			t := ls.members[id]
			if t == nil {
				t = &tracked{firstSeen: now}
				ls.members[id] = t
			}
			if v.Raft.Progress[id].RecentActive {
				t.lastActive, t.seenActive = now, true
			}
		}
	}
	for id := range ls.members {
		if !seen[id] {
			delete(ls.members, id)
		}
	}
	ls.commits = append(ls.commits, commitSample{at: now, commit: v.Raft.Commit})
	// Keep the newest sample at least window old, and everything newer.
	keep := 0
	for i, s := range ls.commits {
		if now-s.at >= window {
			keep = i
		}
	}
	ls.commits = ls.commits[keep:]
}

// ackTarget is the commit index as of window ago: a caught-up learner has
// acknowledged at least that much. It is 0 (nothing counts as caught up)
// until this node has led for window. Comparing with the commit index of a
// moment ago rather than the current one tolerates entries in flight under
// steady writes (with a single voter the commit index runs ahead of every
// learner by one round trip), while still demanding that the learner
// acknowledged everything committed before.
func (ls *leaderState) ackTarget(now, window time.Duration) uint64 {
	if len(ls.commits) == 0 || now-ls.commits[0].at < window {
		return 0
	}
	return ls.commits[0].commit
}

// active reports whether the leader heard from id within window.
func (ls *leaderState) active(id ids.MemberID, now, window time.Duration) bool {
	t := ls.members[id]
	return t != nil && t.seenActive && now-t.lastActive <= window
}

// silentFor is how long the leader has not heard from id during this term.
func (ls *leaderState) silentFor(id ids.MemberID, now time.Duration) time.Duration {
	t := ls.members[id]
	if t == nil {
		return 0
	}
	if t.seenActive {
		return now - t.lastActive
	}
	return now - t.firstSeen
}
