package bootstrap

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshkv/meshkv/internal/ids"
)

// The simulation runs processes in slots (a slot is an address; a process
// restarted in a slot is a new process with a new member id) on logical
// time. Gossip travels with random delays inside a partition group; an
// entry not refreshed for simTTL is expired, as the transport does it.
const (
	simStep    = 20 * time.Millisecond
	simTTL     = 2 * time.Second
	simRelease = 3 * time.Second
	simSettle  = 200 * time.Millisecond
)

type seen struct {
	state   State
	version int
	at      time.Duration
}

type proc struct {
	id        ids.MemberID
	slot      int
	alive     bool
	b         *Bootstrapper
	view      map[ids.MemberID]*seen
	heard     map[string]ids.MemberID
	version   int
	decision  *Decision
	crashWhen func(p *proc) bool // crash once this holds (checked every step)
	last      State              // last published state
}

func sameState(a, b State) bool {
	samePromise := func(x, y *Proposal) bool {
		return x == nil && y == nil || x != nil && y != nil && x.Ballot == y.Ballot && slices.Equal(x.Members, y.Members)
	}
	return a.RaftID == b.RaftID && a.ClusterID == b.ClusterID && a.Supersedes == b.Supersedes &&
		samePromise(a.Promise, b.Promise) && samePromise(a.Founding, b.Founding)
}

type delivery struct {
	at      time.Duration
	to      *proc
	version int
	state   State
}

type bsim struct {
	t        *testing.T
	seed     uint64
	rng      *rand.Rand
	now      time.Duration
	size     int
	listed   bool // every process lists every slot's address
	slots    int
	procs    []*proc
	group    map[int]int
	queue    []delivery
	formed   map[ids.ClusterID][]ids.MemberID
	record   bool
	failures []string
}

func newBsim(t *testing.T, seed uint64, slots, size int, listed bool) *bsim {
	return &bsim{
		t: t, seed: seed, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		size: size, listed: listed, slots: slots, group: map[int]int{}, formed: map[ids.ClusterID][]ids.MemberID{},
	}
}

// seeds is n, or a fifth of it with -short or -race.
func seeds(n uint64) uint64 {
	if testing.Short() || raceEnabled {
		return n / 5
	}
	return n
}

func addr(slot int) string { return fmt.Sprintf("10.0.0.%d:2380", slot+1) }

func (s *bsim) fail(format string, args ...any) {
	s.t.Helper()
	msg := fmt.Sprintf("seed %d at %v: %s", s.seed, s.now, fmt.Sprintf(format, args...))
	if s.record {
		s.failures = append(s.failures, msg)
		return
	}
	s.t.Fatal(msg)
}

// start runs a new process in slot. Without listed peers and with size 1,
// every process but the very first is given NeedPeer (an operator adding a
// node to a running one).
func (s *bsim) start(slot int) *proc {
	cfg := Config{InitialClusterSize: s.size, Settle: simSettle, ReleaseAfter: simRelease, Nonce: s.rng.Uint64}
	if s.listed {
		for i := range s.slots {
			cfg.ListedPeers = append(cfg.ListedPeers, addr(i))
		}
	} else if s.size == 1 && len(s.procs) > 0 {
		cfg.NeedPeer = true
	}
	var id ids.MemberID
	for id == 0 || s.byID(id) != nil {
		id = ids.MemberID(s.rng.Uint64N(1<<40) + 1)
	}
	p := &proc{id: id, slot: slot, alive: true, view: map[ids.MemberID]*seen{}, heard: map[string]ids.MemberID{}}
	p.b = New(id, cfg, time.Unix(0, 0).Add(s.now))
	s.procs = append(s.procs, p)
	return p
}

func (s *bsim) byID(id ids.MemberID) *proc {
	for _, p := range s.procs {
		if p.id == id {
			return p
		}
	}
	return nil
}

func (s *bsim) connected(a, b *proc) bool {
	return a.alive && b.alive && s.group[a.slot] == s.group[b.slot]
}

func (s *bsim) crash(p *proc) { p.alive = false }

// live reports the clusters that have a live participant.
func (s *bsim) live() map[ids.ClusterID]bool {
	out := map[ids.ClusterID]bool{}
	for _, p := range s.procs {
		if p.alive && p.decision != nil {
			out[p.decision.ClusterID] = true
		}
	}
	return out
}

