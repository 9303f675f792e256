package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/authpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/meshkv/meshkv/internal/bench"
	"github.com/meshkv/meshkv/internal/tlsconfig"
	"github.com/meshkv/meshkv/internal/tlsconfig/tlstest"
)

// The security section: client TLS and auth on a 3-member etcd and a
// 3-node meshkv, both serving clients over TLS with the same certificate.
// Each round runs every workload on etcd, then meshkv, first with auth
// disabled, then enabled (the clients then act as a user whose role may read
// and write the benchmark's prefix).

const sectionSecurity = "security"

// Parameters of the security workloads.
const (
	connectClients = 16
	benchUser      = "bench"
	benchPassword  = "bench-password"
	rootPassword   = "root-password"
)

// secMetrics are the rows of the security table.
type secMetrics struct {
	connect, connectP50, put, get, putAuth, getAuth *metric
	putCPU, getCPU, putCPUAuth, getCPUAuth          *metric
}

func newSecMetrics() *secMetrics {
	return &secMetrics{
		connect:    &metric{name: fmt.Sprintf("TLS handshake + put on a fresh connection (%d clients), ops/s", connectClients), unit: opsPerSec},
		connectP50: &metric{name: "TLS handshake + put on a fresh connection, latency p50", unit: latency},
		put:        &metric{name: fmt.Sprintf("put throughput over TLS (%d clients, %d conns), ops/s", manyClients, conns), unit: opsPerSec},
		get:        &metric{name: fmt.Sprintf("linearizable get throughput over TLS (%d clients), ops/s", manyClients), unit: opsPerSec},
		putAuth:    &metric{name: "the same put throughput with auth enabled, ops/s", unit: opsPerSec},
		getAuth:    &metric{name: "the same get throughput with auth enabled, ops/s", unit: opsPerSec},
		putCPU:     &metric{name: "server CPU per 1000 puts over TLS (3 servers), ms", unit: cpuPerOps},
		getCPU:     &metric{name: "server CPU per 1000 linearizable gets over TLS (3 servers), ms", unit: cpuPerOps},
		putCPUAuth: &metric{name: "server CPU per 1000 puts with auth enabled, ms", unit: cpuPerOps},
		getCPUAuth: &metric{name: "server CPU per 1000 gets with auth enabled, ms", unit: cpuPerOps},
	}
}

func (m *secMetrics) rows() []*metric {
	return []*metric{m.connect, m.connectP50, m.put, m.get, m.putAuth, m.getAuth, m.putCPU, m.getCPU, m.putCPUAuth, m.getCPUAuth}
}

// securityTargets are one system's targets: over TLS, and over TLS with auth.
type securityTargets struct {
	plain, auth *target
}

