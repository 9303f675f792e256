package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// meshCluster is n meshkv processes that met over the mesh on loopback and
// formed one cluster.
type meshCluster struct {
	procs []*server
	names []string
}

// endpoints returns the client endpoints of the given members (all when
// none is given).
func (c *meshCluster) endpoints(members ...int) []string {
	if len(members) == 0 {
		for i := range c.procs {
			members = append(members, i)
		}
	}
	var eps []string
	for _, i := range members {
		eps = append(eps, c.procs[i].endpoint)
	}
	return eps
}

// startMeshCluster starts n meshkv processes with --initial-cluster-size n, a
// cluster name of their own, every other member in --peers and fast raft
// timing, and waits until each serves reads.
func startMeshCluster(t *testing.T, n int) *meshCluster {
	t.Helper()
	cluster := fmt.Sprintf("e2e-%x", rand.Uint64())
	cports, mports := make([]int, n), make([]int, n)
	for i := range n {
		cports[i], mports[i] = freePort(t), freePort(t)
	}
	c := &meshCluster{}
	// Every process starts before any is waited for: none is ready until
	// all of them have met.
	for i := range n {
		var peers []string
		for j := range n {
			if j != i {
				peers = append(peers, fmt.Sprintf("127.0.0.1:%d", mports[j]))
			}
		}
		name := fmt.Sprintf("m%d", i)
		client := fmt.Sprintf("http://127.0.0.1:%d", cports[i])
		c.names = append(c.names, name)
		c.procs = append(c.procs, startProcessNoWait(t, "meshkv "+name, cports[i], bins.meshkv,
			"--name", name,
			"--listen-client-urls", client, "--advertise-client-urls", client,
			"--mesh-listen", fmt.Sprintf("127.0.0.1:%d", mports[i]),
			"--peers", strings.Join(peers, ","),
			"--cluster-name", cluster,
			"--initial-cluster-size", strconv.Itoa(n),
			"--heartbeat-interval", "50", "--election-timeout", "500",
			"--log-level", "warn"))
	}
	for _, s := range c.procs {
		s.waitReady(t)
	}
	return c
}

// ctlAt runs etcdctl against the given endpoints.
func ctlAt(t *testing.T, endpoints []string, stdin string, args ...string) ctlResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	full := append([]string{"--endpoints=" + strings.Join(endpoints, ","), "--dial-timeout=5s", "--command-timeout=20s"}, args...)
	cmd := exec.CommandContext(ctx, bins.etcdctl, full...)
	cmd.Stdin = strings.NewReader(stdin)
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
		t.Fatalf("run etcdctl %v: %v", args, err)
	}
	return res
}

// mustCtl runs etcdctl and fails the test unless it succeeds.
func mustCtl(t *testing.T, endpoints []string, args ...string) string {
	t.Helper()
	res := ctlAt(t, endpoints, "", args...)
	if res.code != 0 || res.errors != "" {
		t.Fatalf("etcdctl --endpoints=%s %s:\n%s", strings.Join(endpoints, ","), strings.Join(args, " "), res)
	}
	return res.stdout
}

// bgCtl is an etcdctl process running in the background (watch, elect).
type bgCtl struct {
	cmd    *exec.Cmd
	out    *syncBuffer // stdout
	errOut *syncBuffer // stderr
	done   chan struct{}
}

// startCtl starts etcdctl in the background; the test's cleanup stops it.
func startCtl(t *testing.T, endpoints []string, args ...string) *bgCtl {
	t.Helper()
	b := &bgCtl{out: &syncBuffer{}, errOut: &syncBuffer{}, done: make(chan struct{})}
	b.cmd = exec.Command(bins.etcdctl, append([]string{"--endpoints=" + strings.Join(endpoints, ","), "--dial-timeout=5s"}, args...)...)
	b.cmd.Stdout, b.cmd.Stderr = b.out, b.errOut
	dieWithTest(b.cmd)
	if err := b.cmd.Start(); err != nil {
		t.Fatalf("start etcdctl %v: %v", args, err)
	}
	go func() {
		_ = b.cmd.Wait()
		close(b.done)
	}()
	t.Cleanup(func() { b.stop() })
	return b
}

