package membership

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/meshkv/meshkv/internal/ids"
	"github.com/meshkv/meshkv/meshtransport"
	"github.com/meshkv/meshkv/raftadapter"
)

// fakeMesh is a transport with no peers; membership messages sent are
// recorded, and the test feeds received ones.
type fakeMesh struct {
	mu      sync.Mutex
	meta    meshtransport.Meta
	cluster ids.ClusterID
	sent    []meshtransport.MemberMessage
	sentTo  []ids.MemberID
	inc     chan meshtransport.MemberMessage
	changes chan struct{}
}

func newFakeMesh() *fakeMesh {
	return &fakeMesh{inc: make(chan meshtransport.MemberMessage, 64), changes: make(chan struct{})}
}

func (m *fakeMesh) Peers() []meshtransport.Peer                        { return nil }
func (m *fakeMesh) PeerTargets() []meshtransport.PeerTarget            { return nil }
func (m *fakeMesh) Changes() <-chan struct{}                           { return m.changes }
func (m *fakeMesh) MemberMessages() <-chan meshtransport.MemberMessage { return m.inc }

func (m *fakeMesh) SetMeta(meta meshtransport.Meta) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.meta = meta
}

func (m *fakeMesh) SetClusterID(id ids.ClusterID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cluster = id
}

func (m *fakeMesh) SendMember(to ids.MemberID, msg meshtransport.MemberMessage) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sent, m.sentTo = append(m.sent, msg), append(m.sentTo, to)
	return nil
}

// fakeRaft is a leaderless raft member of a fixed configuration.
type fakeRaft struct{ st raftadapter.Status }

func (r *fakeRaft) Status() raftadapter.Status { return r.st }
func (r *fakeRaft) ChangeMembership(context.Context, []raftadapter.ConfChange, []byte) error {
	return raftadapter.ErrNoLeader
}
func (r *fakeRaft) TransferLeadership(context.Context, uint64) error { return raftadapter.ErrNotLeader }
func (r *fakeRaft) WasRemoved(uint64) bool                           { return false }

// lines counts the log records whose message starts with prefix.
type lines struct {
	mu   sync.Mutex
	msgs []string
}

func (l *lines) Enabled(context.Context, slog.Level) bool { return true }
func (l *lines) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Message)
	return nil
}
func (l *lines) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *lines) WithGroup(string) slog.Handler      { return l }

func (l *lines) count(prefix string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.msgs {
		if strings.HasPrefix(m, prefix) {
			n++
		}
	}
	return n
}

// runController runs c until the test's bubble ends.
func runController(t *testing.T, c *Controller) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = c.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// A node waiting for peers that never come logs why at once, then repeats
// it every bootLogRepeat, not every round.
func TestBootstrapWaitLogIsRateLimited(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := &lines{}
		c, err := NewController(ControllerConfig{Self: 1, InitialClusterSize: 3, Interval: 100 * time.Millisecond,
			Logger: slog.New(log), StartRaft: func(ids.ClusterID, []ids.MemberID) (RaftMember, error) {
				t.Fatal("formed a cluster alone")
				return nil, nil
			}}, newFakeMesh())
		if err != nil {
			t.Fatal(err)
		}
		runController(t, c)
		time.Sleep(35 * time.Second)
		synctest.Wait()
		if n := log.count("bootstrap waiting"); n != 4 {
			t.Fatalf("%d progress lines in 35s, want 4 (one, then one every %v)", n, bootLogRepeat)
		}
	})
}

