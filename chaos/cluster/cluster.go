package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

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
	// ClientURL is the etcd client endpoint: http://127.0.0.1:PORT in proxy
	// mode, the member end of its client veth in netns mode.
	ClientURL string
	// MeshAddr is the node's own mesh (meshkv) or peer (etcd) listen
	// address. In proxy mode other nodes reach it only through their
	// proxies; in netns mode it is the node address in its namespace.
	MeshAddr string
	// Netns is the name of the node's network namespace (netns mode).
	Netns string
	// LogPath is the file receiving the process's output.
	LogPath string

	netns string // path of the namespace, for starting the process
	proc  *process
	cli   *clientv3.Client // control client, pinned to this node

	mu          sync.Mutex
	id          uint64 // raft member id, learnt from the node's Status
	killed      bool
	starved     *starvation
	starveStats StarveStats // of the last starvation that ended
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

// Cluster is a running set of server processes and the network between
// them. Its methods are safe for concurrent use.
type Cluster struct {
	cfg    Config
	log    *slog.Logger
	dir    string
	ownDir bool
	fab    fabric
	sp     *spawner
	wg     sync.WaitGroup // process waiters

	owner    owner  // this process, in the names of namespaces and cgroups
	run      int    // random per cluster, ditto
	secret   string // per-cluster random: meshkv's mesh password, etcd's cluster token
	password string // file holding the mesh password (meshkv)
	dataDir  string // etcd data directories, removed by Close
	initial  string // etcd's --initial-cluster

	mu      sync.Mutex
	nodes   []*Node
	next    int // number of the next node name
	closed  bool
	blocked blockState
	topos   []Topology
}

// Start launches cfg.Nodes server processes that form one cluster, and
// waits (bounded by ctx) until they have a leader agreed by all of them and
// the expected number of voters. On error every started process, namespace
// and temporary file is removed. In netns mode on a machine that cannot
// create namespaces, the error wraps ErrNetnsUnavailable.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	o, err := selfOwner()
	if err != nil {
		return nil, err
	}
	c := &Cluster{cfg: cfg, log: cfg.Logger, next: 1, blocked: blockState{}, owner: o, run: mrand.IntN(36 * 36 * 36)}
	switch cfg.Net {
	case Netns:
		f, err := newNSFabric(cfg.Logger, c.owner, c.run)
		if err != nil {
			return nil, err
		}
		c.fab = f
	default:
		c.fab = newProxyFabric()
	}
	c.sp = newSpawner()
	if err := c.prepare(); err != nil {
		_ = c.Close()
		return nil, err
	}

	// Place every node first: each node's command line names its peers.
	planned := make([]*Node, cfg.Nodes)
	for i := range planned {
		n, err := c.plan()
		if err != nil {
			_ = c.Close()
			return nil, err
		}
		planned[i] = n
	}
	if cfg.Flavor == Etcd {
		names, addrs := make([]string, len(planned)), make([]string, len(planned))
		for i, n := range planned {
			names[i], addrs[i] = n.Name, n.MeshAddr
		}
		var err error
		if c.initial, err = initialCluster(names, addrs); err != nil {
			_ = c.Close()
			return nil, err
		}
	}
	for _, n := range planned {
		if err := c.launch(n, planned); err != nil {
			_ = c.Close()
			return nil, err
		}
	}
	c.record()
	if err := c.waitFormed(ctx, planned); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// prepare creates the log directory, the per-cluster secret and the files
// that depend on it.
func (c *Cluster) prepare() error {
	if c.cfg.Dir == "" {
		d, err := os.MkdirTemp("", "meshkv-chaos-")
		if err != nil {
			return fmt.Errorf("cluster: %w", err)
		}
		c.dir, c.ownDir = d, true
	} else {
		if err := os.MkdirAll(c.cfg.Dir, 0o755); err != nil {
			return fmt.Errorf("cluster: %w", err)
		}
		c.dir = c.cfg.Dir
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return fmt.Errorf("cluster: random secret: %w", err)
	}
	c.secret = hex.EncodeToString(b)
	switch c.cfg.Flavor {
	case Meshkv:
		// Random per cluster, outside the log directory (which a failed
		// run keeps), readable by root only.
		f, err := os.CreateTemp("", "meshkv-chaos-password-")
		if err != nil {
			return fmt.Errorf("cluster: mesh password file: %w", err)
		}
		c.password = f.Name()
		_, werr := f.WriteString(c.secret + "\n")
		if err := errors.Join(werr, f.Chmod(0o600), f.Close()); err != nil {
			return fmt.Errorf("cluster: mesh password file: %w", err)
		}
	case Etcd:
		d, err := os.MkdirTemp("", "meshkv-chaos-etcd-")
		if err != nil {
			return fmt.Errorf("cluster: %w", err)
		}
		c.dataDir = d
	}
	return nil
}

