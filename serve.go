package meshkv

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/meshkv/meshkv/internal/clientmux"
	"github.com/meshkv/meshkv/internal/gateway"
	"github.com/meshkv/meshkv/internal/health"
	"github.com/meshkv/meshkv/internal/listen"
	"github.com/meshkv/meshkv/internal/meshmetrics"
	"github.com/meshkv/meshkv/internal/metrics"
	"github.com/meshkv/meshkv/kvapi"
)

// serving is what a node serves besides the raft machinery: one gRPC server
// (the in-memory listener, and gRPC on every client listener), and on the
// client listeners also HTTP: /metrics, the health endpoints, /version, the
// JSON gateway and, when enabled, the profiler. The metrics listeners serve
// /metrics and the health endpoints only, as etcd's.
type serving struct {
	metrics *metrics.Metrics
	health  *health.Checker
	mux     *clientmux.Mux
	gwConn  *grpc.ClientConn // the gateway's connection to the gRPC server

	metricsListeners []net.Listener
	metricsServer    *http.Server
}

// startServing builds the gRPC server, the metrics, the health checks and
// the gateway, and serves them on every listener.
func (n *Node) startServing() error {
	s := &n.srv
	// Bind the metrics listeners first: a taken port fails Start early.
	// An https:// one uses the client URLs' TLS configuration, as etcd's.
	for _, raw := range n.cfg.ListenMetricsURLs {
		u, _ := listen.ParseURL(raw) // validated
		l, err := net.Listen(u.Network, u.Addr)
		if err != nil {
			return fmt.Errorf("meshkv: listen on %s: %w", raw, err)
		}
		if u.Secure() {
			l = tls.NewListener(l, n.cfg.ClientTLS)
		}
		s.metricsListeners = append(s.metricsListeners, l)
	}

	var err error
	s.metrics, err = metrics.New(metrics.Config{
		Level:    n.cfg.Metrics,
		Server:   serverStats{n},
		MemberID: n.id,
		Versions: metrics.Versions{Server: kvapi.ServerVersion, Cluster: kvapi.ClusterVersion, Meshkv: Version},
	})
	if err != nil {
		return fmt.Errorf("meshkv: %w", err)
	}
	if n.mesh != nil {
		ms := meshmetrics.New(n.mesh)
		s.metrics.SetMesh(ms)
		n.wg.Go(func() { ms.Run(n.ctx) })
	}
	s.health, err = health.New(health.Config{
		Server:       healthView{n},
		Versions:     health.Versions{Server: kvapi.ServerVersion, Cluster: kvapi.ClusterVersion, Storage: kvapi.StorageVersion},
		Registerer:   s.metrics.Registry(),
		CheckTimeout: n.requestTimeout(),
		Poll:         n.cfg.TickInterval,
		Logger:       n.log,
	})
	if err != nil {
		return fmt.Errorf("meshkv: %w", err)
	}

	opts := s.metrics.Interceptors()
	opts = append(opts, n.api.ServerOptions()...)
	// The credentials mark the in-process connection (the embedding
	// application, see kvapi's auth); TLS is terminated by the mux, whose
	// credentials give gRPC the client's certificate.
	opts = append(opts, grpc.Creds(clientmux.Credentials(listen.Credentials())))
	opts = append(opts, grpc.ForceServerCodecV2(s.metrics.Codec(kvapi.Codec)))
	opts = append(opts, n.keepaliveOptions()...)
	if n.cfg.MaxConcurrentStreams > 0 {
		opts = append(opts, grpc.MaxConcurrentStreams(n.cfg.MaxConcurrentStreams))
	}
	n.grpcServer = grpc.NewServer(opts...)
	n.api.Register(n.grpcServer)
	healthpb.RegisterHealthServer(n.grpcServer, s.health.GRPC())
	s.metrics.InitGRPC(n.grpcServer)
	n.serve(listen.Inproc(n.inproc))
	n.wg.Go(func() { s.health.Run(n.ctx) })

	// The gateway calls the gRPC server in memory.
	s.gwConn, err = grpc.NewClient("passthrough:///gateway.meshkv.local",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return n.inproc.DialContext(ctx)
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32), grpc.ForceCodecV2(kvapi.Codec)),
	)
	if err != nil {
		return fmt.Errorf("meshkv: gateway connection: %w", err)
	}
	gw, err := gateway.New(gateway.Config{
		Conn:         s.gwConn,
		MaxBodyBytes: 2 * int64(n.api.MaxRequestBytes()+kvapi.GRPCOverheadBytes),
	})
	if err != nil {
		return fmt.Errorf("meshkv: %w", err)
	}

	client := http.NewServeMux()
	client.Handle("/metrics", s.metrics.Handler())
	s.health.Register(client)
	s.health.RegisterVersion(client)
	client.Handle(gateway.Prefix, gw)
	client.Handle("/v3beta/", gw)
	if n.cfg.EnablePprof {
		client.HandleFunc("/debug/pprof/", pprof.Index)
		client.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		client.HandleFunc("/debug/pprof/profile", pprof.Profile)
		client.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		client.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	s.mux, err = clientmux.New(clientmux.Config{
		GRPC:                 n.grpcServer,
		HTTP:                 client,
		MaxConcurrentStreams: n.cfg.MaxConcurrentStreams,
		Logger:               n.log,
	})
	if err != nil {
		return fmt.Errorf("meshkv: %w", err)
	}
	for _, l := range n.listeners {
		o := clientmux.ListenerOptions{Plain: true}
		if mode, ok := listen.ModeOf(l); ok {
			o.Plain = mode&listen.Plain != 0
			if mode&listen.Secure != 0 {
				o.TLS = n.cfg.ClientTLS
			}
		}
		n.wg.Go(func() {
			if err := s.mux.Serve(l, o); err != nil {
				n.log.Error("client listener failed", "addr", l.Addr().String(), "err", err)
			}
		})
	}

	if len(s.metricsListeners) > 0 {
		mm := http.NewServeMux()
		mm.Handle("/metrics", s.metrics.Handler())
		s.health.Register(mm)
		s.metricsServer = &http.Server{Handler: mm, ReadHeaderTimeout: clientmux.DefaultReadHeaderTimeout}
		for _, l := range s.metricsListeners {
			n.wg.Go(func() {
				if err := s.metricsServer.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
					n.log.Error("metrics listener failed", "addr", l.Addr().String(), "err", err)
				}
			})
		}
	}
	return nil
}

