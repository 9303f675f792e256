package meshkv

import (
	"testing"
	"time"

	"github.com/meshkv/meshkv/meshtransport/meshtransporttest"
)

// Hooks for the external test package: whole clusters on the in-memory
// network (see membership_mem_test.go), run under -race.

// UseMemNetwork makes c's node run its mesh on net instead of real routers,
// with the short gossip timing of the in-memory tests.
func UseMemNetwork(c *Config, net *meshtransporttest.Network) {
	c.test = &testHooks{fabric: net.Fabric(), entryTTL: memEntryTTL, refresh: memRefresh, promiseRelease: memRelease}
}

// MemPeer returns n's place on the in-memory network, for cuts.
func (n *Node) MemPeer() meshtransporttest.Peer { return n.mesh }

// Eventually is the tests' one wait: see eventually.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	eventually(t, timeout, what, cond)
}

// Always polls cond for d and fails the test as soon as it does not hold.
func Always(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	always(t, d, what, cond)
}