// security runs the section.
func (c *comparer) security(ctx context.Context, etcdBin, meshkvBin string, m *secMetrics) error {
	dir, err := os.MkdirTemp(c.o.tmp, "pki-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	pki, err := tlstest.NewCA(dir, "bench")
	if err != nil {
		return err
	}
	cert, key, err := pki.IssueServer("server")
	if err != nil {
		return err
	}
	ctls, err := tlsconfig.Client(tlsconfig.ClientOptions{CAFile: pki.CAFile(), ServerName: "localhost"})
	if err != nil {
		return err
	}
	serve := serveOpts{scheme: "https", tls: ctls, args: []string{"--cert-file", cert, "--key-file", key}}

	fmt.Fprintln(c.log, "starting 3-member etcd over TLS")
	et, err := startEtcdWith(ctx, etcdBin, c.o.where(), 3, serve)
	if err != nil {
		return err
	}
	defer et.stop()
	fmt.Fprintln(c.log, "starting 3-node meshkv over TLS")
	full := []meshkvMember{{name: "a", peers: []int{1, 2}, clusterSize: 3}, {name: "b", peers: []int{0, 2}, clusterSize: 3}, {name: "c", peers: []int{0, 1}, clusterSize: 3}}
	mk, err := startMeshkvWith(ctx, "meshkv-tls", meshkvBin, c.o.where(), full, true, false, serve)
	if err != nil {
		return err
	}
	defer mk.stop()

	var targets []*target
	pairs := map[string]securityTargets{}
	for _, sys := range []struct {
		name string
		cl   *cluster
	}{{"etcd", et}, {"meshkv", mk}} {
		st, err := newSecurityTargets(ctx, sys.name, sys.cl, ctls)
		if err != nil {
			return sys.cl.failure(err)
		}
		pairs[sys.name] = st
		targets = append(targets, st.plain)
	}
	connect := bench.Config{Workload: bench.Connect, Clients: connectClients, TLS: ctls}
	put := bench.Config{Workload: bench.Put, Clients: manyClients}
	get := bench.Config{Workload: bench.Get, Clients: manyClients}
	scs := []scenario{
		{name: "connect", cfg: connect, conns: 1, take: both(rate(m.connect), p50(m.connectP50))},
	}
	for _, sc := range scs {
		for round := 1; round <= c.o.rounds; round++ {
			for _, sys := range []string{"etcd", "meshkv"} {
				t := pairs[sys].plain
				sc := sc
				sc.cfg.Endpoints = t.endpoints
				if err := c.runOnce(ctx, sectionSecurity, sc, t, round); err != nil {
					return err
				}
			}
		}
	}
	// Throughput, with and without auth, interleaved within each round.
	for _, w := range []struct {
		name                   string
		cfg                    bench.Config
		plain, aut, cpuP, cpuA *metric
	}{{"put-256", put, m.put, m.putAuth, m.putCPU, m.putCPUAuth}, {"get-l", get, m.get, m.getAuth, m.getCPU, m.getCPUAuth}} {
		for round := 1; round <= c.o.rounds; round++ {
			for _, withAuth := range []bool{false, true} {
				for _, sys := range []string{"etcd", "meshkv"} {
					t, mt, mc := pairs[sys].plain, w.plain, w.cpuP
					if withAuth {
						t, mt, mc = pairs[sys].auth, w.aut, w.cpuA
					}
					sc := scenario{name: w.name, cfg: w.cfg, conns: conns, take: both(rate(mt), cpu(mc))}
					if err := c.runOnce(ctx, sectionSecurity, sc, t, round); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

// newSecurityTargets creates the root and benchmark users on a cluster
// served over TLS, and returns its targets: the plain one disables auth
// before each run, the auth one enables it and dials as the benchmark user.
func newSecurityTargets(ctx context.Context, name string, cl *cluster, ctls *tls.Config) (securityTargets, error) {
	eps := cl.endpoints()
	root, err := clientv3.New(clientv3.Config{Endpoints: eps, TLS: ctls, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return securityTargets{}, err
	}
	defer root.Close()
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for _, step := range []func() error{
		func() error { _, err := root.UserAdd(sctx, "root", rootPassword); return err },
		func() error { _, err := root.UserGrantRole(sctx, "root", "root"); return err },
		func() error { _, err := root.RoleAdd(sctx, benchUser); return err },
		func() error {
			_, err := root.RoleGrantPermission(sctx, benchUser, bench.DefaultKeyPrefix, clientv3.GetPrefixRangeEnd(bench.DefaultKeyPrefix),
				clientv3.PermissionType(authpb.Permission_READWRITE))
			return err
		},
		func() error { _, err := root.UserAdd(sctx, benchUser, benchPassword); return err },
		func() error { _, err := root.UserGrantRole(sctx, benchUser, benchUser); return err },
	} {
		if err := step(); err != nil {
			return securityTargets{}, fmt.Errorf("auth setup: %w", err)
		}
	}
	setAuth := func(on bool) func(context.Context) error {
		return func(ctx context.Context) error {
			c, err := clientv3.New(clientv3.Config{Endpoints: eps, TLS: ctls, DialTimeout: 5 * time.Second,
				Username: "root", Password: rootPassword, Logger: zap.NewNop()})
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			if on {
				_, err = c.AuthEnable(ctx)
			} else {
				_, err = c.AuthDisable(ctx)
			}
			if errors.Is(err, rpctypes.ErrAuthNotEnabled) {
				err = nil
			}
			return err
		}
	}
	dial := func(opts bench.ClientOptions) func(context.Context, int) ([]*clientv3.Client, func(), error) {
		return func(ctx context.Context, n int) ([]*clientv3.Client, func(), error) {
			cl, err := bench.DialWith(ctx, eps, n, opts)
			if err != nil {
				return nil, nil, err
			}
			return cl, func() { bench.CloseAll(cl) }, nil
		}
	}
	plain := &target{name: name, dial: dial(bench.ClientOptions{TLS: ctls}), pids: cl.pids(), prepare: setAuth(false), endpoints: httpsEndpoints(eps)}
	auth := &target{name: name, dial: dial(bench.ClientOptions{TLS: ctls, Username: benchUser, Password: benchPassword}),
		pids: cl.pids(), prepare: setAuth(true), endpoints: httpsEndpoints(eps)}
	return securityTargets{plain: plain, auth: auth}, nil
}

func httpsEndpoints(eps []string) []string {
	out := make([]string, len(eps))
	for i, e := range eps {
		out[i] = "https://" + strings.TrimPrefix(e, "https://")
	}
	return out
}

// writeSecurity writes the security table, with each system's cost of auth.
func writeSecurity(b *strings.Builder, m *secMetrics) {
	b.WriteString("## client TLS and auth: 3-node meshkv vs 3-member etcd, both over TLS\n\n")
	b.WriteString("Each round runs every workload on etcd, then meshkv, with auth disabled, then enabled " +
		"(the clients then act as a user whose role may read and write the benchmark's prefix); " +
		"the history is not compacted between these runs.\n\n")
	writeComparison(b, m.rows(), "meshkv", "etcd")
	b.WriteString("\n| cost of enabling auth (with auth / without) | etcd | meshkv |\n|---|---:|---:|\n")
	for _, r := range []struct {
		name         string
		plain, withA *metric
	}{
		{"put throughput", m.put, m.putAuth}, {"linearizable get throughput", m.get, m.getAuth},
		{"server CPU per put", m.putCPU, m.putCPUAuth}, {"server CPU per get", m.getCPU, m.getCPUAuth},
	} {
		fmt.Fprintf(b, "| %s | %s | %s |\n", r.name, authCost(r.plain, r.withA, "etcd"), authCost(r.plain, r.withA, "meshkv"))
	}
	b.WriteString("\n")
}

// authCost prints the ratio of a system's medians with and without auth,
// and the median and range of the per-round ratios (a round runs both back
// to back).
func authCost(plain, withAuth *metric, sys string) string {
	p, ok1 := median(plain.values[sys])
	a, ok2 := median(withAuth.values[sys])
	if !ok1 || !ok2 || p == 0 {
		return "n/a"
	}
	both := &metric{values: map[string][]float64{"with": withAuth.values[sys], "without": plain.values[sys]}}
	return fmt.Sprintf("%.2f×; per round %s", a/p, both.roundRatios("with", "without"))
}
