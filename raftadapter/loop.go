package raftadapter

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"slices"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
	"google.golang.org/protobuf/proto"
)

// loop is the state owned by the raft loop goroutine. Nothing else touches
// it; other goroutines reach it through the Node's channels and inbox.
type loop struct {
	n       *Node
	cfg     Config
	id      uint64
	log     *slog.Logger
	rn      *raft.RawNode
	idp     *uint64 // points at id; shared by the messages the loop builds (nothing writes through it)
	storage *raft.MemoryStorage
	sm      StateMachine
	obs     ConfChangeObserver // sm, if it implements it
	tr      Transport
	c       *counters

	// What this node knows about raft.
	lead           uint64
	leaderHeard    uint64 // tick at which a message from lead was last stepped
	state          raft.StateType
	ticks          uint64
	applied        uint64
	appliedTerm    uint64            // term of the entry at applied
	confState      *raftpb.ConfState // never nil
	voters         []uint64          // sorted copies of confState, shared with published Status
	learners       []uint64
	votersOutgoing []uint64
	memberVer      uint64 // bumped on every membership change
	wasMember      bool
	removed        bool
	removedIDs     map[uint64]struct{} // replicated: ids that left the configuration (see removed.go)
	// confFence: as raft does, a new leader treats its whole log as possibly
	// holding an unapplied membership change until it has applied it.
	confFence uint64
	// campaignAlone: bootstrapped as the only voter; campaign once the
	// bootstrap entry is applied (raft refuses while it is pending).
	campaignAlone bool

	waiters   map[uint64]*waiter // by sequence number; proposals and membership changes in raft
	confQueue []*confRequest     // membership changes in call order; only the head is in raft
	transfers []*transferRequest
	reads     readQueue

	lastSeq uint64 // last sequence number handed out
	lowSeq  uint64 // no pending proposal has a smaller seq (see lowWater)
	// reproposeAt is the tick at which some pending proposal may be due for
	// re-proposal; 0 when none is.
	reproposeAt uint64
	dedup       *dedup // replicated at-most-once state

	snapJobc        chan snapJob    // capacity 1; at most one job outstanding
	snapDonec       chan snapResult // capacity 1
	snapshotNow     bool            // take a snapshot at the next chance, whatever SnapshotCount says
	snapIndex       uint64          // index of the snapshot in storage
	lastSnapAttempt uint64
	capture         *snapCapture // state machine capture for the (token) snapshot in storage; nil if none
	sends           snapSends    // snapshots being built for and sent to followers

	closing      bool
	closeTarget  uint64
	closeTried   map[uint64]bool
	closeTimer   *time.Timer
	closeExpired bool
	fatal        error

	// Reachability hints for picking a transfer target: the inbound message
	// count when a member was last heard from, or last reported unreachable.
	inCount   uint64
	heard     map[uint64]uint64
	unreached map[uint64]uint64

	out outbox // replies held until Status has been published

	propBuf   []proposal
	tickAcks  []chan struct{}
	ticked    bool // a tick happened since the last publish
	lastPub   *Status
	notifyKey changeKey
}

// changeKey holds what Changes subscribers are woken for.
type changeKey struct {
	lead, term, memberVer uint64
	state                 raft.StateType
	removed               bool
}

func newLoop(n *Node, rn *raft.RawNode, storage *raft.MemoryStorage, sm StateMachine, tr Transport) *loop {
	l := &loop{
		n:          n,
		cfg:        n.cfg,
		id:         n.id,
		log:        n.cfg.Logger.With("raft_id", fmt.Sprintf("%x", n.id)),
		rn:         rn,
		idp:        new(n.id),
		confState:  new(raftpb.ConfState),
		storage:    storage,
		sm:         sm,
		tr:         tr,
		c:          &n.counters,
		waiters:    make(map[uint64]*waiter),
		lowSeq:     1,
		dedup:      newDedup(),
		removedIDs: map[uint64]struct{}{},
		heard:      make(map[uint64]uint64),
		unreached:  make(map[uint64]uint64),
		snapJobc:   make(chan snapJob, 1),
		snapDonec:  make(chan snapResult, 1),
	}
	l.obs, _ = sm.(ConfChangeObserver)
	bs := rn.BasicStatus()
	l.lead, l.state = bs.Lead, bs.RaftState
	return l
}

