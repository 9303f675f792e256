package raftadapter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// StateMachine is the replicated state. All calls come from the raft loop
// goroutine, in log order, never concurrently.
type StateMachine interface {
	// Apply applies one committed payload (exactly the bytes given to
	// Propose) at the given log index and returns a result for the proposer's
	// waiter. data must not be modified; it may be retained.
	Apply(index uint64, data []byte) any
	// Snapshot captures the state as of the last applied entry. The capture
	// must be consistent at that point; its WriteTo may run later on another
	// goroutine while Apply continues (use copy-on-write structures). The
	// node keeps the latest capture, in place of serialized bytes, until the
	// next snapshot, and calls WriteTo only when a follower needs the
	// snapshot: possibly several times (at least twice per build: once to
	// size the buffer), each time writing the same bytes.
	Snapshot() (io.WriterTo, error)
	// Restore replaces the whole state with one written by a Snapshot's WriteTo.
	Restore(r io.Reader) error
}

// ConfChangeObserver may be implemented by a StateMachine that wants to keep
// membership metadata (such as client URLs carried in the change's Context)
// in the replicated state. ApplyConfChange is called on the raft loop, in log
// order with Apply, after raft applied the change; state is the resulting
// membership. Changes raft rejected are not reported. Membership from before
// a snapshot reaches a restoring member only through the state machine's own
// snapshot, so keep what you need in it.
type ConfChangeObserver interface {
	// cc and state belong to the node: read them during the call, and
	// clone what must be kept.
	ApplyConfChange(cc *raftpb.ConfChangeV2, state *raftpb.ConfState)
}

// Transport carries raft messages to other members.
//
// Send is called only from the raft loop and must never block: queue or drop.
// It may keep msgs and the messages they point to after returning but must
// not modify them. Messages addressed to unknown or unreachable members are
// dropped and reported with Node.ReportUnreachable. After a MsgSnap has been delivered or
// has failed, the transport calls Node.ReportSnapshot. Received messages go to
// Node.Step. Those Node methods never block and may be called from any
// goroutine, including from within Send.
type Transport interface {
	Send(msgs []*raftpb.Message)
}

// maxProposalBatch bounds the number of proposals stepped into raft at once.
const maxProposalBatch = 1024

// Node turns a raft RawNode into a replicated log for a StateMachine. Create
// it with New; all methods are safe for concurrent use.
type Node struct {
	id  uint64
	cfg Config

	propc     chan proposal
	readc     chan *readRequest
	confc     chan *confRequest
	transferc chan *transferRequest
	tickc     chan chan struct{}
	in        *inbox

	stopc     chan struct{} // closed when Close is called
	donec     chan struct{} // closed when the raft loop has stopped
	closeOnce sync.Once
	wg        sync.WaitGroup
	fatal     error // why the loop failed; written before donec is closed

	// storage is raft's log storage, owned by the raft loop (MemoryStorage
	// locks internally; tests read the stored snapshot through it).
	storage *raft.MemoryStorage

	status       atomic.Pointer[Status]
	leadTerm     atomic.Pointer[leadTerm]            // replaced by the loop when leader or term changes
	removedIDs   atomic.Pointer[map[uint64]struct{}] // a copy of the loop's removed set
	counters     counters
	busy         atomic.Bool // raft loop is processing (for tests' quiescence checks)
	snapInFlight atomic.Bool // a snapshot is being serialized

	changesMu sync.Mutex
	changesc  chan struct{}
}

// waiter is the reply slot of one proposal or membership change. done has
// capacity 1 and receives exactly one result. The caller only reads done;
// every other field belongs to the raft loop.
type waiter struct {
	done chan result

	// Owned by the raft loop.
	seq  uint64       // request id; assigned by the loop in increasing order, 0 until then
	term uint64       // term the proposal was stamped with
	conf *confRequest // non-nil for membership changes

	// Proposals made on a follower: the stamped envelope, proposed again as
	// is if needed (nil on a leader, and once a copy is in the local log in
	// its own term), and the loop tick of the last (re)proposal.
	buf          []byte
	proposedTick uint64
}

type result struct {
	val any
	err error
}

type proposal struct {
	ctx context.Context
	w   *waiter
	buf []byte // envelope header (stamped by the loop) + payload
}

func newWaiter() *waiter {
	return &waiter{done: make(chan result, 1)}
}