// waitOutput waits until the process's stdout contains want.
func (b *bgCtl) waitOutput(t *testing.T, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for !strings.Contains(b.out.String(), want) {
		select {
		case <-b.done:
			if strings.Contains(b.out.String(), want) {
				return
			}
			t.Fatalf("etcdctl %v exited (%v) without printing %q; stdout:\n%s\nstderr:\n%s",
				b.cmd.Args[2:], b.cmd.ProcessState, want, b.out.String(), tail(b.errOut.String(), 2000))
		case <-deadline:
			t.Fatalf("etcdctl %v did not print %q in %v; stdout:\n%s", b.cmd.Args[2:], want, timeout, b.out.String())
		case <-time.After(20 * time.Millisecond): // polling another process's output
		}
	}
}

// stop sends SIGTERM (SIGKILL after 10 s) and returns the exit code, -1 if
// the process was killed.
func (b *bgCtl) stop() int {
	select {
	case <-b.done:
	default:
		_ = b.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-b.done:
		case <-time.After(10 * time.Second):
			_ = b.cmd.Process.Kill()
			<-b.done
		}
	}
	return b.cmd.ProcessState.ExitCode()
}

// memberListJSON is etcdctl member list -w json.
type memberListJSON struct {
	Header struct {
		MemberID uint64 `json:"member_id"`
	}
	Members []memberJSON
}

// memberJSON is one member in etcdctl's JSON output.
type memberJSON struct {
	ID         uint64
	Name       string
	ClientURLs []string
	IsLearner  bool `json:"isLearner"`
}

func memberList(t *testing.T, endpoints []string) memberListJSON {
	t.Helper()
	var ml memberListJSON
	out := mustCtl(t, endpoints, "member", "list", "-w", "json")
	if err := json.Unmarshal([]byte(out), &ml); err != nil {
		t.Fatalf("member list -w json: %v\n%s", err, out)
	}
	return ml
}

// endpointStatusJSON is one entry of etcdctl endpoint status -w json.
type endpointStatusJSON struct {
	Endpoint string
	Status   struct {
		Header struct {
			MemberID uint64 `json:"member_id"`
			Revision int64
		}
		Leader   uint64 `json:"leader"`
		RaftTerm uint64 `json:"raftTerm"`
	}
}

func endpointStatus(t *testing.T, endpoints []string) []endpointStatusJSON {
	t.Helper()
	var st []endpointStatusJSON
	out := mustCtl(t, endpoints, "endpoint", "status", "-w", "json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("endpoint status -w json: %v\n%s", err, out)
	}
	if len(st) != len(endpoints) {
		t.Fatalf("endpoint status: %d entries for %d endpoints:\n%s", len(st), len(endpoints), out)
	}
	return st
}

// leaderOf waits until every endpoint reports one and the same leader and
// returns it with the member id of each endpoint.
func leaderOf(t *testing.T, endpoints []string) (leader uint64, ids map[string]uint64) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		st := endpointStatus(t, endpoints)
		ids = map[string]uint64{}
		leaders := map[uint64]bool{}
		for _, s := range st {
			ids[s.Endpoint] = s.Status.Header.MemberID
			leaders[s.Status.Leader] = true
		}
		if len(leaders) == 1 && !leaders[0] {
			for l := range leaders {
				return l, ids
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("endpoints disagree on the leader for 15s: %+v", st)
		}
		time.Sleep(100 * time.Millisecond) // polling other processes
	}
}

var (
	grantedLeaseID = regexp.MustCompile(`^lease ([0-9a-f]+) granted with TTL\((\d+)s\)\n$`)
	removedMember  = regexp.MustCompile(`^Member\s+([0-9a-f]+) removed from cluster\s+[0-9a-f]+\n$`)
	transferred    = regexp.MustCompile(`^Leadership transferred from ([0-9a-f]+) to ([0-9a-f]+)\n$`)
)