// run is the raft loop. Each turn it takes one event (a tick, a batch of
// proposals, the inbound queue, a request, a finished snapshot, Close), then
// handles every Ready raft has, then publishes Status.
func (l *loop) run() {
	defer l.shutdown()
	defer func() {
		if r := recover(); r != nil {
			l.fatal = fmt.Errorf("raftadapter: raft loop panicked: %v", r)
			l.log.Error("raft loop failed", "err", l.fatal, "stack", string(debug.Stack()))
		}
	}()
	var tickc <-chan time.Time
	if !l.cfg.DisableTicker {
		t := time.NewTicker(l.cfg.TickInterval)
		defer t.Stop()
		tickc = t.C
	}
	stopc := l.n.stopc
	l.settle()
	l.publish()
	for !l.finished() {
		var closeTimerC <-chan time.Time
		if l.closeTimer != nil {
			closeTimerC = l.closeTimer.C
		}
		l.n.busy.Store(false)
		select {
		case <-tickc:
			l.n.busy.Store(true)
			l.tick()
		case ack := <-l.n.tickc:
			l.n.busy.Store(true)
			l.tick()
			l.tickAcks = append(l.tickAcks, ack)
		case p := <-l.n.propc:
			l.n.busy.Store(true)
			l.proposeBatch(p)
		case <-l.n.in.notifyc:
			l.n.busy.Store(true)
			l.drainInbox()
		case r := <-l.n.readc:
			l.n.busy.Store(true)
			l.addReads(r)
		case c := <-l.n.confc:
			l.n.busy.Store(true)
			l.addConf(c)
		case t := <-l.n.transferc:
			l.n.busy.Store(true)
			l.addTransfer(t)
		case res := <-l.snapDonec:
			l.n.busy.Store(true)
			l.finishSnapshot(res)
		case <-stopc:
			l.n.busy.Store(true)
			stopc = nil
			l.beginClose()
		case <-closeTimerC:
			l.n.busy.Store(true)
			l.closeExpired = true
		}
		l.gather()
		l.settle()
		l.handOverOnClose()
		l.publish()
		l.out.flush()
		for _, ack := range l.tickAcks {
			close(ack)
		}
		l.tickAcks = l.tickAcks[:0]
	}
}

// gather takes whatever proposals and inbound messages are already waiting,
// so that they share the coming Ready (one append, one round of messages).
func (l *loop) gather() {
	for range 4 {
		select {
		case p := <-l.n.propc:
			l.proposeBatch(p)
		case <-l.n.in.notifyc:
			l.drainInbox()
		default:
			return
		}
	}
}

// finished reports whether the loop should exit.
func (l *loop) finished() bool {
	if l.fatal != nil {
		return true
	}
	return l.closing && (l.state != raft.StateLeader || l.closeExpired || l.removed)
}

// settle handles Readys until raft has none, doing the follow-up work that
// may step raft again (read rounds, membership changes, transfers).
func (l *loop) settle() {
	for l.fatal == nil {
		l.processReady()
		if l.fatal != nil {
			return
		}
		l.afterReady()
		if !l.housekeep() {
			return
		}
	}
}

// processReady handles Readys until raft has no more work.
func (l *loop) processReady() {
	for l.fatal == nil && l.rn.HasReady() {
		rd := l.rn.Ready()
		l.handleReady(rd)
		if l.fatal != nil {
			return
		}
		l.rn.Advance(rd)
		if l.campaignAlone && l.applied > 0 {
			l.campaignAlone = false
			if err := l.rn.Campaign(); err != nil {
				l.log.Warn("lone voter could not campaign; it will after an election timeout", "err", err)
			}
		}
	}
}

