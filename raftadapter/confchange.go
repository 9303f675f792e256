package raftadapter

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/confchange"
	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
	"google.golang.org/protobuf/proto"
)

// ConfChangeKind is one kind of single membership change.
type ConfChangeKind uint8

// Single membership changes.
const (
	// AddLearnerChange adds a node that is not a member as a learner.
	AddLearnerChange ConfChangeKind = iota + 1
	// PromoteChange makes a learner a voter (a voter: no change).
	PromoteChange
	// RemoveChange removes a voter or a learner.
	RemoveChange
	// DemoteChange makes a voter a learner.
	DemoteChange
)

func (k ConfChangeKind) String() string {
	switch k {
	case AddLearnerChange:
		return "add-learner"
	case PromoteChange:
		return "promote"
	case RemoveChange:
		return "remove"
	case DemoteChange:
		return "demote"
	}
	return fmt.Sprintf("conf-change(%d)", uint8(k))
}

// raftType is the raft change type that makes k.
func (k ConfChangeKind) raftType() raftpb.ConfChangeType {
	switch k {
	case PromoteChange:
		return raftpb.ConfChangeAddNode
	case RemoveChange:
		return raftpb.ConfChangeRemoveNode
	default:
		return raftpb.ConfChangeAddLearnerNode
	}
}

// ConfChange is one single change of a membership change.
type ConfChange struct {
	Kind ConfChangeKind
	ID   uint64
}

// confRequest is one membership change. Changes are queued in call order and
// only the head is in raft at any time.
type confRequest struct {
	ctx     context.Context
	changes []ConfChange
	context []byte
	w       *waiter

	// Owned by the raft loop.
	seenIndex      uint64 // index once in the local log
	proposed       bool   // stepped into raft and waiting to be applied
	checkRefusal   bool   // the next Ready tells whether raft accepted it
	tried          bool
	lastTryApplied uint64
	lastTryTick    uint64
}

func (l *loop) addConf(c *confRequest) {
	switch {
	case l.closing:
		c.w.done <- result{err: ErrStopped}
	case l.removed:
		c.w.done <- result{err: ErrRemoved}
	default:
		c.w.seq = l.nextSeq()
		l.confQueue = append(l.confQueue, c)
	}
}

// tryConfChange proposes the head of the queue if it is not in raft yet.
//
// A leader refuses a membership change while an earlier one may be
// unapplied (for a new leader: until it has applied its whole log); raft then
// appends an empty entry instead. Because the change is stepped right before
// a Ready is handled, that Ready shows whether it was appended; if it was
// not, checkConfRefused puts it back and it is retried once more entries
// have been applied or a tick has passed.
func (l *loop) tryConfChange() bool {
	for len(l.confQueue) > 0 {
		c := l.confQueue[0]
		if c.proposed {
			return false
		}
		if c.ctx.Err() != nil {
			l.confQueue = l.confQueue[1:] // the caller already returned
			continue
		}
		if c.tried && l.applied == c.lastTryApplied && l.ticks == c.lastTryTick {
			return false
		}
		c.tried, c.lastTryApplied, c.lastTryTick = true, l.applied, l.ticks
		if err := l.checkConfRequest(c); err != nil {
			if errors.Is(err, errNoop) {
				err = nil
			}
			l.finishConf(c, err)
			continue
		}
		bs := l.rn.BasicStatus()
		ctxBuf := newEnvelopeBuf(c.context)
		envelope{proposer: l.id, term: bs.GetTerm(), seq: c.w.seq}.stamp(ctxBuf)
		cc := &raftpb.ConfChangeV2{Changes: raftChanges(c.changes), Context: ctxBuf}
		data, err := proto.Marshal(cc)
		if err != nil {
			l.finishConf(c, fmt.Errorf("raftadapter: encoding membership change: %w", err))
			continue
		}
		ent := &raftpb.Entry{Type: raftpb.EntryConfChangeV2.Enum(), Data: data}
		if err := l.rn.Step(l.propMsg([]*raftpb.Entry{ent})); err != nil {
			l.finishConf(c, l.dropError(err))
			continue
		}
		c.proposed, c.checkRefusal = true, true
		c.w.term, c.seenIndex = bs.GetTerm(), 0
		l.waiters[c.w.seq] = c.w
		l.c.pendingProposals.Add(1)
		return true
	}
	return false
}

// checkConfRequest validates the head change against the applied membership.
// Changes already in effect are dropped from it; errNoop means all were.
func (l *loop) checkConfRequest(c *confRequest) error {
	if l.removed {
		return ErrRemoved
	}
	if l.state != raft.StateLeader {
		if l.lead != 0 {
			return fmt.Errorf("%w: leader is %x", ErrNotLeader, l.lead)
		}
		return fmt.Errorf("%w: %w", ErrNotLeader, ErrNoLeader)
	}
	changes, err := validateConfRequest(l.confState, c.changes)
	if err != nil {
		return err
	}
	c.changes = changes
	return nil
}

