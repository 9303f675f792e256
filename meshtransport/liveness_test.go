package meshtransport

import (
	"testing"
	"time"

	"github.com/weaveworks/mesh"
)

func TestProbeStateDeadAfterFailures(t *testing.T) {
	p := newProbeState(3)
	t0 := time.Unix(0, 0)
	step := 100 * time.Millisecond
	seq, _ := p.tick(t0)
	if p.reply(seq, t0.Add(2*time.Millisecond), []mesh.PeerName{7}) != true || p.state != stateAlive {
		t.Fatalf("first reply: state %v", p.state)
	}
	if p.rtt != 2*time.Millisecond || !p.sees(7) || p.sees(8) {
		t.Fatalf("rtt %v, live set %v", p.rtt, p.peerLive)
	}
	// Three unanswered rounds make it dead, not two.
	var changed bool
	for i := 1; i <= 3; i++ {
		_, changed = p.tick(t0.Add(time.Duration(i) * step))
		if changed {
			t.Fatalf("changed after %d ticks (only %d missed)", i, i-1)
		}
	}
	if _, changed = p.tick(t0.Add(4 * step)); !changed || p.state != stateDead {
		t.Fatalf("after 3 missed: changed %v state %v", changed, p.state)
	}
	last := p.last
	// An answer to a recent probe brings it back at once.
	if !p.reply(last-1, t0.Add(4*step+time.Millisecond), nil) || p.state != stateAlive {
		t.Fatalf("late reply did not revive: %v", p.state)
	}
	if p.rtt != step+time.Millisecond {
		t.Errorf("rtt %v, want %v", p.rtt, step+time.Millisecond)
	}
	if p.sees(7) {
		t.Error("live set not replaced by the newer reply")
	}
}

func TestProbeStateGraceForNewPeer(t *testing.T) {
	p := newProbeState(3)
	t0 := time.Unix(0, 0)
	for i := range 6 {
		if _, changed := p.tick(t0.Add(time.Duration(i) * time.Second)); changed {
			t.Fatalf("a never-answered peer became dead after %d misses, want 6", i)
		}
	}
	if _, changed := p.tick(t0.Add(6 * time.Second)); !changed || p.state != stateDead {
		t.Fatalf("after 6 misses: state %v", p.state)
	}
}

func TestProbeStateIgnoresStaleAndUnknown(t *testing.T) {
	p := newProbeState(2)
	t0 := time.Unix(0, 0)
	for i := range probeWindow + 5 {
		p.tick(t0.Add(time.Duration(i) * time.Second))
	}
	if p.reply(0, t0, nil) || p.reply(p.last+1, t0, nil) || p.reply(1, t0, nil) {
		t.Fatal("accepted a reply to an unknown or forgotten probe")
	}
	if p.state != stateDead {
		t.Fatalf("state %v", p.state)
	}
	// An older reply after a newer one does not roll back rtt or live set.
	p.reply(p.last, t0.Add(time.Duration(probeWindow+4)*time.Second+time.Millisecond), []mesh.PeerName{1})
	p.reply(p.last-1, t0.Add(time.Hour), []mesh.PeerName{2})
	if p.rtt != time.Millisecond || !p.sees(1) || p.sees(2) {
		t.Fatalf("rtt %v live %v", p.rtt, p.peerLive)
	}
}

func TestChooseRelay(t *testing.T) {
	c := func(name mesh.PeerName, alive, sees bool, rtt time.Duration) relayCandidate {
		return relayCandidate{name: name, alive: alive, seesDst: sees, rtt: rtt}
	}
	for _, tc := range []struct {
		name    string
		current mesh.PeerName
		cands   []relayCandidate
		want    mesh.PeerName
	}{
		{"none", 0, nil, 0},
		{"nobody sees dst", 0, []relayCandidate{c(1, true, false, 1)}, 0},
		{"dead relay", 0, []relayCandidate{c(1, false, true, 1)}, 0},
		{"lowest rtt", 0, []relayCandidate{c(1, true, true, 5), c(2, true, true, 3), c(3, true, false, 1)}, 2},
		{"tie by name", 0, []relayCandidate{c(4, true, true, 3), c(2, true, true, 3)}, 2},
		{"sticky", 4, []relayCandidate{c(4, true, true, 9), c(2, true, true, 3)}, 4},
		{"current unusable", 4, []relayCandidate{c(4, true, false, 1), c(2, true, true, 3)}, 2},
		{"current gone", 5, []relayCandidate{c(2, true, true, 3)}, 2},
	} {
		if got := chooseRelay(tc.current, tc.cands); got != tc.want {
			t.Errorf("%s: chooseRelay = %v, want %v", tc.name, got, tc.want)
		}
	}
}
