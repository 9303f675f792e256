package cluster

import (
	"slices"
	"sort"
	"time"
)

// Topology is the state of the cluster's links and processes from At until
// the next Topology: what the availability accounting of a run needs to know
// which members could possibly serve writes at any moment.
type Topology struct {
	At time.Time `json:"at"`
	// Live are the nodes started so far that are not dead, in start order.
	Live []string `json:"live"`
	// Paused are the live nodes stopped with SIGSTOP.
	Paused []string `json:"paused,omitempty"`
	// Blocked are the directions cut, as [from, to]: what from sends to to
	// is lost. A two-way cut blocks both directions.
	Blocked [][2]string `json:"blocked,omitempty"`
}

// blockState tracks the directions cut, for Topology. It mirrors what the
// fabric was told, independent of how the fabric implements it.
type blockState map[[2]string]bool

func (b blockState) cut(a, c string) {
	b[[2]string{a, c}] = true
	b[[2]string{c, a}] = true
}

func (b blockState) oneWay(from, to string) {
	b[[2]string{from, to}] = true
	delete(b, [2]string{to, from})
}

func (b blockState) heal(a, c string) {
	delete(b, [2]string{a, c})
	delete(b, [2]string{c, a})
}

func (b blockState) list() [][2]string {
	out := make([][2]string, 0, len(b))
	for d := range b {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i][0] != out[j][0] {
			return out[i][0] < out[j][0]
		}
		return out[i][1] < out[j][1]
	})
	return out
}

// record appends the current topology. Called with c.mu held.
func (c *Cluster) recordLocked() {
	t := Topology{At: time.Now(), Blocked: c.blocked.list()}
	for _, n := range c.nodes {
		switch n.State() {
		case Dead:
			continue
		case Paused:
			t.Paused = append(t.Paused, n.Name)
		}
		t.Live = append(t.Live, n.Name)
	}
	c.topos = append(c.topos, t)
}

func (c *Cluster) record() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recordLocked()
}

// Topologies returns every topology the cluster went through, oldest first:
// one per start, cut, heal, pause, resume, kill and added node.
func (c *Cluster) Topologies() []Topology {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.topos)
}
