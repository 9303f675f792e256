package metrics

import (
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
)

// Levels of --metrics, as etcd's.
const (
	Basic     = "basic"
	Extensive = "extensive"
)

// ErrBadLevel is returned for a metrics level other than basic or extensive.
var ErrBadLevel = errors.New("metrics: level must be basic or extensive")

// Config configures a node's metrics.
type Config struct {
	// Level is "basic" (the default) or "extensive", which adds gRPC
	// handling-time histograms, as etcd's --metrics.
	Level string
	// Server supplies the node's numbers (required).
	Server Server
	// Mesh supplies the transport's numbers; nil for a node without a mesh.
	// It may be set later with SetMesh (the transport starts after the
	// metrics).
	Mesh Mesh
	// Versions name what the node runs (etcd_server_version and friends).
	Versions Versions
	// MemberID is this member's raft id (etcd's Local label).
	MemberID uint64
}

// Versions are the version labels the registry exports.
type Versions struct {
	Server  string // etcd API version served (etcd_server_version)
	Cluster string // cluster version (etcd_cluster_version)
	Meshkv  string // meshkv's own version (meshkv_build_info)
}

// Validate reports a configuration that cannot work. It changes nothing.
func (c Config) Validate() error {
	switch c.Level {
	case "", Basic, Extensive:
	default:
		return fmt.Errorf("%w: %q", ErrBadLevel, c.Level)
	}
	if c.Server == nil {
		return errors.New("metrics: Config.Server is required")
	}
	return nil
}

// Metrics is one node's registry and the instruments that feed it.
type Metrics struct {
	reg   *prometheus.Registry
	h     http.Handler
	grpc  *grpcprom.ServerMetrics
	bytes *byteCounts
	mesh  atomic.Pointer[meshRef]
}

type meshRef struct{ m Mesh }

// New builds a node's registry.
func New(cfg Config) (*Metrics, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var opts []grpcprom.ServerMetricsOption
	if cfg.Level == Extensive {
		opts = append(opts, grpcprom.WithServerHandlingTimeHistogram())
	}
	m := &Metrics{
		reg:   prometheus.NewRegistry(),
		grpc:  grpcprom.NewServerMetrics(opts...),
		bytes: &byteCounts{},
	}
	if cfg.Mesh != nil {
		m.SetMesh(cfg.Mesh)
	}
	cs := []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.grpc,
		newServerCollector(cfg.Server, cfg.Versions, m.bytes),
		newMeshCollector(m.currentMesh, cfg.MemberID),
	}
	for _, c := range cs {
		if err := m.reg.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: register: %w", err)
		}
	}
	h := promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      m.reg,
	})
	m.h = promhttp.InstrumentMetricHandler(m.reg, h)
	return m, nil
}

// SetMesh makes the registry report the transport's numbers from now on.
func (m *Metrics) SetMesh(mesh Mesh) { m.mesh.Store(&meshRef{mesh}) }

func (m *Metrics) currentMesh() Mesh {
	if r := m.mesh.Load(); r != nil {
		return r.m
	}
	return nil
}

// Registry is the node's registry: register more collectors here (the
// health checks do).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in Prometheus's text (or negotiated) format,
// and counts its own scrapes as promhttp does.
func (m *Metrics) Handler() http.Handler { return m.h }

// Interceptors are the gRPC server options that feed the gRPC metrics (the
// provider's interceptors). Put them before the server's other
// interceptors, so that they count the calls those refuse too.
func (m *Metrics) Interceptors() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(m.grpc.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(m.grpc.StreamServerInterceptor()),
	}
}

// Codec wraps the server's codec so that it counts the bytes of client
// messages (etcd_network_client_grpc_sent_bytes_total and
// etcd_network_client_grpc_received_bytes_total).
func (m *Metrics) Codec(inner encoding.CodecV2) encoding.CodecV2 {
	return countingCodec{CodecV2: inner, n: m.bytes}
}

// InitGRPC creates the zero-valued series of every method registered on s,
// as etcd does, so that rates start from zero. Call it after registering
// the services.
func (m *Metrics) InitGRPC(s *grpc.Server) { m.grpc.InitializeMetrics(s) }

// byteCounts are the bytes of client messages received and sent.
type byteCounts struct {
	received, sent atomic.Uint64
}

// countingCodec counts the encoded size of every message through it.
type countingCodec struct {
	encoding.CodecV2
	n *byteCounts
}

func (c countingCodec) Marshal(v any) (mem.BufferSlice, error) {
	out, err := c.CodecV2.Marshal(v)
	if err == nil {
		c.n.sent.Add(uint64(out.Len()))
	}
	return out, err
}

func (c countingCodec) Unmarshal(data mem.BufferSlice, v any) error {
	c.n.received.Add(uint64(data.Len()))
	return c.CodecV2.Unmarshal(data, v)
}
