//go:build linux

package peerlink

import (
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// setSockOpts turns Nagle off and sets TCP_USER_TIMEOUT, so the kernel
// gives up on a connection whose sent bytes stay unacknowledged for longer
// than userTimeout instead of retransmitting for many minutes.
func setSockOpts(c net.Conn, userTimeout time.Duration) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	_ = tc.SetNoDelay(true)
	raw, err := tc.SyscallConn()
	if err != nil {
		return
	}
	ms := int(userTimeout / time.Millisecond)
	_ = raw.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, ms)
	})
}

// rxBacklog reports whether the kernel holds received bytes that our reader
// has not read yet: proof that the peer is alive although the reader (not
// the path) is slow.
func rxBacklog(c net.Conn) bool {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return false
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return false
	}
	n := 0
	_ = raw.Control(func(fd uintptr) {
		n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ)
	})
	return n > 0
}
