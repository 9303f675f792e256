package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Ports inside each member's namespace: every member has its own port space.
const (
	netnsClientPort = 2379
	netnsPeerPort   = 2380
)

// blackholeMAC is the link-layer address a silent cut resolves the peer to:
// frames sent to it are dropped by the peer's veth (not its address), so
// nothing arrives and nothing answers, as behind a dead switch port.
const blackholeMAC = "02:00:00:00:00:01"

// nsMember is one member's place in a netns cluster.
type nsMember struct {
	name     string
	k        int // 1-based member number
	ns       string
	node     netip.Addr
	client   netip.Addr
	host     netip.Addr
	hostVeth string
}

// nsFabric runs every member in a network namespace of its own:
//
//   - the member's node address is a /32 on its lo; it listens there for
//     the mesh (meshkv) or for peers (etcd);
//   - each member pair has a veth pair, and each member a host route to the
//     other's node address over it, so traffic between A and B uses only
//     the A–B veth, never a third namespace or the root namespace;
//   - each member has a client veth to the root namespace, where the
//     harness's clients run; faults never touch it.
//
// A link is cut in the kernel, on the veth of the pair: a silent cut gives
// each side a permanent neighbour entry with a wrong MAC for the other's
// node address (frames leave and are dropped by the receiving veth; TCP
// retransmits with backoff, exactly as behind a dead link); a one-way cut
// does it on one side only; a reset cut replaces the host routes with
// unreachable ones (new connections fail at once) and aborts the open
// connections of the pair on both sides (ss -K). Stall is a silent cut here:
// at the kernel level, bytes not acknowledged are held by the sender and
// delivered after the heal, which is what a stall is.
type nsFabric struct {
	log   *slog.Logger
	owner owner
	run   int

	mu      sync.Mutex
	slot    int
	hasSlot bool
	members map[string]*nsMember
	order   []*nsMember
	pairs   map[[2]string]bool   // sorted pair -> veth pair exists
	state   map[[2]string]string // sorted pair -> cut description
	closed  bool
	reaper  *reaper
}

var _ fabric = (*nsFabric)(nil)

func newNSFabric(log *slog.Logger, o owner, run int) (*nsFabric, error) {
	if err := NetnsAvailable(); err != nil {
		return nil, err
	}
	if removed, err := RemoveStale(); err != nil {
		log.Warn("removing leftovers of dead chaos runs", "err", err)
	} else if len(removed) > 0 {
		log.Info("removed leftovers of dead chaos runs", "removed", removed)
	}
	cgRoot := ""
	if cg, err := findCPUCgroup(); err == nil {
		cgRoot = cg.root
	}
	r, err := startReaper(nsName(o, run, ""), cgRoot)
	if err != nil {
		return nil, err
	}
	return &nsFabric{
		log:     log,
		owner:   o,
		run:     run,
		members: map[string]*nsMember{},
		pairs:   map[[2]string]bool{},
		state:   map[[2]string]string{},
		reaper:  r,
	}, nil
}

func (f *nsFabric) mode() Net { return Netns }

// place creates member name's namespace, node address and client veth.
// The first member also takes the cluster's address slot, under the slot
// lock, so that no parallel run takes the same one.
func (f *nsFabric) place(name string) (placement, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return placement{}, ErrClosed
	}
	k := len(f.order) + 1
	if k > MaxMembers {
		return placement{}, fmt.Errorf("cluster: more than %d members", MaxMembers)
	}
	if !f.hasSlot {
		l, err := lockSlots()
		if err != nil {
			return placement{}, err
		}
		defer l.unlock()
		used, err := rootUsedPrefixes()
		if err != nil {
			return placement{}, err
		}
		if f.slot, err = freeSlot(used); err != nil {
			return placement{}, err
		}
		f.hasSlot = true
	}
	hv, err := hostVethName(f.owner, f.run, k)
	if err != nil {
		return placement{}, err
	}
	m := &nsMember{
		name: name, k: k, ns: nsName(f.owner, f.run, name),
		node: nodeAddr(f.slot, k), client: clientAddr(f.slot, k), host: hostAddr(f.slot, k),
		hostVeth: hv,
	}
	if err := run("", "ip", "netns", "add", m.ns); err != nil {
		return placement{}, err
	}
	// Registered before configuring, so that close removes it on any error.
	f.members[name] = m
	f.order = append(f.order, m)
	if err := ipBatch(m.ns, false,
		"link set lo up",
		fmt.Sprintf("addr add %s/32 dev lo", m.node),
	); err != nil {
		return placement{}, err
	}
	if err := ipBatch("", false,
		fmt.Sprintf("link add %s type veth peer name %s netns %s", m.hostVeth, clientVethName, m.ns),
		fmt.Sprintf("addr add %s peer %s/32 dev %s", m.host, m.client, m.hostVeth),
		fmt.Sprintf("link set %s up", m.hostVeth),
	); err != nil {
		return placement{}, err
	}
	if err := ipBatch(m.ns, false,
		fmt.Sprintf("addr add %s peer %s/32 dev %s", m.client, m.host, clientVethName),
		fmt.Sprintf("link set %s up", clientVethName),
	); err != nil {
		return placement{}, err
	}
	f.log.Info("namespace ready", "node", name, "netns", m.ns, "node-addr", m.node, "client-addr", m.client)
	return placement{
		clientURL: fmt.Sprintf("http://%s:%d", m.client, netnsClientPort),
		peerAddr:  netip.AddrPortFrom(m.node, netnsPeerPort).String(),
		netns:     netnsPath(m.ns),
		nsName:    m.ns,
	}, nil
}

