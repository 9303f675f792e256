package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// notApplicable lists the etcdctl commands meshkv answers with an error on
// purpose, and why. TestEtcdctlSweep runs each of them against meshkv and
// checks that it fails cleanly with the reason in its error.
var notApplicable = map[string]struct {
	reason string
	args   []string // run against meshkv; {id} is the member's id
	errSub string   // meshkv's error must contain it
}{
	"member add": {
		reason: "membership is managed by the mesh: a node joins by starting with --peers",
		args:   []string{"member", "add", "x", "--peer-urls=http://127.0.0.1:1"},
		errSub: "members join through the mesh",
	},
	"member update": {
		reason: "a member's peer URL is its mesh address, which the member sets itself (--mesh-listen)",
		args:   []string{"member", "update", "{id}", "--peer-urls=http://127.0.0.1:1"},
		errSub: "membership follows the mesh",
	},
	"downgrade validate": {
		reason: "no on-disk versioned storage to downgrade: the store lives in memory",
		args:   []string{"downgrade", "validate", "3.6"},
		errSub: "downgrade does not apply to an in-memory store",
	},
	"downgrade enable": {
		reason: "no on-disk versioned storage to downgrade",
		args:   []string{"downgrade", "enable", "3.6"},
		errSub: "downgrade does not apply to an in-memory store",
	},
	"downgrade cancel": {
		reason: "no on-disk versioned storage to downgrade",
		args:   []string{"downgrade", "cancel"},
		errSub: "downgrade does not apply to an in-memory store",
	},
}

// etcdctlCommands lists every leaf command etcdctl's help shows ("put",
// "lease grant", ...).
func etcdctlCommands(t *testing.T) []string {
	t.Helper()
	top := helpCommands(t)
	var leaves []string
	for _, c := range top {
		subs := helpCommands(t, c)
		if len(subs) == 0 {
			leaves = append(leaves, c)
			continue
		}
		for _, s := range subs {
			leaves = append(leaves, c+" "+s)
		}
	}
	return leaves
}

// helpLine is a command line of cobra's help: two spaces, a name, a
// space or more, a description.
var helpLine = regexp.MustCompile(`^  ([a-z][a-z-]*)\s+\S`)

// helpCommands returns the commands `etcdctl [path] --help` lists.
func helpCommands(t *testing.T, path ...string) []string {
	t.Helper()
	out, err := exec.Command(bins.etcdctl, append(path, "--help")...).CombinedOutput()
	if err != nil {
		t.Fatalf("etcdctl %v --help: %v\n%s", path, err, out)
	}
	var cmds []string
	listing := false
	for _, l := range strings.Split(string(out), "\n") {
		switch {
		case !strings.HasPrefix(l, " ") && (strings.HasSuffix(l, "commands") || strings.HasPrefix(l, "Available Commands:")):
			listing = true // etcdctl groups its top-level commands under "... commands" titles
		case strings.TrimSpace(l) == "":
			listing = false
		case listing:
			if m := helpLine.FindStringSubmatch(l); m != nil {
				cmds = append(cmds, m[1])
			}
		}
	}
	return cmds
}

// sweep runs steps on both servers and records which commands ran.
type sweep struct {
	t         *testing.T
	etcd, mkv *server
	ran       map[string]bool
}

func (sw *sweep) mark(args []string) {
	var words []string
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			continue
		}
		words = append(words, a)
		if len(words) == 2 {
			break
		}
	}
	if len(words) == 0 {
		return
	}
	sw.ran[words[0]] = true
	if len(words) == 2 {
		sw.ran[words[0]+" "+words[1]] = true
	}
}

func (sw *sweep) compare(steps ...step) {
	sw.t.Helper()
	for _, st := range steps {
		sw.mark(st.args)
	}
	compareSteps(sw.t, sw.etcd, sw.mkv, steps)
}

// each runs f on etcd and meshkv side by side.
func (sw *sweep) each(f func(s *server)) {
	var wg sync.WaitGroup
	for _, s := range []*server{sw.etcd, sw.mkv} {
		wg.Go(func() { f(s) })
	}
	wg.Wait()
}

// ctlFor runs etcdctl against s with a longer time limit than ctl's, for
// the commands that take a minute.
func ctlFor(t *testing.T, s *server, limit time.Duration, args ...string) ctlResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, bins.etcdctl, append([]string{"--endpoints=" + s.endpoint, "--dial-timeout=5s"}, args...)...)
	dieWithTest(cmd)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := ctlResult{stdout: stdout.String(), errors: errorLines(stderr.String())}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		res.code = exit.ExitCode()
	case err != nil:
		res.code = -1
		res.errors = err.Error()
	}
	return res
}

