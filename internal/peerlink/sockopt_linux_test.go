//go:build linux

package peerlink

import (
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// userTimeout reads TCP_USER_TIMEOUT back.
func userTimeout(c *net.TCPConn) (time.Duration, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var ms int
	var gerr error
	if err := raw.Control(func(fd uintptr) {
		ms, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
	}); err != nil {
		return 0, err
	}
	return time.Duration(ms) * time.Millisecond, gerr
}

func TestSocketOptions(t *testing.T) {
	a, b := newTestNode(t), newTestNode(t)
	connect(t, a, b)
	for _, n := range []*testNode{a, b} {
		l := n.currentLink(n.Links()[0].Key)
		tc, ok := l.conn.(*net.TCPConn)
		if !ok {
			t.Fatalf("conn is %T", l.conn)
		}
		got, err := userTimeout(tc)
		if err != nil {
			t.Fatal(err)
		}
		if want := max(DefaultDeadAfterMax, DefaultWriteTimeout); got != want {
			t.Errorf("TCP_USER_TIMEOUT %v, want %v", got, want)
		}
	}
}
