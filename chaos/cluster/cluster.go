package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Errors of cluster operations.
var (
	// ErrClosed is returned by every operation after Close.
	ErrClosed = errors.New("cluster: closed")
	// ErrUnknownNode is returned for a node name the cluster never started.
	ErrUnknownNode = errors.New("cluster: unknown node")
	// ErrNoLeader is returned by Leader when no node is leader with the
	// support of a majority of the running nodes.
	ErrNoLeader = errors.New("cluster: no leader")
	// ErrExited is returned when a node's process exited on its own.
	ErrExited = errors.New("cluster: node process exited")
)

// State is what the chaos run did to a node's process.
type State int

// Node states.
const (
	Running State = iota + 1
	Paused
	Dead
)

func (s State) String() string {
	switch s {
	case Running:
		return "running"
	case Paused:
		return "paused"
	case Dead:
		return "dead"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Node is one meshkv process of the cluster.
type Node struct {
	// Name is the member name (n1, n2, ...; replacements get new names).
	Name string
	// ClientURL is the etcd client endpoint, http://127.0.0.1:PORT.
	ClientURL string
	// MeshAddr is the node's own mesh listen address (other nodes reach it
	// only through their proxies).
	MeshAddr string
	// LogPath is the file receiving the process's output.
	LogPath string

	proc *process
	cli  *clientv3.Client // control client, pinned to this node

	mu     sync.Mutex
	id     uint64 // raft member id, learnt from the node's Status
	killed bool
}

// PID is the process id.
func (n *Node) PID() int { return n.proc.pid() }

// ID is the node's raft member id, or 0 before it answered a Status.
func (n *Node) ID() uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.id
}

// State says whether the process runs, is paused or is dead (killed by the
// chaos run or exited on its own).
func (n *Node) State() State {
	n.mu.Lock()
	killed := n.killed
	n.mu.Unlock()
	switch {
	case killed || n.proc.exited():
		return Dead
	case n.proc.isPaused():
		return Paused
	}
	return Running
}

// Cluster is a running set of meshkv processes and the proxies between them.
// Its methods are safe for concurrent use.
type Cluster struct {
	cfg    Config
	log    *slog.Logger
	dir    string
	ownDir bool
	links  *links
	sp     *spawner
	wg     sync.WaitGroup // process waiters

	mu     sync.Mutex
	nodes  []*Node
	next   int // number of the next node name
	closed bool
	ports  map[int]bool
}

// Start launches cfg.Nodes meshkv processes that form one cluster, and waits
// (bounded by ctx) until they have a leader agreed by all of them and the
// expected number of voters. On error every started process is stopped.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	c := &Cluster{cfg: cfg, log: cfg.Logger, links: newLinks(), ports: map[int]bool{}, next: 1}
	if cfg.Dir == "" {
		d, err := os.MkdirTemp("", "meshkv-chaos-")
		if err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
		c.dir, c.ownDir = d, true
	} else {
		if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
		c.dir = cfg.Dir
	}
	c.sp = newSpawner()

	// Allocate every address first: each node's --peers are its proxies,
	// and each proxy needs its target's mesh address.
	planned := make([]*Node, cfg.Nodes)
	for i := range planned {
		n, err := c.plan()
		if err != nil {
			_ = c.Close()
			return nil, err
		}
		planned[i] = n
	}
	for _, n := range planned {
		if err := c.launch(n, planned); err != nil {
			_ = c.Close()
			return nil, err
		}
	}
	if err := c.waitFormed(ctx, planned); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// plan names a new node and picks its ports.
func (c *Cluster) plan() (*Node, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	clientPort, err := c.freePort()
	if err != nil {
		return nil, err
	}
	meshPort, err := c.freePort()
	if err != nil {
		return nil, err
	}
	name := "n" + strconv.Itoa(c.next)
	c.next++
	return &Node{
		Name:      name,
		ClientURL: "http://127.0.0.1:" + strconv.Itoa(clientPort),
		MeshAddr:  "127.0.0.1:" + strconv.Itoa(meshPort),
		LogPath:   filepath.Join(c.dir, name+".log"),
	}, nil
}

// freePort finds a loopback port nobody listens on and that this cluster has
// not handed out yet. Called with c.mu held.
func (c *Cluster) freePort() (int, error) {
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("cluster: find a free port: %w", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
		if !c.ports[port] {
			c.ports[port] = true
			return port, nil
		}
	}
	return 0, errors.New("cluster: no free port found")
}

// launch creates n's proxies to every peer in peers and starts its process.
func (c *Cluster) launch(n *Node, peers []*Node) error {
	var addrs []string
	for _, p := range peers {
		if p == n {
			continue
		}
		addr, err := c.links.add(n.Name, p.Name, p.MeshAddr)
		if err != nil {
			return err
		}
		addrs = append(addrs, addr)
	}
	args := []string{
		"--name", n.Name,
		"--listen-client-urls", n.ClientURL,
		"--mesh-listen", n.MeshAddr,
		"--peers", strings.Join(addrs, ","),
		"--peer-discovery=false",
		"--initial-cluster-size", strconv.Itoa(c.cfg.Nodes),
		"--cluster-name", c.cfg.ClusterName,
		"--heartbeat-interval", strconv.FormatInt(c.cfg.Heartbeat.Milliseconds(), 10),
		"--election-timeout", strconv.FormatInt(c.cfg.ElectionTimeout.Milliseconds(), 10),
		"--log-level", c.cfg.LogLevel,
	}
	if c.cfg.TargetVoters != 0 {
		args = append(args, "--target-voters", strconv.Itoa(c.cfg.TargetVoters))
	}
	args = append(args, c.cfg.ExtraArgs...)
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            []string{n.ClientURL},
		Logger:               zap.NewNop(),
		DialKeepAliveTime:    time.Second,
		DialKeepAliveTimeout: time.Second,
	})
	if err != nil {
		return fmt.Errorf("cluster: control client for %s: %w", n.Name, err)
	}
	n.cli = cli
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		_ = cli.Close()
		return ErrClosed
	}
	proc, err := startProcess(c.sp, &c.wg, c.cfg.Binary, args, n.LogPath)
	if err != nil {
		c.mu.Unlock()
		_ = cli.Close()
		return err
	}
	n.proc = proc
	c.nodes = append(c.nodes, n)
	c.mu.Unlock()
	c.log.Info("started node", "node", n.Name, "pid", proc.pid(), "client", n.ClientURL, "mesh", n.MeshAddr, "peers", addrs)
	return nil
}