// keepaliveOptions are etcd's keepalive settings: clients may ping every
// GRPCKeepAliveMinTime (with a stream open, as etcd), and idle connections
// are pinged every GRPCKeepAliveInterval and closed after
// GRPCKeepAliveTimeout without an answer.
func (n *Node) keepaliveOptions() []grpc.ServerOption {
	var opts []grpc.ServerOption
	if n.cfg.GRPCKeepAliveMinTime > 0 {
		opts = append(opts, grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             n.cfg.GRPCKeepAliveMinTime,
			PermitWithoutStream: false,
		}))
	}
	if n.cfg.GRPCKeepAliveInterval > 0 && n.cfg.GRPCKeepAliveTimeout > 0 {
		opts = append(opts, grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:    n.cfg.GRPCKeepAliveInterval,
			Timeout: n.cfg.GRPCKeepAliveTimeout,
		}))
	}
	return opts
}

// requestTimeout is how long a request may wait for replication (etcd's 5s
// plus twice the election timeout).
func (n *Node) requestTimeout() time.Duration { return 5*time.Second + 2*n.cfg.ElectionTimeout }

// stopServing stops every server and closes every listener. The gRPC server
// stops first, so that no call outlives Close.
func (n *Node) stopServing() {
	s := &n.srv
	if s.gwConn != nil {
		_ = s.gwConn.Close()
	}
	if n.grpcServer != nil {
		n.grpcServer.Stop()
	}
	for _, l := range n.listeners {
		_ = l.Close()
	}
	if s.mux != nil {
		_ = s.mux.Close()
	}
	for _, l := range s.metricsListeners {
		_ = l.Close()
	}
	if s.metricsServer != nil {
		_ = s.metricsServer.Close()
	}
}

// MetricsHandler serves the node's Prometheus metrics (what /metrics on its
// client URLs serves), for an embedding program that exposes them itself.
func (n *Node) MetricsHandler() http.Handler { return n.srv.metrics.Handler() }

// MetricsAddrs returns the host:port of each metrics listener, in the order
// of Config.ListenMetricsURLs.
func (n *Node) MetricsAddrs() []string {
	addrs := make([]string, len(n.srv.metricsListeners))
	for i, l := range n.srv.metricsListeners {
		addrs[i] = l.Addr().String()
	}
	return addrs
}