// connect creates the veth pair between from and to (once per pair) with a
// host route on each side, and returns to's peer address.
func (f *nsFabric) connect(from, to string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return "", ErrClosed
	}
	a, b, err := f.pair(from, to)
	if err != nil {
		return "", err
	}
	p := pairOf(from, to)
	if !f.pairs[p] {
		if err := ipBatch(a.ns, false,
			fmt.Sprintf("link add %s type veth peer name %s netns %s", peerVethName(b.k), peerVethName(a.k), b.ns),
			fmt.Sprintf("link set %s up", peerVethName(b.k)),
			hostRoute(a, b),
		); err != nil {
			return "", err
		}
		if err := ipBatch(b.ns, false,
			fmt.Sprintf("link set %s up", peerVethName(a.k)),
			hostRoute(b, a),
		); err != nil {
			return "", err
		}
		f.pairs[p] = true
	}
	return netip.AddrPortFrom(b.node, netnsPeerPort).String(), nil
}

// pair looks up two members that share a link. Called with f.mu held.
func (f *nsFabric) pair(a, b string) (*nsMember, *nsMember, error) {
	if a == b {
		return nil, nil, fmt.Errorf("%w: %s and itself", ErrNoLink, a)
	}
	ma, mb := f.members[a], f.members[b]
	if ma == nil || mb == nil {
		return nil, nil, fmt.Errorf("%w: %s and %s", ErrNoLink, a, b)
	}
	return ma, mb, nil
}

// linked is pair plus the check that the veth pair exists. Called with f.mu
// held.
func (f *nsFabric) linked(a, b string) (*nsMember, *nsMember, error) {
	ma, mb, err := f.pair(a, b)
	if err != nil {
		return nil, nil, err
	}
	if !f.pairs[pairOf(a, b)] {
		return nil, nil, fmt.Errorf("%w: %s and %s", ErrNoLink, a, b)
	}
	return ma, mb, nil
}

// The per-side commands, run in the namespace of from, about the path to to.

func hostRoute(from, to *nsMember) string {
	return fmt.Sprintf("route replace %s/32 dev %s src %s", to.node, peerVethName(to.k), from.node)
}

func unblock(from, to *nsMember) []string {
	return []string{
		hostRoute(from, to),
		fmt.Sprintf("neigh flush to %s dev %s nud permanent", to.node, peerVethName(to.k)),
	}
}

func blackhole(from, to *nsMember) []string {
	return []string{
		hostRoute(from, to),
		fmt.Sprintf("neigh replace %s lladdr %s dev %s nud permanent", to.node, blackholeMAC, peerVethName(to.k)),
	}
}

func unreachable(from, to *nsMember) []string {
	return []string{
		fmt.Sprintf("neigh flush to %s dev %s nud permanent", to.node, peerVethName(to.k)),
		fmt.Sprintf("route replace unreachable %s/32", to.node),
	}
}

// killConns aborts from's TCP connections to to (each side sees
// ECONNABORTED; the RST cannot leave once the route is unreachable, which
// is why both sides are aborted).
func killConns(from, to *nsMember) error {
	return run("", "ip", "netns", "exec", from.ns, "ss", "-K", "-t", "dst", to.node.String())
}

