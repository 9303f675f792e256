package cluster

import (
	"context"
	"fmt"
	"time"
)

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
	c.record()
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
	c.record()
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
	c.record()
	c.log.Info("resumed node", "node", name, "pid", n.PID())
	return nil
}

// Starve saturates the CPU of node name with the cluster's starvation
// method until Unstarve (see StarveMethod). The error wraps
// ErrStarveUnavailable where the machine does not allow it.
func (c *Cluster) Starve(name string) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	if err := StarveAvailable(c.cfg.Starve); err != nil {
		return err
	}
	n, err := c.Node(name)
	if err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.starved != nil {
		return nil
	}
	s, err := startStarve(c.cfg.Starve, c.sp, &c.wg, c.owner, c.run, name, n.proc.pid(), c.dir)
	if err != nil {
		return err
	}
	n.starved = s
	c.log.Info("starving node", "node", name, "pid", n.proc.pid(), "method", c.cfg.Starve)
	return nil
}

// Unstarve gives node name its CPU back.
func (c *Cluster) Unstarve(name string) error {
	n, err := c.Node(name)
	if err != nil {
		return err
	}
	return c.unstarve(n)
}

func (c *Cluster) unstarve(n *Node) error {
	n.mu.Lock()
	s := n.starved
	n.starved = nil
	n.mu.Unlock()
	if s == nil {
		return nil
	}
	st := s.stats()
	n.mu.Lock()
	n.starveStats = st
	n.mu.Unlock()
	if err := s.stop(); err != nil {
		return err
	}
	c.log.Info("stopped starving node", "node", n.Name, "stats", st)
	return nil
}

// LastStarve measures node name's last starvation that ended: how much CPU
// it still got.
func (c *Cluster) LastStarve(name string) (StarveStats, error) {
	n, err := c.Node(name)
	if err != nil {
		return StarveStats{}, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.starveStats, nil
}

// Starved lists the nodes being starved now.
func (c *Cluster) Starved() []string {
	var out []string
	for _, n := range c.Nodes() {
		n.mu.Lock()
		if n.starved != nil {
			out = append(out, n.Name)
		}
		n.mu.Unlock()
	}
	return out
}

// AddNode starts a fresh node (new name, empty store) that reaches every
// node that is not dead through new proxies, and waits (bounded by ctx) until
// it answers Status, which it does once it has joined the cluster.
func (c *Cluster) AddNode(ctx context.Context) (*Node, error) {
	if c.cfg.Flavor != Meshkv {
		return nil, fmt.Errorf("%w: adding a member to %v", ErrUnsupported, c.cfg.Flavor)
	}
	n, err := c.plan()
	if err != nil {
		return nil, err
	}
	peers := append(c.Alive(), n)
	if err := c.launch(n, peers); err != nil {
		return nil, err
	}
	c.record()
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
