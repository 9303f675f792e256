package meshtransport

import (
	"log/slog"
	"time"

	"github.com/weaveworks/mesh"

	"github.com/meshkv/meshkv/internal/peerlink"
)

// Fabric builds the two layers a Transport runs on: the peer links (the
// direct path) and a router that carries unicasts and gossip over them (the
// relayed path). The real one (Config.Fabric nil) is peerlink over TCP and
// a mesh router on loopback whose connections are spliced over the links;
// package meshtransporttest provides an in-memory one for tests.
type Fabric interface {
	NewLinks(cfg peerlink.Config) (Links, error)
	NewRouter(cfg RouterConfig) (Router, error)
}

// Links is the link layer; *peerlink.Node implements it, and its contract
// is peerlink's (Handler calls, Send never blocking, undelivered datagrams
// handed back in OnLinkDown).
type Links interface {
	Start() error
	Close() error
	Addr() string
	SetTargets(addrs []string) error
	Send(peer peerlink.PublicKey, data []byte) bool
	Links() []peerlink.LinkInfo
	Targets() []peerlink.TargetInfo
	Stats() peerlink.Stats
}

var _ Links = (*peerlink.Node)(nil)

// RouterConfig configures a Router.
type RouterConfig struct {
	Name     PeerName
	NickName string
	// OpenStream opens a stream on the link to a peer (for routers that
	// carry their own protocol over links).
	OpenStream func(peer peerlink.PublicKey) (*peerlink.Stream, error)
	// Deliver receives each unicast addressed to us. It must not block,
	// and msg belongs to it.
	Deliver func(msg []byte)
	// Gossip is the metadata channel's gossiper.
	Gossip mesh.Gossiper
	// RoutesChanged is called (it must not block) when routes may have
	// changed.
	RoutesChanged  func()
	GossipInterval time.Duration
	Logger         *slog.Logger
}

// Router carries unicasts to any peer it has a route to, through any number
// of other peers, over live links only, and spreads gossip.
type Router interface {
	Start() error
	// Close stops what can be stopped (see the package doc for mesh's
	// limits).
	Close() error
	// Unicast sends msg to dst along the current route. It may block until
	// the first hop takes it (at worst until that hop's link dies); never
	// call it from a goroutine that must not block.
	Unicast(dst PeerName, msg []byte) error
	// NextHop returns the first hop of the route to dst, if there is one.
	NextHop(dst PeerName) (PeerName, bool)
	// Broadcast spreads gossip data to every peer.
	Broadcast(d mesh.GossipData)
	// LinkUp, Stream and LinkDown forward the link layer's events; they
	// must not block.
	LinkUp(info peerlink.PeerInfo)
	Stream(peer peerlink.PublicKey, s *peerlink.Stream)
	LinkDown(peer peerlink.PublicKey)
	// Stats reads the router's counters.
	Stats() RouterStats
}

// RouterStats are a router's counters.
type RouterStats struct {
	Connections          int    // connections to peers now
	Splices              uint64 // connections spliced over links so far
	SpliceFailures       uint64 // splices that could not be made or ended while the link was up
	RefusedConnections   uint64 // connections the router refused (not a splice, or the wrong peer name)
	RelayedForOthers     uint64 // unicast messages forwarded for other peers
	RelayedForOthersByte uint64 // their bytes
}

type realFabric struct{}

func (realFabric) NewLinks(cfg peerlink.Config) (Links, error) {
	n, err := peerlink.New(cfg)
	if err != nil {
		return nil, err
	}
	return n, nil
}

func (realFabric) NewRouter(cfg RouterConfig) (Router, error) {
	r, err := newMeshRouter(cfg)
	if err != nil {
		return nil, err
	}
	return r, nil
}
