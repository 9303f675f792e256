package membership

import (
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/meshkv/meshkv/internal/ids"
	"github.com/meshkv/meshkv/meshtransport"
	"github.com/meshkv/meshkv/raftadapter"
)

// Gate returns the transport handler for raft member rn: raft traffic from
// an id that rn's applied state removed never reaches raft; the sender gets
// a removal notice instead (at most one every second), from which it learns
// that it was removed and stops (see Planner). Everything else goes to rn.
func (c *Controller) Gate(rn *raftadapter.Node) meshtransport.Handler { return gate{c: c, rn: rn} }

type gate struct {
	c  *Controller
	rn *raftadapter.Node
}

var _ meshtransport.Handler = gate{}

func (g gate) Step(m *raftpb.Message) {
	if from := m.GetFrom(); g.rn.WasRemoved(from) {
		g.c.notifyRemoved(ids.MemberID(from), g.rn)
		return
	}
	g.rn.Step(m)
}

func (g gate) ReportUnreachable(id uint64) { g.rn.ReportUnreachable(id) }

func (g gate) ReportSnapshot(id uint64, status raft.SnapshotStatus) { g.rn.ReportSnapshot(id, status) }

// maxNotified bounds the rate-limit memory of removal notices.
const maxNotified = 4096

// notifyRemoved tells a removed sender so, at most once per noticeEvery.
func (c *Controller) notifyRemoved(to ids.MemberID, rn *raftadapter.Node) {
	now := time.Now()
	c.mu.Lock()
	if last, ok := c.notified[to]; ok && now.Sub(last) < noticeEvery {
		c.mu.Unlock()
		return
	}
	if len(c.notified) >= maxNotified {
		clear(c.notified)
	}
	c.notified[to] = now
	c.mu.Unlock()
	st := rn.Status()
	err := c.mesh.SendMember(to, meshtransport.MemberMessage{Kind: meshtransport.RemovalNotice, Term: st.Term, Index: st.AppliedIndex})
	if err != nil {
		c.log.Debug("cannot send a removal notice", "to", to.String(), "err", err)
		return
	}
	c.log.Info("told a removed member that it was removed", "member", to.String())
}
