// Command meshkv runs a meshkv member: an in-memory, strongly consistent
// key-value and lock store that serves etcd's v3 API, so stock etcdctl and etcd
// clients work against it.
//
// With no flags it serves a single node on http://127.0.0.1:2379, etcd's default
// client URL. Flags follow etcd's names; run meshkv --help for the list.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/meshkv/meshkv"
	"github.com/meshkv/meshkv/internal/gctune"
)

func main() {
	os.Exit(run(os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

func run(args, environ []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, environ)
	if errors.Is(err, flag.ErrHelp) {
		usage(newFlagSet(&options{}), stdout)
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "meshkv: %v\n", err)
		return 2
	}
	if o.version {
		printVersion(stdout)
		return 0
	}
	log := newLogger(stderr, o.logFormat, o.logLevel)
	o.cfg.Logger = log
	for _, w := range o.warnings {
		log.Warn(w)
	}
	if err := o.security.apply(&o.cfg, log); err != nil {
		fmt.Fprintf(stderr, "meshkv: %v\n", err)
		return 2
	}
	if err := o.cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "meshkv: %v\n", err)
		return 2
	}

	if o.debug != "" {
		srv, addr, err := serveDebug(o.debug, log)
		if err != nil {
			fmt.Fprintf(stderr, "meshkv: --debug-listen: %v\n", err)
			return 1
		}
		defer srv.Close()
		log.Info("serving the profiler", "url", "http://"+addr+"/debug/pprof/")
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// The store lives in the heap: keep Go's GC headroom bounded for large
	// stores (unless GOGC is set).
	go gctune.Run(ctx, gctune.Config{})
	node, err := meshkv.Start(ctx, o.cfg)
	if err != nil {
		log.Error("start failed", "err", err)
		return 1
	}
	log.Info("serving etcd v3 API", "version", meshkv.Version, "client-addrs", node.ClientAddrs(), "mesh-addr", node.MeshAddr())
	if err := notifySystemd("READY=1"); err != nil {
		log.Warn("cannot notify systemd", "err", err)
	}
	code := 0
	select {
	case <-ctx.Done():
		log.Info("shutting down", "signal", context.Cause(ctx))
	case <-node.Done():
		// Removed from the cluster: exit so a supervisor can start a new
		// member in its place.
		log.Error("stopping", "err", node.Err())
		code = 1
	}
	_ = notifySystemd("STOPPING=1")
	if err := node.Close(); err != nil {
		log.Error("shutdown", "err", err)
		return 1
	}
	return code
}

// newLogger returns the process's logger: text (etcd's "console") or JSON
// lines on w.
func newLogger(w io.Writer, format string, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// serveDebug serves net/http/pprof on addr until the returned server is
// closed, and returns the address it listens on.
func serveDebug(addr string, log *slog.Logger) (*http.Server, string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("profiler stopped", "err", err)
		}
	}()
	return srv, ln.Addr().String(), nil
}