// waitFormed waits until every node of the initial set answers Status, a
// leader is agreed and the expected voters are members.
func (c *Cluster) waitFormed(ctx context.Context, nodes []*Node) error {
	want := min(len(nodes), c.targetVoters())
	err := poll(ctx, 50*time.Millisecond, func() (bool, error) {
		for _, n := range nodes {
			if n.proc.exited() {
				return false, fmt.Errorf("%w: %s (%v); log tail:\n%s", ErrExited, n.Name, n.proc.exitErr(), tail(n.LogPath, 15))
			}
			if _, err := c.statusOf(ctx, n); err != nil {
				return false, nil
			}
		}
		if _, err := c.Leader(ctx); err != nil {
			return false, nil
		}
		voters, _, err := c.memberCounts(ctx)
		return err == nil && voters >= want, nil
	})
	if err != nil {
		return fmt.Errorf("cluster: %d nodes did not form a cluster with %d voters: %w", len(nodes), want, err)
	}
	c.log.Info("cluster formed", "nodes", len(nodes), "voters", want)
	return nil
}

func (c *Cluster) targetVoters() int {
	if c.cfg.TargetVoters != 0 {
		return c.cfg.TargetVoters
	}
	return 3
}

// Dir is the directory holding the nodes' logs.
func (c *Cluster) Dir() string { return c.dir }

// Nodes lists every node ever started, dead ones included, in start order.
func (c *Cluster) Nodes() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.nodes)
}

// Running lists the nodes whose process runs (not paused, not dead).
func (c *Cluster) Running() []*Node {
	var out []*Node
	for _, n := range c.Nodes() {
		if n.State() == Running {
			out = append(out, n)
		}
	}
	return out
}