// handleReady carries out one Ready in the order raft requires:
//
//  1. persist: the snapshot, the entries and the HardState go into the
//     MemoryStorage before any message of this Ready leaves;
//  2. send: rd.Messages go to the Transport (which never blocks);
//  3. apply: a received snapshot is restored into the state machine, then
//     the committed entries are applied in log order (membership changes
//     through RawNode.ApplyConfChange);
//  4. the caller then calls Advance.
//
// Soft state (leader, role) and read states are bookkeeping along the way.
func (l *loop) handleReady(rd raft.Ready) {
	if rd.SoftState != nil {
		l.softStateChanged(*rd.SoftState)
	}

	// 1. Persist. A received snapshot is stored with a token for its data:
	// after the restore below, the loop keeps a capture of the restored
	// state machine instead of the bytes.
	if !raft.IsEmptySnap(rd.Snapshot) {
		md := rd.Snapshot.GetMetadata()
		stored := &raftpb.Snapshot{Data: snapToken(md.GetIndex()), Metadata: md}
		if err := l.storage.ApplySnapshot(stored); err != nil {
			l.fatal = fmt.Errorf("raftadapter: storing snapshot %d: %w", md.GetIndex(), err)
			return
		}
	}
	if len(rd.Entries) > 0 {
		if err := l.storage.Append(rd.Entries); err != nil {
			l.fatal = fmt.Errorf("raftadapter: appending entries: %w", err)
			return
		}
		l.noteAppended(rd.Entries)
	}
	if !raft.IsEmptyHardState(rd.HardState) {
		if err := l.storage.SetHardState(rd.HardState); err != nil {
			l.fatal = fmt.Errorf("raftadapter: storing hard state: %w", err)
			return
		}
	}

	// 2. Send. Snapshots leave once the snapshot writer has built their data
	// (see routeSnapshots); the rest go now.
	if msgs := l.routeSnapshots(l.dropStaleSnapshots(rd.Messages)); len(msgs) > 0 {
		l.tr.Send(msgs)
		l.c.messagesSent.Add(uint64(len(msgs)))
	}
	for _, rs := range rd.ReadStates {
		l.readStateArrived(rs)
	}

	// 3. Apply.
	if !raft.IsEmptySnap(rd.Snapshot) {
		l.restore(rd.Snapshot)
		if l.fatal != nil {
			return
		}
	}
	l.applyEntries(rd.CommittedEntries)
}

// afterReady does what depends on the state after a batch of Readys.
func (l *loop) afterReady() {
	l.checkConfRefused()
	l.completeReads()
	l.checkTransfers()
}

// housekeep starts work that steps raft; it reports whether it did.
func (l *loop) housekeep() bool {
	stepped := l.startReadRound()
	if l.tryConfChange() {
		stepped = true
	}
	if l.retryTransfers() {
		stepped = true
	}
	return stepped
}

func (l *loop) softStateChanged(ss raft.SoftState) {
	if ss.Lead != l.lead {
		term := l.rn.BasicStatus().GetTerm()
		l.log.Info("leader changed", "leader", fmt.Sprintf("%x", ss.Lead), "previous", fmt.Sprintf("%x", l.lead), "term", term)
		if ss.Lead != 0 {
			l.c.leaderChanges.Add(1)
		}
		l.lead = ss.Lead
		l.abandonReadRound()
	}
	if ss.RaftState != l.state {
		l.log.Debug("raft role changed", "role", ss.RaftState.String())
		l.state = ss.RaftState
		if l.state == raft.StateLeader {
			l.confFence, _ = l.storage.LastIndex()
		}
	}
}

func (l *loop) tick() {
	l.rn.Tick()
	l.ticks++
	l.ticked = true
	if r := l.reads.inflight; r != nil && l.ticks-r.startTick >= uint64(l.cfg.ElectionTicks) {
		// The round's request or its answer was probably lost; ask again.
		l.abandonReadRound()
	}
	if l.ticks%uint64(l.cfg.ElectionTicks) == 0 {
		l.dropAbandonedReads()
	}
	if l.reproposeAt != 0 && l.ticks >= l.reproposeAt {
		l.repropose()
	}
	l.expireSnapshotData()
}

