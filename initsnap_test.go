package meshkv_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/authpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshkv/meshkv"
	"github.com/meshkv/meshkv/internal/backup"
	"github.com/meshkv/meshkv/internal/etcdsnap"
	"github.com/meshkv/meshkv/kvapi/auth"
	"github.com/meshkv/meshkv/kvapi/mvcc"
)

// fillNode writes a history worth restoring through cli: overwrites,
// deletes, a txn of several keys, leases with keys, a compaction, and
// writes after it. It returns the lease ids.
func fillNode(t *testing.T, cli *clientv3.Client) []clientv3.LeaseID {
	t.Helper()
	ctx := t.Context()
	var leases []clientv3.LeaseID
	for _, ttl := range []int64{300, 600} {
		l, err := cli.Grant(ctx, ttl)
		if err != nil {
			t.Fatal(err)
		}
		leases = append(leases, l.ID)
	}
	for i := range 60 {
		var opts []clientv3.OpOption
		if i%7 == 0 {
			opts = append(opts, clientv3.WithLease(leases[i%2]))
		}
		if _, err := cli.Put(ctx, fmt.Sprintf("k%02d", i%25), fmt.Sprint("v", i), opts...); err != nil {
			t.Fatal(err)
		}
		if i%9 == 4 {
			if _, err := cli.Delete(ctx, fmt.Sprintf("k%02d", (i+3)%25)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := cli.Txn(ctx).Then(clientv3.OpPut("t1", "a"), clientv3.OpPut("t2", "b"), clientv3.OpDelete("k01")).Commit(); err != nil {
		t.Fatal(err)
	}
	st, err := cli.Get(ctx, "k00")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, st.Header.Revision-20); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := cli.Put(ctx, fmt.Sprint("after", i), "x", clientv3.WithLease(leases[0])); err != nil {
			t.Fatal(err)
		}
	}
	return leases
}

// dump is what a client can see of a store: every key at every revision
// from the compact revision on, and every lease with its TTL and keys.
type dump struct {
	rev, compact int64
	byRev        map[int64][]string
	leases       map[clientv3.LeaseID]string
}

func dumpOf(t *testing.T, cli *clientv3.Client, serializable bool) dump {
	t.Helper()
	ctx := t.Context()
	var opts []clientv3.OpOption
	if serializable {
		opts = append(opts, clientv3.WithSerializable())
	}
	h, err := cli.HashKV(ctx, cli.Endpoints()[0], 0)
	if err != nil {
		t.Fatal(err)
	}
	d := dump{rev: h.Header.Revision, compact: h.CompactRevision, byRev: map[int64][]string{}, leases: map[clientv3.LeaseID]string{}}
	for rev := max(d.compact, 1); rev <= d.rev; rev++ {
		resp, err := cli.Get(ctx, "\x00", append(opts, clientv3.WithFromKey(), clientv3.WithRev(rev))...)
		if err != nil {
			t.Fatalf("get at %d: %v", rev, err)
		}
		for _, kv := range resp.Kvs {
			d.byRev[rev] = append(d.byRev[rev], fmt.Sprintf("%s=%s c%d m%d v%d l%x", kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version, kv.Lease))
		}
	}
	if d.compact > 1 {
		if _, err := cli.Get(ctx, "k", append(opts, clientv3.WithRev(d.compact-1))...); !errors.Is(err, rpctypes.ErrCompacted) {
			t.Fatalf("get below the compact revision: %v", err)
		}
	}
	ls, err := cli.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls.Leases {
		ttl, err := cli.TimeToLive(ctx, l.ID, clientv3.WithAttachedKeys())
		if err != nil {
			t.Fatal(err)
		}
		keys := make([]string, len(ttl.Keys))
		for i, k := range ttl.Keys {
			keys[i] = string(k)
		}
		slices.Sort(keys)
		d.leases[l.ID] = fmt.Sprintf("granted %d keys %v", ttl.GrantedTTL, keys)
	}
	return d
}

func sameDump(t *testing.T, got, want dump) {
	t.Helper()
	if got.rev != want.rev || got.compact != want.compact {
		t.Fatalf("revision %d, compact %d; want %d, %d", got.rev, got.compact, want.rev, want.compact)
	}
	for rev, kvs := range want.byRev {
		if !slices.Equal(got.byRev[rev], kvs) {
			t.Fatalf("at revision %d:\n got %v\nwant %v", rev, got.byRev[rev], kvs)
		}
	}
	if !reflect.DeepEqual(got.leases, want.leases) {
		t.Fatalf("leases %v, want %v", got.leases, want.leases)
	}
}

// saveSnapshot does what etcdctl snapshot save does, into a file.
func saveSnapshot(t *testing.T, cli *clientv3.Client) string {
	t.Helper()
	rc, err := cli.Snapshot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "snapshot.db")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// A node started from another node's snapshot holds the same keys,
// revisions, compaction and leases, and goes on from there.
func TestInitialSnapshotStandalone(t *testing.T) {
	src := startNode(t, meshkv.Config{})
	fillNode(t, src.Client())
	path := saveSnapshot(t, src.Client())
	want := dumpOf(t, src.Client(), false)

	dst := startNode(t, meshkv.Config{InitialSnapshot: path})
	sameDump(t, dumpOf(t, dst.Client(), false), want)
	put, err := dst.Client().Put(t.Context(), "next", "1")
	if err != nil {
		t.Fatal(err)
	}
	if put.Header.Revision != want.rev+1 {
		t.Fatalf("first write after the restore at revision %d, want %d", put.Header.Revision, want.rev+1)
	}
}

// Files that cannot found a node are refused at Start, with the reason.
func TestInitialSnapshotRefused(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := meshkv.Start(ctx, meshkv.Config{InitialSnapshot: filepath.Join(dir, "missing.db")}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, bytes.Repeat([]byte("x"), 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := meshkv.Start(ctx, meshkv.Config{InitialSnapshot: garbage}); !errors.Is(err, etcdsnap.ErrCorrupt) {
		t.Errorf("garbage file: %v", err)
	}
	f, err := backup.Prepare(mvcc.New().Snapshot(), etcdsnap.WriteOptions{Auth: &etcdsnap.Auth{
		Enabled: true, Users: []*authpb.User{{Name: []byte("root"), Roles: []string{"root"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := f.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	authed := filepath.Join(dir, "auth.db")
	if err := os.WriteFile(authed, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	// Auth comes along: the node enforces the file's users and roles.
	nd, err := meshkv.Start(ctx, meshkv.Config{InitialSnapshot: authed})
	if err != nil {
		t.Fatalf("auth enabled: %v", err)
	}
	st, err := nd.Client().AuthStatus(ctx)
	users, uerr := nd.Client().UserList(ctx)
	nd.Close()
	if err != nil || uerr != nil || !st.Enabled || len(users.Users) != 1 || users.Users[0] != "root" {
		t.Errorf("auth from the file: status %v (%v), users %v (%v)", st, err, users, uerr)
	}
	f, err = backup.Prepare(mvcc.New().Snapshot(), etcdsnap.WriteOptions{Auth: &etcdsnap.Auth{Enabled: true}})
	if err != nil {
		t.Fatal(err)
	}
	buf.Reset()
	if _, err := f.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	noRoot := filepath.Join(dir, "noroot.db")
	if err := os.WriteFile(noRoot, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := meshkv.Start(ctx, meshkv.Config{InitialSnapshot: noRoot}); !errors.Is(err, auth.ErrCorruptSnapshot) {
		t.Errorf("auth enabled without a root user: %v", err)
	}
	err = meshkv.Config{InitialSnapshot: authed, MeshListen: "127.0.0.1:0", InitialClusterSize: 3}.Validate()
	if !errors.Is(err, meshkv.ErrInvalidConfig) {
		t.Errorf("initial snapshot with initial cluster size 3: %v", err)
	}
}