// Alive lists the nodes that are not dead (running or paused).
func (c *Cluster) Alive() []*Node {
	var out []*Node
	for _, n := range c.Nodes() {
		if n.State() != Dead {
			out = append(out, n)
		}
	}
	return out
}

// Node finds a node by name.
func (c *Cluster) Node(name string) (*Node, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.nodes {
		if n.Name == name {
			return n, nil
		}
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownNode, name)
}

// Endpoints are the client URLs of the nodes that are not dead.
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, n := range c.Alive() {
		out = append(out, n.ClientURL)
	}
	return out
}

// Names returns the names of nodes.
func Names(nodes []*Node) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.Name
	}
	return out
}

func (c *Cluster) checkOpen() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	return nil
}

// Cut breaks the link between nodes a and b in both directions.
func (c *Cluster) Cut(a, b string, kind Cut) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	if err := c.links.cut(a, b, kind); err != nil {
		return err
	}
	c.log.Info("cut link", "a", a, "b", b, "kind", kind)
	return nil
}

// CutOneWay silently drops what node from sends to node to; the other
// direction keeps working.
func (c *Cluster) CutOneWay(from, to string) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	if err := c.links.cutOneWay(from, to); err != nil {
		return err
	}
	c.log.Info("cut link one way", "from", from, "to", to)
	return nil
}

// Heal restores the link between a and b.
func (c *Cluster) Heal(a, b string) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	if err := c.links.heal(a, b); err != nil {
		return err
	}
	c.log.Info("healed link", "a", a, "b", b)
	return nil
}

// HealAll restores every link.
func (c *Cluster) HealAll() error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	if err := c.links.healAll(); err != nil {
		return err
	}
	c.log.Info("healed all links")
	return nil
}

// Partition cuts every link between nodes of different groups. Links inside
// a group, and links of nodes in no group, are left as they are.
func (c *Cluster) Partition(kind Cut, groups ...[]string) error {
	for i, g := range groups {
		for _, h := range groups[i+1:] {
			for _, a := range g {
				for _, b := range h {
					if err := c.links.cut(a, b, kind); err != nil && !errors.Is(err, ErrNoLink) {
						return err
					}
				}
			}
		}
	}
	c.log.Info("partitioned", "groups", groups, "kind", kind)
	return nil
}

// Isolate cuts every link of node name.
func (c *Cluster) Isolate(name string, kind Cut) error {
	peers := c.links.peersOf(name)
	if len(peers) == 0 {
		return fmt.Errorf("%w: %q has no links", ErrUnknownNode, name)
	}
	return c.Partition(kind, []string{name}, peers)
}

// Connected reports whether a and b have an open proxied connection and
// their link is not cut.
func (c *Cluster) Connected(a, b string) bool { return c.links.connected(a, b) }

// Cuts describes the links cut now, as "a-b: kind".
func (c *Cluster) Cuts() []string { return c.links.cuts() }

// Kill sends SIGKILL to node name and waits until it is gone.
func (c *Cluster) Kill(name string) error {
	n, err := c.Node(name)
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.killed = true
	n.mu.Unlock()
	if err := n.proc.kill(); err != nil {
		return err
	}
	c.log.Info("killed node", "node", name, "pid", n.PID())
	return nil
}

// Pause stops node name with SIGSTOP.
func (c *Cluster) Pause(name string) error {
	n, err := c.Node(name)
	if err != nil {
		return err
	}
	if err := n.proc.pause(); err != nil {
		return err
	}
	c.log.Info("paused node", "node", name, "pid", n.PID())
	return nil
}

// Resume continues a paused node with SIGCONT.
func (c *Cluster) Resume(name string) error {
	n, err := c.Node(name)
	if err != nil {
		return err
	}
	if err := n.proc.resume(); err != nil {
		return err
	}
	c.log.Info("resumed node", "node", name, "pid", n.PID())
	return nil
}

