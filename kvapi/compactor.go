package kvapi

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/meshkv/meshkv/kvapi/mvcc"
)

// Auto-compaction modes, as etcd's --auto-compaction-mode.
const (
	CompactionPeriodic = "periodic"
	CompactionRevision = "revision"
)

// AutoCompaction bounds the MVCC history kept in memory, as etcd's
// --auto-compaction-mode and --auto-compaction-retention do. Only the leader
// compacts; the compaction is replicated like a client's.
type AutoCompaction struct {
	// Mode is CompactionPeriodic, CompactionRevision, or "" for none.
	Mode string
	// Period is the history kept in periodic mode: every compaction keeps
	// at least the revisions of the last Period. The leader compacts every
	// Period, or every hour when Period is longer.
	Period time.Duration
	// Revisions is the history kept in revision mode: every five minutes the
	// leader compacts to the current revision minus Revisions.
	Revisions int64
}

// ParseAutoCompaction reads etcd's flag pair: in periodic mode the retention is
// a duration ("30m", "72h") or a number of hours; in revision mode a number of
// revisions. A zero retention disables compaction.
func ParseAutoCompaction(mode, retention string) (AutoCompaction, error) {
	if retention == "" || retention == "0" {
		return AutoCompaction{}, nil
	}
	n, numErr := strconv.ParseInt(retention, 10, 64)
	switch mode {
	case CompactionRevision:
		if numErr != nil || n < 0 {
			return AutoCompaction{}, fmt.Errorf("revision auto-compaction retention %q: want a number of revisions", retention)
		}
		return AutoCompaction{Mode: mode, Revisions: n}, nil
	case CompactionPeriodic:
		if numErr == nil {
			if n < 0 {
				return AutoCompaction{}, fmt.Errorf("negative auto-compaction retention %q", retention)
			}
			return AutoCompaction{Mode: mode, Period: time.Duration(n) * time.Hour}, nil
		}
		d, err := time.ParseDuration(retention)
		if err != nil || d < 0 {
			return AutoCompaction{}, fmt.Errorf("periodic auto-compaction retention %q: want a duration such as 30m or a number of hours", retention)
		}
		return AutoCompaction{Mode: mode, Period: d}, nil
	}
	return AutoCompaction{}, fmt.Errorf("auto-compaction mode %q: want %q or %q", mode, CompactionPeriodic, CompactionRevision)
}

// Validate reports a setting that cannot work.
func (a AutoCompaction) Validate() error {
	switch a.Mode {
	case "":
	case CompactionPeriodic:
		if a.Period <= 0 {
			return errors.New("kvapi: periodic auto-compaction needs a positive period")
		}
	case CompactionRevision:
		if a.Revisions <= 0 {
			return errors.New("kvapi: revision auto-compaction needs a positive retention")
		}
	default:
		return fmt.Errorf("kvapi: unknown auto-compaction mode %q", a.Mode)
	}
	return nil
}

// revisionCompactInterval is how often revision mode compacts, as etcd.
const revisionCompactInterval = 5 * time.Minute

// runCompactor compacts as cfg.AutoCompaction says while this member leads,
// until ctx ends.
func (s *Server) runCompactor(ctx context.Context) {
	ac := s.cfg.AutoCompaction
	var sample, every time.Duration
	switch ac.Mode {
	case CompactionPeriodic:
		every = min(ac.Period, time.Hour)
		sample = every / 10
	case CompactionRevision:
		every, sample = revisionCompactInterval, revisionCompactInterval
	default:
		return
	}
	// In periodic mode revs[0] is the revision about Period ago: one sample
	// per interval, kept for Period.
	keep := int(ac.Period/max(sample, 1)) + 1
	var revs []int64
	t := time.NewTicker(sample)
	defer t.Stop()
	start := time.Now()
	lastDone, lastRev := start, int64(0)
	for {
		if ac.Mode == CompactionPeriodic {
			revs = append(revs, s.store.Rev())
			if len(revs) > keep {
				revs = revs[1:]
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !s.isLeader() {
			continue
		}
		var rev int64
		switch ac.Mode {
		case CompactionPeriodic:
			// The first compaction waits a whole period, later ones an interval.
			wait := every
			if lastRev == 0 {
				wait = ac.Period
			}
			if time.Since(lastDone) < wait {
				continue
			}
			rev = revs[0]
		case CompactionRevision:
			rev = s.store.Rev() - ac.Revisions
		}
		if rev <= 0 || rev == lastRev || rev <= s.store.CompactRev() {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, every)
		_, err := s.propose(cctx, &pb.InternalRaftRequest{Compaction: &pb.CompactionRequest{Revision: rev}})
		cancel()
		if err != nil && !errors.Is(err, errCompactedGRPC) {
			s.cfg.Logger.Warn("auto-compaction failed", "revision", rev, "err", err)
			continue
		}
		s.cfg.Logger.Info("auto-compacted", "revision", rev, "mode", ac.Mode)
		lastRev, lastDone = rev, time.Now()
	}
}

// errCompactedGRPC is what propose returns when the revision was compacted
// already (by a client, or by an earlier leader).
var errCompactedGRPC = togRPCError(context.Background(), mvcc.ErrCompacted)

// isLeader reports whether this member currently leads.
func (s *Server) isLeader() bool {
	leader, _ := s.cluster.LeaderTerm()
	return leader != 0 && leader == s.cluster.MemberID()
}
