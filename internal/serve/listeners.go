package serve

import (
	"fmt"
	"net"

	"github.com/meshkv/meshkv/internal/listen"
)

// OpenClientListeners opens the listeners of the client URLs urls (one per
// address: http:// and https:// on one address share it, as in etcd) and
// returns them, tagged with their modes, with the client URLs they serve.
// On an error it has closed those it opened.
func OpenClientListeners(urls []string) ([]net.Listener, []string, error) {
	parsed := make([]listen.URL, 0, len(urls))
	for _, s := range urls {
		u, err := listen.ParseURL(s)
		if err != nil {
			return nil, nil, err
		}
		parsed = append(parsed, u)
	}
	var ls []net.Listener
	var served []string
	for _, spec := range listen.Group(parsed) {
		l, err := listen.Listen(spec)
		if err != nil {
			for _, l := range ls {
				_ = l.Close()
			}
			return nil, nil, fmt.Errorf("meshkv: listen on %s %s: %w", spec.Network, spec.Addr, err)
		}
		ls = append(ls, l)
		served = append(served, spec.URLs(l.Addr())...)
	}
	return ls, served, nil
}
