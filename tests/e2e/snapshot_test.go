package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// client returns a clientv3 client of s, closed when the test ends.
func (s *server) client(t *testing.T) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{s.endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// Lease ids the history script grants (fixed, so both servers agree).
const (
	leaseA clientv3.LeaseID = 0x1a2b
	leaseB clientv3.LeaseID = 0x3c4d
)

// writeHistory writes the same history to any server (after grantLeases):
// keys on the leases, overwrites, deletes, a txn of several keys (several
// sub revisions), a put and a delete of one key in one revision (nested
// txns), a compaction, and writes after it.
func writeHistory(t *testing.T, cli *clientv3.Client) {
	t.Helper()
	ctx := t.Context()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range 80 {
		var opts []clientv3.OpOption
		switch i % 9 {
		case 2:
			opts = append(opts, clientv3.WithLease(leaseA))
		case 5:
			opts = append(opts, clientv3.WithLease(leaseB))
		}
		_, err := cli.Put(ctx, fmt.Sprintf("key/%02d", i%30), fmt.Sprintf("value %d", i), opts...)
		must(err)
		if i%11 == 6 {
			_, err = cli.Delete(ctx, fmt.Sprintf("key/%02d", (i+7)%30))
			must(err)
		}
	}
	_, err := cli.Txn(ctx).Then(clientv3.OpPut("txn/a", "1"), clientv3.OpPut("txn/b", "2", clientv3.WithLease(leaseA)), clientv3.OpDelete("key/0", clientv3.WithPrefix())).Commit()
	must(err)
	_, err = cli.Txn(ctx).Then(
		clientv3.OpTxn(nil, []clientv3.Op{clientv3.OpPut("flash", "here")}, nil),
		clientv3.OpTxn(nil, []clientv3.Op{clientv3.OpDelete("flash")}, nil),
	).Commit()
	must(err)
	resp, err := cli.Get(ctx, "key/10")
	must(err)
	_, err = cli.Compact(ctx, resp.Header.Revision-25)
	must(err)
	for i := range 10 {
		_, err := cli.Put(ctx, fmt.Sprintf("late/%d", i), "x", clientv3.WithLease(leaseB))
		must(err)
	}
	_, err = cli.Delete(ctx, "late/3")
	must(err)
}

// grantLeases grants the script's leases with their fixed ids through the
// raw API (clientv3's Grant picks ids).
func grantLeases(t *testing.T, cli *clientv3.Client) {
	t.Helper()
	for _, l := range []struct {
		id  clientv3.LeaseID
		ttl int64
	}{{leaseA, 900}, {leaseB, 1200}} {
		if _, err := clientv3.RetryLeaseClient(cli).LeaseGrant(t.Context(), &pb.LeaseGrantRequest{ID: int64(l.id), TTL: l.ttl}); err != nil {
			t.Fatalf("grant %x: %v", l.id, err)
		}
	}
}

// state is what clients see of a store: every key at every revision from
// the compact revision on, reads below it refused, and the leases with
// their granted TTLs and keys.
type state struct {
	Rev, Compact int64
	ByRev        map[int64][]string
	Leases       map[clientv3.LeaseID]string
}

func readState(t *testing.T, cli *clientv3.Client) state {
	t.Helper()
	ctx := t.Context()
	h, err := cli.HashKV(ctx, cli.Endpoints()[0], 0)
	if err != nil {
		t.Fatal(err)
	}
	st := state{Rev: h.Header.Revision, Compact: h.CompactRevision, ByRev: map[int64][]string{}, Leases: map[clientv3.LeaseID]string{}}
	for rev := max(st.Compact, 1); rev <= st.Rev; rev++ {
		resp, err := cli.Get(ctx, "\x00", clientv3.WithFromKey(), clientv3.WithRev(rev))
		if err != nil {
			t.Fatalf("get at %d: %v", rev, err)
		}
		for _, kv := range resp.Kvs {
			st.ByRev[rev] = append(st.ByRev[rev], fmt.Sprintf("%s=%q c%d m%d v%d l%x", kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version, kv.Lease))
		}
	}
	if st.Compact > 1 {
		if _, err := cli.Get(ctx, "key", clientv3.WithRev(st.Compact-1)); !errors.Is(err, rpctypes.ErrCompacted) {
			t.Fatalf("get below the compact revision %d: %v", st.Compact, err)
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
		var keys []string
		for _, k := range ttl.Keys {
			keys = append(keys, string(k))
		}
		slices.Sort(keys)
		st.Leases[l.ID] = fmt.Sprintf("granted %d, keys %v", ttl.GrantedTTL, keys)
	}
	return st
}

func sameState(t *testing.T, what string, got, want state) {
	t.Helper()
	if got.Rev != want.Rev || got.Compact != want.Compact {
		t.Fatalf("%s: revision %d, compact %d; want %d, %d", what, got.Rev, got.Compact, want.Rev, want.Compact)
	}
	for rev := max(want.Compact, 1); rev <= want.Rev; rev++ {
		if !slices.Equal(got.ByRev[rev], want.ByRev[rev]) {
			t.Fatalf("%s: at revision %d:\n got %q\nwant %q", what, rev, got.ByRev[rev], want.ByRev[rev])
		}
	}
	if !reflect.DeepEqual(got.Leases, want.Leases) {
		t.Fatalf("%s: leases\n got %v\nwant %v", what, got.Leases, want.Leases)
	}
	if len(want.Leases) == 0 || len(want.ByRev[want.Rev]) == 0 {
		t.Fatalf("%s: the history wrote nothing to compare", what)
	}
	t.Logf("%s: revisions %d..%d, %d keys, %d leases agree", what, want.Compact, want.Rev, len(want.ByRev[want.Rev]), len(want.Leases))
}

// snapshotSave runs etcdctl snapshot save against s into a new file.
func snapshotSave(t *testing.T, s *server) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "snapshot.db")
	mustCtl(t, []string{s.endpoint}, "snapshot", "save", path)
	return path
}