func (f *nsFabric) cut(a, b string, kind Cut) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	ma, mb, err := f.linked(a, b)
	if err != nil {
		return err
	}
	switch kind {
	case Silent, Stall:
		if err := ipBatch(ma.ns, false, blackhole(ma, mb)...); err != nil {
			return err
		}
		if err := ipBatch(mb.ns, false, blackhole(mb, ma)...); err != nil {
			return err
		}
	case Reset:
		if err := ipBatch(ma.ns, false, unreachable(ma, mb)...); err != nil {
			return err
		}
		if err := ipBatch(mb.ns, false, unreachable(mb, ma)...); err != nil {
			return err
		}
		if err := errors.Join(killConns(ma, mb), killConns(mb, ma)); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%w: %d", ErrUnknownCut, int(kind))
	}
	desc := kind.String()
	if kind == Stall {
		desc = "stall (silent in netns mode)"
	}
	f.state[pairOf(a, b)] = desc
	return nil
}

func (f *nsFabric) cutOneWay(from, to string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	mf, mt, err := f.linked(from, to)
	if err != nil {
		return err
	}
	if err := ipBatch(mt.ns, false, unblock(mt, mf)...); err != nil {
		return err
	}
	if err := ipBatch(mf.ns, false, blackhole(mf, mt)...); err != nil {
		return err
	}
	f.state[pairOf(from, to)] = fmt.Sprintf("one-way %s->%s dropped", from, to)
	return nil
}

func (f *nsFabric) heal(a, b string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	ma, mb, err := f.linked(a, b)
	if err != nil {
		return err
	}
	if err := ipBatch(ma.ns, false, unblock(ma, mb)...); err != nil {
		return err
	}
	if err := ipBatch(mb.ns, false, unblock(mb, ma)...); err != nil {
		return err
	}
	delete(f.state, pairOf(a, b))
	return nil
}

// healAll restores every link, whatever state it is believed to be in: one
// ip process per namespace.
func (f *nsFabric) healAll() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var errs []error
	for _, m := range f.order {
		var lines []string
		for _, o := range f.order {
			if o != m && f.pairs[pairOf(m.name, o.name)] {
				lines = append(lines, unblock(m, o)...)
			}
		}
		errs = append(errs, ipBatch(m.ns, false, lines...))
	}
	clear(f.state)
	return errors.Join(errs...)
}

// connected reports whether the link is up as far as the fabric is
// concerned (not cut); whether TCP connections are open is the members'
// business here.
func (f *nsFabric) connected(a, b string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, _, err := f.linked(a, b); err != nil {
		return false
	}
	_, cut := f.state[pairOf(a, b)]
	return !cut
}

func (f *nsFabric) cuts() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, 0, len(f.state))
	for p, s := range f.state {
		out = append(out, fmt.Sprintf("%s-%s: %s", p[0], p[1], s))
	}
	sort.Strings(out)
	return out
}

func (f *nsFabric) peersOf(name string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for p := range f.pairs {
		switch name {
		case p[0]:
			out = append(out, p[1])
		case p[1]:
			out = append(out, p[0])
		}
	}
	slices.Sort(out)
	return out
}

// close deletes every namespace of the cluster; the veths go with them.
// The processes must be gone first (a namespace with a process in it
// outlives its name). It is idempotent.
func (f *nsFabric) close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	var errs []error
	var names []string
	for _, m := range f.order {
		names = append(names, m.ns)
		if err := run("", "ip", "netns", "del", m.ns); err != nil && !strings.Contains(err.Error(), "No such file") {
			errs = append(errs, err)
		}
	}
	// The kernel tears a namespace down asynchronously: wait until the root
	// ends of the client veths are gone, so that the cluster leaves nothing
	// behind when Close returns.
	deadline := time.Now().Add(10 * time.Second)
	for {
		left, err := f.hostVethsLeft()
		if err != nil {
			errs = append(errs, err)
			break
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			errs = append(errs, fmt.Errorf("cluster: client veths %v still in the root namespace", left))
			break
		}
		time.Sleep(50 * time.Millisecond) // polling the kernel's teardown
	}
	errs = append(errs, f.reaper.stop())
	f.log.Info("namespaces removed", "netns", names)
	return errors.Join(errs...)
}

// hostVethsLeft lists the root ends of the cluster's client veths that still
// exist. Called with f.mu held.
func (f *nsFabric) hostVethsLeft() ([]string, error) {
	out, err := output("ip", "-o", "link", "show")
	if err != nil {
		return nil, err
	}
	present := map[string]bool{}
	for _, l := range strings.Split(string(out), "\n") {
		// "7: NAME@ifN: <...>" or "7: NAME: <...>"
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		present[name] = true
	}
	var left []string
	for _, m := range f.order {
		if present[m.hostVeth] {
			left = append(left, m.hostVeth)
		}
	}
	return left, nil
}
