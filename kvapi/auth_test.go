package kvapi

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"

	"github.com/meshkv/meshkv/api/v3lockpb"
	"github.com/meshkv/meshkv/internal/listen"
	"github.com/meshkv/meshkv/kvapi/auth"
	"github.com/meshkv/meshkv/kvapi/mvcc"
)

// authServer is the services with auth over a local replicator, reachable
// over an in-memory listener as network clients (and, for the Lock and
// Election services, through an in-process client as a node runs them).
type authTestServer struct {
	srv    *Server
	sm     *StateMachine
	dial   func(ctx context.Context, _ string) (net.Conn, error)
	inproc func(ctx context.Context, _ string) (net.Conn, error)
}

func newAuthTestServer(t testing.TB, cfg Config) *authTestServer {
	t.Helper()
	if cfg.Auth == nil {
		a, err := auth.New(auth.Config{BcryptCost: 4})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Auth = a
	}
	store := mvcc.New()
	sm := NewStateMachine(store)
	srv, err := NewServer(cfg, store, &localReplicator{sm: sm}, fixedCluster{})
	if err != nil {
		t.Fatal(err)
	}
	srv.UseStateMachine(sm)
	g := grpc.NewServer(append(srv.ServerOptions(), grpc.Creds(listen.Credentials()))...)
	srv.Register(g)
	netl, inl := bufconn.Listen(1<<20), bufconn.Listen(1<<20)
	go g.Serve(netl)
	go g.Serve(listen.Inproc(inl))
	ts := &authTestServer{
		srv:    srv,
		sm:     sm,
		dial:   func(ctx context.Context, _ string) (net.Conn, error) { return netl.DialContext(ctx) },
		inproc: func(ctx context.Context, _ string) (net.Conn, error) { return inl.DialContext(ctx) },
	}
	own := ts.client(t, ts.inproc, "", "")
	srv.UseClient(own)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		g.Stop()
	})
	return ts
}

// client returns an etcd client over dial, as user (none if "").
func (ts *authTestServer) client(t testing.TB, dial func(context.Context, string) (net.Conn, error), user, password string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{"auth-test:0"},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		Username:    user,
		Password:    password,
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(dial), grpc.WithDefaultCallOptions(grpc.ForceCodecV2(Codec))},
	})
	if err != nil {
		t.Fatalf("client %q: %v", user, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// wantErr checks that err is etcd's error want (by code and message).
func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Errorf("%s: %v", what, err)
		}
		return
	}
	ws := status.Convert(want)
	if rpctypes.ErrorDesc(err) != ws.Message() {
		t.Errorf("%s: %v, want %v", what, err, want)
	}
}

// setupUsers creates root (role root) and alice (role app: readwrite on
// app/, read on pub/), and enables authentication, as a network client.
func setupUsers(t testing.TB, ts *authTestServer) {
	t.Helper()
	c := ts.client(t, ts.dial, "", "")
	ctx := t.Context()
	steps := []func() error{
		func() error { _, err := c.UserAdd(ctx, "root", "rootpw"); return err },
		func() error { _, err := c.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := c.RoleAdd(ctx, "app"); return err },
		func() error {
			_, err := c.RoleGrantPermission(ctx, "app", "app/", clientv3.GetPrefixRangeEnd("app/"), clientv3.PermissionType(authpb.Permission_READWRITE))
			return err
		},
		func() error {
			_, err := c.RoleGrantPermission(ctx, "app", "pub/", clientv3.GetPrefixRangeEnd("pub/"), clientv3.PermissionType(authpb.Permission_READ))
			return err
		},
		func() error { _, err := c.UserAdd(ctx, "alice", "alicepw"); return err },
		func() error { _, err := c.UserGrantRole(ctx, "alice", "app"); return err },
		func() error { _, err := c.AuthEnable(ctx); return err },
	}
	for i, s := range steps {
		if err := s(); err != nil {
			t.Fatalf("setup step %d: %v", i, err)
		}
	}
}

