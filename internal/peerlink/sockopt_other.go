//go:build !linux

package peerlink

import (
	"net"
	"time"
)

// setSockOpts turns Nagle off; TCP_USER_TIMEOUT exists only on Linux.
func setSockOpts(c net.Conn, _ time.Duration) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
}

// rxBacklog is not available on this OS: a slow reader can look like a
// silent peer.
func rxBacklog(net.Conn) bool { return false }