func (s *bsim) step() {
	s.now += simStep
	rest := s.queue[:0]
	for _, d := range s.queue {
		switch {
		case d.at > s.now:
			rest = append(rest, d)
		case d.to.alive:
			if cur := d.to.view[d.state.RaftID]; cur == nil || d.version > cur.version {
				d.to.view[d.state.RaftID] = &seen{state: d.state, version: d.version, at: s.now}
			} else if d.version == cur.version {
				cur.at = s.now
			}
		}
	}
	s.queue = rest
	for _, p := range s.procs {
		if !p.alive {
			continue
		}
		for _, q := range s.procs {
			if q.alive && s.connected(p, q) {
				p.heard[addr(q.slot)] = q.id // a direct link to q's address
			}
		}
		var peers []Peer
		for _, e := range p.view {
			peers = append(peers, Peer{State: e.state, Expired: s.now-e.at > simTTL})
		}
		s.rng.Shuffle(len(peers), func(a, b int) { peers[a], peers[b] = peers[b], peers[a] })
		d, ok := p.b.Step(time.Unix(0, 0).Add(s.now), View{Peers: peers, Heard: p.heard})
		if ok {
			s.decided(p, d)
		}
		if p.crashWhen != nil && p.crashWhen(p) {
			s.crash(p)
			continue
		}
		// Publish on every change, and refresh the entry every 100ms.
		st := p.b.State()
		if changed := !sameState(st, p.last); !changed && s.now%(100*time.Millisecond) != 0 {
			continue
		} else if changed {
			p.version++
			p.last = st
		}
		for _, q := range s.procs {
			if q != p && s.connected(p, q) {
				s.queue = append(s.queue, delivery{at: s.now + time.Duration(s.rng.IntN(300))*time.Millisecond, to: q, version: p.version, state: st})
			}
		}
	}
}

// decided checks the safety properties when p decides.
func (s *bsim) decided(p *proc, d Decision) {
	s.t.Helper()
	if p.decision != nil {
		s.fail("process %s decided twice", p.id)
	}
	if !d.Join {
		if !slices.Contains(d.Members, p.id) {
			s.fail("process %s formed cluster %s without being a member of %v", p.id, d.ClusterID, d.Members)
		}
		if m, ok := s.formed[d.ClusterID]; ok && !slices.Equal(m, d.Members) {
			s.fail("cluster %s formed with members %v and %v", d.ClusterID, m, d.Members)
		}
		if _, ok := s.formed[d.ClusterID]; !ok {
			for c := range s.live() {
				if c != d.ClusterID {
					s.fail("process %s founded cluster %s while cluster %s has live members", p.id, d.ClusterID, c)
				}
			}
		}
		s.formed[d.ClusterID] = slices.Clone(d.Members)
	} else if _, ok := s.formed[d.ClusterID]; !ok {
		s.fail("process %s joined cluster %s that nobody formed", p.id, d.ClusterID)
	}
	p.decision = &d
}

func (s *bsim) run(d time.Duration) {
	for end := s.now + d; s.now < end; {
		s.step()
	}
}

// settle runs until every live process decided (or limit passes).
func (s *bsim) settle(limit time.Duration) bool {
	for end := s.now + limit; s.now < end; {
		s.step()
		all := true
		for _, p := range s.procs {
			all = all && (!p.alive || p.decision != nil)
		}
		if all {
			return true
		}
	}
	return false
}

func (s *bsim) undecided() []string {
	var out []string
	for _, p := range s.procs {
		if p.alive && p.decision == nil {
			out = append(out, fmt.Sprintf("%s: %s", p.id, p.b.Waiting()))
		}
	}
	return out
}

// Nodes starting at random times form exactly one cluster, and all join it.
func TestExactlyOneCluster(t *testing.T) {
	t.Parallel()
	for seed := uint64(1); seed <= seeds(100); seed++ {
		for _, tc := range []struct{ n, size int }{{1, 1}, {3, 3}, {5, 3}, {5, 5}, {7, 3}, {4, 1}} {
			for _, listed := range []bool{false, true} {
				s := newBsim(t, seed, tc.n, tc.size, listed)
				starts := make([]time.Duration, tc.n)
				for i := range starts {
					starts[i] = time.Duration(s.rng.IntN(2000)) * time.Millisecond
				}
				for s.now < 3*time.Second {
					for i, at := range starts {
						if at >= s.now && at < s.now+simStep {
							s.start(i)
						}
					}
					s.step()
				}
				if !s.settle(time.Minute) {
					t.Fatalf("seed %d n %d size %d listed %v: undecided %q", seed, tc.n, tc.size, listed, s.undecided())
				}
				if n := len(s.live()); n != 1 {
					t.Fatalf("seed %d: %d clusters", seed, n)
				}
			}
		}
	}
}