// raftChanges turns changes into raft's single changes.
func raftChanges(changes []ConfChange) []*raftpb.ConfChangeSingle {
	out := make([]*raftpb.ConfChangeSingle, len(changes))
	for i, ch := range changes {
		out[i] = &raftpb.ConfChangeSingle{Type: ch.Kind.raftType().Enum(), NodeId: new(ch.ID)}
	}
	return out
}

// validateConfRequest checks a change the API asks for and returns it
// without the single changes already in effect (promoting a voter); errNoop
// means none is left. Several changes become one joint change, which raft
// must accept as a whole.
func validateConfRequest(cs *raftpb.ConfState, changes []ConfChange) ([]ConfChange, error) {
	if len(changes) == 0 {
		return nil, fmt.Errorf("%w: no change", ErrInvalidConfChange)
	}
	if len(cs.GetVotersOutgoing()) > 0 {
		return nil, fmt.Errorf("%w: a joint configuration is still being left", ErrInvalidConfChange)
	}
	seen := map[uint64]bool{}
	var out []ConfChange
	for _, ch := range changes {
		id := ch.ID
		if id == 0 || raft.IsLocalMsgTarget(id) {
			return nil, fmt.Errorf("%w: bad member id %d", ErrInvalidConfChange, id)
		}
		if seen[id] {
			return nil, fmt.Errorf("%w: member %x changed twice in one change", ErrInvalidConfChange, id)
		}
		seen[id] = true
		voter, learner := slices.Contains(cs.GetVoters(), id), slices.Contains(cs.GetLearners(), id)
		switch ch.Kind {
		case AddLearnerChange:
			if voter {
				return nil, fmt.Errorf("%w: %x is a voter", ErrMemberExists, id)
			}
			if learner {
				return nil, fmt.Errorf("%w: %x is a learner", ErrMemberExists, id)
			}
		case PromoteChange:
			if voter {
				continue // already in effect
			}
			if !learner {
				return nil, fmt.Errorf("%w: %x is not a learner; add it as a learner first", ErrUnknownMember, id)
			}
		case RemoveChange:
			if !voter && !learner {
				return nil, fmt.Errorf("%w: %x", ErrUnknownMember, id)
			}
		case DemoteChange:
			if !voter {
				return nil, fmt.Errorf("%w: %x is not a voter", ErrInvalidConfChange, id)
			}
		default:
			return nil, fmt.Errorf("%w: unsupported change kind %v", ErrInvalidConfChange, ch.Kind)
		}
		out = append(out, ch)
	}
	if len(out) == 0 {
		return nil, errNoop
	}
	if err := raftAccepts(cs, &raftpb.ConfChangeV2{Changes: raftChanges(out)}); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidConfChange, err)
	}
	return out, nil
}

// raftAccepts reports whether raft can apply cc to the configuration cs: it
// runs raft's own configuration changer on a copy (raft panics on a change
// it cannot apply, such as one that leaves no voter).
func raftAccepts(cs *raftpb.ConfState, cc *raftpb.ConfChangeV2) error {
	chg := confchange.Changer{Tracker: tracker.MakeProgressTracker(1, 0), LastIndex: 1}
	cfg, trk, err := confchange.Restore(chg, cs)
	if err != nil {
		return err
	}
	chg.Tracker.Config, chg.Tracker.Progress = cfg, trk
	if cc.LeaveJoint() {
		_, _, err = chg.LeaveJoint()
	} else if autoLeave, ok := cc.EnterJoint(); ok {
		_, _, err = chg.EnterJoint(autoLeave, cc.GetChanges()...)
	} else {
		_, _, err = chg.Simple(cc.GetChanges()...)
	}
	return err
}

// checkCommittedConfChange decides, from replicated state only, whether a
// committed change can be applied. raft panics on changes it cannot apply,
// so those are cancelled instead (the same way on every member).
func checkCommittedConfChange(cs *raftpb.ConfState, cc *raftpb.ConfChangeV2) error {
	if err := raftAccepts(cs, cc); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidConfChange, err)
	}
	return nil
}

// cancelledConfChange is applied in place of a change that must not take
// effect: raft skips changes for node 0 but still records the application.
func cancelledConfChange() *raftpb.ConfChangeV2 {
	return &raftpb.ConfChangeV2{Changes: []*raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeAddNode.Enum(), NodeId: new(uint64(0))}}}
}

