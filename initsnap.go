package meshkv

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/meshkv/meshkv/internal/backup"
	"github.com/meshkv/meshkv/internal/etcdsnap"
	"github.com/meshkv/meshkv/kvapi/mvcc"
)

// ErrInitialSnapshotJoin is reported (by Start, or by Err) when a node with
// Config.InitialSnapshot finds an existing cluster of its name on the mesh:
// it would join that cluster and take the cluster's state, not the file's.
// Start it with another cluster name to found a new cluster from the file,
// or without the file to join.
var ErrInitialSnapshotJoin = errors.New("meshkv: the initial snapshot can only found a new cluster, and this node is joining an existing one")

// ErrInitialSnapshotAuth is returned by Start for an initial snapshot whose
// auth is enabled: its keys were protected by users and roles that this
// node would not enforce.
var ErrInitialSnapshotAuth = errors.New("meshkv: the initial snapshot has auth enabled, which meshkv does not enforce yet; run `etcdctl auth disable` on the source and take a new snapshot")

// loadInitialStore returns the store a node starts with: empty, or the state
// of cfg.InitialSnapshot.
func loadInitialStore(cfg Config, log *slog.Logger) (*mvcc.Store, error) {
	if cfg.InitialSnapshot == "" {
		return mvcc.New(), nil
	}
	start := time.Now()
	st, info, err := backup.LoadFile(cfg.InitialSnapshot, etcdsnap.ReadOptions{})
	if err != nil {
		return nil, fmt.Errorf("meshkv: initial snapshot: %w", err)
	}
	if err := initialAuth(info.Auth, log); err != nil {
		return nil, err
	}
	log.Info("loaded initial snapshot", "file", cfg.InitialSnapshot, "revision", st.Rev(),
		"compact-revision", st.CompactRev(), "versions", info.KVs, "leases", info.Leases,
		"storage-version", info.StorageVersion, "took", time.Since(start).Round(time.Millisecond))
	return st, nil
}

// initialAuth takes the auth state of an initial snapshot. It is the hook
// for the auth store: until meshkv enforces auth, a file with auth enabled
// is refused (serving its keys to anyone would lift their protection), and
// the users and roles of a file with auth disabled are dropped with a
// warning.
func initialAuth(a *etcdsnap.Auth, log *slog.Logger) error {
	if a == nil {
		return nil
	}
	if a.Enabled {
		return fmt.Errorf("%w (%d users, %d roles)", ErrInitialSnapshotAuth, len(a.Users), len(a.Roles))
	}
	if len(a.Users) > 0 || len(a.Roles) > 0 {
		log.Warn("the initial snapshot's auth users and roles are not restored: meshkv does not support auth yet",
			"users", len(a.Users), "roles", len(a.Roles))
	}
	return nil
}
