package meshkv

import (
	"net/http"
	"time"

	"github.com/meshkv/meshkv/internal/meshmetrics"
	"github.com/meshkv/meshkv/internal/serve"
)

// startServing serves the client port (internal/serve): the gRPC server on
// the in-memory listener and on every client listener, with HTTP (metrics,
// health, the gateway) beside it, and the metrics listeners.
func (n *Node) startServing() error {
	var mesh meshmetrics.Transport
	if n.mesh != nil {
		mesh = n.mesh
	}
	obs := n.view.Observer(n.store, n.api)
	srv, err := serve.Start(serve.Config{
		API:                  n.api,
		Inproc:               n.inproc,
		Listeners:            n.listeners,
		ClientTLS:            n.cfg.ClientTLS,
		MetricsURLs:          n.cfg.ListenMetricsURLs,
		MetricsLevel:         n.cfg.Metrics,
		Stats:                obs,
		Health:               obs,
		Mesh:                 mesh,
		MemberID:             n.id,
		Version:              Version,
		CheckTimeout:         n.requestTimeout(),
		Poll:                 n.cfg.TickInterval,
		KeepAliveMinTime:     n.cfg.GRPCKeepAliveMinTime,
		KeepAliveInterval:    n.cfg.GRPCKeepAliveInterval,
		KeepAliveTimeout:     n.cfg.GRPCKeepAliveTimeout,
		MaxConcurrentStreams: n.cfg.MaxConcurrentStreams,
		EnablePprof:          n.cfg.EnablePprof,
		Logger:               n.log,
	})
	if err != nil {
		return err
	}
	n.srv = srv
	return nil
}

// requestTimeout is how long a request may wait for replication (etcd's 5s
// plus twice the election timeout).
func (n *Node) requestTimeout() time.Duration { return 5*time.Second + 2*n.cfg.ElectionTimeout }

// stopServing stops every server and closes every listener. The gRPC server
// stops first, so that no call outlives Close.
func (n *Node) stopServing() {
	if n.srv != nil {
		n.srv.Close()
	}
	for _, l := range n.listeners { // when the client port never started
		_ = l.Close()
	}
}

// MetricsHandler serves the node's Prometheus metrics (what /metrics on its
// client URLs serves), for an embedding program that exposes them itself.
func (n *Node) MetricsHandler() http.Handler { return n.srv.MetricsHandler() }

// MetricsAddrs returns the host:port of each metrics listener, in the order
// of Config.ListenMetricsURLs.
func (n *Node) MetricsAddrs() []string { return n.srv.MetricsAddrs() }
