package kvapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/meshkv/meshkv/kvapi/auth"
	"github.com/meshkv/meshkv/kvapi/mvcc"
)

// Replicator is the replicated log as the RPC handlers see it.
type Replicator interface {
	// Propose replicates data and returns what StateMachine.Apply returned
	// for it on this member.
	Propose(ctx context.Context, data []byte) (any, error)
	// ReadIndex returns once this member has applied everything committed
	// before the call, as confirmed by a quorum.
	ReadIndex(ctx context.Context) error
}

// RaftStatus is the part of the consensus state that Status reports.
type RaftStatus struct {
	Leader       uint64
	Term         uint64
	CommitIndex  uint64
	AppliedIndex uint64
	IsLearner    bool
}

// Cluster tells the services who they are and who the other members are. It
// may also implement MembershipChanger.
type Cluster interface {
	ClusterID() uint64
	MemberID() uint64
	RaftStatus() RaftStatus
	// LeaderTerm returns the leader this member knows (0 if none) and the
	// current term. Every response header reads it, so it must be cheap: an
	// atomic load, never a call into the raft loop.
	LeaderTerm() (leader, term uint64)
	Members() []*pb.Member
	// Errors lists conditions an operator must see (Status.errors), such as
	// another cluster of the same name on the mesh.
	Errors() []string
}

// Default limits, as etcd's.
const (
	DefaultMaxRequestBytes   = 1536 * 1024
	DefaultMaxTxnOps         = 128
	DefaultQuotaBytes        = 2 << 30
	DefaultRequestTimeout    = 7 * time.Second
	DefaultLeaderLossTimeout = 3 * time.Second
	// DefaultWatchProgressNotifyInterval is etcd's default period of watch
	// progress notifications.
	DefaultWatchProgressNotifyInterval = 10 * time.Minute
	// GRPCOverheadBytes is added to the request limit for gRPC's own receive
	// limit, so that a request slightly too large gets etcd's
	// "request is too large" error rather than a transport error.
	GRPCOverheadBytes = 512 * 1024
)

// ServerVersion is the etcd server version meshkv reports to clients (Status,
// /version). Clients gate features on it, so it names the etcd release whose
// API meshkv serves: etcd 3.7's, RangeStream included.
const ServerVersion = "3.7.0"

// ClusterVersion is the cluster version reported by /version: every member
// serves the same API.
const ClusterVersion = "3.7.0"

// StorageVersion is reported in Status and /version as etcd's storage
// version.
const StorageVersion = "3.7.0"

// Config configures the services. Zero values mean the defaults.
type Config struct {
	// MaxRequestBytes limits the encoded size of a write request
	// (default DefaultMaxRequestBytes).
	MaxRequestBytes int
	// MaxTxnOps limits the operations in each list of a Txn (default DefaultMaxTxnOps).
	MaxTxnOps int
	// LeaderLossTimeout is how long a member may be without a leader before
	// it ends the streams of clients that require one (default
	// DefaultLeaderLossTimeout; etcd waits three election timeouts).
	LeaderLossTimeout time.Duration
	// RequestTimeout bounds how long a request waits for replication,
	// including waiting for a leader during an election (default
	// DefaultRequestTimeout; etcd uses 5s plus twice the election timeout).
	RequestTimeout time.Duration
	// QuotaBytes is the store size above which writes that add data fail
	// with etcd's "database space exceeded" (default DefaultQuotaBytes, as
	// etcd's --quota-backend-bytes; compaction and deletes free space).
	QuotaBytes int64
	// AutoCompaction bounds the history kept (default: none, as etcd).
	AutoCompaction AutoCompaction
	// Auth is the auth state requests are checked against; the state
	// machine applies auth requests to it (UseStateMachine connects them),
	// and Maintenance.Snapshot writes it into the file. Nil: a store with
	// the default options (simple tokens).
	Auth *auth.Store
	// ClientCertAuth makes the common name of a TLS client's verified
	// certificate name the user of its requests without a token, while
	// authentication is enabled (etcd's --client-cert-auth).
	ClientCertAuth bool
	// WatchProgressNotifyInterval is how often a watcher that asked for
	// progress notifications gets one (default 10 minutes, as etcd's
	// --watch-progress-notify-interval).
	WatchProgressNotifyInterval time.Duration
	// Logger receives state changes and errors worth a look (nil = discard).
	Logger *slog.Logger
}