// proposeBatch steps first and every proposal already queued behind it into
// raft as one message, so concurrent proposals share a Ready.
func (l *loop) proposeBatch(first proposal) {
	batch := append(l.propBuf[:0], first)
	size := len(first.buf)
	if len(l.n.propc) < maxProposalBatch/2 {
		// Proposers woken by the previous turn's replies are usually about to
		// propose again; let them, so they share this step.
		runtime.Gosched()
	}
drain:
	for len(batch) < maxProposalBatch && uint64(size) < l.cfg.MaxSizePerMsg {
		select {
		case p := <-l.n.propc:
			batch = append(batch, p)
			size += len(p.buf)
		default:
			break drain
		}
	}
	defer func() {
		clear(batch)
		l.propBuf = batch[:0]
	}()

	// Callers that gave up before we got here are not proposed at all.
	live := batch[:0]
	for _, p := range batch {
		if p.ctx.Err() == nil {
			live = append(live, p)
		}
	}
	if len(live) == 0 {
		return
	}
	fail := func(err error) {
		for _, p := range live {
			p.w.done <- result{err: err}
		}
	}
	if l.closing {
		fail(ErrStopped)
		return
	}
	if l.removed {
		fail(ErrRemoved)
		return
	}
	bs := l.rn.BasicStatus()
	if bs.Lead == 0 {
		l.c.proposalsDropped.Add(uint64(len(live)))
		fail(ErrNoLeader)
		return
	}
	for _, p := range live {
		p.w.seq = l.nextSeq()
	}
	low := l.lowWater(live[0].w.seq)
	ents := normalEntries(len(live))
	for i, p := range live {
		envelope{proposer: l.id, term: bs.GetTerm(), seq: p.w.seq, low: low}.stamp(p.buf)
		ents[i].Data = p.buf
	}
	if err := l.rn.Step(l.propMsg(ents)); err != nil {
		l.c.proposalsDropped.Add(uint64(len(live)))
		fail(l.dropError(err))
		return
	}
	// A leader has appended them; a follower forwarded them and may have to
	// propose them again if they do not show up (see repropose).
	leader := bs.RaftState == raft.StateLeader
	for _, p := range live {
		p.w.term, p.w.proposedTick = bs.GetTerm(), l.ticks
		if !leader {
			p.w.buf = p.buf
		}
		l.waiters[p.w.seq] = p.w
	}
	if !leader {
		l.scheduleRepropose(l.ticks + uint64(l.cfg.ReproposeTicks))
	}
	l.c.proposals.Add(uint64(len(live)))
	l.c.proposalBatches.Add(1)
	l.c.pendingProposals.Add(int64(len(live)))
}

