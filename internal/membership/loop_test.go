package membership

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/meshkv/meshkv/internal/ids"
)

// fakeNode is a Source and an Actuator over a view that the test edits.
// Members it lists answer the leader with the current commit index.
type fakeNode struct {
	mu        sync.Mutex
	v         View
	changedc  chan struct{}
	changes   []Change
	transfers []ids.MemberID
	queries   int
	fail      error
}

var (
	_ Source   = (*fakeNode)(nil)
	_ Actuator = (*fakeNode)(nil)
)

func newFakeNode(voters, learners []ids.MemberID) *fakeNode {
	n := &fakeNode{changedc: make(chan struct{}, 1)}
	n.v = View{Cluster: testCluster, Raft: Raft{
		Term: 1, Leader: true, Lead: 1, Commit: 5, Voters: voters, Learners: learners,
		Progress: map[ids.MemberID]Progress{},
	}}
	for _, id := range append(slices.Clone(voters), learners...) {
		n.v.Peers = append(n.v.Peers, Peer{ID: id, Cluster: testCluster, Live: true, Role: RoleLearner})
	}
	return n
}

func (n *fakeNode) View() View {
	n.mu.Lock()
	defer n.mu.Unlock()
	v := n.v
	v.Raft.Progress = map[ids.MemberID]Progress{}
	for _, id := range append(slices.Clone(v.Raft.Voters), v.Raft.Learners...) {
		v.Raft.Progress[id] = Progress{Match: v.Raft.Commit, RecentActive: true}
	}
	v.Raft.Voters, v.Raft.Learners = slices.Clone(v.Raft.Voters), slices.Clone(v.Raft.Learners)
	v.Peers = slices.Clone(v.Peers)
	n.v.Notices = nil
	return v
}

func (n *fakeNode) Changed() <-chan struct{} { return n.changedc }

func (n *fakeNode) ChangeMembership(ctx context.Context, c Change) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.changes = append(n.changes, c)
	if n.fail != nil {
		return n.fail
	}
	n.v.Raft.Voters, n.v.Raft.Learners = c.Apply(n.v.Raft.Voters, n.v.Raft.Learners)
	return nil
}

func (n *fakeNode) TransferLeadership(ctx context.Context, to ids.MemberID) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.transfers = append(n.transfers, to)
	n.v.Raft.Leader, n.v.Raft.Lead = false, to
	return nil
}

func (n *fakeNode) QueryMembership() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.queries++
}

func (n *fakeNode) edit(f func(v *View)) {
	n.mu.Lock()
	f(&n.v)
	n.mu.Unlock()
	select {
	case n.changedc <- struct{}{}:
	default:
	}
}

// countHandler counts log records by message.
type countHandler struct {
	mu   sync.Mutex
	msgs map[string]int
}

func (h *countHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.msgs[r.Message]++
	return nil
}
func (h *countHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countHandler) WithGroup(string) slog.Handler      { return h }

func (h *countHandler) count(msg string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.msgs[msg]
}

func startLoop(t *testing.T, n *fakeNode, h slog.Handler) (context.CancelFunc, chan error) {
	t.Helper()
	if h == nil {
		h = slog.DiscardHandler
	}
	l, err := NewLoop(LoopConfig{Self: 1, Planner: testCfg, Logger: slog.New(h)}, n, n)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- l.Run(ctx) }()
	return cancel, errc
}

func TestLoopGrowsAndStops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newFakeNode(mids(1), mids(2, 3))
		h := &countHandler{msgs: map[string]int{}}
		cancel, errc := startLoop(t, n, h)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		n.mu.Lock()
		voters, changes := slices.Clone(n.v.Raft.Voters), slices.Clone(n.changes)
		n.mu.Unlock()
		if !slices.Equal(voters, mids(1, 2, 3)) || len(changes) != 1 {
			t.Fatalf("voters %v after changes %v", voters, changes)
		}
		// "Waiting" (1 voter, target 3) was logged once, not every round.
		if c := h.count("membership not as configured"); c != 1 {
			t.Fatalf("waiting logged %d times", c)
		}
		cancel()
		if err := <-errc; err != nil {
			t.Fatalf("Run = %v after cancel", err)
		}
	})
}

func TestLoopExitsWhenRemoved(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newFakeNode(mids(1, 2, 3), nil)
		cancel, errc := startLoop(t, n, nil)
		defer cancel()
		time.Sleep(time.Second)
		n.edit(func(v *View) {
			v.Raft.Leader, v.Raft.Lead = false, 2
			v.Notices = []Notice{{From: 2, Cluster: testCluster, Kind: NoticeRemoved}}
		})
		if err := <-errc; !errors.Is(err, ErrRemoved) {
			t.Fatalf("Run = %v, want ErrRemoved", err)
		}
	})
}

func TestLoopBacksOffFailedChanges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newFakeNode(mids(1), mids(2, 3))
		n.fail = errors.New("refused")
		h := &countHandler{msgs: map[string]int{}}
		cancel, errc := startLoop(t, n, h)
		time.Sleep(12 * time.Second)
		cancel()
		<-errc
		n.mu.Lock()
		tries := len(n.changes)
		n.mu.Unlock()
		// Ready after 2s, then one try per ChangeTimeout/5 = 1s.
		if tries < 5 || tries > 12 {
			t.Fatalf("%d tries in 10s", tries)
		}
		if c := h.count("membership change failed"); c != 1 {
			t.Fatalf("failure logged %d times", c)
		}
	})
}

func TestLoopQueriesAndTransfers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newFakeNode(mids(1, 2, 3), nil)
		cancel, errc := startLoop(t, n, nil)
		time.Sleep(2 * time.Second)
		n.edit(func(v *View) { v.Leaving = true })
		time.Sleep(time.Second)
		n.edit(func(v *View) { v.Raft.Lead = 0 }) // the new leader is lost as well
		time.Sleep(5 * time.Second)
		cancel()
		<-errc
		n.mu.Lock()
		defer n.mu.Unlock()
		if len(n.transfers) != 1 || n.transfers[0] == 0 {
			t.Fatalf("transfers %v", n.transfers)
		}
		if n.queries != 1 {
			t.Fatalf("%d queries in 5s without a leader (QueryAfter 3s)", n.queries)
		}
	})
}

func TestNewLoopValidates(t *testing.T) {
	n := newFakeNode(mids(1), nil)
	for _, cfg := range []LoopConfig{{}, {Self: 1, Interval: -1}, {Self: 1, Planner: Config{TargetVoters: 4}}} {
		if _, err := NewLoop(cfg, n, n); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%+v: err = %v", cfg, err)
		}
	}
	if _, err := NewLoop(LoopConfig{Self: 1}, nil, n); err == nil || !strings.Contains(err.Error(), "source") {
		t.Errorf("nil source: err = %v", err)
	}
}
