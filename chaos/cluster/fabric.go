package cluster

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
)

// fabric is the network between the members: it gives each new member its
// addresses and cuts and heals the links between members. Implementations:
// proxyFabric (loopback and per-link TCP proxies) and nsFabric (network
// namespaces and veth pairs).
type fabric interface {
	mode() Net
	// place gives a new member its addresses (and, for netns, its
	// namespace).
	place(name string) (placement, error)
	// connect makes sure member from can reach member to's peer listener
	// over the link from–to and returns the address from must dial.
	connect(from, to string) (string, error)
	cut(a, b string, kind Cut) error
	cutOneWay(from, to string) error
	heal(a, b string) error
	healAll() error
	connected(a, b string) bool
	// cuts describes the links cut now, sorted, as "a-b: kind".
	cuts() []string
	// peersOf lists the members name has a link with.
	peersOf(name string) []string
	close() error
}

// placement is where a member lives on the fabric.
type placement struct {
	clientURL string // the etcd client endpoint, http://HOST:PORT
	peerAddr  string // HOST:PORT of the mesh (meshkv) or peer (etcd) listener
	netns     string // path of the member's network namespace; "" for the root namespace
	nsName    string // the namespace's name, for reports
}

// proxyFabric runs every member on loopback with free ports; member i
// reaches member j only through proxy(i→j) (see links).
type proxyFabric struct {
	*links

	mu    sync.Mutex
	ports map[int]bool
	peer  map[string]string // member -> its own mesh address
}

var _ fabric = (*proxyFabric)(nil)

func newProxyFabric() *proxyFabric {
	return &proxyFabric{links: newLinks(), ports: map[int]bool{}, peer: map[string]string{}}
}

func (f *proxyFabric) mode() Net { return Proxy }

func (f *proxyFabric) place(name string) (placement, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	clientPort, err := f.freePort()
	if err != nil {
		return placement{}, err
	}
	meshPort, err := f.freePort()
	if err != nil {
		return placement{}, err
	}
	p := placement{
		clientURL: "http://127.0.0.1:" + strconv.Itoa(clientPort),
		peerAddr:  "127.0.0.1:" + strconv.Itoa(meshPort),
	}
	f.peer[name] = p.peerAddr
	return p, nil
}

// freePort finds a loopback port nobody listens on and that this fabric has
// not handed out yet. Called with f.mu held.
func (f *proxyFabric) freePort() (int, error) {
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("cluster: find a free port: %w", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
		if !f.ports[port] {
			f.ports[port] = true
			return port, nil
		}
	}
	return 0, errors.New("cluster: no free port found")
}

// connect starts proxy(from→to) and returns its address.
func (f *proxyFabric) connect(from, to string) (string, error) {
	f.mu.Lock()
	target, ok := f.peer[to]
	f.mu.Unlock()
	if !ok {
		return "", fmt.Errorf("%w: %s and %s", ErrNoLink, from, to)
	}
	return f.add(from, to, target)
}