// utl runs etcdutl and fails the test unless it succeeds.
func utl(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bins.etcdutl, args...)
	dieWithTest(cmd)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("etcdutl %s: %v\n%s", strings.Join(args, " "), err, tail(string(out), 4000))
	}
	return string(out)
}

// restoreEtcd restores path into a fresh data directory with etcdutl and
// starts etcd on it.
func restoreEtcd(t *testing.T, path string) *server {
	t.Helper()
	cport, pport := freePort(t), freePort(t)
	peer := fmt.Sprintf("http://127.0.0.1:%d", pport)
	dir := filepath.Join(t.TempDir(), "restored")
	utl(t, "snapshot", "restore", path, "--name", memberName, "--data-dir", dir,
		"--initial-cluster", memberName+"="+peer, "--initial-advertise-peer-urls", peer)
	return startEtcdIn(t, dir, cport, pport)
}

// startEtcdIn starts etcd on an existing (or new) data directory.
func startEtcdIn(t *testing.T, dir string, cport, pport int) *server {
	t.Helper()
	client := fmt.Sprintf("http://127.0.0.1:%d", cport)
	peer := fmt.Sprintf("http://127.0.0.1:%d", pport)
	return startProcess(t, "etcd", cport, bins.etcd,
		"--name", memberName, "--data-dir", dir,
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", memberName+"="+peer,
		"--unsafe-no-fsync", "--log-level", "error")
}

// snapshotStatus is etcdutl snapshot status -w json.
type snapshotStatus struct {
	Revision  int64  `json:"revision"`
	TotalKey  int    `json:"totalKey"`
	TotalSize int64  `json:"totalSize"`
	Version   string `json:"version"`
}

// meshkv's snapshot is restored by etcdutl into a real etcd that then
// serves every key at every revision since the compaction, the compaction
// itself and every lease with its keys, exactly as meshkv did.
func TestSnapshotMeshkvToEtcd(t *testing.T) {
	m := startMeshkv(t)
	cli := m.client(t)
	grantLeases(t, cli)
	writeHistory(t, cli)
	want := readState(t, cli)
	path := snapshotSave(t, m)

	var st snapshotStatus
	if err := json.Unmarshal([]byte(utl(t, "snapshot", "status", path, "-w", "json")), &st); err != nil {
		t.Fatalf("etcdutl snapshot status: %v", err)
	}
	if st.Revision != want.Rev || st.TotalKey != len(want.ByRev[want.Rev]) || st.Version != "3.6.0" {
		t.Fatalf("etcdutl snapshot status = %+v; meshkv is at revision %d with %d keys", st, want.Rev, len(want.ByRev[want.Rev]))
	}

	e := restoreEtcd(t, path)
	ecli := e.client(t)
	sameState(t, "etcd restored from meshkv", readState(t, ecli), want)
	put, err := ecli.Put(t.Context(), "after-restore", "1")
	if err != nil || put.Header.Revision != want.Rev+1 {
		t.Fatalf("put on the restored etcd: %v at revision %d, want %d", err, put.Header.Revision, want.Rev+1)
	}
}