// recoveryFixture runs a controller whose raft member is a leaderless voter
// of voters (this node: 1, applied index 10), and answers the survey's
// queries for the members in answers with their applied index.
func recoveryFixture(t *testing.T, voters []uint64, answers map[ids.MemberID]uint64) (*Controller, *fakeMesh, *RecoveryPlan) {
	mesh := newFakeMesh()
	var recovered RecoveryPlan
	r := &fakeRaft{st: raftadapter.Status{ID: 1, Term: 3, Voters: voters, AppliedIndex: 10}}
	c, err := NewController(ControllerConfig{Self: 1, Interval: 100 * time.Millisecond,
		StartRaft: func(ids.ClusterID, []ids.MemberID) (RaftMember, error) { return r, nil },
		Recover: func(p RecoveryPlan) (RaftMember, error) {
			recovered = p
			return &fakeRaft{st: raftadapter.Status{ID: 1, Term: 4, Voters: []uint64{1}, AppliedIndex: p.Applied}}, nil
		}}, mesh)
	if err != nil {
		t.Fatal(err)
	}
	runController(t, c)
	stop, done := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() { close(stop); <-done })
	go func() { // answer the survey
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			mesh.mu.Lock()
			sent, to := mesh.sent, mesh.sentTo
			mesh.sent, mesh.sentTo = nil, nil
			mesh.mu.Unlock()
			for i, m := range sent {
				if idx, ok := answers[to[i]]; ok && m.Kind == meshtransport.MemberQuery {
					mesh.inc <- meshtransport.MemberMessage{Kind: meshtransport.MemberReply, From: to[i], Nonce: m.Nonce,
						ClusterID: c.ClusterID(), Index: idx, Status: meshtransport.StatusMember}
				}
			}
		}
	}()
	return c, mesh, &recovered
}

func TestControllerRecover(t *testing.T) {
	t.Run("refused too soon, then done", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			c, mesh, plan := recoveryFixture(t, []uint64{1, 2, 3, 4, 5}, map[ids.MemberID]uint64{2: 9})
			time.Sleep(100 * time.Millisecond)
			// The survey waits surveyWait for the three that do not answer:
			// still less than QueryAfter without a leader.
			if _, err := c.Recover(t.Context(), false); !errors.Is(err, ErrTooSoon) {
				t.Fatalf("recover soon after the leader was lost: %v, want ErrTooSoon", err)
			}
			time.Sleep(5 * time.Second)
			old := c.ClusterID()
			got, err := c.Recover(t.Context(), false)
			if err != nil {
				t.Fatal(err)
			}
			if got.Cluster != plan.Cluster || got.Supersedes != old || got.Applied != 10 || len(got.Removed) != 4 {
				t.Fatalf("plan %+v, carried out %+v", got, *plan)
			}
			time.Sleep(time.Second)
			mesh.mu.Lock()
			defer mesh.mu.Unlock()
			if c.ClusterID() != got.Cluster || mesh.cluster != got.Cluster || mesh.meta.ClusterID != uint64(got.Cluster) {
				t.Fatalf("cluster %s, transport %s, published %x; want %s", c.ClusterID(), mesh.cluster, mesh.meta.ClusterID, got.Cluster)
			}
			if app, err := DecodeAppState(mesh.meta.App); err != nil || app.Boot.Supersedes != old {
				t.Fatalf("published %+v %v, want supersedes %s", app, err, old)
			}
		})
	})
	t.Run("a quorum answers", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			c, _, _ := recoveryFixture(t, []uint64{1, 2, 3}, map[ids.MemberID]uint64{2: 9})
			time.Sleep(5 * time.Second)
			if _, err := c.Recover(t.Context(), false); !errors.Is(err, ErrQuorumReachable) {
				t.Fatalf("recover: %v, want ErrQuorumReachable", err)
			}
		})
	})
	t.Run("another survivor applied more", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			c, _, _ := recoveryFixture(t, []uint64{1, 2, 3, 4, 5}, map[ids.MemberID]uint64{2: 11})
			time.Sleep(5 * time.Second)
			if _, err := c.Recover(t.Context(), false); !errors.Is(err, ErrNotHighest) {
				t.Fatalf("recover: %v, want ErrNotHighest", err)
			}
			if _, err := c.Recover(t.Context(), true); err != nil {
				t.Fatalf("forced recover: %v", err)
			}
		})
	})
}
