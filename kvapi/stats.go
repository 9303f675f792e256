package kvapi

import (
	"context"
	"sync/atomic"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/status"
)

// Stats are the services' counters (cumulative since NewServer) and gauges,
// as etcd's metrics of the same meaning count them. Reading them costs a few
// atomic loads: they are meant to be read when metrics are scraped.
type Stats struct {
	// Ranges counts range reads this member served: Range calls, and each
	// range inside a txn it served or applied (etcd_mvcc_range_total).
	Ranges uint64
	// Puts and Deletes count the puts and delete-ranges this member applied,
	// txns included (etcd_mvcc_put_total, etcd_mvcc_delete_total).
	Puts    uint64
	Deletes uint64
	// Txns counts the transactions of more than one operation this member
	// applied or served, as etcd counts them (etcd_mvcc_txn_total).
	Txns uint64

	// WatchStreams and Watchers are the open watch streams and their
	// watchers; SlowWatchers are the watchers that are catching up from
	// history instead of being fed live (etcd_debugging_mvcc_*).
	WatchStreams int64
	Watchers     int64
	SlowWatchers int64
	// WatchEvents counts events sent to watchers.
	WatchEvents uint64

	// LeasesGranted and LeasesRevoked count grants and revokes this member
	// applied; LeasesRenewed counts keepalives it served; LeasesExpired
	// counts leases it revoked on expiry as the leader.
	LeasesGranted uint64
	LeasesRevoked uint64
	LeasesRenewed uint64
	LeasesExpired uint64
}

// opCounters are the operation counters of the apply path (StateMachine) or
// of the read path (Server).
type opCounters struct {
	ranges, puts, deletes, txns  atomic.Uint64
	leasesGranted, leasesRevoked atomic.Uint64
}

// countTxn counts the operations a txn ran (its response has one entry per
// operation of the branch taken), as etcd counts a txn's operations.
func (c *opCounters) countTxn(resp *pb.TxnResponse) {
	var n txnOps
	n.add(resp)
	if n.ranges > 0 {
		c.ranges.Add(n.ranges)
	}
	if n.puts > 0 {
		c.puts.Add(n.puts)
	}
	if n.deletes > 0 {
		c.deletes.Add(n.deletes)
	}
	if n.ranges+n.puts+n.deletes > 1 {
		c.txns.Add(1)
	}
}

// txnOps counts the operations of a txn response, nested txns included.
type txnOps struct{ ranges, puts, deletes uint64 }

func (n *txnOps) add(t *pb.TxnResponse) {
	for _, op := range t.Responses {
		switch r := op.Response.(type) {
		case *pb.ResponseOp_ResponseRange:
			n.ranges++
		case *pb.ResponseOp_ResponsePut:
			n.puts++
		case *pb.ResponseOp_ResponseDeleteRange:
			n.deletes++
		case *pb.ResponseOp_ResponseTxn:
			if r.ResponseTxn != nil {
				n.add(r.ResponseTxn)
			}
		}
	}
}

// watchGauges are the watch hub's counts, kept up to date as streams and
// watchers come and go.
type watchGauges struct {
	streams, watchers, synced atomic.Int64
	events                    atomic.Uint64
}

// leaseCounters are the lease counts of the serving side.
type leaseCounters struct {
	renewed, expired atomic.Uint64
}

// Stats returns the current counts.
func (s *Server) Stats() Stats {
	st := Stats{
		Ranges:        s.ops.ranges.Load(),
		Txns:          s.ops.txns.Load(),
		WatchStreams:  s.watch.gauges.streams.Load(),
		Watchers:      s.watch.gauges.watchers.Load(),
		WatchEvents:   s.watch.gauges.events.Load(),
		LeasesRenewed: s.leaseCounts.renewed.Load(),
		LeasesExpired: s.leaseCounts.expired.Load(),
	}
	st.SlowWatchers = max(st.Watchers-s.watch.gauges.synced.Load(), 0)
	if sm := s.sm.Load(); sm != nil {
		st.Ranges += sm.ops.ranges.Load()
		st.Puts = sm.ops.puts.Load()
		st.Deletes = sm.ops.deletes.Load()
		st.Txns += sm.ops.txns.Load()
		st.LeasesGranted = sm.ops.leasesGranted.Load()
		st.LeasesRevoked = sm.ops.leasesRevoked.Load()
	}
	return st
}

// Alarms lists this member's active alarms: NOSPACE while the store is over
// its quota (see Maintenance.Alarm).
func (s *Server) Alarms() []pb.AlarmType {
	if s.overQuota() {
		return []pb.AlarmType{pb.AlarmType_NOSPACE}
	}
	return nil
}

// QuotaBytes returns the store size above which writes are refused.
func (s *Server) QuotaBytes() int64 { return s.cfg.QuotaBytes }

// MaxRequestBytes returns the largest request the services accept.
func (s *Server) MaxRequestBytes() int { return s.cfg.MaxRequestBytes }

// CheckRead runs the read that etcd's health checks run: a linearizable read
// barrier (unless serializable), bounded by the request timeout. The error is
// etcd's error message for the failure ("etcdserver: no leader", ...).
func (s *Server) CheckRead(ctx context.Context, serializable bool) error {
	if serializable {
		return nil
	}
	if err := s.readBarrier(ctx); err != nil {
		return healthError{status.Convert(err).Message()}
	}
	return nil
}

// healthError carries etcd's message for a failed health read.
type healthError struct{ msg string }

func (e healthError) Error() string { return e.msg }
