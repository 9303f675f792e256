//go:build !race

// Real mesh routers: mesh itself has data races (see mesh_test.go), so these
// tests run without the race detector.

package meshkv_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/meshkv/meshkv"
)

// TestAuthMeshReplicatedAndSnapshotted: auth changes made through one member
// hold on every member; a simple token issued by one member works on the
// others; a member that joins after the log was compacted gets users, roles
// and the enabled state in its snapshot and enforces them.
func TestAuthMeshReplicatedAndSnapshotted(t *testing.T) {
	withAuth := func(i int, c *meshkv.Config) {
		c.SnapshotCount = 20
		c.DeadMemberTimeout = 5 * time.Minute
		c.ListenClientURLs = []string{"http://127.0.0.1:0"}
		c.BcryptCost = 4
	}
	tc := startCluster(t, 3, 3, fullMesh, withAuth)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	app := tc.nodes[0].Client()
	for i, step := range []func() error{
		func() error { _, err := app.UserAdd(ctx, "root", "rootpw"); return err },
		func() error { _, err := app.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := app.RoleAdd(ctx, "app"); return err },
		func() error {
			_, err := app.RoleGrantPermission(ctx, "app", "app/", clientv3.GetPrefixRangeEnd("app/"), clientv3.PermissionType(authpb.Permission_READWRITE))
			return err
		},
		func() error { _, err := app.UserAdd(ctx, "alice", "alicepw"); return err },
		func() error { _, err := app.UserGrantRole(ctx, "alice", "app"); return err },
		func() error { _, err := app.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatalf("setup step %d: %v", i, err)
		}
	}

	// A token from member 0 works on the others.
	at0, err := clientv3.New(clientv3.Config{Endpoints: tc.nodes[0].ClientAddrs(), Username: "alice", Password: "alicepw",
		DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer at0.Close()
	auth, err := pb.NewAuthClient(at0.ActiveConnection()).Authenticate(ctx, &pb.AuthenticateRequest{Name: "alice", Password: "alicepw"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 3; i++ {
		conn, err := grpc.NewClient(tc.nodes[i].ClientAddrs()[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		tctx := metadata.AppendToOutgoingContext(ctx, rpctypes.TokenFieldNameGRPC, auth.Token)
		// The token is replicated: member i knows it once it applied the
		// Authenticate entry, which may be a moment after member 0 did.
		var perr error
		waitFor(t, 10*time.Second, fmt.Sprintf("member 0's token on member %d", i), func() bool {
			_, perr = pb.NewKVClient(conn).Put(tctx, &pb.PutRequest{Key: []byte("app/from-token"), Value: []byte("x")})
			return perr == nil
		})
		_, err = pb.NewKVClient(conn).Put(tctx, &pb.PutRequest{Key: []byte("other"), Value: []byte("x")})
		if rpctypes.ErrorDesc(err) != rpctypes.ErrPermissionDenied.Error() {
			t.Fatalf("member %d lets alice write outside her prefix: %v", i, err)
		}
	}

	// Enough writes to compact the log past the auth entries.
	for i := range 100 {
		if _, err := at0.Put(ctx, fmt.Sprintf("app/%03d", i), "v"); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	nd := joinNode(t, tc.name, "n3", []string{tc.nodes[0].MeshAddr(), tc.nodes[1].MeshAddr(), tc.nodes[2].MeshAddr()},
		testLogger(t, "n3"), func(c *meshkv.Config) { withAuth(3, c) })
	waitFor(t, 30*time.Second, "the new member catches up", func() bool {
		g, err := nd.Client().Get(ctx, "app/099", clientv3.WithSerializable())
		return err == nil && len(g.Kvs) == 1
	})
	if s := nd.Stats(); s.SnapshotIndex == 0 {
		t.Fatalf("the new member was not restored from a snapshot (stats %+v)", s)
	}
	st, err := nd.Client().AuthStatus(ctx)
	if err != nil || !st.Enabled {
		t.Fatalf("new member's auth status: %v, %v", st, err)
	}
	users, err := nd.Client().UserList(ctx)
	if err != nil || strings.Join(users.Users, ",") != "alice,root" {
		t.Fatalf("new member's users: %v, %v", users, err)
	}
	at3, err := clientv3.New(clientv3.Config{Endpoints: nd.ClientAddrs(), Username: "alice", Password: "alicepw",
		DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("alice logs in at the new member: %v", err)
	}
	defer at3.Close()
	if _, err := at3.Put(ctx, "app/n3", "v"); err != nil {
		t.Fatalf("alice writes at the new member: %v", err)
	}
	if _, err := at3.Put(ctx, "other", "v"); rpctypes.ErrorDesc(err) != rpctypes.ErrPermissionDenied.Error() {
		t.Fatalf("the new member lets alice write outside her prefix: %v", err)
	}
}
