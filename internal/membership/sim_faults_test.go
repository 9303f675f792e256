package membership

import (
	"time"
)

// fault records a fault; with spaced faults, the membership must have
// converged before it.
func (s *sim) fault(target int) {
	s.t.Helper()
	if s.spaced && s.now-s.lastFault >= simRepair && s.now >= simRepair && !s.partitioned() {
		s.checkConverged(target)
	}
	s.lastFault = s.now
}

// kill stops p as kill -9 would.
func (s *sim) kill(p *simProc, target int) {
	s.t.Helper()
	if !p.alive {
		return
	}
	s.fault(target)
	p.alive, p.diedAt = false, s.now
	s.tracef("kill %s", p.id)
}

// leave starts a graceful leave of p.
func (s *sim) leave(p *simProc, target int) {
	s.t.Helper()
	s.fault(target)
	p.leaving, p.leaveAt = true, s.now+simLeave
	s.tracef("%s leaves", p.id)
}

// partition moves the given slots into group 1.
func (s *sim) partition(slots []int, target int) {
	s.t.Helper()
	if len(slots) == 0 {
		return
	}
	s.fault(target)
	for _, slot := range slots {
		s.group[slot] = 1
	}
	s.tracef("partition slots %v", slots)
}

// heal joins all groups.
func (s *sim) heal(target int) {
	s.t.Helper()
	if !s.partitioned() {
		return
	}
	s.fault(target)
	clear(s.group)
	s.wholeAt = s.now
	s.tracef("heal")
}

// restartDead starts a new honest process in every slot without a live one.
func (s *sim) restartDead(slots int) {
	for slot := range slots {
		if s.slotFree(slot) {
			s.start(slot, false)
		}
	}
}

// randomRun drives one seeded run: processes join, die, restart, leave and
// are partitioned at random; some are zombies or liars. With spaced, faults
// are at least simRepair apart.
func randomRun(s *sim, slots, target int, dur time.Duration) {
	rng := s.rng
	next := time.Duration(0)
	liarDone := false
	for s.now < dur {
		s.step()
		if s.now < next {
			continue
		}
		next = s.now + time.Duration(500+rng.IntN(6000))*time.Millisecond
		canFault := !s.spaced || s.now-s.lastFault >= simRepair
		switch r := rng.IntN(100); {
		case r < 30:
			var free []int
			for slot := range slots {
				if s.slotFree(slot) {
					free = append(free, slot)
				}
			}
			if len(free) > 0 {
				s.start(free[rng.IntN(len(free))], rng.IntN(8) == 0)
			}
		case r < 50 && canFault:
			if live := s.alive(); len(live) > 0 {
				s.kill(live[rng.IntN(len(live))], target)
			}
		case r < 60 && canFault:
			if s.partitioned() {
				s.heal(target)
			} else {
				var side []int
				for slot := range slots {
					if rng.IntN(3) == 0 {
						side = append(side, slot)
					}
				}
				s.partition(side, target)
			}
		case r < 65 && canFault:
			var members []*simProc
			for _, p := range s.alive() {
				if s.isMember(p.id) && !p.leaving {
					members = append(members, p)
				}
			}
			if len(members) > 0 {
				s.leave(members[rng.IntN(len(members))], target)
			}
		case r < 67 && !liarDone:
			if live := s.alive(); len(live) > 0 {
				live[rng.IntN(len(live))].liar = true
				liarDone = true
			}
		case r < 75 && s.partitioned() && canFault:
			s.heal(target)
		}
	}
	if s.spaced {
		s.run(max(0, simRepair-(s.now-s.lastFault)))
	}
	s.heal(target)
	s.restartDead(slots)
	s.run(3 * simRepair)
	s.checkConverged(target)
}
