//go:build linux

package peerlink

import (
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// benchHandler counts datagrams, optionally echoes them, and signals each
// arrival on c (if set).
type benchHandler struct {
	n    *Node
	echo bool
	got  atomic.Int64
	c    chan struct{}
	up   chan PublicKey
}

func (h *benchHandler) OnLinkUp(info PeerInfo) {
	select {
	case h.up <- info.Key:
	default:
	}
}

func (h *benchHandler) OnDatagram(peer PublicKey, data []byte) {
	h.got.Add(1)
	if h.echo {
		h.n.Send(peer, data)
	}
	if h.c != nil {
		h.c <- struct{}{}
	}
}

func (h *benchHandler) OnStream(_ PublicKey, s *Stream)       { _ = s.Close() }
func (h *benchHandler) OnLinkDown(PublicKey, error, [][]byte) {}

// benchPair links two nodes on loopback; b echoes when echo is set.
func benchPair(tb testing.TB, echo bool) (a, b *Node, ha, hb *benchHandler) {
	tb.Helper()
	mk := func(h *benchHandler) *Node {
		id, _ := NewIdentity()
		n, err := New(Config{ListenAddr: "127.0.0.1:0", Identity: id, ClusterSecret: testSecret(),
			ClusterName: "bench", Handler: h})
		if err != nil {
			tb.Fatal(err)
		}
		h.n = n
		if err := n.Start(); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { _ = n.Close() })
		return n
	}
	ha = &benchHandler{c: make(chan struct{}, 1), up: make(chan PublicKey, 1)}
	hb = &benchHandler{echo: echo, up: make(chan PublicKey, 1)}
	a, b = mk(ha), mk(hb)
	if err := a.SetTargets([]string{b.Addr()}); err != nil {
		tb.Fatal(err)
	}
	select {
	case <-ha.up:
	case <-time.After(10 * time.Second):
		tb.Fatal("no link")
	}
	<-hb.up
	return a, b, ha, hb
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkDatagramRoundTrip: a 100-byte datagram to the peer and its echo
// back, one at a time, over one TLS link on loopback.
func BenchmarkDatagramRoundTrip(b *testing.B) {
	a, peer, ha, _ := benchPair(b, true)
	msg := make([]byte, 100)
	rtts := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if !a.Send(peer.PublicKey(), msg) {
			b.Fatal("send refused")
		}
		<-ha.c
		rtts = append(rtts, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(rtts)
	b.ReportMetric(float64(rtts[len(rtts)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(rtts[len(rtts)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkDatagramThroughput1KiB: one-way 1 KiB datagrams as fast as the
// link takes them; cpu-ns/dgram is the CPU time of both ends per datagram.
func BenchmarkDatagramThroughput1KiB(b *testing.B) {
	a, peer, _, hb := benchPair(b, false)
	msg := make([]byte, 1024)
	b.SetBytes(int64(len(msg)))
	cpu0, t0 := cpuTime(), time.Now()
	b.ResetTimer()
	for range b.N {
		for !a.Send(peer.PublicKey(), msg) {
			time.Sleep(20 * time.Microsecond) // queue full: let the writer drain it
		}
	}
	for hb.got.Load() < int64(b.N) {
		time.Sleep(50 * time.Microsecond)
	}
	b.StopTimer()
	elapsed, cpu := time.Since(t0), cpuTime()-cpu0
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/dgram")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "dgram/s")
}

// BenchmarkDatagramBurst100B: bursts of 8 small datagrams answered by one
// echo each, the shape of a put's raft messages.
func BenchmarkDatagramBurst100B(b *testing.B) {
	a, peer, ha, _ := benchPair(b, true)
	msg := make([]byte, 100)
	b.ResetTimer()
	for range b.N {
		for range 8 {
			a.Send(peer.PublicKey(), msg)
		}
		for range 8 {
			<-ha.c
		}
	}
}
