package kvapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/metadata"

	"github.com/meshkv/meshkv/internal/backup"
	"github.com/meshkv/meshkv/internal/etcdsnap"
	"github.com/meshkv/meshkv/kvapi/auth"
	"github.com/meshkv/meshkv/kvapi/mvcc"
)

// fillForSnapshot writes keys (enough for a multi-message file), overwrites,
// deletes, a lease with keys, and a compaction.
func fillForSnapshot(t *testing.T, ts *testServer) {
	t.Helper()
	ctx := t.Context()
	lease, err := ts.cli.Grant(ctx, 120)
	if err != nil {
		t.Fatal(err)
	}
	val := bytes.Repeat([]byte("v"), 300)
	for i := range 600 {
		var opts []clientv3.OpOption
		if i%50 == 0 {
			opts = append(opts, clientv3.WithLease(lease.ID))
		}
		if _, err := ts.cli.Put(ctx, fmt.Sprintf("key/%04d", i%400), string(val), opts...); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ts.cli.Delete(ctx, "key/01", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.cli.Compact(ctx, 450); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.cli.Put(ctx, "after", "compaction"); err != nil {
		t.Fatal(err)
	}
}

// sameStoreContent fails unless got holds what want holds (lease grant
// and renewal indexes aside: they belong to the old log).
func sameStoreContent(t *testing.T, got, want *mvcc.Store) {
	t.Helper()
	h1, c1, _ := want.Hash(0)
	h2, c2, _ := got.Hash(0)
	if h1 != h2 || c1 != c2 || got.Rev() != want.Rev() || got.Size() != want.Size() {
		t.Fatalf("hash/compact/rev/size %x/%d/%d/%d, want %x/%d/%d/%d", h2, c2, got.Rev(), got.Size(), h1, c1, want.Rev(), want.Size())
	}
	wl := want.Leases()
	if len(got.Leases()) != len(wl) {
		t.Fatalf("leases %v, want %v", got.Leases(), wl)
	}
	for _, l := range wl {
		a, _ := want.Lease(l.ID)
		b, _ := got.Lease(l.ID)
		if a.TTL != b.TTL || a.RemainingTTL != b.RemainingTTL || !reflect.DeepEqual(a.Keys, b.Keys) {
			t.Fatalf("lease %x: %+v, want %+v", l.ID, b, a)
		}
	}
}

// rootAuth returns an auth store with a root user, not yet enabled, and a
// function that enables it and returns a token of root's.
func rootAuth(t *testing.T) (*auth.Store, func() string) {
	t.Helper()
	a, err := auth.New(auth.Config{BcryptCost: 4})
	if err != nil {
		t.Fatal(err)
	}
	h, err := a.HashPassword("pw")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.UserAdd(&pb.AuthUserAddRequest{Name: "root", HashedPassword: h}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.RoleAdd(&pb.AuthRoleAddRequest{Name: "root"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.UserGrantRole(&pb.AuthUserGrantRoleRequest{User: "root", Role: "root"}); err != nil {
		t.Fatal(err)
	}
	return a, func() string {
		t.Helper()
		if _, err := a.AuthEnable(); err != nil {
			t.Fatal(err)
		}
		g, err := a.Authenticate(1, &pb.InternalAuthenticateRequest{Name: "root", SimpleToken: "snapshottest"})
		if err != nil {
			t.Fatal(err)
		}
		a.Applied(1)
		tok, err := a.Token(g)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
}

// etcdctl snapshot save's client path gets a file that loads back into the
// same store, with its sha256 in place and the auth state included. With
// auth enabled, it takes the root role, as in etcd.
func TestSnapshotRPCFile(t *testing.T) {
	a, enable := rootAuth(t)
	ts := newTestServer(t, Config{Auth: a})
	fillForSnapshot(t, ts)
	tok := enable()
	if _, err := ts.cli.SnapshotWithVersion(t.Context()); err == nil || !strings.Contains(err.Error(), "user name is empty") {
		t.Fatalf("snapshot without credentials: %v", err)
	}
	ctx := metadata.AppendToOutgoingContext(t.Context(), rpctypes.TokenFieldNameGRPC, tok)
	resp, err := ts.cli.SnapshotWithVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Snapshot.Close()
	data, err := io.ReadAll(resp.Snapshot)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Version != etcdsnap.StorageVersion {
		t.Errorf("version %q, want %q", resp.Version, etcdsnap.StorageVersion)
	}
	if len(data)%512 != sha256.Size {
		t.Fatalf("file of %d bytes: etcdctl would find no sha256", len(data))
	}
	if sum := sha256.Sum256(data[:len(data)-sha256.Size]); !bytes.Equal(sum[:], data[len(data)-sha256.Size:]) {
		t.Fatal("sha256 trailer does not match")
	}
	st, info, err := backup.Load(bytes.NewReader(data), int64(len(data)), etcdsnap.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sameStoreContent(t, st, ts.store)
	if info.Auth == nil || !info.Auth.Enabled || len(info.Auth.Users) != 1 || info.ConsistentIndex != 1 || info.Term != 2 {
		t.Fatalf("info %+v, auth %+v", info, info.Auth)
	}
}

// The messages are etcd's: 32 KiB database chunks counting remaining_bytes
// down to 0, then the sha256 alone, every message with the storage version.
func TestSnapshotRPCMessages(t *testing.T) {
	ts := newTestServer(t, Config{})
	fillForSnapshot(t, ts)
	stream, err := pb.NewMaintenanceClient(ts.conn).Snapshot(t.Context(), &pb.SnapshotRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var msgs []*pb.SnapshotResponse
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	if len(msgs) < 3 {
		t.Fatalf("%d messages", len(msgs))
	}
	var db []byte
	for i, m := range msgs[:len(msgs)-1] {
		db = append(db, m.Blob...)
		if m.Version != etcdsnap.StorageVersion {
			t.Fatalf("message %d: version %q", i, m.Version)
		}
		if i < len(msgs)-2 && len(m.Blob) != snapshotChunkSize {
			t.Fatalf("message %d: %d bytes", i, len(m.Blob))
		}
		if want := uint64(0); i == len(msgs)-2 && m.RemainingBytes != want {
			t.Fatalf("last database message: remaining %d", m.RemainingBytes)
		}
	}
	total := uint64(len(db))
	var sent uint64
	for i, m := range msgs[:len(msgs)-1] {
		sent += uint64(len(m.Blob))
		if m.RemainingBytes != total-sent {
			t.Fatalf("message %d: remaining %d, want %d", i, m.RemainingBytes, total-sent)
		}
	}
	last := msgs[len(msgs)-1]
	sum := sha256.Sum256(db)
	if !bytes.Equal(last.Blob, sum[:]) || last.RemainingBytes != 0 || last.Version != etcdsnap.StorageVersion {
		t.Fatalf("last message: %d bytes, remaining %d", len(last.Blob), last.RemainingBytes)
	}
}

// A client that goes away mid-stream ends the RPC; the store goes on.
func TestSnapshotRPCClientGone(t *testing.T) {
	ts := newTestServer(t, Config{})
	fillForSnapshot(t, ts)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stream, err := pb.NewMaintenanceClient(ts.conn).Snapshot(ctx, &pb.SnapshotRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	cancel()
	for {
		if _, err := stream.Recv(); err != nil {
			break
		}
	}
	if _, err := ts.cli.Put(t.Context(), "still", "works"); err != nil {
		t.Fatal(err)
	}
}