// Founders crash at random points (before or right after forming) and new
// processes arrive (listed: in the crashed founder's slot): the survivors
// and the newcomers still form one cluster, and never deadlock.
func TestFounderCrashes(t *testing.T) {
	t.Parallel()
	for seed := uint64(1); seed <= seeds(100); seed++ {
		for _, listed := range []bool{false, true} {
			s := newBsim(t, seed, 6, 3, listed)
			for i := range 6 {
				p := s.start(i)
				p.crashWhen = func(p *proc) bool {
					formed := p.decision != nil && !p.decision.Join
					return p.b.State().Founding != nil && (formed || s.rng.IntN(30) == 0)
				}
			}
			// Each crashed process is followed a second later by a newcomer
			// in its slot.
			restarts := map[*proc]time.Duration{}
			for s.now < time.Minute {
				s.step()
				for _, p := range s.procs {
					if _, ok := restarts[p]; !p.alive && !ok {
						restarts[p] = s.now + time.Second
					}
				}
				for p, at := range restarts {
					if at == s.now {
						s.start(p.slot)
					}
				}
				if len(s.undecided()) == 0 && s.now > 5*time.Second {
					break
				}
			}
			if !s.settle(time.Minute) {
				t.Fatalf("seed %d listed %v: undecided %q", seed, listed, s.undecided())
			}
			if n := len(s.live()); n != 1 {
				t.Fatalf("seed %d listed %v: %d live clusters", seed, listed, n)
			}
		}
	}
}

// The founder of three seekers crashes after they promised its ballot but
// before it formed; a fourth node arriving later forms a cluster with the
// two promisers (before entries expired, the crashed founder held their
// promises for ever).
func TestFounderCrashBeforeForming(t *testing.T) {
	for seed := uint64(1); seed <= seeds(50); seed++ {
		s := newBsim(t, seed, 4, 3, false)
		var founder *proc
		for i := range 3 {
			s.start(i)
		}
		for founder == nil {
			s.step()
			for _, p := range s.procs {
				if f := p.b.State().Founding; f != nil && p.alive {
					promised := 0
					for _, q := range s.procs {
						if pr := q.b.State().Promise; pr != nil && pr.Ballot == f.Ballot {
							promised++
						}
					}
					if promised == 2 {
						founder = p
					}
				}
			}
			if s.now > 10*time.Second {
				t.Fatalf("seed %d: no founder", seed)
			}
		}
		if founder.decision != nil {
			continue // it formed in the same step: not this scenario
		}
		s.crash(founder)
		s.run(time.Second)
		s.start(3)
		if !s.settle(time.Minute) {
			t.Fatalf("seed %d: undecided %q", seed, s.undecided())
		}
		live := s.live()
		if len(live) != 1 {
			t.Fatalf("seed %d: %d live clusters", seed, len(live))
		}
		for c := range live {
			if c == founder.b.State().Founding.Ballot.ClusterID() {
				t.Fatalf("seed %d: the crashed founder's cluster formed", seed)
			}
		}
	}
}

