package e2e

import (
	"regexp"
	"testing"
)

// leaseID matches the hexadecimal lease ids etcdctl prints.
var leaseID = regexp.MustCompile(`lease [0-9a-f]+`)

func normLease(_ *server, out string) string { return leaseID.ReplaceAllString(out, "lease <id>") }

// TestAuth runs etcdctl's user, role and auth commands, and requests as
// different users, against etcd and meshkv, and compares every output.
func TestAuth(t *testing.T) {
	etcd, mkv := startPair(t)
	root := "--user=root:rootpw"
	alice := "--user=alice:alicepw"
	compareSteps(t, etcd, mkv, []step{
		cmd("auth", "status").expecting("Authentication Status: false"),
		cmd("user", "add", "root", "--new-user-password=rootpw").expecting("User root created"),
		cmd("user", "add", "root", "--new-user-password=x").expecting("user name already exists"),
		cmd("user", "add", "alice", "--new-user-password=alicepw"),
		cmd("user", "add", "bob", "--no-password"),
		cmd("role", "add", "app").expecting("Role app created"),
		cmd("role", "add", "app").expecting("role name already exists"),
		cmd("role", "grant-permission", "app", "readwrite", "--prefix", "app/").expecting("Role app updated"),
		cmd("role", "grant-permission", "app", "read", "pub"),
		cmd("role", "grant-permission", "app", "write", "--from-key", "z"),
		cmd("role", "grant-permission", "app", "read", "b", "a").expecting("invalid auth management"),
		cmd("role", "grant-permission", "nope", "read", "k").expecting("role name not found"),
		cmd("role", "get", "app"),
		cmd("role", "get", "nope").expecting("role name not found"),
		cmd("user", "grant-role", "alice", "app").expecting("Role app is granted to user alice"),
		cmd("user", "grant-role", "alice", "nope").expecting("role name not found"),
		cmd("user", "grant-role", "nobody", "app").expecting("user name not found"),
		cmd("user", "get", "alice"),
		cmd("user", "get", "alice", "--detail"),
		cmd("user", "list"),
		cmd("role", "list"),
		// etcdctl grants the root role to root itself when it is missing.
		cmd("auth", "enable").expecting("Authentication Enabled"),
		cmd("user", "grant-role", "root", "root").expecting("user name is empty"),
		cmd("auth", "status").expecting("Authentication Status: true"),
		cmd("get", "app/a").expecting("user name is empty"),
		cmd("put", "app/a", "1").expecting("user name is empty"),
		cmd(alice, "put", "app/a", "1").expecting("OK"),
		cmd(alice, "get", "app/", "--prefix").expecting("app/a"),
		cmd(alice, "put", "pub", "1").expecting("permission denied"),
		cmd(alice, "get", "pub"),
		cmd(alice, "get", "pub", "--prefix").expecting("permission denied"),
		cmd(alice, "put", "zz", "1").expecting("OK"),
		cmd(alice, "get", "zz").expecting("permission denied"),
		cmd(alice, "txn").input("value(\"app/a\") = \"1\"\n\nput app/b 2\n\nput pub 3\n\n").expecting("permission denied"),
		cmd(alice, "txn").input("value(\"app/a\") = \"1\"\n\nput app/b 2\n\nget pub\n\n").expecting("SUCCESS"),
		cmd(alice, "watch", "other").expecting("watch is canceled by the server"),
		cmd("--user=alice:wrong", "get", "app/a").expecting("authentication failed"),
		cmd("--user=nobody:x", "get", "app/a").expecting("authentication failed"),
		cmd("--user=bob:x", "get", "app/a").expecting("password was given for no password user"),
		cmd(alice, "user", "list").expecting("permission denied"),
		cmd(alice, "user", "get", "alice").expecting("Roles: app"),
		cmd(alice, "user", "get", "root").expecting("permission denied"),
		cmd(alice, "role", "get", "app"),
		cmd(alice, "role", "get", "root").expecting("permission denied"),
		cmd(alice, "role", "add", "x").expecting("permission denied"),
		cmd(alice, "auth", "disable").expecting("permission denied"),
		cmd(alice, "compaction", "1").expecting("permission denied"),
		cmd(root, "compaction", "1").expecting("compacted revision 1"),
		cmd(root, "user", "list").expecting("alice"),
		cmd(root, "user", "delete", "root").expecting("invalid auth management"),
		cmd(root, "user", "revoke-role", "root", "root").expecting("invalid auth management"),
		cmd(root, "role", "delete", "root").expecting("invalid auth management"),
		cmd(root, "role", "revoke-permission", "app", "pub").expecting("revoked"),
		cmd(root, "role", "revoke-permission", "app", "pub").expecting("permission is not granted to the role"),
		cmd(alice, "get", "pub").expecting("permission denied"),
		cmd(root, "user", "passwd", "alice", "--interactive=false").input("newpw\n").expecting("Password updated"),
		cmd(alice, "get", "app/a").expecting("authentication failed"),
		cmd("--user=alice:newpw", "get", "app/a").expecting("app/a"),
		cmd("--user=alice:newpw", "lease", "grant", "60").with(normLease).expecting("granted with TTL(60s)"),
		cmd("lease", "grant", "60").expecting("user name is empty"),
		cmd("--user=alice:newpw", "del", "app/", "--prefix").expecting("2"),
		cmd(root, "user", "revoke-role", "alice", "app").expecting("Role app is revoked from user alice"),
		cmd("--user=alice:newpw", "get", "app/a").expecting("permission denied"),
		cmd(root, "role", "delete", "app").expecting("Role app deleted"),
		cmd(root, "user", "delete", "bob").expecting("User bob deleted"),
		cmd(root, "auth", "disable").expecting("Authentication Disabled"),
		cmd("get", "zz").expecting("zz"),
		cmd("auth", "status").expecting("Authentication Status: false"),
	})
}

// TestAuthJWT runs a short auth session with JWT tokens, signed by each
// server with the same ECDSA key.
func TestAuthJWT(t *testing.T) {
	pub, priv := jwtKeys(t)
	etcd, mkv := startPair(t, "--auth-token", "jwt,pub-key="+pub+",priv-key="+priv+",sign-method=ES256,ttl=10m")
	root := "--user=root:rootpw"
	compareSteps(t, etcd, mkv, []step{
		cmd("user", "add", "root", "--new-user-password=rootpw"),
		cmd("user", "grant-role", "root", "root"),
		cmd("user", "add", "u", "--new-user-password=upw"),
		cmd("auth", "enable").expecting("Authentication Enabled"),
		cmd(root, "put", "k", "v").expecting("OK"),
		cmd("--user=u:upw", "get", "k").expecting("permission denied"),
		cmd(root, "role", "add", "r"),
		cmd(root, "role", "grant-permission", "r", "read", "k"),
		cmd(root, "user", "grant-role", "u", "r"),
		cmd("--user=u:upw", "get", "k").expecting("v"),
		cmd(root, "auth", "disable"),
	})
}
