package meshtransport

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/weaveworks/mesh"
)

// Gossip channel names on the mesh router.
const (
	rawChannel  = "meshkv-raft" // unicast frames (raft batches, chunks, probes, relays)
	metaChannel = "meshkv-meta" // gossiped Meta
)

// network is the part of mesh the transport uses. meshNetwork is the real
// one; tests use an in-memory network that can cut links, so that the
// transport's own logic runs under the race detector.
type network interface {
	// unicast sends frame to dst. It may block (mesh writes synchronously
	// with no deadline) and does not retain frame.
	unicast(dst mesh.PeerName, frame []byte) error
	// peers lists the peers mesh knows (including ourself).
	peers() []mesh.PeerDescription
	// broadcast spreads metadata to every peer.
	broadcast(d mesh.GossipData)
	// direct reports whether we hold a connection to peer.
	direct(peer mesh.PeerName) bool
	// dial asks mesh to connect to addr and to keep retrying it.
	dial(addr string) error
}

// meshNetwork adapts a mesh router and our two gossip channels.
type meshNetwork struct {
	router *mesh.Router
	raw    mesh.Gossip
	meta   mesh.Gossip
}

var _ network = (*meshNetwork)(nil)

func (n *meshNetwork) unicast(dst mesh.PeerName, frame []byte) error {
	return n.raw.GossipUnicast(dst, frame)
}

func (n *meshNetwork) peers() []mesh.PeerDescription { return n.router.Peers.Descriptions() }

func (n *meshNetwork) broadcast(d mesh.GossipData) { n.meta.GossipBroadcast(d) }

func (n *meshNetwork) direct(peer mesh.PeerName) bool {
	_, ok := n.router.Ourself.ConnectionTo(peer)
	return ok
}

func (n *meshNetwork) dial(addr string) error {
	if errs := n.router.ConnectionMaker.InitiateConnections([]string{addr}, false); len(errs) > 0 {
		return errs[0]
	}
	return nil
}

// meshLogger adapts mesh's Printf logging to slog at debug level.
type meshLogger struct{ l *slog.Logger }

var _ mesh.Logger = meshLogger{}

func (m meshLogger) Printf(format string, args ...any) {
	if !m.l.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	m.l.Debug(fmt.Sprintf(format, args...), "component", "mesh")
}
