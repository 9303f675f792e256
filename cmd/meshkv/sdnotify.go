package main

import (
	"errors"
	"net"
	"os"
)

// notifySystemd tells systemd the service's state (e.g. "READY=1") when it
// runs as a Type=notify unit; it does nothing when $NOTIFY_SOCKET is unset.
// The protocol is one datagram on a unix socket (sd_notify(3)); an abstract
// socket is written with a leading '@'.
func notifySystemd(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if path[0] != '/' && path[0] != '@' {
		return errors.New("NOTIFY_SOCKET is neither a path nor an abstract socket")
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.Write([]byte(state))
	return err
}
