package cluster

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// netnsBinary returns a meshkv binary for the netns end-to-end test, or
// skips when this machine cannot run netns mode (not root, no iproute2).
// It uses $MESHKV_BIN, or builds one.
func netnsBinary(t *testing.T) string {
	t.Helper()
	if err := NetnsAvailable(); err != nil {
		t.Skipf("netns mode unavailable: %v", err)
	}
	if bin := os.Getenv("MESHKV_BIN"); bin != "" {
		return bin
	}
	bin := filepath.Join(t.TempDir(), "meshkv")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/meshkv/meshkv/cmd/meshkv").CombinedOutput()
	if err != nil {
		t.Fatalf("building meshkv: %v\n%s", err, out)
	}
	return bin
}

// ownNamespaces lists the namespaces of this test process.
func ownNamespaces(t *testing.T) []string {
	t.Helper()
	names, err := listNamespaces()
	if err != nil {
		t.Fatal(err)
	}
	o, err := selfOwner()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range names {
		if strings.HasPrefix(n, nsPrefix+o.tag()+"-") {
			out = append(out, n)
		}
	}
	return out
}

// TestNetnsCluster runs a 3-node meshkv cluster in network namespaces and
// checks the kernel-level faults: writes through every member, a silent
// two-way cut the members must work around, a one-way cut, a reset cut,
// the client veths untouched by isolation, and that Close removes every
// namespace and process.
func TestNetnsCluster(t *testing.T) {
	bin := netnsBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := Start(ctx, Config{Binary: bin, Net: Netns, Nodes: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if got := ownNamespaces(t); len(got) != 3 {
		t.Fatalf("namespaces = %q, want 3", got)
	}
	for _, n := range c.Nodes() {
		if !strings.HasPrefix(n.ClientURL, "http://10.201.") || !strings.HasPrefix(n.MeshAddr, "10.201.") || n.Netns == "" {
			t.Errorf("node %s placed at client %s, mesh %s, netns %q", n.Name, n.ClientURL, n.MeshAddr, n.Netns)
		}
	}
	put := func(n *Node, key string, timeout time.Duration) error {
		pctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		_, err := n.cli.Put(pctx, key, "v")
		return err
	}
	for _, n := range c.Running() {
		if err := put(n, "netns/"+n.Name, 5*time.Second); err != nil {
			t.Fatalf("put through %s: %v", n.Name, err)
		}
	}
	leader, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var fs []*Node
	for _, n := range c.Running() {
		if n != leader {
			fs = append(fs, n)
		}
	}

	// A silent cut of the leader's link to a follower: the follower keeps
	// taking writes once meshkv detours through the third member.
	if err := c.Cut(leader.Name, fs[0].Name, Silent); err != nil {
		t.Fatal(err)
	}
	if c.Connected(leader.Name, fs[0].Name) {
		t.Error("cut link reported connected")
	}
	retryPut(t, ctx, fs[0], "netns/silent", 30*time.Second)
	if err := c.HealAll(); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}

	// One way: nothing the leader sends reaches the follower; its writes
	// must still get through.
	if err := c.CutOneWay(leader.Name, fs[1].Name); err != nil {
		t.Fatal(err)
	}
	retryPut(t, ctx, fs[1], "netns/one-way", 30*time.Second)
	if err := c.Heal(leader.Name, fs[1].Name); err != nil {
		t.Fatal(err)
	}

	// Isolation cuts the peer veths only: the isolated node still answers
	// its client (a serializable read needs no peer).
	if err := c.Isolate(fs[0].Name, Reset); err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
	_, err = fs[0].cli.Get(rctx, "netns/x", withSerializable())
	rcancel()
	if err != nil {
		t.Errorf("serializable read through the isolated node's client veth: %v", err)
	}
	if err := put(leader, "netns/isolated", 10*time.Second); err != nil {
		t.Errorf("put through the leader while a follower is isolated: %v", err)
	}
	topos := c.Topologies()
	last := topos[len(topos)-1]
	if len(last.Blocked) != 4 {
		t.Errorf("topology after isolating %s blocks %v, want its 4 directions", fs[0].Name, last.Blocked)
	}
	if err := c.HealAll(); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}

	// A starved follower: the cluster counts as healthy without it, and it
	// gets next to no CPU.
	if err := StarveAvailable(StarveQuota); err == nil {
		if err := c.Starve(fs[1].Name); err != nil {
			t.Fatal(err)
		}
		if got := c.Starved(); !slices.Equal(got, []string{fs[1].Name}) {
			t.Errorf("Starved = %v", got)
		}
		if err := put(leader, "netns/starved", 10*time.Second); err != nil {
			t.Errorf("put through the leader while a follower starves: %v", err)
		}
		if err := c.WaitHealthy(ctx); err != nil {
			t.Errorf("not healthy without the starved follower: %v", err)
		}
		time.Sleep(2 * time.Second) // let the starvation be measurable
		if err := c.Unstarve(fs[1].Name); err != nil {
			t.Fatal(err)
		}
		st, err := c.LastStarve(fs[1].Name)
		if err != nil || st.Wall < 2*time.Second || st.Share() > 0.05 {
			t.Errorf("starvation stats %v, %v: want at least 2s with under 5%% of a CPU", st, err)
		}
		t.Logf("%s", st)
	}

	pids := []int{}
	for _, n := range c.Nodes() {
		pids = append(pids, n.PID())
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("pid %d still exists after Close (kill 0: %v)", pid, err)
		}
	}
	if got := ownNamespaces(t); len(got) != 0 {
		t.Errorf("namespaces left after Close: %q", got)
	}
	out, err := output("ip", "-o", "link", "show")
	if err != nil {
		t.Fatal(err)
	}
	o, _ := selfOwner()
	hv, _ := hostVethName(o, c.fab.(*nsFabric).run, 1)
	if strings.Contains(string(out), hv+"@") {
		t.Errorf("client veth %s left in the root namespace", hv)
	}
	if slices.Contains(c.Cuts(), "") {
		t.Error("empty cut description")
	}
}

