package meshtransport

import (
	"errors"
	"fmt"
	"time"

	"github.com/meshkv/meshkv/internal/peerlink"
)

// The link hello's app bytes: helloVersion, then our X25519 sealing key, so
// that a peer can seal to us without waiting for our gossip entry.
const (
	helloVersion = 1
	helloLen     = 1 + 32
)

func appendHello(b []byte, k SealKey) []byte {
	b = append(b, helloVersion)
	return append(b, k[:]...)
}

func decodeHello(app []byte) (SealKey, error) {
	var k SealKey
	if len(app) != helloLen || app[0] != helloVersion {
		return k, errors.New("unknown hello format")
	}
	copy(k[:], app[1:])
	return k, nil
}

// authorize is the link layer's Authorize: it admits peers whose hello is
// ours and whose key maps to usable ids.
func (t *Transport) authorize(info peerlink.PeerInfo) error {
	if _, err := decodeHello(info.App); err != nil {
		t.stats.refusedLinks.Add(1)
		return err
	}
	if !validKey(info.Key) {
		t.stats.refusedLinks.Add(1)
		return errors.New("key maps to raft id 0")
	}
	if p := t.peerByKey(info.Key); p == nil && len(*t.byKey.Load()) >= t.cfg.MaxPeers {
		t.stats.refusedLinks.Add(1)
		return fmt.Errorf("too many peers (%d)", t.cfg.MaxPeers)
	}
	return nil
}

// linkHandler is the link layer's Handler. Its methods run on link reader
// goroutines and never block.
type linkHandler struct{ t *Transport }

var _ peerlink.Handler = linkHandler{}

func (h linkHandler) OnLinkUp(info peerlink.PeerInfo) {
	t := h.t
	p := t.addPeer(info.Key)
	if p == nil {
		return
	}
	if k, err := decodeHello(info.App); err == nil {
		p.setSealKey(k)
	}
	now := time.Now()
	p.mu.Lock()
	p.linkUp.Store(true)
	p.lastActive = now
	changed := p.ps.linkUp(now)
	p.publishPath()
	p.mu.Unlock()
	if changed {
		t.pathChanged(p, PathDirect, "link up")
	}
	t.router.LinkUp(info)
	p.out.wake() // anything queued for the relayed path goes on the link now
	signal(t.changec)
}

func (h linkHandler) OnDatagram(key peerlink.PublicKey, data []byte) {
	h.t.receiveDatagram(key, data)
}

func (h linkHandler) OnStream(key peerlink.PublicKey, s *peerlink.Stream) {
	h.t.router.Stream(key, s)
}

func (h linkHandler) OnLinkDown(key peerlink.PublicKey, reason error, undelivered [][]byte) {
	t := h.t
	// Close the router's connection over the link first, so that its
	// routes stop pointing at it.
	t.router.LinkDown(key)
	p := t.peerByKey(key)
	if p == nil {
		return
	}
	now := time.Now()
	p.mu.Lock()
	p.linkUp.Store(false)
	p.lastActive = now
	changed := p.ps.linkDown(now)
	p.publishPath()
	p.mu.Unlock()
	if changed && !t.closed.Load() {
		t.pathChanged(p, PathRelayed, "link down: "+reason.Error())
	}
	if len(undelivered) > 0 && !t.closed.Load() {
		p.out.resend(undelivered, now)
	}
	signal(t.changec)
}

// pathChanged counts and logs a path change.
func (t *Transport) pathChanged(p *peer, to Path, why string) {
	t.stats.pathSwitches.Add(1)
	p.stats.pathSwitches.Add(1)
	level := t.log.Info
	if to == PathDead {
		level = t.log.Warn
	}
	level("peer path changed", "peer", p.id.String(), "name", p.name.String(), "path", to.String(), "why", why)
}
