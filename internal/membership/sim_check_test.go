package membership

import "slices"

// checkProposal checks the safety invariants of a change when the leader
// proposes it.
func (s *sim) checkProposal(l *simProc, c Change) {
	nv, _ := c.Apply(s.voters, s.learners)
	if len(nv)%2 == 0 {
		s.fatalf("leader %s proposed %q: %d voters", l.id, c, len(nv))
	}
	for _, op := range c.Ops {
		q := s.byID[op.ID]
		switch op.Type {
		case OpPromote:
			// No promotion of a learner that has not acknowledged.
			if q.zombie || q.match == 0 || s.now-q.lastAck > s.cfg.ActiveWindow+simTick {
				s.fatalf("promotion of %s that has not acknowledged (zombie %v, match %d, last ack %v)", q.id, q.zombie, q.match, q.lastAck)
			}
		case OpAddLearner:
			e := l.entries[op.ID]
			if e == nil || s.now-e.heard > simEntryTTL || e.role != RoleJoining || !s.connected(l.id, op.ID) || s.removed[op.ID] {
				s.fatalf("added %s that is not a live, unexpired joiner", op.ID)
			}
		case OpRemove:
			if !slices.Contains(s.voters, op.ID) {
				continue
			}
			if e := l.entries[op.ID]; op.ID == l.id && l.leaving || e != nil && e.role == RoleLeaving && s.now-e.heard <= simEntryTTL {
				continue // asked for it itself
			}
			// No removal on a minority's word: the leader itself has not
			// been reached by it for the timeout, and a majority of the
			// voters really cannot reach it (or, for a liar, say so: raft
			// trusts its voters). Checked against the simulation's truth,
			// not against the statements the planner saw: those lapse when
			// the voter's entry expires.
			// (Within ActiveWindow: raft's activity flag, and so the
			// planner, can miss a live member's answers for a moment.)
			if s.now-q.lastAck < s.cfg.DeadMemberTimeout-s.cfg.ActiveWindow {
				s.fatalf("removal of voter %s that acknowledged %v ago", q.id, s.now-q.lastAck)
			}
			n := 1
			for _, w := range s.voters {
				if w != l.id && w != op.ID && (s.byID[w].liar || !s.connected(w, op.ID)) {
					n++
				}
			}
			if n < quorum(len(s.voters)) {
				s.fatalf("removal of voter %s on the word of %d of %d voters", q.id, n, len(s.voters))
			}
		}
	}
}

// checkLiveness: once simRepair has passed since the last fault, with the
// network whole, a majority of the processes alive means a leader exists.
// Processes are the voters, and the learners and honest joiners that had
// simRepair with the network whole before the last fault (and before the
// leader was lost) to be added and promoted: a sole voter that dies before its learners could be
// promoted leaves a cluster that only recovery can help.
func (s *sim) checkLiveness() {
	if !s.checkWedge || s.now-s.lastFault < simRepair || s.partitioned() {
		return
	}
	// Processes that arrive once the quorum is lost cannot help.
	cut := s.lastFault
	if s.leader == 0 {
		cut = min(cut, s.noLeader)
	}
	counted, alive := 0, 0
	for _, p := range s.procs {
		if p.zombie || s.removed[p.id] {
			continue
		}
		voter := slices.Contains(s.voters, p.id)
		if !voter && (cut-max(p.started, s.wholeAt) < simRepair || !p.alive && !s.isMember(p.id)) {
			continue
		}
		counted++
		if p.alive && !p.leaving {
			alive++
		}
	}
	if 2*alive > counted && s.leader == 0 {
		s.fatalf("wedged: %d of %d processes alive, no leader", alive, counted)
	}
}

// checkConverged checks the membership after simRepair or more without
// faults, with the network whole: no dead voter that a healthy learner could replace, growth
// to the target when learners allow it, no zombie or dead learner, every
// long-standing honest joiner added.
func (s *sim) checkConverged(target int) {
	if s.leader == 0 {
		dead := 0
		for _, v := range s.voters {
			if !s.raftUp(v) {
				dead++
			}
		}
		if dead < quorum(len(s.voters)) {
			s.fatalf("no leader although %d of %d voters are up", len(s.voters)-dead, len(s.voters))
		}
		return // lost quorum: only recovery helps
	}
	deadVoters, healthyLearners := 0, 0
	for _, v := range s.voters {
		if !s.raftUp(v) {
			deadVoters++
		}
	}
	if len(s.voters)%2 == 0 {
		s.fatalf("even voter count")
	}
	for _, id := range s.learners {
		q := s.byID[id]
		if q.zombie && s.now-q.started >= simRepair || !q.alive && s.now-q.diedAt >= simRepair {
			s.fatalf("learner %s is dead or never acknowledged, still a member", id)
		}
		if q.zombie || !q.alive {
			continue
		}
		if s.now-q.started >= simRepair && !q.leaving {
			healthyLearners++
		}
	}
	if deadVoters > 0 && healthyLearners > 0 {
		s.fatalf("%d dead voters although %d healthy learners could replace them", deadVoters, healthyLearners)
	}
	if deadVoters == 0 && len(s.voters) < target && healthyLearners >= 2 {
		s.fatalf("%d voters below target %d with %d healthy learners", len(s.voters), target, healthyLearners)
	}
	for _, p := range s.alive() {
		if s.now-p.started >= simRepair && !p.zombie && !p.leaving && !s.removed[p.id] && !s.isMember(p.id) &&
			len(s.learners) < s.cfg.withDefaults().MaxLearners {
			s.fatalf("live joiner %s was never added", p.id)
		}
	}
}