// applyConfEntry applies a committed membership change.
func (l *loop) applyConfEntry(e *raftpb.Entry) {
	cc, err := decodeConfChange(e)
	if err != nil {
		l.log.Error("skipping undecodable membership change", "index", e.GetIndex(), "err", err)
		return
	}

	var w *waiter
	var reject error
	userCtx := cc.GetContext()
	if env, payload, ok := parseEnvelope(cc.GetContext()); ok {
		userCtx = payload
		if env.proposer == l.id {
			w = l.waiters[env.seq]
		}
		if env.term != e.GetTerm() {
			reject = fmt.Errorf("%w: proposed in term %d, appended in term %d", ErrLeaderChanged, env.term, e.GetTerm())
		}
	}
	if reject == nil {
		reject = checkCommittedConfChange(l.confState, cc)
	}
	apply := cc
	if reject != nil {
		apply = cancelledConfChange()
		l.log.Warn("membership change cancelled", "index", e.GetIndex(), "change", describeChanges(cc), "reason", reject)
	}
	before := l.confState
	cs := l.rn.ApplyConfChange(apply)
	if reject == nil {
		l.noteRemoved(before, cs)
		if l.obs != nil {
			l.obs.ApplyConfChange(&raftpb.ConfChangeV2{
				Transition: cc.Transition,
				Changes:    cc.Changes,
				Context:    userCtx,
			}, cs)
		}
		if cc.LeaveJoint() {
			l.log.Info("left the joint configuration", "index", e.GetIndex(),
				"voters", fmtIDs(cs.GetVoters()), "learners", fmtIDs(cs.GetLearners()))
		} else {
			l.log.Info("membership changed", "index", e.GetIndex(), "change", describeChanges(cc),
				"voters", fmtIDs(cs.GetVoters()), "learners", fmtIDs(cs.GetLearners()),
				"voters_outgoing", fmtIDs(cs.GetVotersOutgoing()))
		}
	}
	if w != nil {
		if reject != nil && errors.Is(reject, ErrLeaderChanged) {
			l.lost(w, reject)
		} else {
			l.resolve(w, result{err: reject})
		}
	}
	l.setConfState(cs)
}

// noteAppended records which of this node's pending proposals reached the
// local log in their own term (they need no re-proposal) and where its
// pending membership change landed, which tells checkConfRefused that raft
// accepted it.
func (l *loop) noteAppended(ents []*raftpb.Entry) {
	l.noteProposalsAppended(ents)
	if len(l.confQueue) == 0 || !l.confQueue[0].proposed || l.confQueue[0].seenIndex != 0 {
		return
	}
	c := l.confQueue[0]
	w := c.w
	for _, e := range ents {
		if e.GetType() != raftpb.EntryConfChangeV2 {
			continue
		}
		var cc raftpb.ConfChangeV2
		if proto.Unmarshal(e.GetData(), &cc) != nil {
			continue
		}
		if env, _, ok := parseEnvelope(cc.GetContext()); ok && env.proposer == l.id && env.seq == w.seq {
			c.seenIndex = e.GetIndex()
		}
	}
}

// checkConfRefused runs after the Ready that followed stepping a change.
func (l *loop) checkConfRefused() {
	if len(l.confQueue) == 0 {
		return
	}
	c := l.confQueue[0]
	if !c.proposed || !c.checkRefusal {
		return
	}
	c.checkRefusal = false
	if l.waiters[c.w.seq] != c.w || c.seenIndex != 0 {
		return // applied already, or accepted
	}
	// Refused: an earlier change may still be unapplied. Try again later.
	delete(l.waiters, c.w.seq)
	l.c.pendingProposals.Add(-1)
	c.proposed = false
	l.log.Debug("membership change deferred until earlier changes are applied", "change", fmt.Sprint(c.changes))
}

// finishConf completes a change that is not (or no longer) in raft.
func (l *loop) finishConf(c *confRequest, err error) {
	l.out.results = append(l.out.results, pendingResult{c.w, result{err: err}})
	l.confDone(c)
}

// confDone removes a completed change from the queue.
func (l *loop) confDone(c *confRequest) {
	if i := slices.Index(l.confQueue, c); i >= 0 {
		l.confQueue = slices.Delete(l.confQueue, i, i+1)
	}
}

func describeChanges(cc *raftpb.ConfChangeV2) string {
	s := ""
	for i, ch := range cc.GetChanges() {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("%s(%x)", ch.GetType(), ch.GetNodeId())
	}
	return s
}

// decodeConfChange decodes the membership change of a committed entry of
// either kind.
func decodeConfChange(e *raftpb.Entry) (*raftpb.ConfChangeV2, error) {
	if e.GetType() == raftpb.EntryConfChange {
		var v1 raftpb.ConfChange
		if err := proto.Unmarshal(e.GetData(), &v1); err != nil {
			return nil, err
		}
		return v1.AsV2(), nil
	}
	cc := new(raftpb.ConfChangeV2)
	if err := proto.Unmarshal(e.GetData(), cc); err != nil {
		return nil, err
	}
	return cc, nil
}

func fmtIDs(ids []uint64) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = fmt.Sprintf("%x", id)
	}
	return out
}
