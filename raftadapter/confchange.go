package raftadapter

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// confRequest is one membership change. Changes are queued in call order and
// only the head is in raft at any time.
type confRequest struct {
	ctx     context.Context
	typ     raftpb.ConfChangeType
	id      uint64
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
		cc := &raftpb.ConfChangeV2{
			Changes: []*raftpb.ConfChangeSingle{{Type: c.typ.Enum(), NodeId: new(c.id)}},
			Context: ctxBuf,
		}
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
	return validateConfRequest(l.confState, c.typ, c.id)
}

// validateConfRequest checks a change the API asks for; errNoop means it is
// already in effect.
func validateConfRequest(cs *raftpb.ConfState, typ raftpb.ConfChangeType, id uint64) error {
	if id == 0 || raft.IsLocalMsgTarget(id) {
		return fmt.Errorf("%w: bad member id %d", ErrInvalidConfChange, id)
	}
	voter, learner := slices.Contains(cs.GetVoters(), id), slices.Contains(cs.GetLearners(), id)
	switch typ {
	case raftpb.ConfChangeAddLearnerNode:
		if voter {
			return fmt.Errorf("%w: %x is a voter", ErrMemberExists, id)
		}
		if learner {
			return fmt.Errorf("%w: %x is a learner", ErrMemberExists, id)
		}
	case raftpb.ConfChangeAddNode:
		if voter {
			return errNoop
		}
		if !learner {
			return fmt.Errorf("%w: %x is not a learner; add it as a learner first", ErrUnknownMember, id)
		}
	case raftpb.ConfChangeRemoveNode:
		if !voter && !learner {
			return fmt.Errorf("%w: %x", ErrUnknownMember, id)
		}
		if voter && len(cs.GetVoters()) == 1 {
			return fmt.Errorf("%w: cannot remove the last voter %x", ErrInvalidConfChange, id)
		}
	default:
		return fmt.Errorf("%w: unsupported change type %v", ErrInvalidConfChange, typ)
	}
	return nil
}

// checkCommittedConfChange decides, from replicated state only, whether a
// committed change can be applied. raft panics on changes it cannot apply,
// so those are cancelled instead (the same way on every member).
func checkCommittedConfChange(cs *raftpb.ConfState, cc *raftpb.ConfChangeV2) error {
	if len(cc.GetChanges()) != 1 || cc.GetTransition() != raftpb.ConfChangeTransitionAuto || len(cs.GetVotersOutgoing()) > 0 {
		return fmt.Errorf("%w: only single changes without joint consensus are supported", ErrInvalidConfChange)
	}
	ch := cc.GetChanges()[0]
	if ch.GetNodeId() == 0 {
		return nil
	}
	voters := cs.GetVoters()
	lastVoter := len(voters) == 1 && voters[0] == ch.GetNodeId()
	if lastVoter && (ch.GetType() == raftpb.ConfChangeRemoveNode || ch.GetType() == raftpb.ConfChangeAddLearnerNode) {
		return fmt.Errorf("%w: change would leave no voter", ErrInvalidConfChange)
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
	cs := l.rn.ApplyConfChange(apply)
	if reject == nil {
		if l.obs != nil {
			l.obs.ApplyConfChange(&raftpb.ConfChangeV2{
				Transition: cc.Transition,
				Changes:    cc.Changes,
				Context:    userCtx,
			}, cs)
		}
		l.log.Info("membership changed", "index", e.GetIndex(), "change", describeChanges(cc),
			"voters", fmtIDs(cs.GetVoters()), "learners", fmtIDs(cs.GetLearners()))
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
	l.log.Debug("membership change deferred until earlier changes are applied", "change", c.typ.String(), "id", fmt.Sprintf("%x", c.id))
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
