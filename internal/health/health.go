// Package health serves a node's health endpoints with etcd's paths,
// semantics and answers: /health (JSON {"health":"true","reason":""}), the
// Kubernetes-style /livez and /readyz with their per-check subpaths,
// ?verbose and ?exclude=, /version, and the gRPC health service
// (grpc.health.v1), which reports SERVING only while the member knows a
// leader.
//
// The checks:
//   - /health: no alarm (other than those named by ?exclude=), a leader
//     (unless ?serializable=true), and a read (linearizable unless
//     ?serializable=true); 503 with the reason when any fails;
//   - /livez: serializable_read — the process serves local reads;
//   - /readyz: data_corruption (no CORRUPT alarm), serializable_read,
//     linearizable_read (the cluster has a quorum and a leader) and
//     non_learner.
//
// Like etcd's, the endpoints need no authentication. Each check is counted
// in etcd's health metrics (etcd_server_health_success,
// etcd_server_health_failures, etcd_server_healthcheck,
// etcd_server_healthchecks_total) in the registry given to New.
//
// Goroutines: Run, while it runs, keeps the gRPC health status in step with
// the member's leader.
package health

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Server is the member as the health checks see it.
type Server interface {
	// Alarms lists the member's active alarms.
	Alarms() []pb.AlarmType
	// HasLeader reports whether the member knows a leader.
	HasLeader() bool
	// IsLearner reports whether the member is a learner.
	IsLearner() bool
	// Read performs the read etcd's checks perform: serializable (a local
	// read), or linearizable (through a read barrier, which needs a
	// quorum). Its error text is etcd's ("etcdserver: no leader", ...).
	Read(ctx context.Context, serializable bool) error
}

// Versions are the versions /version reports.
type Versions struct {
	Server, Cluster, Storage string
}

// Config configures the health endpoints.
type Config struct {
	Server   Server
	Versions Versions
	// Registerer receives the health metrics (nil: not registered).
	Registerer prometheus.Registerer
	// CheckTimeout bounds each read check (default 7s, etcd's request
	// timeout with its default election timeout).
	CheckTimeout time.Duration
	// Poll is how often Run looks at the leader for the gRPC health status
	// (default 100ms).
	Poll time.Duration
	// Logger receives failed checks at debug level (nil: discard).
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultCheckTimeout = 7 * time.Second
	DefaultPoll         = 100 * time.Millisecond
)

// Checker serves the health endpoints of one member.
type Checker struct {
	cfg    Config
	grpc   *health.Server
	livez  registry
	readyz registry

	success, failure prometheus.Counter
	gauge            *prometheus.GaugeVec
	counter          *prometheus.CounterVec
}

// New returns the checker; register its handlers with Register and its gRPC
// service with GRPC.
func New(cfg Config) (*Checker, error) {
	if cfg.Server == nil {
		return nil, errors.New("health: Config.Server is required")
	}
	if cfg.CheckTimeout <= 0 {
		cfg.CheckTimeout = DefaultCheckTimeout
	}
	if cfg.Poll <= 0 {
		cfg.Poll = DefaultPoll
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Checker{
		cfg:  cfg,
		grpc: health.NewServer(),
		success: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "etcd_server_health_success", Help: "Successful /health checks.",
		}),
		failure: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "etcd_server_health_failures", Help: "Failed /health checks.",
		}),
		gauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "etcd_server_healthcheck", Help: "Result of the latest run of each livez and readyz check: 1 passed, 0 failed.",
		}, []string{"type", "name"}),
		counter: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "etcd_server_healthchecks_total", Help: "Runs of each livez and readyz check, by outcome.",
		}, []string{"type", "name", "status"}),
	}
	s := cfg.Server
	c.livez = registry{kind: "livez", checks: []check{
		{"serializable_read", func(ctx context.Context) error { return s.Read(ctx, true) }},
	}}
	c.readyz = registry{kind: "readyz", checks: []check{
		{"data_corruption", func(context.Context) error {
			if slices.Contains(s.Alarms(), pb.AlarmType_CORRUPT) {
				return fmt.Errorf("alarm activated: %s", pb.AlarmType_CORRUPT)
			}
			return nil
		}},
		{"serializable_read", func(ctx context.Context) error { return s.Read(ctx, true) }},
		{"linearizable_read", func(ctx context.Context) error { return s.Read(ctx, false) }},
		{"non_learner", func(context.Context) error {
			if s.IsLearner() {
				return errors.New("not supported for learner")
			}
			return nil
		}},
	}}
	if cfg.Registerer != nil {
		for _, m := range []prometheus.Collector{c.success, c.failure, c.gauge, c.counter} {
			if err := cfg.Registerer.Register(m); err != nil {
				return nil, fmt.Errorf("health: register metrics: %w", err)
			}
		}
	}
	c.grpc.SetServingStatus("", c.grpcStatus())
	return c, nil
}

// GRPC is the grpc.health.v1 service; register it on the gRPC server.
func (c *Checker) GRPC() healthpb.HealthServer { return c.grpc }

// Run keeps the gRPC health status in step with the leader until ctx ends,
// then reports NOT_SERVING for good (as gRPC's Shutdown does).
func (c *Checker) Run(ctx context.Context) {
	t := time.NewTicker(c.cfg.Poll)
	defer t.Stop()
	last := c.grpcStatus()
	c.grpc.SetServingStatus("", last)
	for {
		select {
		case <-ctx.Done():
			c.grpc.Shutdown()
			return
		case <-t.C:
		}
		if st := c.grpcStatus(); st != last {
			last = st
			c.grpc.SetServingStatus("", st)
			c.cfg.Logger.Info("gRPC health status changed", "status", st.String())
		}
	}
}

