package meshkv

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc/test/bufconn"

	"github.com/meshkv/meshkv/internal/backup"
	"github.com/meshkv/meshkv/internal/clusterview"
	"github.com/meshkv/meshkv/internal/forward"
	"github.com/meshkv/meshkv/internal/membership"
	"github.com/meshkv/meshkv/internal/serve"
	"github.com/meshkv/meshkv/kvapi"
	"github.com/meshkv/meshkv/kvapi/auth"
	"github.com/meshkv/meshkv/kvapi/mvcc"
	"github.com/meshkv/meshkv/meshtransport"
	"github.com/meshkv/meshkv/raftadapter"
)

// Version is meshkv's own version, shown by the binary's --version and in logs.
// Clients see the etcd API version it serves (kvapi.ServerVersion) instead.
const Version = "0.1.0"

// ErrRemoved is reported by Node.Err when the cluster removed this member
// (by an operator's member remove, or after it was unreachable for longer
// than the dead-member timeout). A removed member never rejoins under its raft
// id: start a new node (a new process) to rejoin.
var ErrRemoved = errors.New("meshkv: member removed from the cluster")

// ErrRaftFailed is reported by Node.Err when the node's raft member stopped
// on a failure (a panic in the raft loop, a snapshot it cannot restore): the
// node can no longer serve and must be restarted.
var ErrRaftFailed = errors.New("meshkv: raft failed")

// Node is a running meshkv member.
type Node struct {
	cfg   Config
	log   *slog.Logger
	id    uint64 // raft id, fixed at start, never reused
	store *mvcc.Store
	sm    *kvapi.StateMachine
	api   *kvapi.Server
	auth  *auth.Store // users, roles, tokens: replicated with the store

	// raft is nil until the node has formed or joined a cluster (at once for
	// a standalone node); clusterID is 0 until then.
	raft      atomic.Pointer[raftadapter.Node]
	clusterID atomic.Uint64

	mesh    *meshtransport.Transport // nil for a standalone node
	ident   *meshtransport.Identity  // the mesh keys; nil for a standalone node
	members *membership.Controller   // nil for a standalone node
	// membersDone is closed when the membership controller stopped.
	membersDone chan struct{}

	inproc     *bufconn.Listener
	listeners  []net.Listener
	clientURLs []string // advertised
	client     *clientv3.Client
	// leaderClients forwards operator requests to the leader (internal/forward).
	leaderClients forward.Clients
	view          *clusterview.View // kvapi's view of the cluster (internal/clusterview)
	srv           *serve.Server     // the client port (serve.go); nil until it started

	// ctx is canceled by Close: it stops the node's own goroutines and bounds
	// the work they do.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// failed is closed when the node stops serving on its own (see Err).
	failed   chan struct{}
	failOnce sync.Once
	err      error

	closeOnce sync.Once
	closeErr  error
}

// Start starts a node and returns once it can serve requests (it is a member
// of a cluster with a leader), or ctx ends. The node runs until Close; ctx
// only bounds the start.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	n := &Node{
		cfg: cfg,
	}
	if cfg.MeshListen == "" {
		n.id = randomID()
	} else {
		// With a mesh the raft id is derived from the node's key, so that
		// no peer can speak under it (see meshtransport/identity.go).
		ident, err := meshtransport.NewIdentity()
		if err != nil {
			return nil, fmt.Errorf("meshkv: %w", err)
		}
		n.ident, n.id = ident, uint64(ident.RaftID())
	}
	n.log = cfg.Logger.With("member", fmt.Sprintf("%x", n.id))
	store, authSnap, err := backup.LoadInitial(cfg.InitialSnapshot, n.log)
	if err != nil {
		return nil, err
	}
	n.store = store
	if n.auth, err = auth.New(cfg.authConfig()); err != nil {
		return nil, err
	}
	if authSnap != nil {
		n.auth.Restore(authSnap)
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.failed = make(chan struct{})
	n.sm = kvapi.NewStateMachine(n.store)
	if err := n.start(); err != nil {
		_ = n.Close()
		return nil, err
	}
	if err := n.waitReady(ctx); err != nil {
		_ = n.Close()
		return nil, err
	}
	n.log.Info("meshkv node ready", "version", Version, "name", cfg.Name,
		"cluster", fmt.Sprintf("%x", n.clusterID.Load()), "client-urls", n.clientURLs)
	return n, nil
}

