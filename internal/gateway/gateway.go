// Package gateway serves etcd's JSON gateway, the HTTP/JSON form of the
// gRPC API under /v3/: POST /v3/kv/range, /v3/kv/put, /v3/watch,
// /v3/lease/grant, /v3/lock/lock, /v3/election/campaign and the rest, with
// the paths, JSON field names (the proto names), base64 bytes and error
// bodies ({"code":...,"message":...,"details":[]}) of etcd's gateway.
//
// The handlers are grpc-gateway's: etcd's generated ones for KV, Watch,
// Lease, Cluster, Maintenance and Auth (go.etcd.io/etcd/api/v3/etcdserverpb/gw),
// and meshkv's for Lock and Election (api/v3lockpb/gw, api/v3electionpb/gw,
// generated from meshkv's protos with etcd's paths). They call the node's
// gRPC server through a client connection, so a gateway request passes the
// same validation, limits and interceptors as a gRPC one. Streaming calls
// (watch, lease keepalive, election observe) answer with one JSON object
// per message, each wrapped as {"result":...} (or {"error":...}), as etcd's.
//
// Unlike etcd, a browser's cross-origin request (one whose Origin header
// names another host than the request's Host) is refused with 403: meshkv
// serves no CORS policy, and a web page must not be able to write to a
// store on the machine of whoever views it.
//
// The package starts no goroutines.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	etcdgw "go.etcd.io/etcd/api/v3/etcdserverpb/gw"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"

	electiongw "github.com/meshkv/meshkv/api/v3electionpb/gw"
	lockgw "github.com/meshkv/meshkv/api/v3lockpb/gw"
)

// Config configures the gateway.
type Config struct {
	// Conn reaches the node's gRPC server (required).
	Conn *grpc.ClientConn
	// MaxBodyBytes bounds the body of a unary call; larger bodies fail with
	// 400 (the gRPC server then enforces the request size limit with
	// etcd's error). Zero means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// MaxStreamBytes bounds everything a client sends on one bidirectional
	// stream (watch, lease keepalive). Zero means DefaultMaxStreamBytes.
	MaxStreamBytes int64
}

// Default body bounds.
const (
	DefaultMaxBodyBytes   = 4 << 20
	DefaultMaxStreamBytes = 64 << 20
)

// Paths the gateway serves below.
const (
	Prefix     = "/v3/"
	betaPrefix = "/v3beta/"
)

// New returns the gateway's handler, to be mounted at Prefix. It also
// answers etcd's older /v3beta/ paths, as etcd does; mount it there too.
func New(cfg Config) (http.Handler, error) {
	if cfg.Conn == nil {
		return nil, errors.New("gateway: Config.Conn is required")
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxStreamBytes <= 0 {
		cfg.MaxStreamBytes = DefaultMaxStreamBytes
	}
	// etcd's marshaling: proto field names, no zero values, unknown
	// fields ignored.
	mux := runtime.NewServeMux(runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.HTTPBodyMarshaler{
		Marshaler: &runtime.JSONPb{
			MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: false},
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: true},
		},
	}))
	// The context only matters to the FromEndpoint variants, which are not
	// used: the connection belongs to the caller.
	ctx := context.Background()
	for _, register := range []func(context.Context, *runtime.ServeMux, *grpc.ClientConn) error{
		etcdgw.RegisterKVHandler,
		etcdgw.RegisterWatchHandler,
		etcdgw.RegisterLeaseHandler,
		etcdgw.RegisterClusterHandler,
		etcdgw.RegisterMaintenanceHandler,
		etcdgw.RegisterAuthHandler,
		lockgw.RegisterLockHandler,
		electiongw.RegisterElectionHandler,
	} {
		if err := register(ctx, mux, cfg.Conn); err != nil {
			return nil, fmt.Errorf("gateway: %w", err)
		}
	}
	return &handler{cfg: cfg, mux: mux}, nil
}

type handler struct {
	cfg Config
	mux *runtime.ServeMux
}

// bidiStreams are the calls whose request body is a stream of messages.
func bidiStream(path string) bool {
	return path == "/v3/watch" || path == "/v3/lease/keepalive"
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if rest, ok := strings.CutPrefix(r.URL.Path, betaPrefix); ok {
		r2 := r.Clone(r.Context())
		r2.URL.Path = Prefix + rest
		r2.URL.RawPath = ""
		r = r2
	}
	if crossOrigin(r) {
		http.Error(w, "meshkv: cross-origin requests to the JSON gateway are refused", http.StatusForbidden)
		return
	}
	limit := h.cfg.MaxBodyBytes
	if bidiStream(r.URL.Path) {
		limit = h.cfg.MaxStreamBytes
	}
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	h.mux.ServeHTTP(w, r)
}

// crossOrigin reports whether a browser sent r on behalf of a page of
// another origin: its Origin header names a host other than the one the
// request is for. Non-browser clients send no Origin header.
func crossOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return true // "null" (sandboxed pages, files) or garbage
	}
	return !strings.EqualFold(u.Host, r.Host)
}