// plan names a new node and places it on the fabric.
func (c *Cluster) plan() (*Node, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	name := "n" + strconv.Itoa(c.next)
	c.next++
	c.mu.Unlock()
	p, err := c.fab.place(name)
	if err != nil {
		return nil, err
	}
	return &Node{
		Name:      name,
		ClientURL: p.clientURL,
		MeshAddr:  p.peerAddr,
		Netns:     p.nsName,
		LogPath:   filepath.Join(c.dir, name+".log"),
		netns:     p.netns,
	}, nil
}

// launch connects n to every peer in peers on the fabric and starts its
// process.
func (c *Cluster) launch(n *Node, peers []*Node) error {
	var addrs []string
	for _, p := range peers {
		if p == n {
			continue
		}
		addr, err := c.fab.connect(n.Name, p.Name)
		if err != nil {
			return err
		}
		addrs = append(addrs, addr)
	}
	spec := memberSpec{name: n.Name, clientURL: n.ClientURL, peerAddr: n.MeshAddr, peers: addrs}
	var args []string
	switch c.cfg.Flavor {
	case Etcd:
		spec.initial = c.initial
		spec.dataDir = etcdDataDir(c.dataDir, n.Name)
		args = etcdArgs(c.cfg, spec, c.cfg.ClusterName+"-"+c.secret[:12])
	default:
		args = meshkvArgs(c.cfg, spec, c.password)
	}
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
	proc, err := startProcess(c.sp, &c.wg, c.cfg.Binary, args, n.netns, n.LogPath)
	if err != nil {
		c.mu.Unlock()
		_ = cli.Close()
		return err
	}
	n.proc = proc
	c.nodes = append(c.nodes, n)
	c.mu.Unlock()
	c.log.Info("started node", "node", n.Name, "flavor", c.cfg.Flavor, "pid", proc.pid(), "client", n.ClientURL, "peer", n.MeshAddr, "netns", n.Netns, "peers", addrs)
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
	if c.cfg.Flavor == Etcd {
		return c.cfg.Nodes
	}
	if c.cfg.TargetVoters != 0 {
		return c.cfg.TargetVoters
	}
	return 3
}

// Dir is the directory holding the nodes' logs.
func (c *Cluster) Dir() string { return c.dir }

// Net is the cluster's network mode.
func (c *Cluster) Net() Net { return c.cfg.Net }

// Flavor is the server software the cluster runs.
func (c *Cluster) Flavor() Flavor { return c.cfg.Flavor }

// Timing is the raft heartbeat and election timeout the members run with.
func (c *Cluster) Timing() (heartbeat, election time.Duration) {
	return c.cfg.Heartbeat, c.cfg.ElectionTimeout
}

// Voters is how many voting members the cluster keeps.
func (c *Cluster) Voters() int { return min(c.cfg.Nodes, c.targetVoters()) }

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

// Close ends every starvation, kills every process by PID (paused ones too),
// closes the control clients, removes the network (proxies, or namespaces
// and veths), the password file and etcd's data, and the log directory if
// Start created it. It is idempotent.
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
		errs = append(errs, c.unstarve(n))
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
	if c.fab != nil {
		errs = append(errs, c.fab.close())
	}
	if c.password != "" {
		errs = append(errs, os.Remove(c.password))
	}
	if c.dataDir != "" {
		errs = append(errs, os.RemoveAll(c.dataDir))
	}
	if c.ownDir && c.dir != "" {
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