// TestEtcdctlSweep runs every etcdctl 3.7 command against etcd 3.7.3 and
// meshkv and checks that each behaves the same (exit status and output,
// with server-chosen ids, timings and sizes normalized), or is listed in
// notApplicable and fails on meshkv with its reason. A command etcdctl's
// help lists that is neither compared nor listed fails the test.
func TestEtcdctlSweep(t *testing.T) {
	t.Parallel()
	etcd, mkv := startPair(t)
	sw := &sweep{t: t, etcd: etcd, mkv: mkv, ran: map[string]bool{}}
	took := normRegexp(regexp.MustCompile(`\b[0-9.]+(ns|µs|us|ms|s)\b`), "<duration>")
	endpoint := func(s *server, out string) string { return strings.ReplaceAll(out, s.endpoint, "<endpoint>") }
	norm := chain(normVars, normRegexp(remaining, "remaining(<n>s)"))
	for _, s := range []*server{etcd, mkv} {
		s.vars["dir"] = t.TempDir()
		var st []struct {
			Status struct {
				Leader uint64 `json:"leader"`
			}
		}
		res := s.ctl(t, "", "endpoint", "status", "-w", "json")
		if err := json.Unmarshal([]byte(res.stdout), &st); err != nil || len(st) != 1 || st[0].Status.Leader == 0 {
			t.Fatalf("%s: endpoint status: %v\n%s", s.kind, err, res)
		}
		s.vars["id"] = fmt.Sprintf("%x", st[0].Status.Leader)
	}

	// Commands that do not reach the server print the same everywhere;
	// they are run for completeness.
	sw.compare(
		cmd("version").expecting("etcdctl version: 3.7"),
		cmd("completion", "bash").expecting("bash completion"),
		cmd("options").expecting("--endpoints"),
		cmd("help", "put").expecting("Puts the given key"),
	)

	// Key-value commands.
	sw.compare(
		cmd("put", "sweep/a", "1").expecting("OK"),
		cmd("put", "sweep/b", "2"),
		cmd("put", "sweep/c", "3"),
		cmd("get", "sweep/", "--prefix").expecting("sweep/c"),
		cmd("get", "sweep/", "--prefix", "-w", "json").with(normJSON(serverIDs...)),
		cmd("del", "sweep/c").expecting("1"),
		cmd("txn").input("value(\"sweep/a\") = \"1\"\n\nput sweep/a 10\nput sweep/d 4\n\n\n").expecting("SUCCESS"),
		cmd("endpoint", "hashkv", "-w", "json").with(chain(normJSON(append(serverIDs, "hash")...), endpoint)).expecting(`"compact_revision":-1`),
		cmd("compaction", "3").expecting("compacted revision 3"),
		cmd("compaction", "2").expecting("required revision has been compacted"),
		cmd("endpoint", "hashkv", "-w", "json").with(chain(normJSON(append(serverIDs, "hash")...), endpoint)).expecting(`"compact_revision":3`),
		cmd("endpoint", "hashkv").with(chain(normRegexp(regexp.MustCompile(`, \d+, `), ", <hash>, "), endpoint)),
	)
	sw.mark([]string{"watch"})
	var watched [2]string
	for i, s := range []*server{etcd, mkv} {
		watched[i] = watchUntil(t, s, "sweep/d\n4\n", "watch", "--prefix", "sweep/", "--rev=3")
	}
	if watched[0] != watched[1] {
		t.Errorf("etcdctl watch:\n--- etcd:\n%s\n--- meshkv:\n%s", watched[0], watched[1])
	}

	// Leases.
	sw.compare(
		cmd("lease", "grant", "100").saving(saveLease("lease")).with(norm).expecting("granted with TTL(100s)"),
		cmd("lease", "list").with(norm).expecting("found 1 leases"),
		cmd("lease", "timetolive", "{lease}").with(norm),
		cmd("lease", "keep-alive", "--once", "{lease}").with(norm).expecting("keepalived with TTL(100)"),
		cmd("lease", "revoke", "{lease}").with(norm).expecting("revoked"),
	)

	// Cluster maintenance. A lone member: move-leader to itself succeeds
	// on etcd 3.7.3, and member promote and remove fail as etcd's do.
	sw.compare(
		cmd("alarm", "list"),
		cmd("alarm", "disarm"),
		cmd("defrag").with(chain(took, endpoint)).expecting("Finished defragmenting etcd member"),
		cmd("endpoint", "health").with(chain(took, endpoint)).expecting("is healthy"),
		cmd("move-leader", "{id}").with(normVars).expecting("Leadership transferred from {id} to {id}"),
		cmd("move-leader", "1234").expecting("bad leader transferee"),
		cmd("member", "promote", "{id}").expecting("can only promote a learner member"),
		cmd("member", "remove", "1234").expecting("member not found"),
		// meshkv's snapshot names etcd 3.6.0, the oldest version that
		// restores it, as the version to restore with.
		cmd("snapshot", "save", "{dir}/snap.db").with(chain(normVars, normRegexp(regexp.MustCompile(`(?m)^Server version 3\.[67]\.0$`), "Server version <3.6.0 or 3.7.0>"))).
			expecting("Snapshot saved at {dir}/snap.db"),
	)
	sw.mark([]string{"member", "list"})
	sw.mark([]string{"endpoint", "status"})
	memberCols := regexp.MustCompile(`(?m)^[0-9a-f]+, started, ` + memberName + `, ([^,]*), ([^,]*), false$`)
	// etcd's peer URL is http://127.0.0.1:PORT; meshkv's the mesh address,
	// https:// as its peer links are TLS.
	peerURL := regexp.MustCompile(`^https?://127\.0\.0\.1:[0-9]+$`)
	for _, s := range []*server{etcd, mkv} {
		res := s.ctl(t, "", "member", "list")
		m := memberCols.FindStringSubmatch(res.stdout)
		if res.code != 0 || m == nil || m[2] != s.clientURL || !peerURL.MatchString(m[1]) {
			t.Errorf("%s: member list: want one started member %s with a peer URL and client URL %s:\n%s", s.kind, memberName, s.clientURL, res)
		}
		if res := s.ctl(t, "", "endpoint", "status"); res.code != 0 || !strings.HasPrefix(res.stdout, s.endpoint+", "+s.vars["id"]+", 3.7.") {
			t.Errorf("%s: endpoint status: want %s, %s, 3.7.x, ...:\n%s", s.kind, s.endpoint, s.vars["id"], res)
		}
	}

	// Concurrency.
	sw.compare(cmd("lock", "sweep-lock", "echo", "locked").expecting("locked"))
	sw.mark([]string{"elect"})
	if e, m := runElection(t, etcd), runElection(t, mkv); e.observer != m.observer || e.first != m.first || e.second != m.second || !slices.Equal(e.codes, m.codes) {
		t.Errorf("etcdctl elect:\n--- etcd: %+v\n--- meshkv: %+v", e, m)
	}

	// make-mirror into the same server under another prefix: the mirror
	// reads the source at one revision, then follows its watch.
	sw.mark([]string{"make-mirror"})
	var mirrored [2]string
	for i, s := range []*server{etcd, mkv} {
		mm := startCtl(t, []string{s.endpoint}, "make-mirror", "--prefix=sweep/", "--dest-prefix=mirror/", s.endpoint)
		if res := s.ctl(t, "", "put", "sweep/late", "x"); res.code != 0 {
			t.Fatalf("%s: put: %s", s.kind, res)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			res := s.ctl(t, "", "get", "mirror/", "--prefix")
			if strings.Contains(res.stdout, "mirror/late") {
				mirrored[i] = res.stdout
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: make-mirror copied only %q; its stderr:\n%s", s.kind, res.stdout, tail(mm.errOut.String(), 2000))
			}
			time.Sleep(50 * time.Millisecond) // polling another process's effect
		}
		mm.stop()
	}
	if mirrored[0] != mirrored[1] || !strings.Contains(mirrored[0], "mirror/a\n10") {
		t.Errorf("etcdctl make-mirror copied:\n--- etcd:\n%s\n--- meshkv:\n%s", mirrored[0], mirrored[1])
	}

	// Authentication.
	root := "--user=root:rootpw"
	sw.compare(
		cmd("user", "add", "root", "--new-user-password=rootpw").expecting("User root created"),
		cmd("user", "add", "alice", "--new-user-password=alicepw"),
		cmd("user", "add", "bob", "--new-user-password=bobpw"),
		cmd("role", "add", "app").expecting("Role app created"),
		cmd("role", "add", "spare"),
		cmd("role", "grant-permission", "app", "readwrite", "--prefix", "sweep/").expecting("Role app updated"),
		cmd("role", "grant-permission", "app", "read", "pub"),
		cmd("role", "revoke-permission", "app", "pub").expecting("Permission of key pub is revoked from role app"),
		cmd("role", "get", "app").expecting("sweep/"),
		cmd("role", "list").expecting("spare"),
		cmd("role", "delete", "spare").expecting("Role spare deleted"),
		cmd("user", "grant-role", "alice", "app").expecting("Role app is granted to user alice"),
		cmd("user", "grant-role", "bob", "app"),
		cmd("user", "revoke-role", "bob", "app").expecting("Role app is revoked from user bob"),
		cmd("user", "get", "alice").expecting("Roles: app"),
		cmd("user", "list").expecting("bob"),
		cmd("user", "delete", "bob").expecting("User bob deleted"),
		cmd("user", "passwd", "alice", "--interactive=false").input("newpw\n").expecting("Password updated"),
		cmd("auth", "enable").expecting("Authentication Enabled"),
		cmd("auth", "status", root).expecting("Authentication Status: true"),
		cmd("get", "sweep/a", "--user=alice:newpw").expecting("10"),
		cmd("get", "sweep/a", "--user=alice:alicepw").expecting("authentication failed"),
		cmd("put", "pub", "1", "--user=alice:newpw").expecting("permission denied"),
		cmd("auth", "disable", root).expecting("Authentication Disabled"),
		cmd("auth", "status").expecting("Authentication Status: false"),
	)

	// check perf and check datascale load the server for about a minute;
	// their verdicts (PASS or FAIL, and so the exit status) depend on the
	// machine's speed and load, so both servers run them side by side and
	// must print the same checks and leave no keys behind.
	sw.mark([]string{"check", "perf"})
	sw.mark([]string{"check", "datascale"})
	checks := regexp.MustCompile(`Throughput|Slowest request|Stddev|Approximate system memory used`)
	checkLines := func(out string) []string { return checks.FindAllString(out, -1) }
	var perf, scale [2]ctlResult
	sw.each(func(s *server) {
		i := 0
		if s == mkv {
			i = 1
		}
		perf[i] = ctlFor(t, s, 3*time.Minute, "check", "perf", "--load=s", "--auto-compact", "--auto-defrag")
		scale[i] = ctlFor(t, s, 3*time.Minute, "check", "datascale", "--load=s", "--auto-compact", "--auto-defrag")
	})
	for _, c := range []struct {
		name string
		res  [2]ctlResult
	}{{"check perf", perf}, {"check datascale", scale}} {
		e, m := checkLines(c.res[0].stdout), checkLines(c.res[1].stdout)
		// Exit status 1 is a FAIL verdict; a failure of etcdctl itself
		// must be etcd's too.
		if len(e) == 0 || !slices.Equal(e, m) || c.res[1].code > 1 || (c.res[1].errors != "") != (c.res[0].errors != "") {
			t.Errorf("etcdctl %s:\n--- etcd: %s\n--- meshkv: %s", c.name, c.res[0], c.res[1])
		}
		t.Logf("%s verdicts: etcd exit %d %q; meshkv exit %d %q", c.name, c.res[0].code, e, c.res[1].code, m)
	}
	sw.compare(
		cmd("get", "/etcdctl-check-perf/", "--prefix", "--count-only", "-w", "json").with(normJSON(append(serverIDs, "revision")...)),
		cmd("get", "/etcdctl-check-datascale/", "--prefix", "--count-only", "-w", "json").with(normJSON(append(serverIDs, "revision")...)),
	)

	// Commands meshkv refuses on purpose fail cleanly with their reason.
	for name, na := range notApplicable {
		args := make([]string, len(na.args))
		for i, a := range na.args {
			args[i] = strings.ReplaceAll(a, "{id}", mkv.vars["id"])
		}
		res := mkv.ctl(t, "", args...)
		if res.code == 0 || !strings.Contains(res.errors, na.errSub) || strings.Contains(res.errors, "panic") {
			t.Errorf("not applicable %q: want a failure with %q, got:\n%s", name, na.errSub, res)
		}
	}

	// Every command etcdctl lists was compared or is not applicable, and
	// the table names only commands etcdctl has.
	all := etcdctlCommands(t)
	for _, c := range all {
		_, na := notApplicable[c]
		switch {
		case !na && !sw.ran[c]:
			t.Errorf("etcdctl %s is neither compared nor listed as not applicable", c)
		case na && sw.ran[c]:
			t.Errorf("etcdctl %s is both compared and listed as not applicable", c)
		}
	}
	for c := range notApplicable {
		if !slices.Contains(all, c) {
			t.Errorf("not applicable %q: etcdctl has no such command (commands: %q)", c, all)
		}
	}
}
