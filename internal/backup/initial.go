package backup

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/meshkv/meshkv/internal/etcdsnap"
	"github.com/meshkv/meshkv/kvapi/auth"
	"github.com/meshkv/meshkv/kvapi/mvcc"
)

// LoadInitial returns the store a node starts with: empty for no file, or
// the state of the snapshot file path, with its auth state (nil for none).
func LoadInitial(path string, log *slog.Logger) (*mvcc.Store, *auth.Snapshot, error) {
	if path == "" {
		return mvcc.New(), nil, nil
	}
	start := time.Now()
	st, info, err := LoadFile(path, etcdsnap.ReadOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("meshkv: initial snapshot: %w", err)
	}
	authSnap, err := initialAuth(info.Auth, log)
	if err != nil {
		return nil, nil, err
	}
	log.Info("loaded initial snapshot", "file", path, "revision", st.Rev(),
		"compact-revision", st.CompactRev(), "versions", info.KVs, "leases", info.Leases,
		"storage-version", info.StorageVersion, "took", time.Since(start).Round(time.Millisecond))
	return st, authSnap, nil
}

// initialAuth returns the auth state of an initial snapshot (users with
// their password hashes, roles, permissions, enabled or not), checked as a
// raft snapshot's is; nil if the file has none.
func initialAuth(a *etcdsnap.Auth, log *slog.Logger) (*auth.Snapshot, error) {
	if a == nil {
		return nil, nil
	}
	sn, err := auth.ImportSnapshot(auth.Exported{Enabled: a.Enabled, Revision: a.Revision, Users: a.Users, Roles: a.Roles})
	if err != nil {
		return nil, fmt.Errorf("meshkv: initial snapshot: auth: %w", err)
	}
	if len(a.Users) > 0 || len(a.Roles) > 0 {
		log.Info("restored the initial snapshot's auth state", "enabled", a.Enabled, "users", len(a.Users), "roles", len(a.Roles))
	}
	return sn, nil
}