func (n *Node) start() error {
	// Listeners first, so that a taken port fails Start before anything runs.
	var served []string
	var err error
	if n.listeners, served, err = serve.OpenClientListeners(n.cfg.ListenClientURLs); err != nil {
		return err
	}
	n.clientURLs = n.cfg.AdvertiseClientURLs
	if len(n.clientURLs) == 0 {
		n.clientURLs = served
	}
	n.view = n.newClusterView()
	ac, err := kvapi.ParseAutoCompaction(n.cfg.AutoCompactionMode, n.cfg.AutoCompactionRetention)
	if err != nil {
		return err
	}
	n.api, err = kvapi.NewServer(kvapi.Config{
		MaxRequestBytes:   n.cfg.MaxRequestBytes,
		MaxTxnOps:         n.cfg.MaxTxnOps,
		QuotaBytes:        n.cfg.QuotaBytes,
		RequestTimeout:    5*time.Second + 2*n.cfg.ElectionTimeout,
		LeaderLossTimeout: 3 * n.cfg.ElectionTimeout,
		AutoCompaction:    ac,
		Auth:              n.auth,
		ClientCertAuth:    n.cfg.ClientCertAuth,
		Logger:            n.cfg.Logger,

		WatchProgressNotifyInterval: n.cfg.WatchProgressNotifyInterval,
	}, n.store, clusterview.NewReplicator(n.raftMember), n.view)
	if err != nil {
		return err
	}
	if err := n.api.SetLeaseConfig(kvapi.LeaseConfigFor(n.cfg.TickInterval, n.cfg.ElectionTimeout)); err != nil {
		return err
	}
	n.api.UseStateMachine(n.sm)

	if n.cfg.MeshListen == "" {
		if err := n.startRaft(n.id, []uint64{n.id}, loneTransport{}); err != nil {
			return err
		}
	} else if err := n.startMesh(); err != nil {
		return err
	}

	n.inproc = bufconn.Listen(1 << 20)
	n.client, err = serve.InprocClient(n.inproc)
	if err != nil {
		return fmt.Errorf("meshkv: in-memory client: %w", err)
	}
	n.api.UseClient(n.client)
	if err := n.startServing(); err != nil {
		return err
	}
	n.wg.Go(func() { n.api.Run(n.ctx) })
	return nil
}

// raftStart says how a raft member starts: as a voter of a new cluster
// (peers), joining one (no peers), or recovering one from this node's state
// (fromState with the bootstrap position and the removed ids).
type raftStart struct {
	cluster   uint64
	peers     []uint64
	fromState bool
	index     uint64
	term      uint64
	removed   []uint64
}

// startRaft starts the raft member of cluster clusterID; peers are the
// initial voters, or empty to join an existing cluster.
func (n *Node) startRaft(clusterID uint64, peers []uint64, tr raftadapter.Transport) error {
	return n.startRaftWith(raftStart{cluster: clusterID, peers: peers, fromState: n.cfg.InitialSnapshot != ""}, tr)
}

func (n *Node) startRaftWith(s raftStart, tr raftadapter.Transport) error {
	var sm raftadapter.StateMachine = n.sm
	if h := n.cfg.test; h != nil && h.stateMachine != nil {
		sm = h.stateMachine(sm)
	}
	rn, err := raftadapter.New(raftadapter.Config{
		ID:                 n.id,
		Peers:              s.peers,
		BootstrapFromState: s.fromState,
		BootstrapIndex:     s.index,
		BootstrapTerm:      s.term,
		Removed:            s.removed,
		TickInterval:       n.cfg.TickInterval,
		ElectionTicks:      int(n.cfg.ElectionTimeout / n.cfg.TickInterval),
		SnapshotCount:      n.cfg.SnapshotCount,
		Logger:             n.cfg.Logger,
	}, sm, tr)
	if err != nil {
		return fmt.Errorf("meshkv: start raft: %w", err)
	}
	n.clusterID.Store(s.cluster)
	n.raft.Store(rn)
	// A raft member that fails ends the node: it cannot serve any more. (A
	// member closed by a recovery ends with no error.)
	n.wg.Go(func() {
		select {
		case <-rn.Done():
			if err := rn.Err(); err != nil {
				n.fail(fmt.Errorf("%w: %w", ErrRaftFailed, err))
			}
		case <-n.ctx.Done():
		}
	})
	return nil
}

