package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

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

// statuses asks every responsive node for its status, in parallel.
func (c *Cluster) statuses(ctx context.Context) map[*Node]*pb.StatusResponse {
	nodes := c.responsive()
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

// responsive lists the running nodes that are not being starved: the nodes
// a health check can expect timely answers from. A starved member is
// degraded on purpose; the others must do without it.
func (c *Cluster) responsive() []*Node {
	var out []*Node
	for _, n := range c.Running() {
		n.mu.Lock()
		starved := n.starved != nil
		n.mu.Unlock()
		if !starved {
			out = append(out, n)
		}
	}
	return out
}

// WaitHealthy waits until every responsive node (running and not starved)
// agrees on one leader, has applied what the leader had committed when the
// wait began, and serves a linearizable read if it is a voter.
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	var target uint64
	var why string
	// note keeps the reason of the last poll that ran to the end: the one
	// cut short by the deadline says nothing about the cluster.
	note := func(s string) {
		if ctx.Err() == nil {
			why = s
		}
	}
	err := poll(ctx, 100*time.Millisecond, func() (bool, error) {
		if err := c.checkOpen(); err != nil {
			return false, err
		}
		st := c.statuses(ctx)
		running := c.responsive()
		if len(st) < len(running) {
			note(fmt.Sprintf("%d of %d responsive nodes answer Status", len(st), len(running)))
			return false, nil
		}
		leader, err := c.Leader(ctx)
		if err != nil {
			note(err.Error())
			return false, nil
		}
		for n, s := range st {
			if s.Leader != leader.ID() {
				note(fmt.Sprintf("%s follows %x, not %s", n.Name, s.Leader, leader.Name))
				return false, nil
			}
		}
		if target == 0 {
			if s := st[leader]; s != nil {
				target = s.RaftIndex
			}
			note("sampling the leader's commit index")
			return false, nil
		}
		for n, s := range st {
			if s.RaftAppliedIndex < target {
				note(fmt.Sprintf("%s applied %d of %d", n.Name, s.RaftAppliedIndex, target))
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
				note(fmt.Sprintf("linearizable read through %s: %v", n.Name, err))
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
