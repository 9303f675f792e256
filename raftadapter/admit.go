package raftadapter

import (
	"fmt"
	"slices"

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