// waitReady polls until the member is in a cluster and knows its leader.
func (n *Node) waitReady(ctx context.Context) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		if rn := n.raft.Load(); rn != nil && rn.Status().Leader != 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("meshkv: waiting to join a cluster with a leader: %w", context.Cause(ctx))
		case <-n.failed:
			return n.err
		case <-t.C:
		}
	}
}

// ID returns this member's raft id.
func (n *Node) ID() uint64 { return n.id }

// ClusterID returns the id of the cluster this node belongs to (0 before it
// formed or joined one).
func (n *Node) ClusterID() uint64 { return n.clusterID.Load() }

// ClientAddrs returns the host:port of each TCP client listener, in the order
// of Config.ListenClientURLs.
func (n *Node) ClientAddrs() []string {
	addrs := make([]string, len(n.listeners))
	for i, l := range n.listeners {
		addrs[i] = l.Addr().String()
	}
	return addrs
}

// MeshAddr returns the mesh listen address ("" for a standalone node).
func (n *Node) MeshAddr() string {
	if n.mesh == nil {
		return ""
	}
	return n.mesh.Addr()
}

// Client returns an etcd client connected to this node in memory (no TCP).
// The node owns it and closes it on Close; callers must not close it.
//
// It is the embedding application's own access: while authentication is
// enabled it acts as the root user (at any auth revision), so the
// application can always manage users and enable or disable
// authentication. A token sent with a request (a client of the in-memory
// connection configured with a user) takes precedence, as for any client.
func (n *Node) Client() *clientv3.Client { return n.client }

// Done is closed when the node stops serving on its own, before Close: when
// the cluster removed it or its raft member failed (Err then says why). A process embedding a node
// should then Close it and start a new one to rejoin.
func (n *Node) Done() <-chan struct{} { return n.failed }

// Err returns why the node stopped serving on its own, or nil.
func (n *Node) Err() error {
	select {
	case <-n.failed:
		return n.err
	default:
		return nil
	}
}

// fail records that the node stopped serving on its own.
func (n *Node) fail(err error) {
	n.failOnce.Do(func() {
		n.err = err
		n.log.Error("member stopped serving", "err", err)
		close(n.failed)
	})
}

// Close stops the node. A member of a multi-node cluster first leaves
// gracefully: it hands leadership over if it leads and waits (up to
// LeaveTimeout) for the leader to remove it, so the cluster replaces it at
// once. Then it stops serving, stops raft and the mesh, and waits for every
// goroutine it started. It is idempotent.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.leave()
		n.cancel()
		if n.client != nil {
			_ = n.client.Close()
		}
		n.leaderClients.Close()
		n.stopServing()
		if n.inproc != nil {
			_ = n.inproc.Close()
		}
		if n.membersDone != nil {
			<-n.membersDone
		}
		if rn := n.raft.Load(); rn != nil {
			n.closeErr = rn.Close()
		}
		if n.mesh != nil {
			if err := n.mesh.Close(); err != nil && n.closeErr == nil {
				n.closeErr = err
			}
		}
		n.wg.Wait()
		n.log.Info("meshkv node stopped")
	})
	return n.closeErr
}

// randomID returns a random nonzero 64-bit id for a standalone node. Raft
// ids are never reused: a restarted process gets a new one, since its state
// was in memory.
func randomID() uint64 {
	var b [8]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			panic(fmt.Sprintf("meshkv: crypto/rand failed: %v", err))
		}
		if id := binary.LittleEndian.Uint64(b[:]); id != 0 {
			return id
		}
	}
}

// loneTransport is the transport of a standalone single member: there is
// nobody to send to, so raft never produces a message for it to carry.
type loneTransport struct{}

func (loneTransport) Send([]*raftpb.Message) {}