// AddNode starts a fresh node (new name, empty store) that reaches every
// node that is not dead through new proxies, and waits (bounded by ctx) until
// it answers Status, which it does once it has joined the cluster.
func (c *Cluster) AddNode(ctx context.Context) (*Node, error) {
	n, err := c.plan()
	if err != nil {
		return nil, err
	}
	peers := append(c.Alive(), n)
	if err := c.launch(n, peers); err != nil {
		return nil, err
	}
	err = poll(ctx, 50*time.Millisecond, func() (bool, error) {
		if n.proc.exited() {
			return false, fmt.Errorf("%w: %s (%v); log tail:\n%s", ErrExited, n.Name, n.proc.exitErr(), tail(n.LogPath, 15))
		}
		_, err := c.statusOf(ctx, n)
		return err == nil, nil
	})
	if err != nil {
		return n, fmt.Errorf("cluster: new node %s did not join: %w", n.Name, err)
	}
	c.log.Info("node joined", "node", n.Name, "id", fmt.Sprintf("%x", n.ID()))
	return n, nil
}

// Status asks node name for its Maintenance status.
func (c *Cluster) Status(ctx context.Context, name string) (*pb.StatusResponse, error) {
	n, err := c.Node(name)
	if err != nil {
		return nil, err
	}
	return c.statusOf(ctx, n)
}

// statusTimeout bounds one Status call: a cut or paused node must not hold up
// a poll.
const statusTimeout = 500 * time.Millisecond

func (c *Cluster) statusOf(ctx context.Context, n *Node) (*pb.StatusResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	resp, err := pb.NewMaintenanceClient(n.cli.ActiveConnection()).Status(ctx, &pb.StatusRequest{})
	if err != nil {
		return nil, fmt.Errorf("cluster: status of %s: %w", n.Name, err)
	}
	if resp.Header != nil && resp.Header.MemberId != 0 {
		n.mu.Lock()
		n.id = resp.Header.MemberId
		n.mu.Unlock()
	}
	return resp, nil
}

