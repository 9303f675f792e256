package cluster

import (
	"errors"
	"fmt"
)

// cutPair cuts one link and notes it for Topology (without recording).
func (c *Cluster) cutPair(a, b string, kind Cut) error {
	if err := c.fab.cut(a, b, kind); err != nil {
		return err
	}
	c.mu.Lock()
	c.blocked.cut(a, b)
	c.mu.Unlock()
	return nil
}

// Cut breaks the link between nodes a and b in both directions.
func (c *Cluster) Cut(a, b string, kind Cut) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	if err := c.cutPair(a, b, kind); err != nil {
		return err
	}
	c.record()
	c.log.Info("cut link", "a", a, "b", b, "kind", kind)
	return nil
}

// CutOneWay silently drops what node from sends to node to; the other
// direction keeps working.
func (c *Cluster) CutOneWay(from, to string) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	if err := c.fab.cutOneWay(from, to); err != nil {
		return err
	}
	c.mu.Lock()
	c.blocked.oneWay(from, to)
	c.recordLocked()
	c.mu.Unlock()
	c.log.Info("cut link one way", "from", from, "to", to)
	return nil
}

// Heal restores the link between a and b.
func (c *Cluster) Heal(a, b string) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	if err := c.fab.heal(a, b); err != nil {
		return err
	}
	c.mu.Lock()
	c.blocked.heal(a, b)
	c.recordLocked()
	c.mu.Unlock()
	c.log.Info("healed link", "a", a, "b", b)
	return nil
}

// HealAll restores every link.
func (c *Cluster) HealAll() error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	err := c.fab.healAll()
	c.mu.Lock()
	clear(c.blocked)
	c.recordLocked()
	c.mu.Unlock()
	if err != nil {
		return err
	}
	c.log.Info("healed all links")
	return nil
}

// Partition cuts every link between nodes of different groups. Links inside
// a group, and links of nodes in no group, are left as they are.
func (c *Cluster) Partition(kind Cut, groups ...[]string) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	defer c.record()
	for i, g := range groups {
		for _, h := range groups[i+1:] {
			for _, a := range g {
				for _, b := range h {
					if err := c.cutPair(a, b, kind); err != nil && !errors.Is(err, ErrNoLink) {
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
	peers := c.fab.peersOf(name)
	if len(peers) == 0 {
		return fmt.Errorf("%w: %q has no links", ErrUnknownNode, name)
	}
	return c.Partition(kind, []string{name}, peers)
}

// KeepOnly cuts every link except those listed (pairs of node names), and
// heals the listed ones: the links of the cluster become exactly the given
// graph. Links of dead nodes are cut too.
func (c *Cluster) KeepOnly(kind Cut, keep ...[2]string) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	defer c.record()
	want := map[[2]string]bool{}
	for _, k := range keep {
		want[pairOf(k[0], k[1])] = true
	}
	for _, n := range c.Nodes() {
		for _, p := range c.fab.peersOf(n.Name) {
			if n.Name > p {
				continue
			}
			var err error
			if want[pairOf(n.Name, p)] {
				if err = c.fab.heal(n.Name, p); err == nil {
					c.mu.Lock()
					c.blocked.heal(n.Name, p)
					c.mu.Unlock()
				}
			} else {
				err = c.cutPair(n.Name, p, kind)
			}
			if err != nil {
				return err
			}
		}
	}
	c.log.Info("links reduced to", "keep", keep, "kind", kind)
	return nil
}

// Connected reports whether a and b's link is not cut and, in proxy mode,
// has an open proxied connection.
func (c *Cluster) Connected(a, b string) bool { return c.fab.connected(a, b) }

// Cuts describes the links cut now, as "a-b: kind".
func (c *Cluster) Cuts() []string { return c.fab.cuts() }