// Validate reports a configuration that cannot work. It changes nothing.
func (c Config) Validate() error {
	if c.MaxRequestBytes < 0 {
		return fmt.Errorf("kvapi: negative MaxRequestBytes %d", c.MaxRequestBytes)
	}
	if c.MaxTxnOps < 0 {
		return fmt.Errorf("kvapi: negative MaxTxnOps %d", c.MaxTxnOps)
	}
	if c.LeaderLossTimeout < 0 {
		return fmt.Errorf("kvapi: negative LeaderLossTimeout %v", c.LeaderLossTimeout)
	}
	if c.RequestTimeout < 0 {
		return fmt.Errorf("kvapi: negative RequestTimeout %v", c.RequestTimeout)
	}
	if c.QuotaBytes < 0 {
		return fmt.Errorf("kvapi: negative QuotaBytes %d", c.QuotaBytes)
	}
	if c.WatchProgressNotifyInterval < 0 {
		return fmt.Errorf("kvapi: negative WatchProgressNotifyInterval %v", c.WatchProgressNotifyInterval)
	}
	return c.AutoCompaction.Validate()
}

func (c Config) withDefaults() Config {
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if c.MaxTxnOps == 0 {
		c.MaxTxnOps = DefaultMaxTxnOps
	}
	if c.QuotaBytes == 0 {
		c.QuotaBytes = DefaultQuotaBytes
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.LeaderLossTimeout == 0 {
		c.LeaderLossTimeout = DefaultLeaderLossTimeout
	}
	if c.WatchProgressNotifyInterval == 0 {
		c.WatchProgressNotifyInterval = DefaultWatchProgressNotifyInterval
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Server implements etcd's gRPC services over a store and a replicator.
type Server struct {
	cfg     Config
	store   *mvcc.Store
	rep     Replicator
	cluster Cluster
	watch   *watchHub        // feeds watch streams from the apply path
	lessor  *lessor          // lease deadlines and expiry
	client  *clientv3.Client // this member's own client, for Lock and Election
	auth    *auth.Store      // see authctx.go
	sm      atomic.Pointer[StateMachine]

	requireLeader requireLeader // open streams that need a leader

	ops         opCounters    // reads served (Stats)
	leaseCounts leaseCounters // keepalives served, expiries (Stats)
}

// NewServer returns the services. store must be the store that the state
// machine fed by rep applies to.
func NewServer(cfg Config, store *mvcc.Store, rep Replicator, cluster Cluster) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg.withDefaults(), store: store, rep: rep, cluster: cluster, auth: cfg.Auth}
	if s.auth == nil {
		a, err := auth.New(auth.Config{Logger: s.cfg.Logger})
		if err != nil {
			return nil, err
		}
		s.auth = a
	}
	s.watch = newWatchHub(s)
	s.lessor = newLessor(s)
	return s, nil
}

// UseClient gives the services a client connected to this member; the Lock
// and Election services are built on it (as etcd builds them on its own
// client). Call it before serving.
func (s *Server) UseClient(c *clientv3.Client) { s.client = c }

// Run runs the services' background work until ctx ends: the watch hub, the
// lessor (lease expiry and checkpoints, on the leader), auto-compaction (on
// the leader) and the leader monitor that ends require-leader streams.
func (s *Server) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { s.watch.run(ctx) })
	wg.Go(func() { s.lessor.run(ctx) })
	wg.Go(func() { s.runCompactor(ctx) })
	wg.Go(func() { s.monitorLeader(ctx) })
	wg.Wait()
}