// Nodes restarted with new ids that see each other but not the cluster
// (which lives on behind a partition) never found a second one when they
// list their peers; they join it once the partition heals. Without listed
// peers they would, and the simulation catches that.
func TestRestartsDoNotSplit(t *testing.T) {
	for _, size := range []int{1, 3} {
		for seed := uint64(1); seed <= seeds(50); seed++ {
			s := newBsim(t, seed, 3, size, true)
			for i := range 3 {
				s.start(i)
			}
			if !s.settle(time.Minute) {
				t.Fatalf("seed %d: undecided %q", seed, s.undecided())
			}
			s.group[0] = 1
			for _, p := range s.procs {
				if p.slot != 0 {
					s.crash(p)
				}
			}
			s.start(1)
			s.start(2)
			s.run(30 * time.Second)
			if u := s.undecided(); len(u) != 2 || !strings.Contains(u[0], "not founding a cluster") {
				t.Fatalf("seed %d: restarted nodes decided or wait for the wrong reason: %q", seed, u)
			}
			clear(s.group)
			if !s.settle(time.Minute) {
				t.Fatalf("seed %d: undecided after the heal %q", seed, s.undecided())
			}
			if n := len(s.live()); n != 1 {
				t.Fatalf("seed %d: %d live clusters", seed, n)
			}
		}
	}
	s := newBsim(t, 1, 3, 1, false)
	s.record = true
	for i := range 3 {
		s.start(i)
	}
	s.settle(time.Minute)
	s.group[0] = 1
	for _, p := range s.procs[1:] {
		s.crash(p)
	}
	s.start(1)
	s.start(2)
	s.run(30 * time.Second)
	if len(s.failures) == 0 {
		t.Fatal("without listed peers, restarted nodes did not found a second cluster; the check is blind")
	}
}

// Random crashes, restarts and partitions with listed peers: never a second
// cluster while one has live members; once the network is whole and every
// slot runs a process, everyone decides.
func TestRandomRestartsAndPartitions(t *testing.T) {
	t.Parallel()
	clusters, runs := 0, 0
	defer func() {
		t.Logf("%d runs formed %d clusters in all (a new one only after every member of the last had died)", runs, clusters)
	}()
	for seed := uint64(1); seed <= seeds(60); seed++ {
		for _, size := range []int{1, 3} {
			s := newBsim(t, seed, 4, size, true)
			for i := range 4 {
				s.start(i)
			}
			for s.now < 2*time.Minute {
				s.step()
				switch r := s.rng.IntN(400); {
				case r == 0:
					var live []*proc
					for _, p := range s.procs {
						if p.alive {
							live = append(live, p)
						}
					}
					if len(live) > 0 {
						s.crash(live[s.rng.IntN(len(live))])
					}
				case r < 4:
					for slot := range 4 {
						if s.slotFree(slot) {
							s.start(slot)
							break
						}
					}
				case r == 5:
					if len(s.group) == 0 {
						s.group[s.rng.IntN(4)] = 1
					} else {
						clear(s.group)
					}
				}
			}
			clear(s.group)
			for slot := range 4 {
				if s.slotFree(slot) {
					s.start(slot)
				}
			}
			if !s.settle(2 * time.Minute) {
				t.Fatalf("seed %d size %d: undecided %q", seed, size, s.undecided())
			}
			if n := len(s.live()); n != 1 {
				t.Fatalf("seed %d size %d: %d live clusters", seed, size, n)
			}
			runs++
			clusters += len(s.formed)
		}
	}
}

func (s *bsim) slotFree(slot int) bool {
	for _, p := range s.procs {
		if p.slot == slot && p.alive {
			return false
		}
	}
	return true
}

func TestNeedPeerWaits(t *testing.T) {
	base := time.Unix(0, 0)
	b := New(5, Config{InitialClusterSize: 1, NeedPeer: true, Nonce: func() uint64 { return 1 }}, base)
	if _, ok := b.Step(base.Add(time.Minute), View{}); ok {
		t.Fatal("formed alone although initial peers were configured and none was seen")
	}
	d, ok := b.Step(base.Add(time.Minute), View{Peers: []Peer{{State: State{RaftID: 9, ClusterID: 42}}}})
	if !ok || !d.Join || d.ClusterID != 42 {
		t.Fatalf("decision = %+v %v, want join of 42", d, ok)
	}
}

// Expired peers count as absent: an expired cluster member is not joined,
// an expired seeker does not block founding.
func TestExpiredPeersIgnored(t *testing.T) {
	base := time.Unix(0, 0)
	b := New(5, Config{InitialClusterSize: 1, Nonce: func() uint64 { return 1 }}, base)
	v := View{Peers: []Peer{{State: State{RaftID: 9, ClusterID: 42}, Expired: true}, {State: State{RaftID: 2}, Expired: true}}}
	d, ok := b.Step(base.Add(time.Minute), v)
	if !ok || d.Join || !slices.Equal(d.Members, []ids.MemberID{5}) {
		t.Fatalf("decision = %+v %v, want to found alone", d, ok)
	}
	if len(d.Conflict) != 0 {
		t.Fatalf("conflicts %v from an expired entry", d.Conflict)
	}
}

