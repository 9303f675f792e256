package raftadapter

import (
	"errors"
	"fmt"
	"slices"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// admitInbound applies the checks on an inbound message that need the
// loop's state. The transport has already checked that m.From is the
// sender's own id; these checks keep messages that raft would act on
// wrongly (or panic on) away from it:
//
//   - In a term whose leader we know, only that leader sends appends,
//     heartbeats, snapshots and TimeoutNow: raft has one leader per term,
//     but would follow any sender of such a message.
//   - A non-member may not raise our term with such a message while our
//     leader is active (heard within an election timeout, or we lead):
//     raft would make us its follower, and let it replace our log and
//     state. Members are trusted to follow raft; a member elected in a
//     configuration we have not applied yet is heard once our lease ends.
//   - A heartbeat may not commit beyond our log (raft panics), and an
//     acknowledgement may not claim entries beyond ours.
//   - A snapshot that raft would install must decode (checksum, our
//     replicated state, the right term) before raft stores it, or the
//     restore would stop the loop.
func (l *loop) admitInbound(m *raftpb.Message) error {
	bs := l.rn.BasicStatus()
	typ := m.GetType()
	switch typ {
	case raftpb.MsgApp, raftpb.MsgHeartbeat, raftpb.MsgSnap, raftpb.MsgTimeoutNow:
		switch {
		case m.GetTerm() == bs.GetTerm() && bs.Lead != 0 && m.GetFrom() != bs.Lead:
			return fmt.Errorf("%v from %x in term %d, whose leader is %x", typ, m.GetFrom(), bs.GetTerm(), bs.Lead)
		case m.GetTerm() > bs.GetTerm() && !l.isMember(m.GetFrom()) && l.inLease(bs.Lead):
			return fmt.Errorf("%v of term %d from non-member %x while leader %x of term %d is active",
				typ, m.GetTerm(), m.GetFrom(), bs.Lead, bs.GetTerm())
		}
	}
	switch typ {
	case raftpb.MsgHeartbeat:
		if last, _ := l.storage.LastIndex(); m.GetCommit() > last {
			return fmt.Errorf("heartbeat commits %d beyond our last index %d", m.GetCommit(), last)
		}
	case raftpb.MsgAppResp:
		if last, _ := l.storage.LastIndex(); !m.GetReject() && m.GetIndex() > last {
			return fmt.Errorf("acknowledges index %d beyond our last index %d", m.GetIndex(), last)
		}
	case raftpb.MsgSnap:
		md := m.GetSnapshot().GetMetadata()
		if md.GetIndex() <= bs.GetCommit() {
			return nil // raft ignores it
		}
		dd, _, _, err := decodeSnapshot(m.GetSnapshot().GetData())
		if err != nil {
			return err
		}
		if dd.term != md.GetTerm() {
			return fmt.Errorf("%w: dedup state of term %d in a snapshot of term %d", ErrBadSnapshot, dd.term, md.GetTerm())
		}
	}
	return nil
}

// isMember reports whether id is a voter or learner of the applied
// configuration. With no configuration yet (a node waiting to be added),
// everyone is.
func (l *loop) isMember(id uint64) bool {
	if len(l.voters) == 0 && len(l.learners) == 0 {
		return true
	}
	return slices.Contains(l.voters, id) || slices.Contains(l.learners, id)
}

// inLease reports whether leader is active: it is us, or we stepped a
// message from it within the last election timeout.
func (l *loop) inLease(leader uint64) bool {
	switch {
	case leader == 0:
		return false
	case leader == l.id:
		return true
	}
	return leader == l.lead && l.ticks-l.leaderHeard < uint64(l.cfg.ElectionTicks)
}

// drainInbox steps everything other goroutines queued.
func (l *loop) drainInbox() {
	b := l.n.in.take()
	for _, w := range b.cancels {
		l.forget(w)
	}
	for i := range b.msgs {
		l.stepInbound(b.msgs[i])
	}
	for _, id := range b.unreachable {
		l.rn.ReportUnreachable(id)
		l.inCount++
		l.unreached[id] = l.inCount
		if l.closing && id == l.closeTarget {
			l.retargetClose()
		}
	}
	for _, r := range b.snapReports {
		l.snapshotReported(r.id)
		l.rn.ReportSnapshot(r.id, r.status)
	}
}

// stepInbound steps a message from another member, refusing ones that could
// make raft panic or that no member of ours sends.
func (l *loop) stepInbound(m *raftpb.Message) {
	err := checkInbound(l.id, m)
	if err == nil {
		err = l.admitInbound(m)
	}
	if err != nil {
		l.c.inboundRejected.Add(1)
		l.log.Debug("rejected inbound message", "type", m.GetType().String(), "from", fmt.Sprintf("%x", m.GetFrom()), "err", err)
		return
	}
	if m.GetFrom() == l.lead {
		l.leaderHeard = l.ticks
	}
	l.inCount++
	l.heard[m.GetFrom()] = l.inCount
	if err := l.rn.Step(m); err != nil {
		// Responses from members no longer in the configuration and the
		// like; raft already ignores them.
		l.c.inboundRejected.Add(1)
	}
}

func checkInbound(self uint64, m *raftpb.Message) error {
	switch {
	case m == nil:
		return errors.New("nil message")
	case m.GetTo() != self:
		return fmt.Errorf("addressed to %x", m.GetTo())
	case m.GetFrom() == 0 || m.GetFrom() == self:
		return fmt.Errorf("bad sender %x", m.GetFrom())
	case raftpb.MessageType_name[int32(m.GetType())] == "":
		// raft indexes tables by message type: a negative one would panic.
		return fmt.Errorf("unknown message type %d", m.GetType())
	case raft.IsLocalMsg(m.GetType()):
		return errors.New("local message type from the network")
	}
	switch m.GetType() {
	case raftpb.MsgProp:
		if len(m.GetEntries()) == 0 {
			return errors.New("empty proposal")
		}
		for _, e := range m.GetEntries() {
			if e.GetType() != raftpb.EntryNormal {
				// Membership changes are proposed only by the leader itself,
				// after validation.
				return errors.New("forwarded membership change")
			}
		}
	case raftpb.MsgReadIndex:
		if len(m.GetEntries()) != 1 {
			return errors.New("read index request without exactly one entry")
		}
	case raftpb.MsgApp:
		// raft panics on entries that do not follow each other (it
		// validates them only after acting on them).
		prevIndex, prevTerm := m.GetIndex(), m.GetLogTerm()
		for _, e := range m.GetEntries() {
			if e.GetIndex() != prevIndex+1 || e.GetIndex() == 0 || e.GetTerm() < prevTerm {
				return fmt.Errorf("entry (%d, %d) does not follow (%d, %d)", e.GetIndex(), e.GetTerm(), prevIndex, prevTerm)
			}
			prevIndex, prevTerm = e.GetIndex(), e.GetTerm()
		}
		if prevTerm > m.GetTerm() {
			return fmt.Errorf("entry of term %d in an append of term %d", prevTerm, m.GetTerm())
		}
	case raftpb.MsgSnap:
		if m.GetSnapshot().GetMetadata() == nil {
			return errors.New("snapshot message without snapshot")
		}
	}
	return nil
}