// Register adds the services to a gRPC server.
func (s *Server) Register(g *grpc.Server) {
	pb.RegisterKVServer(g, kvServer{Server: s})
	pb.RegisterMaintenanceServer(g, maintenanceServer{Server: s})
	pb.RegisterClusterServer(g, clusterServer{Server: s})
	s.registerWatch(g)
	s.registerLease(g)
	s.registerLockElection(g)
	s.registerAuth(g)
}

// streamWorkers is the number of goroutines gRPC keeps for serving calls;
// calls beyond them (blocked in raft, for instance) get a goroutine each.
const streamWorkers = 64

// ServerOptions returns the gRPC server options the services need (message
// size limits matching MaxRequestBytes, as etcd sets them).
func (s *Server) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ForceServerCodecV2(Codec),
		grpc.ChainUnaryInterceptor(s.unaryRequireLeader),
		grpc.ChainStreamInterceptor(s.streamRequireLeader),
		grpc.MaxRecvMsgSize(s.cfg.MaxRequestBytes + GRPCOverheadBytes),
		grpc.MaxSendMsgSize(1<<31 - 1),
		// Long-lived workers serve the streams: a fresh goroutine per call
		// grew its stack on every call (stack copying was 18% of a node's
		// CPU under serializable gets).
		grpc.NumStreamWorkers(streamWorkers),
	}
}

// header returns a response header for revision rev.
func (s *Server) header(rev int64) *pb.ResponseHeader {
	_, term := s.cluster.LeaderTerm()
	return &pb.ResponseHeader{
		ClusterId: s.cluster.ClusterID(),
		MemberId:  s.cluster.MemberID(),
		Revision:  rev,
		RaftTerm:  term,
	}
}

// fillHeader completes a header the store set (it sets only the revision).
func (s *Server) fillHeader(h **pb.ResponseHeader) {
	rev := int64(0)
	if *h != nil {
		rev = (*h).Revision
	}
	*h = s.header(rev)
}

// propose replicates r and returns the applied response.
func (s *Server) propose(ctx context.Context, r *pb.InternalRaftRequest) (any, error) {
	data, err := proto.Marshal(r)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "etcdserver: encode request: %v", err)
	}
	if len(data) > s.cfg.MaxRequestBytes {
		return nil, rpctypes.ErrGRPCRequestTooLarge
	}
	v, err := s.replicate(ctx, data)
	if err != nil {
		return nil, togRPCError(ctx, err)
	}
	res, ok := v.(*result)
	if !ok {
		return nil, status.Errorf(codes.Internal, "etcdserver: unexpected apply result %T", v)
	}
	if res.err != nil {
		return nil, togRPCError(ctx, res.err)
	}
	return res.resp, nil
}

// overQuota reports whether the store holds more than the quota allows; writes
// that add data are then refused, as etcd refuses them under its NOSPACE alarm.
func (s *Server) overQuota() bool {
	return s.store.Size() >= s.cfg.QuotaBytes
}

