package serve

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/test/bufconn"

	"github.com/meshkv/meshkv/internal/clientmux"
	"github.com/meshkv/meshkv/internal/gateway"
	"github.com/meshkv/meshkv/internal/health"
	"github.com/meshkv/meshkv/internal/listen"
	"github.com/meshkv/meshkv/internal/meshmetrics"
	"github.com/meshkv/meshkv/internal/metrics"
	"github.com/meshkv/meshkv/kvapi"
)

// API is what the client port needs of the etcd API server.
type API interface {
	// ServerOptions are the gRPC server's options the API needs.
	ServerOptions() []grpc.ServerOption
	// Register registers the API's services.
	Register(*grpc.Server)
	// MaxRequestBytes is the largest request the API accepts.
	MaxRequestBytes() int
}

var _ API = (*kvapi.Server)(nil)

// Config is what Start serves. The node's configuration was validated and
// defaulted before: Start applies no defaults of its own.
type Config struct {
	// API is the etcd API (required).
	API API
	// Inproc is the in-memory listener (required); Listeners are the client
	// listeners, tagged by internal/listen with their modes (an untagged
	// one serves plain connections). Close closes them.
	Inproc    *bufconn.Listener
	Listeners []net.Listener
	// ClientTLS terminates https:// and unixs:// client URLs and https://
	// metrics URLs.
	ClientTLS *tls.Config
	// MetricsURLs are the metrics listeners' URLs (validated).
	MetricsURLs []string

	// MetricsLevel is "basic" or "extensive" (see metrics.Config.Level).
	MetricsLevel string
	// Stats supplies the node's numbers to the metrics, Health its state to
	// the health checks (both required).
	Stats  metrics.Server
	Health health.Server
	// Mesh supplies the mesh transport's numbers; nil (not a typed nil) for
	// a node without a mesh.
	Mesh meshmetrics.Transport
	// MemberID is this member's raft id; Version meshkv's own version.
	MemberID uint64
	Version  string
	// CheckTimeout bounds one health check's read; Poll is how often the
	// health checks poll the node.
	CheckTimeout time.Duration
	Poll         time.Duration

	// Keepalive settings, as etcd's (see KeepaliveOptions).
	KeepAliveMinTime  time.Duration
	KeepAliveInterval time.Duration
	KeepAliveTimeout  time.Duration
	// MaxConcurrentStreams bounds the streams of one connection (0: gRPC's
	// default).
	MaxConcurrentStreams uint32
	// EnablePprof serves the profiler under /debug/pprof/ on the client
	// listeners.
	EnablePprof bool

	Logger *slog.Logger
}