// dropError explains why raft refused a proposal.
func (l *loop) dropError(err error) error {
	if !errors.Is(err, raft.ErrProposalDropped) {
		return fmt.Errorf("raftadapter: proposal refused: %w", err)
	}
	bs := l.rn.BasicStatus()
	switch {
	case l.removed:
		return ErrRemoved
	case bs.Lead == 0:
		return ErrNoLeader
	case bs.LeadTransferee != 0:
		return fmt.Errorf("%w: leadership transfer to %x in progress", ErrLeaderChanged, bs.LeadTransferee)
	default:
		return fmt.Errorf("%w: proposal dropped by raft", ErrNoLeader)
	}
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

// applyEntries applies committed entries in order.
func (l *loop) applyEntries(ents []*raftpb.Entry) {
	for _, e := range ents {
		index, term := e.GetIndex(), e.GetTerm()
		if index <= l.applied {
			continue
		}
		if term > l.appliedTerm {
			l.appliedTerm = term
			l.dedup.startTerm(term)
			l.failOlderThan(term)
		}
		switch e.GetType() {
		case raftpb.EntryNormal:
			l.applyNormal(e)
		case raftpb.EntryConfChange, raftpb.EntryConfChangeV2:
			l.applyConfEntry(e)
		}
		l.applied = index
		l.c.appliedEntries.Add(1)
	}
	l.maybeSnapshot()
}

func (l *loop) applyNormal(e *raftpb.Entry) {
	env, payload, ok := parseEnvelope(e.GetData())
	if !ok {
		if len(e.GetData()) > 0 {
			l.log.Warn("skipping log entry without envelope", "index", e.GetIndex())
		}
		return // raft's empty entry of a new leader
	}
	var w *waiter
	if env.proposer == l.id {
		w = l.waiters[env.seq]
	}
	if env.term != e.GetTerm() {
		// Appended in a term other than the one it was proposed in: a
		// forwarded proposal that reached a later leader. Every member skips
		// it, which is what lets a proposer declare its proposals lost once
		// it has applied an entry of a later term.
		if w != nil {
			l.lost(w, fmt.Errorf("%w: proposed in term %d, appended in term %d", ErrLeaderChanged, env.term, e.GetTerm()))
		}
		return
	}
	if !l.dedup.admit(env) {
		// A second copy (a re-proposal whose original was only slow), or a
		// late copy of a proposal its proposer had stopped waiting for.
		l.c.duplicatesSkipped.Add(1)
		if w != nil {
			// Cannot happen (a waited-for seq is never below a floor, and an
			// applied one has been resolved), but never leave a caller hanging.
			l.log.Error("skipped an entry whose proposal is still pending", "index", e.GetIndex(), "seq", env.seq)
			l.lost(w, fmt.Errorf("%w: entry %d skipped as a duplicate", ErrOutcomeUnknown, e.GetIndex()))
		}
		return
	}
	res := l.sm.Apply(e.GetIndex(), payload)
	if w != nil {
		l.resolve(w, result{val: res})
	}
}

// failOlderThan fails every waiter proposed before term: this node is about
// to apply an entry of term, and an entry proposed in an earlier term can no
// longer be applied (it would have come before, or will be skipped).
func (l *loop) failOlderThan(term uint64) {
	for _, w := range l.waiters {
		if w.term < term {
			l.lost(w, fmt.Errorf("%w: proposed in term %d, not committed before term %d", ErrLeaderChanged, w.term, term))
		}
	}
}

// resolve hands r to w's caller and forgets w.
func (l *loop) resolve(w *waiter, r result) {
	if l.waiters[w.seq] != w {
		return
	}
	delete(l.waiters, w.seq)
	l.c.pendingProposals.Add(-1)
	l.out.results = append(l.out.results, pendingResult{w, r})
	if w.conf != nil {
		l.confDone(w.conf)
	}
}

func (l *loop) lost(w *waiter, err error) {
	l.c.proposalsLost.Add(1)
	l.resolve(w, result{err: err})
}

// forget drops the waiter of a caller whose context ended (if the loop
// still has it: it may not have been proposed yet, or already be resolved).
func (l *loop) forget(w *waiter) {
	if w.seq == 0 || l.waiters[w.seq] != w {
		return
	}
	l.resolve(w, result{err: errors.New("raftadapter: caller gone")})
}

// restore replaces the state machine and the dedup state with a snapshot
// from the leader.
func (l *loop) restore(snap *raftpb.Snapshot) {
	md := snap.GetMetadata()
	index, term := md.GetIndex(), md.GetTerm()
	dd, removed, smData, err := decodeSnapshot(snap.GetData())
	if err == nil && dd.term != term {
		err = fmt.Errorf("%w: dedup state of term %d in a snapshot of term %d", ErrBadSnapshot, dd.term, term)
	}
	if err != nil {
		l.fatal = fmt.Errorf("raftadapter: restoring snapshot at index %d: %w", index, err)
		return
	}
	if err := l.sm.Restore(bytes.NewReader(smData)); err != nil {
		l.fatal = fmt.Errorf("raftadapter: restoring snapshot at index %d: %w", index, err)
		return
	}
	l.dedup = dd
	l.removedIDs = removed
	l.publishRemoved()
	l.applied, l.appliedTerm = index, term
	l.snapIndex, l.lastSnapAttempt = index, index
	l.captureRestored(index)
	l.c.snapshotsRestored.Add(1)
	l.log.Info("restored snapshot from leader", "index", index, "term", term, "bytes", len(snap.GetData()))
	// A proposal of a term up to the snapshot's may be inside the snapshot
	// or lost; we cannot tell. Later terms come after it and still resolve.
	for _, w := range l.waiters {
		if w.term <= term {
			l.lost(w, fmt.Errorf("%w: log replaced by snapshot at index %d", ErrOutcomeUnknown, index))
		} else if w.conf != nil {
			// The log after the snapshot is gone too; entries come again.
			// (A proposal seen in the log of its own term needs no
			// re-proposal still: that term's leader has it.)
			w.conf.seenIndex = 0
		}
	}
	l.setConfState(md.GetConfState())
}

// shutdown fails everything still waiting, stops the snapshot writer and
// marks the node stopped.
func (l *loop) shutdown() {
	err := ErrStopped
	if l.fatal != nil {
		err = fmt.Errorf("%w: %w", ErrStopped, l.fatal)
	}
	for _, w := range l.waiters {
		l.resolve(w, result{err: err})
	}
	for _, c := range l.confQueue {
		l.out.results = append(l.out.results, pendingResult{c.w, result{err: err}})
	}
	l.confQueue = nil
	l.failAllReads(err)
	for _, t := range l.transfers {
		l.out.transfers = append(l.out.transfers, pendingTransfer{t, err})
	}
	l.transfers = nil
	close(l.snapJobc)
	l.capture = nil
	l.sends.release(l.c)
	l.sends.waiting = nil
	if l.closeTimer != nil {
		l.closeTimer.Stop()
	}
	for {
		select {
		case p := <-l.n.propc:
			p.w.done <- result{err: err}
			continue
		case r := <-l.n.readc:
			r.done <- err
			continue
		case c := <-l.n.confc:
			c.w.done <- result{err: err}
			continue
		case t := <-l.n.transferc:
			t.done <- err
			continue
		default:
		}
		break
	}
	for _, ack := range l.tickAcks {
		close(ack)
	}
	l.n.fatal = l.fatal
	final := Status{}
	if l.lastPub != nil {
		final = *l.lastPub
	}
	final.Stopped = true
	final.IsLeader = false
	final.Progress = nil
	l.n.status.Store(&final)
	l.out.flush()
	l.n.busy.Store(false)
	l.n.notifyChanges(true)
	if l.fatal != nil {
		l.log.Error("raft node stopped after failure", "err", l.fatal)
	} else {
		l.log.Info("raft node stopped")
	}
	close(l.n.donec)
}

// beginClose starts a graceful stop: a leader first hands leadership over.
func (l *loop) beginClose() {
	l.closing = true
	l.handOverOnClose()
}

// handOverOnClose starts the hand-over of a closing leader, once. It runs
// after every turn too, because a candidate that is closing may still win
// its election.
func (l *loop) handOverOnClose() {
	if !l.closing || l.closeTimer != nil || l.removed || l.state != raft.StateLeader {
		return
	}
	l.closeTried = make(map[uint64]bool)
	l.closeTimer = time.NewTimer(l.cfg.CloseTimeout)
	l.retargetClose()
	l.settle()
}

// retargetClose hands leadership to the best voter not tried yet; with none
// left, the close proceeds without a transfer.
func (l *loop) retargetClose() {
	if l.state != raft.StateLeader {
		return
	}
	target := l.transferTarget(l.closeTried)
	if target == 0 {
		l.closeExpired = true
		return
	}
	l.closeTarget = target
	l.closeTried[target] = true
	l.log.Info("closing: transferring leadership", "to", fmt.Sprintf("%x", target))
	l.rn.TransferLeader(target)
}

// transferTarget picks, among recently active voters not in exclude and not
// reported unreachable since last heard from, the one with the highest
// match index.
func (l *loop) transferTarget(exclude map[uint64]bool) uint64 {
	var best, bestMatch uint64
	l.rn.WithProgress(func(id uint64, typ raft.ProgressType, pr tracker.Progress) {
		if id == l.id || typ != raft.ProgressTypePeer || !pr.RecentActive || exclude[id] {
			return
		}
		if l.unreached[id] > l.heard[id] {
			return
		}
		if best == 0 || pr.Match > bestMatch || (pr.Match == bestMatch && id < best) {
			best, bestMatch = id, pr.Match
		}
	})
	return best
}

// publish stores a fresh Status if anything changed and wakes Changes
// subscribers on leader, term, role or membership changes.
func (l *loop) publish() {
	bs := l.rn.BasicStatus()
	st := &Status{
		ID:             l.id,
		Leader:         bs.Lead,
		Term:           bs.GetTerm(),
		State:          bs.RaftState,
		IsLeader:       bs.RaftState == raft.StateLeader,
		LeadTransferee: bs.LeadTransferee,
		CommitIndex:    bs.GetCommit(),
		AppliedIndex:   l.applied,
		SnapshotIndex:  l.snapIndex,
		Voters:         l.voters,
		Learners:       l.learners,
		VotersOutgoing: l.votersOutgoing,
		Removed:        l.removed,
	}
	st.ConfChangePending = len(l.votersOutgoing) > 0 || len(l.confQueue) > 0 ||
		st.IsLeader && l.confFence > l.applied
	if p := l.lastPub; p != nil && !l.ticked && p.Leader == st.Leader && p.Term == st.Term &&
		p.State == st.State && p.LeadTransferee == st.LeadTransferee && p.CommitIndex == st.CommitIndex &&
		p.AppliedIndex == st.AppliedIndex && p.SnapshotIndex == st.SnapshotIndex && p.Removed == st.Removed &&
		p.ConfChangePending == st.ConfChangePending &&
		l.notifyKey.memberVer == l.memberVer {
		return
	}
	ticked := l.ticked
	l.ticked = false
	if p := l.lastPub; st.IsLeader && p != nil && p.IsLeader && !ticked && p.Term == st.Term &&
		l.notifyKey.memberVer == l.memberVer {
		// Follower progress is refreshed on ticks and role or membership
		// changes, not on every turn.
		st.Progress = p.Progress
	} else if st.IsLeader {
		st.Progress = make(map[uint64]Progress, len(l.voters)+len(l.learners))
		l.rn.WithProgress(func(id uint64, typ raft.ProgressType, pr tracker.Progress) {
			st.Progress[id] = Progress{
				Match:        pr.Match,
				Next:         pr.Next,
				State:        pr.State.String(),
				RecentActive: pr.RecentActive,
				IsLearner:    pr.IsLearner,
			}
		})
	}
	l.lastPub = st
	l.n.status.Store(st)
	key := changeKey{lead: st.Leader, term: st.Term, memberVer: l.memberVer, state: st.State, removed: st.Removed}
	if key != l.notifyKey {
		l.notifyKey = key
		l.n.notifyChanges(false)
	}
}

// setConfState records a new membership and notices this member's removal.
func (l *loop) setConfState(cs *raftpb.ConfState) {
	if cs == nil {
		cs = new(raftpb.ConfState)
	}
	l.confState = proto.CloneOf(cs)
	l.voters = slices.Sorted(slices.Values(cs.GetVoters()))
	l.learners = slices.Sorted(slices.Values(cs.GetLearners()))
	l.votersOutgoing = slices.Sorted(slices.Values(cs.GetVotersOutgoing()))
	l.memberVer++
	_, member := confMembers(cs)[l.id]
	switch {
	case member:
		l.wasMember = true
	case l.wasMember && !l.removed:
		l.removed = true
		l.log.Info("this member was removed from the cluster")
		l.failAllForRemoval()
	}
}

func (l *loop) failAllForRemoval() {
	for _, w := range l.waiters {
		l.resolve(w, result{err: ErrRemoved})
	}
	for _, c := range l.confQueue {
		l.out.results = append(l.out.results, pendingResult{c.w, result{err: ErrRemoved}})
	}
	l.confQueue = nil
	l.failAllReads(ErrRemoved)
	for _, t := range l.transfers {
		l.out.transfers = append(l.out.transfers, pendingTransfer{t, ErrRemoved})
	}
	l.transfers = nil
}

// outbox holds replies produced during a loop turn. They are handed to the
// callers after the turn's Status is published, so a caller that got its
// result sees a Status at least that fresh (e.g. the applied membership
// after AddLearner returns). Reply channels have capacity one and get one
// value each, so flushing never blocks.
type outbox struct {
	results   []pendingResult
	reads     []pendingRead
	transfers []pendingTransfer
}

type pendingResult struct {
	w *waiter
	r result
}

type pendingRead struct {
	r   *readRequest
	err error
}

type pendingTransfer struct {
	t   *transferRequest
	err error
}

func (o *outbox) flush() {
	for _, p := range o.results {
		p.w.done <- p.r
	}
	for _, p := range o.reads {
		p.r.done <- p.err
	}
	for _, p := range o.transfers {
		p.t.done <- p.err
	}
	clear(o.results)
	clear(o.reads)
	clear(o.transfers)
	o.results, o.reads, o.transfers = o.results[:0], o.reads[:0], o.transfers[:0]
}
