package cluster

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"

	"github.com/meshkv/meshkv/internal/netproxy"
)

// Cut is a kind of link failure.
type Cut int

// Kinds of cut.
const (
	// Reset closes the link's connections with RST and resets new ones.
	Reset Cut = iota + 1
	// Silent drops every byte in both directions and keeps connections open.
	Silent
	// Stall stops forwarding without dropping: senders block once the
	// socket buffers are full; held bytes are delivered after the heal.
	Stall
)

func (c Cut) String() string {
	switch c {
	case Reset:
		return "reset"
	case Silent:
		return "silent"
	case Stall:
		return "stall"
	}
	return fmt.Sprintf("Cut(%d)", int(c))
}

// ParseCut parses the String form of a Cut.
func ParseCut(s string) (Cut, error) {
	for _, c := range []Cut{Reset, Silent, Stall} {
		if c.String() == s {
			return c, nil
		}
	}
	return 0, fmt.Errorf("%w: %q (want reset, silent or stall)", ErrUnknownCut, s)
}

func (c Cut) mode() (netproxy.Mode, error) {
	switch c {
	case Reset:
		return netproxy.Reset, nil
	case Silent:
		return netproxy.Blackhole, nil
	case Stall:
		return netproxy.Stall, nil
	}
	return 0, fmt.Errorf("%w: %d", ErrUnknownCut, int(c))
}

// Errors of link operations.
var (
	// ErrUnknownCut is returned for a Cut value that is not one of the kinds.
	ErrUnknownCut = errors.New("cluster: unknown cut kind")
	// ErrNoLink is returned when two nodes have no proxy between them.
	ErrNoLink = errors.New("cluster: no link between the nodes")
)

// hop names the proxy that node from dials to reach node to.
type hop struct{ from, to string }

// links is the table of per-link proxies. Its methods are safe for
// concurrent use.
type links struct {
	mu      sync.Mutex
	proxies map[hop]*netproxy.Proxy
	state   map[[2]string]string // sorted pair -> current cut, for reports
}

func newLinks() *links {
	return &links{proxies: map[hop]*netproxy.Proxy{}, state: map[[2]string]string{}}
}

func pairOf(a, b string) [2]string {
	if a > b {
		a, b = b, a
	}
	return [2]string{a, b}
}

// add starts proxy(from→to) forwarding to target (to's mesh address) and
// returns the address from must dial.
func (l *links) add(from, to, target string) (string, error) {
	p, err := netproxy.New("127.0.0.1:0", target)
	if err != nil {
		return "", fmt.Errorf("cluster: proxy %s->%s: %w", from, to, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if old := l.proxies[hop{from, to}]; old != nil {
		_ = old.Close()
	}
	l.proxies[hop{from, to}] = p
	return p.Addr(), nil
}

// between returns the proxies that carry connections between a and b.
func (l *links) between(a, b string) (ab, ba *netproxy.Proxy, err error) {
	if a == b {
		return nil, nil, fmt.Errorf("%w: %s and itself", ErrNoLink, a)
	}
	ab, ba = l.proxies[hop{a, b}], l.proxies[hop{b, a}]
	if ab == nil && ba == nil {
		return nil, nil, fmt.Errorf("%w: %s and %s", ErrNoLink, a, b)
	}
	return ab, ba, nil
}

// cut breaks the link between a and b in both directions.
func (l *links) cut(a, b string, kind Cut) error {
	mode, err := kind.mode()
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	ab, ba, err := l.between(a, b)
	if err != nil {
		return err
	}
	for _, p := range []*netproxy.Proxy{ab, ba} {
		if p != nil {
			if err := p.Cut(mode); err != nil {
				return err
			}
		}
	}
	l.state[pairOf(a, b)] = kind.String()
	return nil
}

// cutOneWay drops the bytes node from sends to node to, whichever proxy
// carries their connection; bytes from to to from still flow.
func (l *links) cutOneWay(from, to string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	ft, tf, err := l.between(from, to)
	if err != nil {
		return err
	}
	if ft != nil { // from dialled: from is the client side
		if err := ft.Cut(netproxy.BlackholeToTarget); err != nil {
			return err
		}
	}
	if tf != nil { // to dialled: from is the target side
		if err := tf.Cut(netproxy.BlackholeToClient); err != nil {
			return err
		}
	}
	l.state[pairOf(from, to)] = fmt.Sprintf("one-way %s->%s dropped", from, to)
	return nil
}

// heal restores the link between a and b.
func (l *links) heal(a, b string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	ab, ba, err := l.between(a, b)
	if err != nil {
		return err
	}
	for _, p := range []*netproxy.Proxy{ab, ba} {
		if p != nil {
			if err := p.Heal(); err != nil {
				return err
			}
		}
	}
	delete(l.state, pairOf(a, b))
	return nil
}

// healAll restores every link.
func (l *links) healAll() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	for _, p := range l.proxies {
		if p.Mode() != 0 {
			errs = append(errs, p.Heal())
		}
	}
	clear(l.state)
	return errors.Join(errs...)
}

// connected reports whether a proxied connection between a and b is open
// and the link is not cut.
func (l *links) connected(a, b string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, cut := l.state[pairOf(a, b)]; cut {
		return false
	}
	ab, ba, err := l.between(a, b)
	if err != nil {
		return false
	}
	for _, p := range []*netproxy.Proxy{ab, ba} {
		if p != nil && p.Stats().Open > 0 {
			return true
		}
	}
	return false
}

// cuts describes the links currently cut, sorted, as "a-b: kind".
func (l *links) cuts() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, 0, len(l.state))
	for p, s := range l.state {
		out = append(out, fmt.Sprintf("%s-%s: %s", p[0], p[1], s))
	}
	sort.Strings(out)
	return out
}

// peersOf lists the nodes name has a link with.
func (l *links) peersOf(name string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	set := map[string]bool{}
	for h := range l.proxies {
		switch name {
		case h.from:
			set[h.to] = true
		case h.to:
			set[h.from] = true
		}
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// close closes every proxy.
func (l *links) close() error {
	l.mu.Lock()
	ps := make([]*netproxy.Proxy, 0, len(l.proxies))
	for _, p := range l.proxies {
		ps = append(ps, p)
	}
	clear(l.proxies)
	l.mu.Unlock()
	var errs []error
	for _, p := range ps {
		errs = append(errs, p.Close())
	}
	return errors.Join(errs...)
}