// replicate proposes data, waiting out elections: a proposal that was
// certainly not applied (no leader to take it, or a leader change that
// orphaned it) is proposed again until it is applied or the request times out,
// as etcd's server waits for a leader instead of failing at once.
func (s *Server) replicate(ctx context.Context, data []byte) (any, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	backoff := retryBackoffMin
	for {
		v, err := s.rep.Propose(ctx, data)
		if err == nil || !(errors.Is(err, ErrNoLeader) || errors.Is(err, ErrLeaderChanged)) {
			return v, err
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
		backoff = min(2*backoff, retryBackoffMax)
	}
}

// Retry pacing while waiting for a leader.
const (
	retryBackoffMin = 5 * time.Millisecond
	retryBackoffMax = 100 * time.Millisecond
)

// readBarrier waits until a linearizable read may be served locally, for at
// most the request timeout.
func (s *Server) readBarrier(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	if err := s.rep.ReadIndex(ctx); err != nil {
		return togRPCError(ctx, err)
	}
	return nil
}

// Errors a Replicator returns (or wraps) so that clients get etcd's error for
// the condition.
var (
	ErrNoLeader      = errors.New("no leader")
	ErrTimeout       = errors.New("request timed out")
	ErrLeaderChanged = errors.New("leader changed")
	ErrStopped       = errors.New("server stopped")
)

// Errors a MembershipChanger or LeaderMover returns (or wraps) so that
// clients get etcd's error for the condition.
var (
	ErrMemberNotFound      = errors.New("member not found")
	ErrMemberExists        = errors.New("member already exists")
	ErrMemberNotLearner    = errors.New("member is not a learner")
	ErrLearnerNotReady     = errors.New("learner has not caught up with the leader")
	ErrNotLeader           = errors.New("not the leader")
	ErrTooFewVoters        = errors.New("change would leave too few voters")
	ErrBadLeaderTransferee = errors.New("target of a leadership transfer is not a voter")
)

// grpcErrors maps the sentinel errors of the store, the replicator and the
// membership calls to etcd's gRPC errors. It is the one such table: callers
// of the Cluster interfaces return these sentinels, wrapped as they like.
var grpcErrors = []struct {
	err  error
	grpc error
}{
	{mvcc.ErrCompacted, rpctypes.ErrGRPCCompacted},
	{mvcc.ErrFutureRev, rpctypes.ErrGRPCFutureRev},
	{mvcc.ErrEmptyKey, rpctypes.ErrGRPCEmptyKey},
	{mvcc.ErrKeyNotFound, rpctypes.ErrGRPCKeyNotFound},
	{mvcc.ErrValueProvided, rpctypes.ErrGRPCValueProvided},
	{mvcc.ErrLeaseProvided, rpctypes.ErrGRPCLeaseProvided},
	{mvcc.ErrTooManyOps, rpctypes.ErrGRPCTooManyOps},
	{mvcc.ErrDuplicateKey, rpctypes.ErrGRPCDuplicateKey},
	{mvcc.ErrLeaseNotFound, rpctypes.ErrGRPCLeaseNotFound},
	{mvcc.ErrLeaseExist, rpctypes.ErrGRPCLeaseExist},
	{mvcc.ErrLeaseTTLTooLarge, rpctypes.ErrGRPCLeaseTTLTooLarge},
	{mvcc.ErrInvalidSortOption, rpctypes.ErrGRPCInvalidSortOption},
	{ErrNoLeader, rpctypes.ErrGRPCNoLeader},
	{ErrLeaderChanged, rpctypes.ErrGRPCLeaderChanged},
	{ErrStopped, rpctypes.ErrGRPCStopped},
	{ErrTimeout, rpctypes.ErrGRPCTimeout},
	{ErrMemberNotFound, rpctypes.ErrGRPCMemberNotFound},
	{ErrMemberExists, rpctypes.ErrGRPCMemberExist},
	{ErrMemberNotLearner, rpctypes.ErrGRPCMemberNotLearner},
	{ErrLearnerNotReady, rpctypes.ErrGRPCLearnerNotReady},
	{ErrNotLeader, rpctypes.ErrGRPCNotLeader},
	{ErrTooFewVoters, rpctypes.ErrGRPCMemberNotEnoughStarted},
	{ErrBadLeaderTransferee, rpctypes.ErrGRPCBadLeaderTransferee},
}

// togRPCError turns an error from the store, the replicator or a membership
// call into etcd's gRPC error. A gRPC status error (one a leader returned to
// a forwarded call, say) passes through.
func togRPCError(ctx context.Context, err error) error {
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		return err
	}
	if g, ok := auth.GRPCError(err); ok {
		return g
	}
	for _, m := range grpcErrors {
		if errors.Is(err, m.err) {
			return m.grpc
		}
	}
	switch {
	case errors.Is(err, context.Canceled):
		return rpctypes.ErrGRPCCanceled
	case errors.Is(err, context.DeadlineExceeded):
		if ctx.Err() != nil {
			return rpctypes.ErrGRPCDeadlineExceeded
		}
		return rpctypes.ErrGRPCTimeout
	}
	return status.Error(codes.Unknown, err.Error())
}
