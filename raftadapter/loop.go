package raftadapter

import (
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
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