// New validates cfg, creates the raft state (bootstrapping cfg.Peers if
// given) and starts the raft loop. sm and tr must not be nil.
func New(cfg Config, sm StateMachine, tr Transport) (*Node, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if sm == nil || tr == nil {
		return nil, fmt.Errorf("%w: state machine and transport are required", ErrInvalidConfig)
	}
	storage := raft.NewMemoryStorage()
	ids := slices.Clone(cfg.Peers)
	slices.Sort(ids) // every bootstrapping member must write identical entries 1..n
	fromState := len(ids) > 0 && cfg.BootstrapFromState
	bootIndex, bootTerm := bootstrapPosition(cfg, ids)
	if fromState {
		if err := bootstrapStorage(storage, ids, bootIndex, bootTerm); err != nil {
			return nil, err
		}
	}
	rn, err := raft.NewRawNode(&raft.Config{
		ID:                cfg.ID,
		ElectionTick:      cfg.ElectionTicks,
		HeartbeatTick:     cfg.HeartbeatTicks,
		Storage:           storage,
		MaxSizePerMsg:     cfg.MaxSizePerMsg,
		MaxInflightMsgs:   cfg.MaxInflightMsgs,
		CheckQuorum:       true,
		PreVote:           true,
		ReadOnlyOption:    raft.ReadOnlySafe,
		StepDownOnRemoval: true,
		Logger:            raftLogger{cfg.Logger.With("raft_id", fmt.Sprintf("%x", cfg.ID))},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if len(ids) > 0 && !fromState {
		peers := make([]raft.Peer, len(ids))
		for i, id := range ids {
			peers[i] = raft.Peer{ID: id}
		}
		if err := rn.Bootstrap(peers); err != nil {
			return nil, fmt.Errorf("raftadapter: bootstrap: %w", err)
		}
	}

	n := &Node{
		id:        cfg.ID,
		cfg:       cfg,
		propc:     make(chan proposal, maxProposalBatch),
		readc:     make(chan *readRequest, 256),
		confc:     make(chan *confRequest, 16),
		transferc: make(chan *transferRequest, 16),
		tickc:     make(chan chan struct{}),
		in:        newInbox(cfg.MaxInboundMsgs),
		stopc:     make(chan struct{}),
		donec:     make(chan struct{}),
		changesc:  make(chan struct{}),
		storage:   storage,
	}
	n.busy.Store(true)
	n.removedIDs.Store(&map[uint64]struct{}{})
	l := newLoop(n, rn, storage, sm, tr)
	// A lone voter needs nobody's vote: it campaigns as soon as it has
	// applied its bootstrap entry instead of after an election timeout.
	l.campaignAlone = len(cfg.Peers) == 1 && cfg.Peers[0] == cfg.ID
	if fromState {
		if err := l.startFromState(ids, bootIndex, bootTerm, cfg.Removed); err != nil {
			return nil, err
		}
	}
	l.publish()
	n.wg.Go(l.run)
	n.wg.Go(func() { runSnapshotter(l.snapJobc, l.snapDonec) })
	return n, nil
}

// ID returns this member's raft id.
func (n *Node) ID() uint64 { return n.id }

// Propose replicates data and returns the state machine's Apply result once
// the entry has been applied on this node. Proposals made on a follower are
// forwarded to the leader by raft; the result is still delivered here.
//
// Errors: ErrNoLeader (not proposed; retry), ErrLeaderChanged (will never be
// applied; retry), ErrOutcomeUnknown, ErrTimeout or context.Canceled (may
// or may not be applied), ErrRemoved, ErrStopped.
func (n *Node) Propose(ctx context.Context, data []byte) (any, error) {
	if ctx.Err() != nil {
		return nil, ctxError(ctx)
	}
	if n.stopping() {
		return nil, n.stoppedErr()
	}
	p := proposal{ctx: ctx, w: newWaiter(), buf: newEnvelopeBuf(data)}
	if err := submit(ctx, n, n.propc, p); err != nil {
		return nil, err
	}
	r := n.wait(ctx, p.w, true)
	return r.val, r.err
}

// submit hands req to the raft loop on c, unless ctx ends or the node stops
// first.
func submit[T any](ctx context.Context, n *Node, c chan<- T, req T) error {
	select {
	case c <- req:
		return nil
	case <-ctx.Done():
		return ctxError(ctx)
	case <-n.stopc:
		return n.stoppedErr()
	case <-n.donec:
		return n.stoppedErr()
	}
}

// wait blocks until w has a result, ctx ends or the node stops. When ctx
// ends first and cancel is set, the loop is told to forget the waiter.
func (n *Node) wait(ctx context.Context, w *waiter, cancel bool) result {
	select {
	case r := <-w.done:
		return r
	case <-ctx.Done():
		select {
		case r := <-w.done:
			return r
		default:
		}
		if cancel {
			n.in.pushCancel(w)
		}
		return result{err: ctxError(ctx)}
	case <-n.donec:
		select {
		case r := <-w.done:
			return r
		default:
			return result{err: n.stoppedErr()}
		}
	}
}

// ReadIndex is a linearizable read barrier: it returns nil once this node
// has applied everything that was committed when ReadIndex was called, as
// confirmed by a quorum through the leader. After it returns, local reads of
// the state machine reflect every write acknowledged before the call.
// Concurrent calls share raft read-index rounds. A member cut off from the
// quorum never returns nil; it waits until ctx ends.
func (n *Node) ReadIndex(ctx context.Context) error {
	if ctx.Err() != nil {
		return ctxError(ctx)
	}
	if n.stopping() {
		return n.stoppedErr()
	}
	r := &readRequest{ctx: ctx, done: make(chan error, 1)}
	if err := submit(ctx, n, n.readc, r); err != nil {
		return err
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		select {
		case err := <-r.done:
			return err
		default:
			return ctxError(ctx)
		}
	case <-n.donec:
		select {
		case err := <-r.done:
			return err
		default:
			return n.stoppedErr()
		}
	}
}

// Step hands a message received from another member to the raft loop. It
// never blocks: when the inbound queue is full the message is dropped and
// counted (raft recovers from lost messages). The node keeps m: the caller
// must not modify it afterwards.
func (n *Node) Step(m *raftpb.Message) {
	if n.stopped() {
		return
	}
	if !n.in.pushMsg(m) {
		n.counters.inboundDropped.Add(1)
	}
}

// ReportUnreachable tells raft that the last message to id was not
// delivered, so the leader probes id instead of streaming to it.
func (n *Node) ReportUnreachable(id uint64) {
	if n.stopped() {
		return
	}
	n.in.pushUnreachable(id)
}

// ReportSnapshot tells raft whether the snapshot sent to id arrived.
func (n *Node) ReportSnapshot(id uint64, status raft.SnapshotStatus) {
	if n.stopped() {
		return
	}
	n.in.pushSnapReport(id, status)
}

// AddLearner adds id as a non-voting member and returns once the change is
// applied on this node. context is handed to a ConfChangeObserver (e.g. the
// member's client URLs). Only the leader changes membership (ErrNotLeader
// otherwise); changes are applied one at a time, queued in call order.
func (n *Node) AddLearner(ctx context.Context, id uint64, context []byte) error {
	return n.ChangeMembership(ctx, []ConfChange{{AddLearnerChange, id}}, context)
}

// Promote turns learner id into a voter and returns once applied. Promoting
// a voter is a no-op.
func (n *Node) Promote(ctx context.Context, id uint64) error {
	return n.ChangeMembership(ctx, []ConfChange{{PromoteChange, id}}, nil)
}

// RemoveMember removes voter or learner id and returns once applied. A
// leader may remove itself; it then steps down and reports ErrRemoved for
// new work.
func (n *Node) RemoveMember(ctx context.Context, id uint64) error {
	return n.ChangeMembership(ctx, []ConfChange{{RemoveChange, id}}, nil)
}

// ChangeMembership makes changes as one raft membership change and returns
// once it is applied on this node. One change is made directly; several are
// made with joint consensus (raft's automatic transition), so that no
// configuration in between is ever in effect: the call returns when the
// joint configuration is entered, and raft leaves it with the next entry
// the leader appends (Status.ConfChangePending stays set until then).
// Changes already in effect (promoting a voter) are skipped; if all are,
// it returns nil at once. Only the leader changes membership (ErrNotLeader
// otherwise); changes are applied one at a time, queued in call order.
// Errors: ErrInvalidConfChange (raft could not apply it as a whole, e.g.
// no voter would be left), ErrMemberExists, ErrUnknownMember, and those of
// Propose.
func (n *Node) ChangeMembership(ctx context.Context, changes []ConfChange, context []byte) error {
	if ctx.Err() != nil {
		return ctxError(ctx)
	}
	if n.stopping() {
		return n.stoppedErr()
	}
	c := &confRequest{ctx: ctx, changes: slices.Clone(changes), context: context, w: newWaiter()}
	c.w.conf = c
	if err := submit(ctx, n, n.confc, c); err != nil {
		return err
	}
	return n.wait(ctx, c.w, true).err
}

// TransferLeadership asks the leader (this node) to hand leadership to voter
// to, and returns once this node sees to as leader, or when ctx ends. raft
// retries an attempt that timed out while ctx lasts. If to already leads it
// returns nil at once; on a follower it returns ErrNotLeader.
func (n *Node) TransferLeadership(ctx context.Context, to uint64) error {
	if ctx.Err() != nil {
		return ctxError(ctx)
	}
	if n.stopping() {
		return n.stoppedErr()
	}
	t := &transferRequest{ctx: ctx, to: to, done: make(chan error, 1)}
	if err := submit(ctx, n, n.transferc, t); err != nil {
		return err
	}
	select {
	case err := <-t.done:
		return err
	case <-ctx.Done():
		return ctxError(ctx)
	case <-n.donec:
		select {
		case err := <-t.done:
			return err
		default:
			return n.stoppedErr()
		}
	}
}

// Tick advances raft's logical clock by one tick and returns after the loop
// has processed it. It is how tests drive time with Config.DisableTicker;
// with the ticker on it adds an extra tick.
func (n *Node) Tick() error {
	ack := make(chan struct{})
	select {
	case n.tickc <- ack:
	case <-n.donec:
		return n.stoppedErr()
	}
	select {
	case <-ack:
		return nil
	case <-n.donec:
		return n.stoppedErr()
	}
}

// Status returns the latest published state of the node. It is cheap and
// never blocks on the raft loop.
func (n *Node) Status() Status {
	st := *n.status.Load()
	st.Metrics = n.counters.snapshot()
	return st
}

// LeaderTerm returns the leader this node knows (0 if none) and its current
// term, as of the last loop turn. It is a single atomic load, cheap enough
// for every response. A stopped node reports no leader. Changes wakes its
// subscribers whenever either value changes.
func (n *Node) LeaderTerm() (leader, term uint64) {
	lt := n.leadTerm.Load()
	return lt.leader, lt.term
}

// Changes returns a channel that is closed at the next change of leader,
// term, raft role, membership or removal, and when the node stops. Read
// Status after taking the channel so no change is missed:
//
//	for {
//		ch := n.Changes()
//		st := n.Status()
//		if st.Stopped { return }
//		react(st)
//		<-ch
//	}
//
// Once the node has stopped, the returned channel is always closed.
func (n *Node) Changes() <-chan struct{} {
	n.changesMu.Lock()
	defer n.changesMu.Unlock()
	return n.changesc
}

// notifyChanges wakes Changes subscribers. final leaves the closed channel
// in place for good.
func (n *Node) notifyChanges(final bool) {
	n.changesMu.Lock()
	defer n.changesMu.Unlock()
	close(n.changesc)
	if final {
		return
	}
	n.changesc = make(chan struct{})
}

// Done is closed when the node has stopped (after Close or a fatal error).
func (n *Node) Done() <-chan struct{} { return n.donec }

// Err returns, once the node has stopped, the failure that stopped it (nil
// after a plain Close, and while it runs).
func (n *Node) Err() error {
	select {
	case <-n.donec:
		return n.fatal
	default:
		return nil
	}
}

// Close stops the node gracefully: if it is the leader it first hands
// leadership to the most caught-up voter (waiting at most
// Config.CloseTimeout), then it stops the raft loop and the snapshot writer
// and waits for them. Pending calls fail with ErrStopped. Close is
// idempotent; it returns nil, or the error that made the node fail.
func (n *Node) Close() error {
	n.closeOnce.Do(func() { close(n.stopc) })
	<-n.donec
	n.wg.Wait()
	return n.fatal
}

func (n *Node) stopping() bool {
	select {
	case <-n.stopc:
		return true
	case <-n.donec:
		return true
	default:
		return false
	}
}

func (n *Node) stopped() bool {
	select {
	case <-n.donec:
		return true
	default:
		return false
	}
}

// stoppedErr is ErrStopped, wrapping the failure cause if there was one.
func (n *Node) stoppedErr() error {
	if n.stopped() && n.fatal != nil {
		return fmt.Errorf("%w: %w", ErrStopped, n.fatal)
	}
	return ErrStopped
}

// errNoop marks a membership change that is already in effect.
var errNoop = errors.New("raftadapter: change already in effect")