func TestAuthEnforcement(t *testing.T) {
	ts := newAuthTestServer(t, Config{})
	setupUsers(t, ts)
	ctx := t.Context()
	anon := ts.client(t, ts.dial, "", "")
	alice := ts.client(t, ts.dial, "alice", "alicepw")
	root := ts.client(t, ts.dial, "root", "rootpw")

	_, err := anon.Put(ctx, "app/x", "1")
	wantErr(t, "anonymous put", err, rpctypes.ErrGRPCUserEmpty)
	_, err = anon.Get(ctx, "app/x")
	wantErr(t, "anonymous get", err, rpctypes.ErrGRPCUserEmpty)
	_, err = alice.Put(ctx, "app/x", "1")
	wantErr(t, "alice put app/x", err, nil)
	_, err = alice.Put(ctx, "pub/x", "1")
	wantErr(t, "alice put pub/x", err, rpctypes.ErrGRPCPermissionDenied)
	_, err = root.Put(ctx, "pub/x", "1")
	wantErr(t, "root put pub/x", err, nil)
	_, err = alice.Get(ctx, "pub/", clientv3.WithPrefix())
	wantErr(t, "alice get pub/ prefix", err, nil)
	_, err = alice.Get(ctx, "pub/", clientv3.WithPrefix(), clientv3.WithSerializable())
	wantErr(t, "alice serializable get", err, nil)
	_, err = alice.Get(ctx, "", clientv3.WithFromKey())
	wantErr(t, "alice get everything", err, rpctypes.ErrGRPCPermissionDenied)
	_, err = alice.Delete(ctx, "app/", clientv3.WithPrefix(), clientv3.WithPrevKV())
	wantErr(t, "alice delete app/ with prev kv", err, nil)
	_, err = alice.Put(ctx, "app/y", "1", clientv3.WithPrevKV())
	wantErr(t, "alice put with prev kv", err, nil)

	// Txn: every compare and every op of both branches, nested too.
	_, err = alice.Txn(ctx).If(clientv3.Compare(clientv3.Value("pub/x"), "=", "1")).
		Then(clientv3.OpPut("app/z", "1")).Else(clientv3.OpTxn(nil, []clientv3.Op{clientv3.OpDelete("pub/x")}, nil)).Commit()
	wantErr(t, "alice txn with a nested write to pub/", err, rpctypes.ErrGRPCPermissionDenied)
	_, err = alice.Txn(ctx).If(clientv3.Compare(clientv3.Value("pub/x"), "=", "1")).Then(clientv3.OpGet("app/z")).Commit()
	wantErr(t, "alice read-only txn", err, nil)
	_, err = alice.Txn(ctx).If(clientv3.Compare(clientv3.Value("other"), "=", "1")).Commit()
	wantErr(t, "alice txn comparing an unreadable key", err, rpctypes.ErrGRPCPermissionDenied)

	// Admin operations.
	_, err = alice.Compact(ctx, 1)
	wantErr(t, "alice compact", err, rpctypes.ErrGRPCPermissionDenied)
	_, err = root.Compact(ctx, 1)
	wantErr(t, "root compact", err, nil)
	_, err = alice.HashKV(ctx, "auth-test:0", 0)
	wantErr(t, "alice hashkv", err, rpctypes.ErrGRPCPermissionDenied)
	_, err = anon.Status(ctx, "auth-test:0")
	wantErr(t, "anonymous status", err, rpctypes.ErrGRPCUserEmpty)
	_, err = alice.Status(ctx, "auth-test:0")
	wantErr(t, "alice status", err, nil)
	_, err = anon.MemberList(ctx)
	wantErr(t, "anonymous member list", err, rpctypes.ErrGRPCUserEmpty)
	_, err = alice.UserList(ctx)
	wantErr(t, "alice user list", err, rpctypes.ErrGRPCPermissionDenied)
	if resp, err := alice.UserGet(ctx, "alice"); err != nil || len(resp.Roles) != 1 {
		t.Errorf("alice gets herself: %v, %v", resp, err)
	}
	_, err = alice.RoleGet(ctx, "app")
	wantErr(t, "alice gets her role", err, nil)
	_, err = alice.RoleGet(ctx, "root")
	wantErr(t, "alice gets the root role", err, rpctypes.ErrGRPCPermissionDenied)
	if st, err := anon.AuthStatus(ctx); err != nil || !st.Enabled {
		t.Errorf("anonymous auth status: %v, %v", st, err)
	}
	_, err = root.UserDelete(ctx, "root")
	wantErr(t, "root deletes root", err, rpctypes.ErrGRPCInvalidAuthMgmt)

	// Leases: a lease carrying a key alice may not write is not hers to
	// revoke or extend.
	l, err := root.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := root.Put(ctx, "pub/l", "1", clientv3.WithLease(l.ID)); err != nil {
		t.Fatal(err)
	}
	_, err = alice.Revoke(ctx, l.ID)
	wantErr(t, "alice revokes root's lease", err, rpctypes.ErrGRPCPermissionDenied)
	_, err = alice.Put(ctx, "app/l", "1", clientv3.WithLease(l.ID))
	wantErr(t, "alice attaches to root's lease", err, rpctypes.ErrGRPCPermissionDenied)
	_, err = alice.KeepAliveOnce(ctx, l.ID)
	wantErr(t, "alice keeps root's lease alive", err, rpctypes.ErrGRPCPermissionDenied)
	_, err = alice.TimeToLive(ctx, l.ID, clientv3.WithAttachedKeys())
	wantErr(t, "alice reads root's lease keys", err, nil) // pub/ is readable
	_, err = anon.Grant(ctx, 60)
	wantErr(t, "anonymous grant", err, rpctypes.ErrGRPCUserEmpty)
	mine, err := alice.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	_, err = alice.Revoke(ctx, mine.ID)
	wantErr(t, "alice revokes her lease", err, nil)

	// Watch: checked when created.
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	wr := <-alice.Watch(wctx, "pub/", clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	if wr.Err() != nil || !wr.Created {
		t.Errorf("alice watches pub/: %v", wr.Err())
	}
	wr = <-alice.Watch(wctx, "other")
	if !wr.Canceled || wr.Err() == nil || !strings.Contains(wr.Err().Error(), "permission denied") {
		t.Errorf("alice watches other: canceled %v, %v", wr.Canceled, wr.Err())
	}
}

// TestAuthRevisionChecks checks that a change of the auth state refuses
// requests authenticated before it, at apply time as at serve time.
func TestAuthRevisionChecks(t *testing.T) {
	ts := newAuthTestServer(t, Config{})
	setupUsers(t, ts)
	a := ts.srv.Auth()
	rev := a.Revision()
	put := &pb.InternalRaftRequest{
		Header: &pb.RequestHeader{Username: "alice", AuthRevision: rev},
		Put:    &pb.PutRequest{Key: []byte("app/k"), Value: []byte("v")},
	}
	apply := func(r *pb.InternalRaftRequest) error {
		t.Helper()
		data, err := marshalRequest(r)
		if err != nil {
			t.Fatal(err)
		}
		return ts.sm.Apply(1000+uint64(a.Revision()), data).(*result).err
	}
	if err := apply(put); err != nil {
		t.Fatalf("put at the current revision: %v", err)
	}
	if _, err := a.RoleAdd(&pb.AuthRoleAddRequest{Name: "other"}); err != nil {
		t.Fatal(err)
	}
	if err := apply(put); !errors.Is(err, auth.ErrAuthOldRevision) {
		t.Fatalf("put checked at an older revision: %v", err)
	}
	put.Header = nil
	if err := apply(put); !errors.Is(err, auth.ErrUserEmpty) {
		t.Fatalf("put without credentials: %v", err)
	}
	put.Header = &pb.RequestHeader{Username: auth.RootUser, AuthRevision: auth.AnyRevision}
	if err := apply(put); err != nil {
		t.Fatalf("the member's own put: %v", err)
	}
	// An expiry revoke of the lessor (header ID: its basis) is not checked.
	if _, err := a.RoleAdd(&pb.AuthRoleAddRequest{Name: "x"}); err != nil {
		t.Fatal(err)
	}
	err := apply(&pb.InternalRaftRequest{Header: &pb.RequestHeader{ID: 7}, LeaseRevoke: &pb.LeaseRevokeRequest{ID: 99}})
	if !errors.Is(err, mvcc.ErrLeaseNotFound) {
		t.Fatalf("expiry revoke: %v, want the store's lease-not-found", err)
	}
}

// TestInprocActsAsRoot checks that the application's in-process client may
// do anything, and that a token it sends still counts.
func TestInprocActsAsRoot(t *testing.T) {
	ts := newAuthTestServer(t, Config{})
	setupUsers(t, ts)
	ctx := t.Context()
	app := ts.client(t, ts.inproc, "", "")
	if _, err := app.Put(ctx, "anything", "1"); err != nil {
		t.Fatalf("in-process put: %v", err)
	}
	if _, err := app.UserList(ctx); err != nil {
		t.Fatalf("in-process user list: %v", err)
	}
	alice := ts.client(t, ts.inproc, "alice", "alicepw")
	_, err := alice.Put(ctx, "anything", "1")
	wantErr(t, "in-process client with alice's token", err, rpctypes.ErrGRPCPermissionDenied)
}

// TestLockActsAsCaller checks that the Lock and Election services act with
// their caller's permissions, as etcd's do.
func TestLockActsAsCaller(t *testing.T) {
	ts := newAuthTestServer(t, Config{})
	setupUsers(t, ts)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	alice := ts.client(t, ts.dial, "alice", "alicepw")
	anon := ts.client(t, ts.dial, "", "")
	sess, err := concurrency.NewSession(alice, concurrency.WithTTL(30))
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	lc := v3lockClient(ts, alice)
	if _, err := lc.Lock(ctx, "app/lock", sess.Lease()); err != nil {
		t.Fatalf("alice locks app/lock: %v", err)
	}
	if _, err := lc.Lock(ctx, "other/lock", sess.Lease()); err == nil || !bytes.Contains([]byte(err.Error()), []byte("permission denied")) {
		t.Fatalf("alice locks other/lock: %v, want permission denied", err)
	}
	if _, err := v3lockClient(ts, anon).Lock(ctx, "app/lock2", sess.Lease()); err == nil || status.Code(err) == codes.OK {
		t.Fatal("anonymous lock succeeded")
	}
}

// lockClient calls the Lock service over a client's connection (with its
// token).
type lockClient struct{ c v3lockpb.LockClient }

func v3lockClient(_ *authTestServer, c *clientv3.Client) lockClient {
	return lockClient{c: v3lockpb.NewLockClient(c.ActiveConnection())}
}

func (l lockClient) Lock(ctx context.Context, name string, lease clientv3.LeaseID) (*v3lockpb.LockResponse, error) {
	return l.c.Lock(ctx, &v3lockpb.LockRequest{Name: []byte(name), Lease: int64(lease)})
}

func marshalRequest(r *pb.InternalRaftRequest) ([]byte, error) { return proto.Marshal(r) }

// TestSnapshotCarriesAuth checks that a state machine snapshot holds the
// auth state, that a store-only snapshot (from an earlier version) restores
// with the initial auth state, and that a corrupt one changes nothing.
func TestSnapshotCarriesAuth(t *testing.T) {
	ts := newAuthTestServer(t, Config{})
	setupUsers(t, ts)
	if _, err := ts.client(t, ts.dial, "root", "rootpw").Put(t.Context(), "k", "v"); err != nil {
		t.Fatal(err)
	}
	w, err := ts.sm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	fresh := func() (*StateMachine, *auth.Store, *mvcc.Store) {
		st := mvcc.New()
		sm := NewStateMachine(st)
		a, err := auth.New(auth.Config{BcryptCost: 4})
		if err != nil {
			t.Fatal(err)
		}
		sm.UseAuth(a)
		return sm, a, st
	}
	sm, a, st := fresh()
	if err := sm.Restore(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	users, _ := a.UserList(nil)
	if !a.Enabled() || a.Revision() != ts.srv.Auth().Revision() || len(users.Users) != 2 {
		t.Fatalf("restored auth: enabled %v revision %d users %v", a.Enabled(), a.Revision(), users.Users)
	}
	if st.Rev() != ts.srv.store.Rev() {
		t.Fatalf("restored store at revision %d, want %d", st.Rev(), ts.srv.store.Rev())
	}

	var old bytes.Buffer
	if _, err := ts.srv.store.Snapshot().WriteTo(&old); err != nil {
		t.Fatal(err)
	}
	sm, a, st = fresh()
	if err := sm.Restore(bytes.NewReader(old.Bytes())); err != nil {
		t.Fatalf("Restore of a store-only snapshot: %v", err)
	}
	if a.Enabled() || a.Revision() != 1 || st.Rev() != ts.srv.store.Rev() {
		t.Fatalf("store-only snapshot: auth enabled %v revision %d, store revision %d", a.Enabled(), a.Revision(), st.Rev())
	}

	bad := bytes.Clone(buf.Bytes())
	bad[len(auth.SnapshotMagic)+3] ^= 0xff
	sm, a, st = fresh()
	if err := sm.Restore(bytes.NewReader(bad)); err == nil {
		t.Fatal("Restore of a corrupt auth section succeeded")
	}
	if a.Revision() != 1 || st.Rev() != 1 {
		t.Fatalf("a failed restore changed the state: auth revision %d, store revision %d", a.Revision(), st.Rev())
	}
}