func retryPut(t *testing.T, ctx context.Context, n *Node, key string, within time.Duration) {
	t.Helper()
	start := time.Now()
	var err error
	for time.Since(start) < within {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err = n.cli.Put(pctx, key, "v")
		cancel()
		if err == nil {
			t.Logf("put %s through %s after %v", key, n.Name, time.Since(start).Round(time.Millisecond))
			return
		}
	}
	t.Errorf("no put through %s within %v: %v", n.Name, within, err)
}

func withSerializable() clientv3.OpOption { return clientv3.WithSerializable() }

// TestNetnsEtcdCluster starts a 3-member etcd cluster in namespaces (when
// $MESHKV_ETCD_BIN names an etcd binary), cuts a follower off silently and
// checks that writes through the majority go on and everything is removed.
func TestNetnsEtcdCluster(t *testing.T) {
	if err := NetnsAvailable(); err != nil {
		t.Skipf("netns mode unavailable: %v", err)
	}
	bin := os.Getenv("MESHKV_ETCD_BIN")
	if bin == "" {
		t.Skip("set MESHKV_ETCD_BIN to an etcd binary (go run ./chaos build-etcd) to run etcd in namespaces")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := Start(ctx, Config{Binary: bin, Flavor: Etcd, Net: Netns, Nodes: 3, LogLevel: "warn"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	leader, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var f *Node
	for _, n := range c.Running() {
		if n != leader {
			f = n
			break
		}
	}
	if err := c.Isolate(f.Name, Silent); err != nil {
		t.Fatal(err)
	}
	retryPut(t, ctx, leader, "etcd/isolated", 10*time.Second)
	if _, err := c.AddNode(ctx); !errors.Is(err, ErrUnsupported) {
		t.Errorf("AddNode on etcd = %v, want ErrUnsupported", err)
	}
	if err := c.HealAll(); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if got := ownNamespaces(t); len(got) != 0 {
		t.Errorf("namespaces left after Close: %q", got)
	}
}

// TestReaper checks that the reaper deletes the namespaces of its prefix,
// and only those, once its pipe closes (as when the chaos process dies).
func TestReaper(t *testing.T) {
	if err := NetnsAvailable(); err != nil {
		t.Skipf("netns mode unavailable: %v", err)
	}
	o, err := selfOwner()
	if err != nil {
		t.Fatal(err)
	}
	mine, other := nsName(o, 99991, "n1"), nsName(o, 99992, "n1")
	for _, n := range []string{mine, other} {
		if err := run("", "ip", "netns", "add", n); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, n := range []string{mine, other} {
			_ = run("", "ip", "netns", "del", n)
		}
	})
	if _, err := startReaper("not-ours", ""); err == nil {
		t.Error("a reaper for a foreign prefix started")
	}
	r, err := startReaper(nsName(o, 99991, ""), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	got := ownNamespaces(t)
	if slices.Contains(got, mine) || !slices.Contains(got, other) {
		t.Errorf("after the reaper: %q; want %s gone and %s kept", got, mine, other)
	}
}