// Server is a running client port.
type Server struct {
	cfg     Config
	log     *slog.Logger
	grpc    *grpc.Server
	metrics *metrics.Metrics
	health  *health.Checker
	mux     *clientmux.Mux
	gwConn  *grpc.ClientConn // the gateway's connection to the gRPC server

	metricsListeners []net.Listener
	metricsServer    *http.Server

	cancel    context.CancelFunc // stops the health poller and the mesh sampler
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// Start builds the gRPC server, the metrics, the health checks and the
// gateway, and serves them on every listener. On an error it has closed
// everything, the given listeners too.
func Start(cfg Config) (*Server, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{cfg: cfg, log: log, cancel: cancel}
	if err := s.start(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Server) start(ctx context.Context) error {
	cfg, log := s.cfg, s.log
	// Bind the metrics listeners first: a taken port fails early. An
	// https:// one uses the client URLs' TLS configuration, as etcd's.
	for _, raw := range cfg.MetricsURLs {
		u, _ := listen.ParseURL(raw) // validated
		l, err := net.Listen(u.Network, u.Addr)
		if err != nil {
			return fmt.Errorf("meshkv: listen on %s: %w", raw, err)
		}
		if u.Secure() {
			l = tls.NewListener(l, cfg.ClientTLS)
		}
		s.metricsListeners = append(s.metricsListeners, l)
	}

	var err error
	s.metrics, err = metrics.New(metrics.Config{
		Level:    cfg.MetricsLevel,
		Server:   cfg.Stats,
		MemberID: cfg.MemberID,
		Versions: metrics.Versions{Server: kvapi.ServerVersion, Cluster: kvapi.ClusterVersion, Meshkv: cfg.Version},
	})
	if err != nil {
		return fmt.Errorf("meshkv: %w", err)
	}
	if cfg.Mesh != nil {
		ms := meshmetrics.New(cfg.Mesh)
		s.metrics.SetMesh(ms)
		s.wg.Go(func() { ms.Run(ctx) })
	}
	s.health, err = health.New(health.Config{
		Server:       cfg.Health,
		Versions:     health.Versions{Server: kvapi.ServerVersion, Cluster: kvapi.ClusterVersion, Storage: kvapi.StorageVersion},
		Registerer:   s.metrics.Registry(),
		CheckTimeout: cfg.CheckTimeout,
		Poll:         cfg.Poll,
		Logger:       log,
	})
	if err != nil {
		return fmt.Errorf("meshkv: %w", err)
	}

	opts := s.metrics.Interceptors()
	opts = append(opts, cfg.API.ServerOptions()...)
	// The credentials mark the in-process connection (the embedding
	// application, see kvapi's auth); TLS is terminated by the mux, whose
	// credentials give gRPC the client's certificate.
	opts = append(opts, grpc.Creds(clientmux.Credentials(listen.Credentials())))
	opts = append(opts, grpc.ForceServerCodecV2(s.metrics.Codec(kvapi.Codec)))
	opts = append(opts, KeepaliveOptions(cfg.KeepAliveMinTime, cfg.KeepAliveInterval, cfg.KeepAliveTimeout)...)
	if cfg.MaxConcurrentStreams > 0 {
		opts = append(opts, grpc.MaxConcurrentStreams(cfg.MaxConcurrentStreams))
	}
	s.grpc = grpc.NewServer(opts...)
	cfg.API.Register(s.grpc)
	healthpb.RegisterHealthServer(s.grpc, s.health.GRPC())
	s.metrics.InitGRPC(s.grpc)
	inproc := listen.Inproc(cfg.Inproc)
	s.wg.Go(func() {
		if err := s.grpc.Serve(inproc); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			log.Error("gRPC server stopped", "addr", inproc.Addr().String(), "err", err)
		}
	})
	s.wg.Go(func() { s.health.Run(ctx) })

	gw, err := s.gateway()
	if err != nil {
		return err
	}
	client := http.NewServeMux()
	client.Handle("/metrics", s.metrics.Handler())
	s.health.Register(client)
	s.health.RegisterVersion(client)
	client.Handle(gateway.Prefix, gw)
	client.Handle("/v3beta/", gw)
	if cfg.EnablePprof {
		client.HandleFunc("/debug/pprof/", pprof.Index)
		client.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		client.HandleFunc("/debug/pprof/profile", pprof.Profile)
		client.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		client.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	s.mux, err = clientmux.New(clientmux.Config{
		GRPC:                 s.grpc,
		HTTP:                 client,
		MaxConcurrentStreams: cfg.MaxConcurrentStreams,
		Logger:               log,
	})
	if err != nil {
		return fmt.Errorf("meshkv: %w", err)
	}
	for _, l := range cfg.Listeners {
		o := clientmux.ListenerOptions{Plain: true}
		if mode, ok := listen.ModeOf(l); ok {
			o.Plain = mode&listen.Plain != 0
			if mode&listen.Secure != 0 {
				o.TLS = cfg.ClientTLS
			}
		}
		s.wg.Go(func() {
			if err := s.mux.Serve(l, o); err != nil {
				log.Error("client listener failed", "addr", l.Addr().String(), "err", err)
			}
		})
	}

	if len(s.metricsListeners) > 0 {
		mm := http.NewServeMux()
		mm.Handle("/metrics", s.metrics.Handler())
		s.health.Register(mm)
		s.metricsServer = &http.Server{Handler: mm, ReadHeaderTimeout: clientmux.DefaultReadHeaderTimeout}
		for _, l := range s.metricsListeners {
			s.wg.Go(func() {
				if err := s.metricsServer.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
					log.Error("metrics listener failed", "addr", l.Addr().String(), "err", err)
				}
			})
		}
	}
	return nil
}

// gateway returns the JSON gateway, which calls the gRPC server in memory.
func (s *Server) gateway() (http.Handler, error) {
	var err error
	s.gwConn, err = grpc.NewClient("passthrough:///gateway.meshkv.local",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return s.cfg.Inproc.DialContext(ctx)
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32), grpc.ForceCodecV2(kvapi.Codec)),
	)
	if err != nil {
		return nil, fmt.Errorf("meshkv: gateway connection: %w", err)
	}
	gw, err := gateway.New(gateway.Config{
		Conn:         s.gwConn,
		MaxBodyBytes: 2 * int64(s.cfg.API.MaxRequestBytes()+kvapi.GRPCOverheadBytes),
	})
	if err != nil {
		return nil, fmt.Errorf("meshkv: %w", err)
	}
	return gw, nil
}

// KeepaliveOptions are etcd's keepalive settings: clients may ping every
// minTime (with a stream open, as etcd), and idle connections are pinged
// every interval and closed after timeout without an answer. A zero
// setting leaves gRPC's default.
func KeepaliveOptions(minTime, interval, timeout time.Duration) []grpc.ServerOption {
	var opts []grpc.ServerOption
	if minTime > 0 {
		opts = append(opts, grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             minTime,
			PermitWithoutStream: false,
		}))
	}
	if interval > 0 && timeout > 0 {
		opts = append(opts, grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:    interval,
			Timeout: timeout,
		}))
	}
	return opts
}

// Close stops every server and closes every listener, then waits for the
// goroutines Start started. The gRPC server stops first, so that no call
// outlives Close. It is idempotent.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.cancel()
		if s.gwConn != nil {
			_ = s.gwConn.Close()
		}
		if s.grpc != nil {
			s.grpc.Stop()
		}
		for _, l := range s.cfg.Listeners {
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
		s.wg.Wait()
	})
}

// MetricsHandler serves the node's Prometheus metrics (what /metrics on the
// client listeners serves).
func (s *Server) MetricsHandler() http.Handler { return s.metrics.Handler() }

// MetricsAddrs returns the host:port of each metrics listener, in the order
// of Config.MetricsURLs.
func (s *Server) MetricsAddrs() []string {
	addrs := make([]string, len(s.metricsListeners))
	for i, l := range s.metricsListeners {
		addrs[i] = l.Addr().String()
	}
	return addrs
}
