package kvapi

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/meshkv/meshkv/kvapi/mvcc"
)

func TestParseAutoCompaction(t *testing.T) {
	for _, tc := range []struct {
		mode, retention string
		want            AutoCompaction
		bad             bool
	}{
		{"periodic", "1", AutoCompaction{Mode: "periodic", Period: time.Hour}, false},
		{"periodic", "30m", AutoCompaction{Mode: "periodic", Period: 30 * time.Minute}, false},
		{"revision", "1000", AutoCompaction{Mode: "revision", Revisions: 1000}, false},
		{"periodic", "0", AutoCompaction{}, false},
		{"", "", AutoCompaction{}, false},
		{"revision", "10m", AutoCompaction{}, true},
		{"hourly", "1", AutoCompaction{}, true},
		{"periodic", "soon", AutoCompaction{}, true},
	} {
		got, err := ParseAutoCompaction(tc.mode, tc.retention)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("Parse(%q, %q) = %+v, %v; want %+v, error %v", tc.mode, tc.retention, got, err, tc.want, tc.bad)
		}
	}
}

// compactorServer is a Server over a local log, without gRPC, for driving
// runCompactor in a synctest bubble.
func compactorServer(t *testing.T, ac AutoCompaction) (*Server, *mvcc.Store) {
	t.Helper()
	store := mvcc.New()
	srv, err := NewServer(Config{AutoCompaction: ac}, store, &localReplicator{sm: NewStateMachine(store)}, fixedCluster{})
	if err != nil {
		t.Fatal(err)
	}
	return srv, store
}

// startCompactor runs the compactor until the returned stop is called.
func startCompactor(s *Server) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.runCompactor(ctx); close(done) }()
	return func() { cancel(); <-done }
}

func putN(t *testing.T, s *Server, n int) {
	t.Helper()
	for range n {
		if _, err := s.propose(context.Background(), &pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte("k"), Value: []byte("v")}}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestPeriodicCompactionKeepsOnePeriod(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, store := compactorServer(t, AutoCompaction{Mode: CompactionPeriodic, Period: 10 * time.Minute})
		stop := startCompactor(s)
		defer stop()

		// Ten writes a minute for 25 minutes.
		revAt := map[time.Duration]int64{} // the revision at each minute
		start := time.Now()
		for range 25 {
			putN(t, s, 10)
			revAt[time.Since(start)] = store.Rev()
			time.Sleep(time.Minute)
			synctest.Wait()
			elapsed := time.Since(start)
			if c := store.CompactRev(); c > 0 {
				// Never compacts away revisions younger than the period.
				if keep := revAt[elapsed-10*time.Minute]; c > keep {
					t.Fatalf("at %v compacted to %d, but the revision 10m ago was %d", elapsed, c, keep)
				}
			} else if elapsed > 12*time.Minute {
				t.Fatalf("no compaction after %v with a 10m period", elapsed)
			}
		}
		// Compactions run every period, each keeping one period: at most two
		// periods of history remain.
		if c := store.CompactRev(); c < revAt[5*time.Minute] {
			t.Fatalf("after 25m compacted only to %d, want at least the revision of minute 5 (%d)", c, revAt[5*time.Minute])
		}
	})
}

func TestRevisionCompaction(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, store := compactorServer(t, AutoCompaction{Mode: CompactionRevision, Revisions: 100})
		stop := startCompactor(s)
		defer stop()
		putN(t, s, 500)
		time.Sleep(revisionCompactInterval + time.Second)
		synctest.Wait()
		if got, want := store.CompactRev(), store.Rev()-100; got != want {
			t.Fatalf("compact revision = %d, want current-100 = %d", got, want)
		}
	})
}

func TestNoCompactionWhenNotLeader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := mvcc.New()
		s, err := NewServer(Config{AutoCompaction: AutoCompaction{Mode: CompactionRevision, Revisions: 1}},
			store, &localReplicator{sm: NewStateMachine(store)}, followerCluster{})
		if err != nil {
			t.Fatal(err)
		}
		stop := startCompactor(s)
		defer stop()
		putN(t, s, 50)
		time.Sleep(3 * revisionCompactInterval)
		synctest.Wait()
		if c := store.CompactRev(); c != 0 {
			t.Fatalf("a follower compacted to %d", c)
		}
	})
}

// followerCluster is a member that never leads.
type followerCluster struct{ fixedCluster }

func (followerCluster) RaftStatus() RaftStatus {
	return RaftStatus{Leader: 0x99, Term: 2}
}

func (followerCluster) LeaderTerm() (uint64, uint64) { return 0x99, 2 }
