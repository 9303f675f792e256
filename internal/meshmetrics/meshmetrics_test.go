package meshmetrics

import (
	"sync"
	"testing"
	"time"

	"github.com/meshkv/meshkv/internal/metrics"
	"github.com/meshkv/meshkv/meshtransport"
)

// fakeTransport returns whatever Stats a test sets.
type fakeTransport struct {
	mu sync.Mutex
	st meshtransport.Stats
}

func (f *fakeTransport) Stats() meshtransport.Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st
}

func (f *fakeTransport) set(peers ...meshtransport.PeerStats) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st.Peers = peers
}

// Each new round trip a peer reports is sampled once; a repeated one is the
// same probe, and a peer that left is forgotten.
func TestSampleRecordsEachNewRoundTrip(t *testing.T) {
	tr := &fakeTransport{}
	m := New(tr)
	for _, rtt := range []time.Duration{0, 2 * time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond} {
		tr.set(meshtransport.PeerStats{ID: 7, Path: meshtransport.PathRelayed, RTT: rtt, MsgsDirect: 1, MsgsRelayed: 2, PathSwitches: 3})
		m.sample()
	}
	peers := m.MeshPeers()
	if len(peers) != 1 {
		t.Fatalf("MeshPeers = %d peers, want 1", len(peers))
	}
	p := peers[0]
	if p.Member != 7 || p.Path != metrics.PathRelayed || p.Traffic.SentMessages != 3 || *p.PathSwitches != 3 {
		t.Errorf("peer = member %d path %v sent %d switches %d, want 7 relayed 3 3", p.Member, p.Path, p.Traffic.SentMessages, *p.PathSwitches)
	}
	if p.RTTs == nil || p.RTTs.Count != 2 {
		t.Fatalf("RTT histogram = %+v, want 2 samples", p.RTTs)
	}
	if want := (7 * time.Millisecond).Seconds(); p.RTTs.Sum < want*0.999 || p.RTTs.Sum > want*1.001 {
		t.Errorf("RTT sum = %v s, want %v s", p.RTTs.Sum, want)
	}

	tr.set()
	m.sample()
	if len(m.rtts) != 0 {
		t.Errorf("%d peers still sampled after all left, want 0", len(m.rtts))
	}
}