// etcd's snapshot, saved by etcdctl, founds a meshkv node with the same
// keys, revisions, compaction and leases; so does a stopped etcd member's
// database file, which has no sha256 trailer.
func TestSnapshotEtcdToMeshkv(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etcd")
	e := startEtcdIn(t, dir, freePort(t), freePort(t))
	cli := e.client(t)
	grantLeases(t, cli)
	writeHistory(t, cli)
	want := readState(t, cli)
	path := snapshotSave(t, e)

	m := startMeshkv(t, "--initial-snapshot", path)
	mcli := m.client(t)
	sameState(t, "meshkv started from etcd's snapshot", readState(t, mcli), want)
	put, err := mcli.Put(t.Context(), "after-restore", "1")
	if err != nil || put.Header.Revision != want.Rev+1 {
		t.Fatalf("put on meshkv: %v at revision %d, want %d", err, put.Header.Revision, want.Rev+1)
	}

	e.stop()
	m2 := startMeshkv(t, "--initial-snapshot", filepath.Join(dir, "member", "snap", "db"))
	sameState(t, "meshkv started from etcd's db file", readState(t, m2.client(t)), want)
}

// meshkv's snapshot founds a new meshkv node with the same state.
func TestSnapshotMeshkvToMeshkv(t *testing.T) {
	m := startMeshkv(t)
	cli := m.client(t)
	grantLeases(t, cli)
	writeHistory(t, cli)
	want := readState(t, cli)
	path := snapshotSave(t, m)
	m2 := startMeshkv(t, "--initial-snapshot", path)
	sameState(t, "meshkv started from meshkv's snapshot", readState(t, m2.client(t)), want)
}

// An etcd snapshot with auth enabled brings its users, roles and
// permissions along: meshkv enforces them from the start.
func TestSnapshotWithAuth(t *testing.T) {
	e := startEtcd(t)
	ep := []string{e.endpoint}
	mustCtl(t, ep, "put", "secret", "s")
	mustCtl(t, ep, "put", "pub", "p")
	mustCtl(t, ep, "user", "add", "root:rootpw")
	mustCtl(t, ep, "user", "add", "alice:alicepw")
	mustCtl(t, ep, "role", "add", "reader")
	mustCtl(t, ep, "role", "grant-permission", "reader", "read", "pub")
	mustCtl(t, ep, "user", "grant-role", "alice", "reader")
	mustCtl(t, ep, "auth", "enable")
	path := filepath.Join(t.TempDir(), "snapshot.db")
	mustCtl(t, ep, "--user", "root:rootpw", "snapshot", "save", path)
	cport := freePort(t)
	client := fmt.Sprintf("http://127.0.0.1:%d", cport)
	s := startProcessNoWait(t, "meshkv", cport, bins.meshkv, "--name", memberName,
		"--listen-client-urls", client, "--mesh-listen", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"--initial-snapshot", path)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if r := s.ctl(t, "", "--user=root:rootpw", "get", "secret", "--print-value-only"); r.code == 0 {
			if strings.TrimSpace(r.stdout) != "s" {
				t.Fatalf("root reads %q, want s", r.stdout)
			}
			break
		}
		select {
		case <-s.exited:
			t.Fatalf("meshkv exited (%v):\n%s", s.waitErr, s.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("meshkv not serving root after 30s:\n%s", s.out.String())
		}
		time.Sleep(200 * time.Millisecond) // polling a process we do not control
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"get", "secret"}, "user name is empty"},
		{[]string{"--user=alice:alicepw", "get", "pub", "--print-value-only"}, "p"},
		{[]string{"--user=alice:alicepw", "get", "secret"}, "permission denied"},
		{[]string{"--user=alice:wrong", "get", "pub"}, "authentication failed"},
	} {
		r := s.ctl(t, "", c.args...)
		if !strings.Contains(r.stdout+r.errors, c.want) {
			t.Errorf("etcdctl %v: %s, want %q", c.args, r, c.want)
		}
	}
}
