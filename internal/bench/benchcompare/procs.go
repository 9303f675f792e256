package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Timing of process management.
const (
	healthTimeout = 90 * time.Second // from start to a healthy cluster
	stopGrace     = 10 * time.Second // from SIGTERM to SIGKILL
)

// proc is a server process this program started.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{} // closed once the process has been waited for
	client  string        // its client endpoint, host:port
	grace   time.Duration // from SIGTERM to SIGKILL
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// startProc starts bin with args, its output going to dir/name.log. The
// process is killed if this program dies without stopping it.
func startProc(name, dir, bin, client string, args ...string) (*proc, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, exited: make(chan struct{}), client: client, grace: stopGrace}
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(p.exited)
	}()
	return p, nil
}

// stop ends the process by its PID: SIGTERM, then SIGKILL after its grace.
func (p *proc) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(p.grace)
	defer t.Stop()
	select {
	case <-p.exited:
	case <-t.C:
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// logTail returns the last n lines of the process's output.
func (p *proc) logTail(n int) string {
	f, err := os.Open(p.logPath)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// cluster is a set of server processes forming one cluster.
type cluster struct {
	name  string // "etcd", "meshkv", ...
	dir   string // its temporary directory, removed by stop unless keep
	keep  bool
	procs []*proc
	tls   *tls.Config // how clients reach it: nil for plaintext
}

// serveOpts say how a cluster serves clients: the client URLs' scheme
// (default http), extra server flags, and the clients' TLS configuration.
type serveOpts struct {
	scheme string
	args   []string
	tls    *tls.Config
}

func (o serveOpts) url(hostport string) string {
	if o.scheme == "" {
		return "http://" + hostport
	}
	return o.scheme + "://" + hostport
}

func (c *cluster) endpoints() []string {
	eps := make([]string, len(c.procs))
	for i, p := range c.procs {
		eps[i] = p.client
	}
	return eps
}

func (c *cluster) pids() []int {
	pids := make([]int, len(c.procs))
	for i, p := range c.procs {
		pids[i] = p.pid()
	}
	return pids
}

// stop stops every process, in parallel, and removes the directory.
func (c *cluster) stop() {
	done := make(chan struct{}, len(c.procs))
	for _, p := range c.procs {
		go func() {
			p.stop()
			done <- struct{}{}
		}()
	}
	for range c.procs {
		<-done
	}
	c.procs = nil
	if c.keep {
		fmt.Fprintf(os.Stderr, "kept %s's logs and data in %s\n", c.name, c.dir)
	} else if c.dir != "" {
		_ = os.RemoveAll(c.dir)
	}
}

// failure wraps err with the tail of every process's log.
func (c *cluster) failure(err error) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %v", c.name, err)
	for _, p := range c.procs {
		fmt.Fprintf(&b, "\n--- %s (pid %d) log tail:\n%s", p.name, p.pid(), p.logTail(15))
	}
	return errors.New(b.String())
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	ports := make([]int, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		ls = append(ls, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

func hostPort(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// where says where clusters keep their files: under parent, removed at the
// end unless keep.
type where struct {
	parent string
	keep   bool
}

// newCluster makes the cluster's temporary directory.
func newCluster(name string, w where) (*cluster, error) {
	dir, err := os.MkdirTemp(w.parent, name+"-")
	if err != nil {
		return nil, err
	}
	return &cluster{name: name, dir: dir, keep: w.keep}, nil
}

// startEtcd starts an n-member etcd cluster with a static initial cluster,
// without fsync (meshkv is in memory), and waits until it is healthy.
func startEtcd(ctx context.Context, bin string, w where, n int) (*cluster, error) {
	return startEtcdWith(ctx, bin, w, n, serveOpts{})
}

// startEtcdWith is startEtcd serving clients as serve says.
func startEtcdWith(ctx context.Context, bin string, w where, n int, serve serveOpts) (*cluster, error) {
	c, err := newCluster("etcd", w)
	if err != nil {
		return nil, err
	}
	c.tls = serve.tls
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	var initial []string
	for i := range n {
		initial = append(initial, fmt.Sprintf("e%d=http://%s", i+1, hostPort(ports[n+i])))
	}
	for i := range n {
		name := fmt.Sprintf("e%d", i+1)
		client, peer := serve.url(hostPort(ports[i])), "http://"+hostPort(ports[n+i])
		p, err := startProc(name, c.dir, bin, hostPort(ports[i]), append([]string{
			"--name", name, "--data-dir", filepath.Join(c.dir, name+".data"),
			"--listen-client-urls", client, "--advertise-client-urls", client,
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new", "--initial-cluster-token", "bench-compare",
			"--unsafe-no-fsync", "--log-level", "error"}, serve.args...)...)
		if err != nil {
			c.stop()
			return nil, err
		}
		c.procs = append(c.procs, p)
	}
	if err := c.waitHealthy(ctx, n); err != nil {
		err = c.failure(err)
		c.stop()
		return nil, err
	}
	return c, nil
}

// meshkvMember is one node of a meshkv cluster to start.
type meshkvMember struct {
	name        string
	peers       []int // indexes of the members it connects to
	clusterSize int   // --initial-cluster-size
}

// startMeshkv starts meshkv nodes in order. With sequential, each start
// waits until the cluster has as many voters as nodes started so far, so a
// first node of cluster size 1 founds the cluster and leads it while later
// ones join; otherwise all start at once and bootstrap together. With
// discovery false a node connects only to its listed peers.
func startMeshkv(ctx context.Context, name, bin string, w where, members []meshkvMember, discovery, sequential bool) (*cluster, error) {
	return startMeshkvWith(ctx, name, bin, w, members, discovery, sequential, serveOpts{})
}

// startMeshkvWith is startMeshkv serving clients as serve says.
func startMeshkvWith(ctx context.Context, name, bin string, w where, members []meshkvMember, discovery, sequential bool, serve serveOpts) (*cluster, error) {
	c, err := newCluster(name, w)
	if err != nil {
		return nil, err
	}
	c.tls = serve.tls
	n := len(members)
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	for i, m := range members {
		var peers []string
		for _, j := range m.peers {
			peers = append(peers, hostPort(ports[n+j]))
		}
		nodeName := name + "-" + m.name
		client := serve.url(hostPort(ports[i]))
		p, err := startProc(nodeName, c.dir, bin, hostPort(ports[i]), append([]string{
			"--name", nodeName, "--listen-client-urls", client, "--advertise-client-urls", client,
			"--mesh-listen", hostPort(ports[n+i]), "--peers", strings.Join(peers, ","),
			"--peer-discovery=" + strconv.FormatBool(discovery),
			"--cluster-name", name, "--initial-cluster-size", strconv.Itoa(m.clusterSize),
			"--log-level", "info"}, serve.args...)...)
		if err != nil {
			c.stop()
			return nil, err
		}
		c.procs = append(c.procs, p)
		if sequential {
			if err := c.waitHealthy(ctx, len(c.procs)); err != nil {
				err = c.failure(err)
				c.stop()
				return nil, err
			}
		}
	}
	if err := c.waitHealthy(ctx, n); err != nil {
		err = c.failure(err)
		c.stop()
		return nil, err
	}
	return c, nil
}

// waitHealthy polls until every started member answers a linearizable read
// and lists voters voting members (no learner).
func (c *cluster) waitHealthy(ctx context.Context, voters int) error {
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	var last error
	for {
		if last = c.healthy(ctx, voters); last == nil {
			return nil
		}
		for _, p := range c.procs {
			select {
			case <-p.exited:
				return fmt.Errorf("%s exited while starting", p.name)
			default:
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not healthy after %v: %v", healthTimeout, last)
		case <-time.After(200 * time.Millisecond): // polling processes we do not control
		}
	}
}

func (c *cluster) healthy(ctx context.Context, voters int) error {
	for _, p := range c.procs {
		cli, err := newClientTLS(ctx, []string{p.client}, c.tls)
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		err = memberHealthy(ctx, cli, voters)
		cli.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
	}
	return nil
}

func memberHealthy(ctx context.Context, cli *clientv3.Client, voters int) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := cli.Get(ctx, "bench-compare/health"); err != nil {
		return err
	}
	ml, err := cli.MemberList(ctx)
	if err != nil {
		return err
	}
	n := 0
	for _, m := range ml.Members {
		if !m.IsLearner {
			n++
		}
	}
	if n != voters || len(ml.Members) != voters {
		return fmt.Errorf("%d members, %d voters; want %d voters", len(ml.Members), n, voters)
	}
	return nil
}

// newClient connects an etcd client that logs nothing.
func newClient(ctx context.Context, endpoints []string) (*clientv3.Client, error) {
	return newClientTLS(ctx, endpoints, nil)
}

// newClientTLS is newClient over TLS (nil: plaintext).
func newClientTLS(ctx context.Context, endpoints []string, cfg *tls.Config) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Context:     ctx,
		Logger:      zap.NewNop(),
		TLS:         cfg,
	})
}

// leaderOf returns the index of the process that leads the cluster, as the
// member at endpoint i sees it.
func (c *cluster) leaderOf(ctx context.Context, i int) (int, error) {
	cli, err := newClient(ctx, []string{c.procs[i].client})
	if err != nil {
		return -1, err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := cli.Status(ctx, c.procs[i].client)
	if err != nil {
		return -1, err
	}
	for j, p := range c.procs {
		sj, err := cli.Status(ctx, p.client)
		if err != nil {
			return -1, err
		}
		if sj.Header.MemberId == st.Leader {
			return j, nil
		}
	}
	return -1, fmt.Errorf("leader %x is none of the started members", st.Leader)
}

// compact compacts the cluster's history to its current revision and waits
// until the compaction is applied, so that runs start from the same state.
func compact(ctx context.Context, endpoints []string) error {
	cli, err := newClient(ctx, endpoints)
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	g, err := cli.Get(ctx, "bench-compare/compact")
	if err != nil {
		return err
	}
	_, err = cli.Compact(ctx, g.Header.Revision, clientv3.WithCompactPhysical())
	if errors.Is(err, rpctypes.ErrCompacted) {
		return nil // nothing written since the last compaction
	}
	return err
}
