package listen

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
)

// Listen opens the listener spec describes; ModeOf tells its mode (which
// kinds of connection the client port's multiplexer admits on it). A
// unix socket file left behind by an earlier process is removed first (as
// etcd does); any other file at the path is an error.
func Listen(spec Spec) (net.Listener, error) {
	if spec.Network == "unix" {
		if fi, err := os.Lstat(spec.Addr); err == nil {
			if fi.Mode()&fs.ModeSocket == 0 {
				return nil, fmt.Errorf("listen: %s exists and is not a socket", spec.Addr)
			}
			if err := os.Remove(spec.Addr); err != nil {
				return nil, fmt.Errorf("listen: remove stale socket: %w", err)
			}
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("listen: %w", err)
		}
	}
	l, err := net.Listen(spec.Network, spec.Addr)
	if err != nil {
		return nil, err
	}
	return &tagged{Listener: l, mode: spec.Mode}, nil
}

// ModeOf returns the mode of a listener made by Listen (false for any
// other listener).
func ModeOf(l net.Listener) (Mode, bool) {
	t, ok := l.(*tagged)
	if !ok || t.inproc {
		return 0, false
	}
	return t.mode, true
}

// Inproc marks the connections of l (an in-memory listener of the embedding
// process) as the process's own: Credentials give them InprocInfo.
func Inproc(l net.Listener) net.Listener { return &tagged{Listener: l, inproc: true} }

// tagged is a listener whose connections carry how to handshake them.
type tagged struct {
	net.Listener
	mode   Mode
	inproc bool
}

func (l *tagged) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &conn{Conn: c, mode: l.mode, inproc: l.inproc}, nil
}

// conn is an accepted connection with its listener's tag.
type conn struct {
	net.Conn
	mode   Mode
	inproc bool
}