// TestClusterEtcdctlThreeProcesses drives three meshkv processes with the
// real etcdctl, each command against a member of its own: writes and reads
// across members, member list and endpoint status, move-leader, leases
// granted, attached, kept alive and revoked through different members, a
// watch through a third, and member remove (the removed process exits with an
// error status).
func TestClusterEtcdctlThreeProcesses(t *testing.T) {
	t.Parallel()
	start := time.Now()
	c := startMeshCluster(t, 3)
	t.Logf("three meshkv processes formed a cluster in %v", time.Since(start).Round(time.Millisecond))
	ep := func(i int) []string { return c.endpoints(i) }

	// Writes through one member, linearizable reads through the others.
	for i := range 3 {
		key := fmt.Sprintf("via-m%d", i)
		mustCtl(t, ep(i), "put", key, "value-"+key)
		for j := range 3 {
			if got, want := mustCtl(t, ep(j), "get", key), key+"\nvalue-"+key+"\n"; got != want {
				t.Errorf("get %s via m%d after put via m%d: %q, want %q", key, j, i, got, want)
			}
		}
	}

	// member list: the same three members, with names and client URLs, from
	// each member.
	var ids []uint64
	for i := range 3 {
		ml := memberList(t, ep(i))
		byName := map[string][]string{}
		var seen []uint64
		for _, m := range ml.Members {
			byName[m.Name] = m.ClientURLs
			seen = append(seen, m.ID)
			if m.IsLearner {
				t.Errorf("member list via m%d: %s is a learner", i, m.Name)
			}
		}
		if len(ml.Members) != 3 {
			t.Fatalf("member list via m%d: %d members, want 3: %+v", i, len(ml.Members), ml.Members)
		}
		for j, s := range c.procs {
			if urls := byName[c.names[j]]; !slices.Equal(urls, []string{s.clientURL}) {
				t.Errorf("member list via m%d: %s has client URLs %v, want [%s]", i, c.names[j], urls, s.clientURL)
			}
		}
		if !slices.Contains(seen, ml.Header.MemberID) {
			t.Errorf("member list via m%d: header member %x is not listed", i, ml.Header.MemberID)
		}
		slices.Sort(seen)
		if ids == nil {
			ids = seen
		} else if !slices.Equal(ids, seen) {
			t.Errorf("member list via m%d lists %x, m0 lists %x", i, seen, ids)
		}
	}
	simple := mustCtl(t, ep(1), "member", "list")
	for j, s := range c.procs {
		if !strings.Contains(simple, ", started, "+c.names[j]+", ") || !strings.Contains(simple, s.clientURL) {
			t.Errorf("member list (simple) lacks %s at %s:\n%s", c.names[j], s.clientURL, simple)
		}
	}

	// endpoint status on all three: one leader, the same for each.
	leader, memberOf := leaderOf(t, c.endpoints())
	leaderIdx := -1
	for i, s := range c.procs {
		if memberOf[s.endpoint] == leader {
			leaderIdx = i
		}
	}
	if leaderIdx < 0 {
		t.Fatalf("the leader %x is none of the endpoints' members %v", leader, memberOf)
	}
	table := mustCtl(t, c.endpoints(), "endpoint", "status", "-w", "table")
	rows := tableRows(t, table)
	col := slices.Index(rows[0], "IS LEADER")
	leaders := 0
	for _, r := range rows[1:] {
		if col >= 0 && col < len(r) && r[col] == "true" {
			leaders++
		}
	}
	if len(rows) != 4 || leaders != 1 {
		t.Errorf("endpoint status -w table: %d rows, %d say IS LEADER true; want 3 rows and 1 leader:\n%s", len(rows)-1, leaders, table)
	}

	// move-leader, given every endpoint: etcdctl finds the leader itself.
	target := (leaderIdx + 1) % 3
	targetID := memberOf[c.procs[target].endpoint]
	out := mustCtl(t, c.endpoints(), "move-leader", fmt.Sprintf("%x", targetID))
	if m := transferred.FindStringSubmatch(out); m == nil || m[1] != fmt.Sprintf("%x", leader) || m[2] != fmt.Sprintf("%x", targetID) {
		t.Errorf("move-leader printed %q, want a transfer from %x to %x", out, leader, targetID)
	}
	if got, _ := leaderOf(t, c.endpoints()); got != targetID {
		t.Errorf("after move-leader the leader is %x, want %x", got, targetID)
	}
	// Sent only to a follower, move-leader fails as etcd's does.
	follower := (target + 1) % 3
	if res := ctlAt(t, ep(follower), "", "move-leader", fmt.Sprintf("%x", memberOf[c.procs[follower].endpoint])); res.code == 0 {
		t.Errorf("move-leader with only a follower's endpoint succeeded:\n%s", res)
	}

	// Leases across members: grant via m0, attach via m1, keep alive via
	// m2, inspect via m1, revoke via m2; a watch via m2 follows it all.
	g := mustCtl(t, ep(0), "lease", "grant", "60")
	m := grantedLeaseID.FindStringSubmatch(g)
	if m == nil || m[2] != "60" {
		t.Fatalf("lease grant printed %q", g)
	}
	lease := m[1]
	// The watch starts at the next revision, so it sees everything below
	// however long etcdctl takes to register it.
	var hdr struct {
		Header struct{ Revision int64 }
	}
	if err := json.Unmarshal([]byte(mustCtl(t, ep(2), "get", "leased/", "--prefix", "-w", "json")), &hdr); err != nil || hdr.Header.Revision == 0 {
		t.Fatalf("current revision: %v %+v", err, hdr)
	}
	w := startCtl(t, ep(2), "watch", "leased/", "--prefix", fmt.Sprintf("--rev=%d", hdr.Header.Revision+1))
	mustCtl(t, ep(0), "put", "leased/ready", "x")
	w.waitOutput(t, "leased/ready\nx\n", 10*time.Second)
	mustCtl(t, ep(1), "put", "leased/a", "1", "--lease="+lease)
	mustCtl(t, ep(0), "put", "leased/b", "2", "--lease="+lease)
	if out := mustCtl(t, ep(2), "lease", "keep-alive", "--once", lease); out != fmt.Sprintf("lease %s keepalived with TTL(60)\n", lease) {
		t.Errorf("lease keep-alive --once via m2: %q", out)
	}
	ttl := mustCtl(t, ep(1), "lease", "timetolive", lease, "--keys")
	if !strings.HasPrefix(ttl, "lease "+lease+" granted with TTL(60s), remaining(") || !strings.Contains(ttl, "leased/a") || !strings.Contains(ttl, "leased/b") {
		t.Errorf("lease timetolive --keys via m1: %q", ttl)
	}
	if out := mustCtl(t, ep(0), "lease", "list"); !strings.Contains(out, lease) {
		t.Errorf("lease list via m0 lacks %s: %q", lease, out)
	}
	if out := mustCtl(t, ep(2), "lease", "revoke", lease); out != fmt.Sprintf("lease %s revoked\n", lease) {
		t.Errorf("lease revoke via m2: %q", out)
	}
	for i := range 3 {
		if out := mustCtl(t, ep(i), "get", "leased/", "--prefix", "--keys-only"); out != "leased/ready\n\n" {
			t.Errorf("keys under leased/ via m%d after the revoke: %q, want only leased/ready", i, out)
		}
	}
	// Revoke deletes the attached keys in key order, in one revision.
	want := "PUT\nleased/ready\nx\nPUT\nleased/a\n1\nPUT\nleased/b\n2\nDELETE\nleased/a\n\nDELETE\nleased/b\n\n"
	w.waitOutput(t, "DELETE\nleased/b\n", 10*time.Second)
	if got := w.out.String(); got != want {
		t.Errorf("etcdctl watch via m2 printed:\n%s\nwant:\n%s", got, want)
	}
	w.stop()

	// member remove of a follower, through another member: the removed
	// process exits on its own with an error status.
	leader, memberOf = leaderOf(t, c.endpoints())
	victim := -1
	for i, s := range c.procs {
		if memberOf[s.endpoint] != leader {
			victim = i
			break
		}
	}
	via := (victim + 1) % 3
	victimID := memberOf[c.procs[victim].endpoint]
	out = mustCtl(t, ep(via), "member", "remove", fmt.Sprintf("%x", victimID))
	if m := removedMember.FindStringSubmatch(out); m == nil || m[1] != fmt.Sprintf("%x", victimID) {
		t.Errorf("member remove printed %q, want the removal of %x", out, victimID)
	}
	removedAt := time.Now()
	select {
	case <-c.procs[victim].exited:
	case <-time.After(20 * time.Second):
		t.Fatalf("the removed member %s still runs 20s after member remove", c.names[victim])
	}
	code := c.procs[victim].cmd.ProcessState.ExitCode()
	t.Logf("removed member %s exited with status %d %v after member remove", c.names[victim], code, time.Since(removedAt).Round(time.Millisecond))
	if code == 0 {
		t.Errorf("the removed member exited with status 0, want an error status")
	}
	if !strings.Contains(c.procs[victim].out.String(), "removed") {
		t.Errorf("the removed member's log does not say it was removed:\n%s", tail(c.procs[victim].out.String(), 2000))
	}
	var rest []int
	for i := range 3 {
		if i != victim {
			rest = append(rest, i)
		}
	}
	ml := memberList(t, c.endpoints(rest...))
	if len(ml.Members) != 2 || slices.ContainsFunc(ml.Members, func(m memberJSON) bool { return m.ID == victimID }) {
		t.Errorf("member list after removing %x: %+v", victimID, ml.Members)
	}
	// The two remaining members still commit.
	mustCtl(t, ep(rest[0]), "put", "after-remove", "ok")
	if got := mustCtl(t, ep(rest[1]), "get", "after-remove", "--print-value-only"); got != "ok\n" {
		t.Errorf("get after the removal: %q", got)
	}
}
