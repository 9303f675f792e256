package cluster

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// ErrUnsupported is returned for an operation the cluster's flavor cannot
// do (for example adding a fresh member to etcd, which has no self-healing
// membership).
var ErrUnsupported = errors.New("cluster: not supported by this flavor")

// memberSpec is what a member's command line is made from.
type memberSpec struct {
	name      string
	clientURL string
	peerAddr  string   // the member's own mesh or peer listener
	peers     []string // meshkv: the addresses it dials to reach each peer
	// initial is etcd's --initial-cluster (name=http://peer,...).
	initial string
	dataDir string // etcd's --data-dir
}

// meshkvArgs is the command line of a meshkv member.
func meshkvArgs(cfg Config, m memberSpec, passwordFile string) []string {
	args := []string{
		"--name", m.name,
		"--listen-client-urls", m.clientURL,
		"--mesh-listen", m.peerAddr,
		"--peers", strings.Join(m.peers, ","),
		"--peer-discovery=false",
		"--initial-cluster-size", strconv.Itoa(cfg.Nodes),
		"--cluster-name", cfg.ClusterName,
		"--heartbeat-interval", strconv.FormatInt(cfg.Heartbeat.Milliseconds(), 10),
		"--election-timeout", strconv.FormatInt(cfg.ElectionTimeout.Milliseconds(), 10),
		"--log-level", cfg.LogLevel,
	}
	if passwordFile != "" {
		args = append(args, "--mesh-password-file", passwordFile)
	}
	if cfg.TargetVoters != 0 {
		args = append(args, "--target-voters", strconv.Itoa(cfg.TargetVoters))
	}
	return append(args, cfg.ExtraArgs...)
}

// etcdArgs is the command line of an etcd member of a statically
// bootstrapped cluster. Durability is not what chaos runs measure on etcd,
// so fsync is off (it would only add disk noise to the timings).
func etcdArgs(cfg Config, m memberSpec, token string) []string {
	peerURL := "http://" + m.peerAddr
	args := []string{
		"--name", m.name,
		"--data-dir", m.dataDir,
		"--listen-client-urls", m.clientURL,
		"--advertise-client-urls", m.clientURL,
		"--listen-peer-urls", peerURL,
		"--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", m.initial,
		"--initial-cluster-state", "new",
		"--initial-cluster-token", token,
		"--heartbeat-interval", strconv.FormatInt(cfg.Heartbeat.Milliseconds(), 10),
		"--election-timeout", strconv.FormatInt(cfg.ElectionTimeout.Milliseconds(), 10),
		"--unsafe-no-fsync",
		"--log-level", cfg.LogLevel,
	}
	return append(args, cfg.ExtraArgs...)
}

// initialCluster is etcd's --initial-cluster for the given members.
func initialCluster(names, peerAddrs []string) (string, error) {
	if len(names) != len(peerAddrs) {
		return "", fmt.Errorf("cluster: %d names for %d peer addresses", len(names), len(peerAddrs))
	}
	parts := make([]string, len(names))
	for i := range names {
		parts[i] = names[i] + "=http://" + peerAddrs[i]
	}
	return strings.Join(parts, ","), nil
}

// etcdDataDir is member name's data directory under dir.
func etcdDataDir(dir, name string) string { return filepath.Join(dir, name+".etcd") }
