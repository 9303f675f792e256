package listen

import (
	"errors"
	"fmt"
	"net"
	"net/url"
)

// Mode says which transports a listener accepts.
type Mode uint8

const (
	// Plain accepts plaintext gRPC (http:// and unix:// URLs).
	Plain Mode = 1 << iota
	// Secure accepts gRPC over TLS (https:// and unixs:// URLs).
	Secure
	// Both accepts either on one port, told apart by the connection's
	// first byte (an http:// and an https:// URL with the same address).
	Both = Plain | Secure
)

func (m Mode) String() string {
	switch m {
	case Plain:
		return "plain"
	case Secure:
		return "tls"
	case Both:
		return "plain+tls"
	}
	return fmt.Sprintf("Mode(%d)", uint8(m))
}

// URL is one parsed client URL.
type URL struct {
	Scheme  string // http, https, unix or unixs
	Network string // tcp or unix
	// Addr is host:port for tcp, the socket path for unix: etcd's rule,
	// host and path joined, so unix://localhost:2379 is the socket file
	// "localhost:2379" and unix:///run/meshkv.sock an absolute path.
	Addr string
}

// Secure reports whether the URL asks for TLS.
func (u URL) Secure() bool { return u.Scheme == "https" || u.Scheme == "unixs" }

// ErrBadURL is wrapped by every error ParseURL returns.
var ErrBadURL = errors.New("listen: bad client URL")

// ParseURL parses a client URL the way etcd's --listen-client-urls does.
func ParseURL(s string) (URL, error) {
	bad := func(format string, args ...any) (URL, error) {
		return URL{}, fmt.Errorf("%w %q: %s", ErrBadURL, s, fmt.Sprintf(format, args...))
	}
	u, err := url.Parse(s)
	if err != nil {
		return bad("%v", err)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return bad("unexpected user, query or fragment")
	}
	switch u.Scheme {
	case "http", "https":
		if u.Host == "" || u.Port() == "" {
			return bad("want %s://host:port", u.Scheme)
		}
		if _, _, err := net.SplitHostPort(u.Host); err != nil {
			return bad("%v", err)
		}
		if u.Path != "" && u.Path != "/" {
			return bad("unexpected path %q", u.Path)
		}
		return URL{Scheme: u.Scheme, Network: "tcp", Addr: u.Host}, nil
	case "unix", "unixs":
		addr := u.Host + u.Path
		if addr == "" {
			return bad("want %s://path", u.Scheme)
		}
		return URL{Scheme: u.Scheme, Network: "unix", Addr: addr}, nil
	}
	return bad("scheme %q: want http, https, unix or unixs", u.Scheme)
}

// Spec is one listener: an address and the transports its URLs ask for.
type Spec struct {
	Network string
	Addr    string
	Mode    Mode
	// Schemes are the URL schemes that named the address, in order.
	Schemes []string
}

// Group merges URLs with the same address into one listener each, in the
// order the addresses first appear, as etcd serves http:// and https:// on
// the same address from one port.
func Group(urls []URL) []Spec {
	var specs []Spec
	index := map[string]int{}
	for _, u := range urls {
		key := u.Network + " " + u.Addr
		i, ok := index[key]
		if !ok {
			i = len(specs)
			index[key] = i
			specs = append(specs, Spec{Network: u.Network, Addr: u.Addr})
		}
		sp := &specs[i]
		if u.Secure() {
			sp.Mode |= Secure
		} else {
			sp.Mode |= Plain
		}
		if !contains(sp.Schemes, u.Scheme) {
			sp.Schemes = append(sp.Schemes, u.Scheme)
		}
	}
	return specs
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// URLs returns the client URLs of a listener for spec bound at addr (which
// gives the port when the spec asked for port 0).
func (s Spec) URLs(addr net.Addr) []string {
	out := make([]string, 0, len(s.Schemes))
	for _, sc := range s.Schemes {
		if s.Network == "unix" {
			out = append(out, sc+"://"+s.Addr)
			continue
		}
		out = append(out, sc+"://"+addr.String())
	}
	return out
}