// Listed peers: wait until each was heard; an address that answered with
// our own id is ourselves; a listed peer in a cluster makes us join it.
func TestListedPeers(t *testing.T) {
	base := time.Unix(0, 0)
	cfg := Config{InitialClusterSize: 1, ListedPeers: []string{"a:1", "b:1", "c:1"}, Nonce: func() uint64 { return 1 }}
	b := New(5, cfg, base)
	now := base.Add(time.Minute)
	heard := map[string]ids.MemberID{"a:1": 5}
	if _, ok := b.Step(now, View{Heard: heard}); ok || !strings.Contains(b.Waiting(), "b:1, c:1") {
		t.Fatalf("decided or waiting %q", b.Waiting())
	}
	heard["b:1"], heard["c:1"] = 7, 8
	peers := []Peer{{State: State{RaftID: 7}}, {State: State{RaftID: 8}, Expired: true}}
	if _, ok := b.Step(now, View{Peers: peers, Heard: heard}); ok || !strings.Contains(b.Waiting(), "c:1 (member 8)") {
		t.Fatalf("decided or waiting %q with c expired", b.Waiting())
	}
	peers[1].Expired = false
	if _, ok := b.Step(now, View{Peers: peers, Heard: heard}); ok || b.State().Founding == nil {
		t.Fatalf("not founding with every listed peer heard: %q", b.Waiting())
	}
	// A proposal from a smaller node is promised only once all are heard.
	c := New(9, cfg, base)
	prop := &Proposal{Ballot: Ballot{Founder: 5, Nonce: 1}, Members: []ids.MemberID{5}}
	c.Step(now, View{Peers: []Peer{{State: State{RaftID: 5, Founding: prop}}}, Heard: map[string]ids.MemberID{"a:1": 5}})
	if c.State().Promise != nil {
		t.Fatal("promised before hearing every listed peer")
	}
	d, ok := c.Step(now, View{Peers: []Peer{{State: State{RaftID: 5, ClusterID: 42}}}, Heard: map[string]ids.MemberID{"a:1": 5}})
	if !ok || !d.Join || d.ClusterID != 42 {
		t.Fatalf("decision %+v %v, want to join the listed peer's cluster", d, ok)
	}
}

// A recovered cluster supersedes the old one: joiners choose it.
func TestJoinSkipsSupersededCluster(t *testing.T) {
	base := time.Unix(0, 0)
	b := New(5, Config{InitialClusterSize: 1, Nonce: func() uint64 { return 1 }}, base)
	d, ok := b.Step(base, View{Peers: []Peer{
		{State: State{RaftID: 1, ClusterID: 10}},
		{State: State{RaftID: 2, ClusterID: 50, Supersedes: 10}},
	}})
	if !ok || !d.Join || d.ClusterID != 50 {
		t.Fatalf("decision = %+v %v, want join of 50", d, ok)
	}
	if !slices.Equal(d.Conflict, []ids.ClusterID{10}) {
		t.Fatalf("conflicts %v, want the superseded cluster", d.Conflict)
	}
}

// A recovered node publishes its new cluster and the one it supersedes, and
// a node that sees both joins the new one.
func TestRecoveredPublishesSupersedes(t *testing.T) {
	base := time.Unix(0, 0)
	r := New(1, Config{InitialClusterSize: 1, Nonce: func() uint64 { return 1 }}, base)
	d, ok := r.Step(base, View{})
	if !ok || d.Join {
		t.Fatalf("decision %+v %v, want to form alone", d, ok)
	}
	old := d.ClusterID
	r.Recovered(old + 1)
	if st := r.State(); st.ClusterID != old+1 || st.Supersedes != old || !r.Done() {
		t.Fatalf("state after recovery %+v", st)
	}
	if d, _ := r.Step(base, View{}); d.ClusterID != old+1 {
		t.Fatalf("decision after recovery %+v", d)
	}
	j := New(3, Config{InitialClusterSize: 1, Nonce: func() uint64 { return 2 }}, base)
	d, ok = j.Step(base, View{Peers: []Peer{{State: State{RaftID: 2, ClusterID: old}}, {State: r.State()}}})
	if !ok || !d.Join || d.ClusterID != old+1 {
		t.Fatalf("joiner's decision %+v %v, want the recovered cluster", d, ok)
	}
}