// statuses asks every running node for its status, in parallel.
func (c *Cluster) statuses(ctx context.Context) map[*Node]*pb.StatusResponse {
	nodes := c.Running()
	out := make(map[*Node]*pb.StatusResponse, len(nodes))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(func() {
			if s, err := c.statusOf(ctx, n); err == nil {
				mu.Lock()
				out[n] = s
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return out
}

// byID finds a node by raft member id.
func (c *Cluster) byID(id uint64) *Node {
	for _, n := range c.Nodes() {
		if n.ID() == id && id != 0 {
			return n
		}
	}
	return nil
}

// Leader is the node that claims leadership with the highest term and is
// named leader by a majority of the nodes that are not dead.
func (c *Cluster) Leader(ctx context.Context) (*Node, error) {
	st := c.statuses(ctx)
	var best *Node
	var bestTerm uint64
	for n, s := range st {
		if s.Leader != 0 && s.Leader == n.ID() && (best == nil || s.RaftTerm > bestTerm) {
			best, bestTerm = n, s.RaftTerm
		}
	}
	if best == nil {
		return nil, ErrNoLeader
	}
	votes := 0
	for _, s := range st {
		if s.Leader == best.ID() {
			votes++
		}
	}
	if alive := len(c.Alive()); votes <= alive/2 {
		return nil, fmt.Errorf("%w: %s claims it with %d of %d nodes", ErrNoLeader, best.Name, votes, alive)
	}
	return best, nil
}

// WaitLeader polls until Leader succeeds or ctx ends.
func (c *Cluster) WaitLeader(ctx context.Context) (*Node, error) {
	var leader *Node
	err := poll(ctx, 50*time.Millisecond, func() (bool, error) {
		l, err := c.Leader(ctx)
		leader = l
		return err == nil, nil
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: waiting for a leader: %w", err)
	}
	return leader, nil
}

// Members lists the raft members, as a running node reports them.
func (c *Cluster) Members(ctx context.Context) ([]*pb.Member, error) {
	var last error = ErrNoLeader
	for _, n := range c.Running() {
		cctx, cancel := context.WithTimeout(ctx, statusTimeout)
		resp, err := n.cli.MemberList(cctx)
		cancel()
		if err == nil {
			return resp.Members, nil
		}
		last = err
	}
	return nil, fmt.Errorf("cluster: member list: %w", last)
}

func (c *Cluster) memberCounts(ctx context.Context) (voters, learners int, err error) {
	ms, err := c.Members(ctx)
	if err != nil {
		return 0, 0, err
	}
	for _, m := range ms {
		if m.IsLearner {
			learners++
		} else {
			voters++
		}
	}
	return voters, learners, nil
}

// WaitHealthy waits until every running node agrees on one leader, every
// running node has applied what the leader had committed when the wait
// began, and a linearizable read through every running voter succeeds.
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	var target uint64
	var why string
	err := poll(ctx, 100*time.Millisecond, func() (bool, error) {
		if err := c.checkOpen(); err != nil {
			return false, err
		}
		st := c.statuses(ctx)
		running := c.Running()
		if len(st) < len(running) {
			why = fmt.Sprintf("%d of %d running nodes answer Status", len(st), len(running))
			return false, nil
		}
		leader, err := c.Leader(ctx)
		if err != nil {
			why = err.Error()
			return false, nil
		}
		for n, s := range st {
			if s.Leader != leader.ID() {
				why = fmt.Sprintf("%s follows %x, not %s", n.Name, s.Leader, leader.Name)
				return false, nil
			}
		}
		if target == 0 {
			if s := st[leader]; s != nil {
				target = s.RaftIndex
			}
			why = "sampling the leader's commit index"
			return false, nil
		}
		for n, s := range st {
			if s.RaftAppliedIndex < target {
				why = fmt.Sprintf("%s applied %d of %d", n.Name, s.RaftAppliedIndex, target)
				return false, nil
			}
		}
		for n, s := range st {
			if s.IsLearner {
				continue
			}
			rctx, cancel := context.WithTimeout(ctx, time.Second)
			_, err := n.cli.Get(rctx, "chaos-health")
			cancel()
			if err != nil {
				why = fmt.Sprintf("linearizable read through %s: %v", n.Name, err)
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("cluster: not healthy (%s): %w", why, err)
	}
	return nil
}

// DumpStacks makes every node that is not dead write its goroutine stacks to
// its log (SIGQUIT: the Go runtime prints every goroutine and exits; paused
// nodes are continued first) and waits, bounded by ctx, for them to exit. It
// is for diagnosing a cluster that stopped answering: the nodes are dead
// afterwards.
func (c *Cluster) DumpStacks(ctx context.Context) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	var errs []error
	nodes := c.Alive()
	for _, n := range nodes {
		if n.proc.isPaused() {
			_ = n.proc.resume()
		}
		if err := n.proc.signal(syscall.SIGQUIT); err != nil && !errors.Is(err, ErrNotRunning) {
			errs = append(errs, err)
		}
	}
	for _, n := range nodes {
		select {
		case <-n.proc.donec:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("cluster: %s did not exit after SIGQUIT: %w", n.Name, ctx.Err()))
		}
	}
	c.log.Info("dumped goroutine stacks into the node logs", "nodes", Names(nodes))
	return errors.Join(errs...)
}

// Close kills every process by PID (paused ones too), closes the proxies and
// the control clients, and removes the log directory if Start created it. It
// is idempotent.
func (c *Cluster) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		c.wg.Wait()
		return nil
	}
	c.closed = true
	nodes := slices.Clone(c.nodes)
	c.mu.Unlock()

	var errs []error
	for _, n := range nodes {
		if err := n.proc.kill(); err != nil {
			errs = append(errs, err)
		}
		if n.cli != nil {
			_ = n.cli.Close()
		}
	}
	c.wg.Wait()
	if c.sp != nil {
		c.sp.close()
	}
	errs = append(errs, c.links.close())
	if c.ownDir {
		errs = append(errs, os.RemoveAll(c.dir))
	}
	c.log.Info("cluster stopped", "nodes", len(nodes))
	return errors.Join(errs...)
}

// poll calls cond every interval until it reports done, returns an error, or
// ctx ends.
func poll(ctx context.Context, interval time.Duration, cond func() (bool, error)) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		done, err := cond()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-t.C:
		}
	}
}

// tail returns the last n lines of a file, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
