package metrics

import (
	"runtime"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Server is the node as its etcd-named metrics see it.
type Server interface {
	// ServerStats returns the node's current numbers. It is called once per
	// scrape and must not block.
	ServerStats() ServerStats
}

// ServerStats are a node's numbers at one instant. Counters are cumulative
// since the node started.
type ServerStats struct {
	MemberID  uint64
	HasLeader bool
	IsLeader  bool
	IsLearner bool
	// LeaderChanges counts the leaders this member learnt of.
	LeaderChanges uint64
	// CommitIndex and AppliedIndex are the raft log's committed and applied
	// indexes (etcd reports them as proposals committed and applied).
	CommitIndex  uint64
	AppliedIndex uint64
	Term         uint64
	// PendingProposals are proposals waiting to be applied; ProposalsFailed
	// counts proposals that failed (dropped for want of a leader, or lost
	// to a leader change).
	PendingProposals int
	ProposalsFailed  uint64
	// LogEntries is the length of the in-memory raft log above the newest
	// snapshot; SnapshotsTaken and SnapshotsRestored count local snapshots
	// and snapshots received from a leader.
	LogEntries        uint64
	SnapshotsTaken    uint64
	SnapshotsRestored uint64
	// PendingReads are linearizable reads waiting for their read index;
	// ReadRounds counts raft read-index rounds.
	PendingReads int
	ReadRounds   uint64

	// StoreBytes is the store's size; QuotaBytes the size above which writes
	// are refused; Keys the live keys; Revision and CompactRevision the
	// store's revisions.
	StoreBytes      int64
	QuotaBytes      int64
	Keys            int64
	Revision        int64
	CompactRevision int64

	// Operations, as etcd counts them (see kvapi.Stats).
	Ranges, Puts, Deletes, Txns uint64

	WatchStreams, Watchers, SlowWatchers int64
	WatchEvents                          uint64

	LeasesGranted, LeasesRevoked, LeasesRenewed, LeasesExpired uint64
}

// serverCollector turns ServerStats into metrics at scrape time.
type serverCollector struct {
	src   Server
	vers  Versions
	bytes *byteCounts
	d     serverDescs
}

type serverDescs struct {
	hasLeader, isLeader, isLearner, leaderChanges            *prometheus.Desc
	committed, applied, pending, failed                      *prometheus.Desc
	id, version, goVersion, clusterVersion                   *prometheus.Desc
	quota, dbSize, dbInUse, keys, rev, compactRev            *prometheus.Desc
	ranges, puts, deletes, txns                              *prometheus.Desc
	watchStreams, watchers, slowWatchers, events             *prometheus.Desc
	granted, revoked, renewed, expired                       *prometheus.Desc
	grpcSent, grpcReceived                                   *prometheus.Desc
	term, logEntries, snapTaken, snapRestored, reads, rounds *prometheus.Desc
	buildInfo                                                *prometheus.Desc
}

func newServerCollector(src Server, vers Versions, bytes *byteCounts) *serverCollector {
	g := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &serverCollector{src: src, vers: vers, bytes: bytes, d: serverDescs{
		hasLeader:      g("etcd_server_has_leader", "1 while this member knows a leader, 0 otherwise."),
		isLeader:       g("etcd_server_is_leader", "1 while this member is the leader, 0 otherwise."),
		isLearner:      g("etcd_server_is_learner", "1 while this member is a learner (a non-voting member), 0 otherwise."),
		leaderChanges:  g("etcd_server_leader_changes_seen_total", "Leaders this member has learnt of since it started."),
		committed:      g("etcd_server_proposals_committed_total", "Raft log index committed (every committed entry counts, as in etcd)."),
		applied:        g("etcd_server_proposals_applied_total", "Raft log index applied to the store."),
		pending:        g("etcd_server_proposals_pending", "Proposals waiting to be applied."),
		failed:         g("etcd_server_proposals_failed_total", "Proposals that failed: dropped for want of a leader, or lost to a leader change."),
		id:             g("etcd_server_id", "The member id in hexadecimal, in the server_id label.", "server_id"),
		version:        g("etcd_server_version", "The etcd API version served, in the server_version label.", "server_version"),
		goVersion:      g("etcd_server_go_version", "The Go version the server was built with, in the server_go_version label.", "server_go_version"),
		clusterVersion: g("etcd_cluster_version", "The cluster version, in the cluster_version label.", "cluster_version"),
		quota:          g("etcd_server_quota_backend_bytes", "Store size in bytes above which writes are refused (--quota-backend-bytes)."),
		dbSize:         g("etcd_mvcc_db_total_size_in_bytes", "Size of the in-memory store in bytes: keys and values of every retained version plus bookkeeping."),
		dbInUse:        g("etcd_mvcc_db_total_size_in_use_in_bytes", "Size of the in-memory store in bytes in use (the whole store: memory has no free pages)."),
		keys:           g("etcd_debugging_mvcc_keys_total", "Live keys in the store."),
		rev:            g("etcd_debugging_mvcc_current_revision", "The store's current revision."),
		compactRev:     g("etcd_debugging_mvcc_compact_revision", "The revision of the last compaction."),
		ranges:         g("etcd_mvcc_range_total", "Range reads served or applied by this member, txn ranges included."),
		puts:           g("etcd_mvcc_put_total", "Puts applied by this member, txn puts included."),
		deletes:        g("etcd_mvcc_delete_total", "Delete-ranges applied by this member, txn deletes included."),
		txns:           g("etcd_mvcc_txn_total", "Transactions of more than one operation served or applied by this member."),
		watchStreams:   g("etcd_debugging_mvcc_watch_stream_total", "Open watch streams."),
		watchers:       g("etcd_debugging_mvcc_watcher_total", "Watchers on the open watch streams."),
		slowWatchers:   g("etcd_debugging_mvcc_slow_watcher_total", "Watchers catching up from history instead of being fed live."),
		events:         g("etcd_debugging_mvcc_events_total", "Events sent to watchers."),
		granted:        g("etcd_debugging_lease_granted_total", "Leases granted (applied by this member)."),
		revoked:        g("etcd_debugging_lease_revoked_total", "Leases revoked (applied by this member)."),
		renewed:        g("etcd_debugging_lease_renewed_total", "Lease keepalives served by this member."),
		expired:        g("etcd_debugging_server_lease_expired_total", "Leases this member revoked on expiry as the leader."),
		grpcSent:       g("etcd_network_client_grpc_sent_bytes_total", "Bytes of gRPC messages sent to clients."),
		grpcReceived:   g("etcd_network_client_grpc_received_bytes_total", "Bytes of gRPC messages received from clients."),
		term:           g("meshkv_raft_term", "The raft term."),
		logEntries:     g("meshkv_raft_log_entries", "Committed raft log entries held in memory above the newest snapshot."),
		snapTaken:      g("meshkv_raft_snapshots_taken_total", "Snapshots this member took, each followed by a log compaction."),
		snapRestored:   g("meshkv_raft_snapshots_restored_total", "Snapshots received from a leader and installed."),
		reads:          g("meshkv_raft_pending_reads", "Linearizable reads waiting for their read index."),
		rounds:         g("meshkv_raft_read_index_rounds_total", "Raft read-index rounds (linearizable reads are batched into them)."),
		buildInfo:      g("meshkv_build_info", "meshkv's own version, in the version label.", "version"),
	}}
}

func (c *serverCollector) Describe(ch chan<- *prometheus.Desc) {
	d := &c.d
	for _, x := range []*prometheus.Desc{
		d.hasLeader, d.isLeader, d.isLearner, d.leaderChanges,
		d.committed, d.applied, d.pending, d.failed,
		d.id, d.version, d.goVersion, d.clusterVersion,
		d.quota, d.dbSize, d.dbInUse, d.keys, d.rev, d.compactRev,
		d.ranges, d.puts, d.deletes, d.txns,
		d.watchStreams, d.watchers, d.slowWatchers, d.events,
		d.granted, d.revoked, d.renewed, d.expired,
		d.grpcSent, d.grpcReceived,
		d.term, d.logEntries, d.snapTaken, d.snapRestored, d.reads, d.rounds,
		d.buildInfo,
	} {
		ch <- x
	}
}

func (c *serverCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.ServerStats()
	d := &c.d
	gauge := func(desc *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, labels...)
	}
	counter := func(desc *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(v))
	}
	gauge(d.hasLeader, b2f(s.HasLeader))
	gauge(d.isLeader, b2f(s.IsLeader))
	gauge(d.isLearner, b2f(s.IsLearner))
	counter(d.leaderChanges, s.LeaderChanges)
	// etcd exports these two as gauges despite their names.
	gauge(d.committed, float64(s.CommitIndex))
	gauge(d.applied, float64(s.AppliedIndex))
	gauge(d.pending, float64(s.PendingProposals))
	counter(d.failed, s.ProposalsFailed)
	gauge(d.id, 1, strconv.FormatUint(s.MemberID, 16))
	gauge(d.version, 1, c.vers.Server)
	gauge(d.goVersion, 1, runtime.Version())
	gauge(d.clusterVersion, 1, c.vers.Cluster)
	gauge(d.quota, float64(s.QuotaBytes))
	gauge(d.dbSize, float64(s.StoreBytes))
	gauge(d.dbInUse, float64(s.StoreBytes))
	gauge(d.keys, float64(s.Keys))
	gauge(d.rev, float64(s.Revision))
	gauge(d.compactRev, float64(s.CompactRevision))
	counter(d.ranges, s.Ranges)
	counter(d.puts, s.Puts)
	counter(d.deletes, s.Deletes)
	counter(d.txns, s.Txns)
	gauge(d.watchStreams, float64(s.WatchStreams))
	gauge(d.watchers, float64(s.Watchers))
	gauge(d.slowWatchers, float64(s.SlowWatchers))
	counter(d.events, s.WatchEvents)
	counter(d.granted, s.LeasesGranted)
	counter(d.revoked, s.LeasesRevoked)
	counter(d.renewed, s.LeasesRenewed)
	counter(d.expired, s.LeasesExpired)
	counter(d.grpcSent, c.bytes.sent.Load())
	counter(d.grpcReceived, c.bytes.received.Load())
	gauge(d.term, float64(s.Term))
	gauge(d.logEntries, float64(s.LogEntries))
	counter(d.snapTaken, s.SnapshotsTaken)
	counter(d.snapRestored, s.SnapshotsRestored)
	gauge(d.reads, float64(s.PendingReads))
	counter(d.rounds, s.ReadRounds)
	gauge(d.buildInfo, 1, c.vers.Meshkv)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
