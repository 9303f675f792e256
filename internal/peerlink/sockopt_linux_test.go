//go:build linux

package peerlink

import (
	"fmt"
	"net"
	"strings"
	"syscall"
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

// TestDeadVerdictResets: a link declared dead is closed with a reset, so
// that the peer learns at once when only our direction of the path is cut;
// other closes stay orderly.
func TestDeadVerdictResets(t *testing.T) {
	for _, tc := range []struct {
		name      string
		reason    error
		wantReset bool
	}{
		{"dead verdict", fmt.Errorf("%w: silent for more than 200ms", ErrDead), true},
		{"connection lost", fmt.Errorf("%w: read: EOF", ErrConnLost), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := newTestNode(t, patient), newTestNode(t, patient)
			connect(t, a, b)
			l := a.currentLink(b.PublicKey())
			l.close(tc.reason, 0, "")
			waitFor(t, 5*time.Second, "the peer's link down", func() bool { return len(b.rec.ofKind("down")) > 0 })
			// The reader's error is kept as text in the reason.
			reason := b.rec.ofKind("down")[0].reason
			if got := strings.Contains(reason.Error(), syscall.ECONNRESET.Error()); got != tc.wantReset {
				t.Fatalf("peer's link ended with %v; reset %v, want %v", reason, got, tc.wantReset)
			}
		})
	}
}