func (c *Checker) grpcStatus() healthpb.HealthCheckResponse_ServingStatus {
	if c.cfg.Server.HasLeader() {
		return healthpb.HealthCheckResponse_SERVING
	}
	return healthpb.HealthCheckResponse_NOT_SERVING
}

// Register adds /health, /livez, /readyz and their check subpaths to mux.
func (c *Checker) Register(mux *http.ServeMux) {
	mux.HandleFunc("/health", c.serveHealth)
	for _, reg := range []*registry{&c.livez, &c.readyz} {
		mux.HandleFunc("/"+reg.kind, func(w http.ResponseWriter, r *http.Request) {
			names := reg.names()
			excluded := queryValues(r, "exclude")
			names = slices.DeleteFunc(names, func(n string) bool { return slices.Contains(excluded, n) })
			c.serveChecks(w, r, reg, names)
		})
		for _, ch := range reg.checks {
			mux.HandleFunc("/"+reg.kind+"/"+ch.name, func(w http.ResponseWriter, r *http.Request) {
				c.serveChecks(w, r, reg, []string{ch.name})
			})
		}
	}
}

// RegisterVersion adds /version to mux.
func (c *Checker) RegisterVersion(mux *http.ServeMux) {
	mux.HandleFunc("/version", func(w http.ResponseWriter, r *http.Request) {
		if !allowGet(w, r) {
			return
		}
		v := c.cfg.Versions
		body, err := json.Marshal(struct {
			Server  string `json:"etcdserver"`
			Cluster string `json:"etcdcluster"`
			Storage string `json:"storage"`
		}{v.Server, v.Cluster, v.Storage})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
}

// healthBody is /health's answer, etcd's shape.
type healthBody struct {
	Health string `json:"health"`
	Reason string `json:"reason"`
}

func (c *Checker) serveHealth(w http.ResponseWriter, r *http.Request) {
	if !allowGet(w, r) {
		return
	}
	serializable := r.URL.Query().Get("serializable") == "true"
	h := c.health(r.Context(), queryValues(r, "exclude"), serializable)
	body, _ := json.Marshal(h)
	if h.Health != "true" {
		c.failure.Inc()
		c.cfg.Logger.Debug("/health failed", "reason", h.Reason)
		http.Error(w, string(body), http.StatusServiceUnavailable)
		return
	}
	c.success.Inc()
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// health runs /health's checks in etcd's order: alarms, leader, read.
func (c *Checker) health(ctx context.Context, excludedAlarms []string, serializable bool) healthBody {
	s := c.cfg.Server
	for _, a := range s.Alarms() {
		if slices.Contains(excludedAlarms, a.String()) {
			continue
		}
		reason := "ALARM UNKNOWN"
		switch a {
		case pb.AlarmType_NOSPACE:
			reason = "ALARM NOSPACE"
		case pb.AlarmType_CORRUPT:
			reason = "ALARM CORRUPT"
		}
		return healthBody{Health: "false", Reason: reason}
	}
	if !serializable && !s.HasLeader() {
		return healthBody{Health: "false", Reason: "RAFT NO LEADER"}
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.CheckTimeout)
	defer cancel()
	if err := s.Read(ctx, serializable); err != nil {
		return healthBody{Health: "false", Reason: "RANGE ERROR:" + err.Error()}
	}
	return healthBody{Health: "true"}
}

// check is one named livez or readyz check.
type check struct {
	name string
	run  func(context.Context) error
}

// registry is the checks of /livez or /readyz.
type registry struct {
	kind   string
	checks []check
}

func (r *registry) names() []string {
	out := make([]string, len(r.checks))
	for i, c := range r.checks {
		out[i] = c.name
	}
	return out
}

func (r *registry) lookup(name string) (check, bool) {
	i := slices.IndexFunc(r.checks, func(c check) bool { return c.name == name })
	if i < 0 {
		return check{}, false
	}
	return r.checks[i], true
}

// serveChecks runs the named checks and answers as etcd does: "ok" (with
// each check's line first under ?verbose), or 503 with every check's line.
func (c *Checker) serveChecks(w http.ResponseWriter, r *http.Request, reg *registry, names []string) {
	if !allowGet(w, r) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), c.cfg.CheckTimeout)
	defer cancel()
	var out bytes.Buffer
	failed := false
	for _, name := range names {
		ch, ok := reg.lookup(name)
		if !ok {
			continue
		}
		status := "success"
		if err := ch.run(ctx); err != nil {
			failed, status = true, "error"
			fmt.Fprintf(&out, "[-]%s failed: %v\n", name, err)
		} else {
			fmt.Fprintf(&out, "[+]%s ok\n", name)
		}
		c.gauge.WithLabelValues(reg.kind, name).Set(b2f(status == "success"))
		c.counter.WithLabelValues(reg.kind, name, status).Inc()
	}
	if failed {
		c.cfg.Logger.Debug("health check failed", "path", r.URL.Path, "reason", out.String())
		http.Error(w, out.String(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if _, verbose := r.URL.Query()["verbose"]; verbose {
		_, _ = w.Write(out.Bytes())
	}
	_, _ = fmt.Fprint(w, "ok\n")
}

// queryValues returns the non-empty values of a query parameter.
func queryValues(r *http.Request, key string) []string {
	return slices.DeleteFunc(slices.Clone(r.URL.Query()[key]), func(s string) bool { return s == "" })
}

// allowGet answers 405 to anything but GET, as etcd does.
func allowGet(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet {
		return true
	}
	w.Header().Set("Allow", http.MethodGet)
	http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
	return false
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
