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
	recoverc := make(chan os.Signal, 1)
	signal.Notify(recoverc, syscall.SIGUSR2)
	defer signal.Stop(recoverc)
	code := serveUntil(ctx, node, recoverc, log)
	_ = notifySystemd("STOPPING=1")
	if err := node.Close(); err != nil {
		log.Error("shutdown", "err", err)
		return 1
	}
	return code
}

// servingNode is what serveUntil needs of a node (a *meshkv.Node).
type servingNode interface {
	Done() <-chan struct{}
	Err() error
	Recover(ctx context.Context, force bool) (meshkv.Recovery, error)
}

// serveUntil serves until ctx ends (a signal to stop: exit code 0) or the
// node stops on its own (removed from its cluster, or its raft member
// failed: exit code 1, so that a supervisor starts a new member). A signal
// on recoverc (SIGUSR2) asks the node to recover its cluster after a lost
// quorum (see README, "Losing quorum"); the outcome is logged.
func serveUntil(ctx context.Context, node servingNode, recoverc <-chan os.Signal, log *slog.Logger) int {
	for {
		select {
		case <-ctx.Done():
			log.Info("shutting down", "signal", context.Cause(ctx))
			return 0
		case <-node.Done():
			log.Error("stopping: this member can no longer serve", "err", node.Err())
			return 1
		case <-recoverc:
			log.Warn("recovery requested (SIGUSR2): asking the members whether the quorum is lost")
			rec, err := node.Recover(ctx, false)
			if err != nil {
				log.Error("recovery refused or failed; nothing changed", "err", err)
				continue
			}
			log.Warn("recovered: this member is the only voter of a new cluster with its data",
				"cluster", fmt.Sprintf("%x", rec.Cluster), "supersedes", fmt.Sprintf("%x", rec.Supersedes),
				"applied", rec.Applied, "removed", fmt.Sprintf("%x", rec.Removed))
		}
	}
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
