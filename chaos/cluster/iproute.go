package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// commandTimeout bounds one ip or ss invocation: they are local netlink
// calls, and a hung one must not hang the run.
const commandTimeout = 10 * time.Second

// run runs a command and returns its error with its output.
func run(stdin string, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("cluster: %s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// output runs a command and returns its standard output.
func output(name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("cluster: %s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// ipBatch runs iproute2 commands (lines without the leading "ip") in
// namespace ns ("" for the root namespace) in one ip process. With force,
// ip goes on after a failing line and the error reports the failures.
func ipBatch(ns string, force bool, lines ...string) error {
	if len(lines) == 0 {
		return nil
	}
	var args []string
	if ns != "" {
		args = append(args, "-n", ns)
	}
	if force {
		args = append(args, "-force")
	}
	args = append(args, "-batch", "-")
	return run(strings.Join(lines, "\n")+"\n", "ip", args...)
}

// ErrNetnsUnavailable is wrapped by the error of a netns-mode Start on a
// machine where the harness cannot create network namespaces (not root,
// no iproute2, no namespace support).
var ErrNetnsUnavailable = errors.New("cluster: network namespaces unavailable")

// NetnsAvailable reports why netns mode cannot run here, or nil: it needs
// root, iproute2's ip and ss, and the right to create a namespace (probed by
// creating and deleting one).
func NetnsAvailable() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: not root (euid %d)", ErrNetnsUnavailable, os.Geteuid())
	}
	for _, tool := range []string{"ip", "ss"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%w: %s not found (iproute2)", ErrNetnsUnavailable, tool)
		}
	}
	o, err := selfOwner()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNetnsUnavailable, err)
	}
	name := nsName(o, 0, "probe")
	if err := run("", "ip", "netns", "add", name); err != nil {
		return fmt.Errorf("%w: %v", ErrNetnsUnavailable, err)
	}
	if err := run("", "ip", "netns", "del", name); err != nil {
		return fmt.Errorf("%w: removing the probe namespace: %v", ErrNetnsUnavailable, err)
	}
	return nil
}

// netnsPath is where iproute2 keeps a named namespace.
func netnsPath(name string) string { return filepath.Join("/run/netns", name) }

// listNamespaces lists the named network namespaces.
func listNamespaces() ([]string, error) {
	out, err := output("ip", "netns", "list")
	if err != nil {
		return nil, err
	}
	return parseNetnsList(string(out)), nil
}

// RemoveStale deletes the namespaces left behind by chaos runs whose process
// is gone (crashed or killed before it could clean up), and the CPU
// cgroups they left. It returns what it removed; namespaces of live runs
// and of other tools are never touched.
func RemoveStale() ([]string, error) {
	names, err := listNamespaces()
	if err != nil {
		return nil, err
	}
	alive := func(o owner) bool { return ownerAlive("/proc", o) }
	var removed []string
	var errs []error
	for _, n := range staleNamespaces(names, alive) {
		if err := run("", "ip", "netns", "del", n); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, n)
	}
	cg, err := removeStaleCgroups(alive)
	removed = append(removed, cg...)
	errs = append(errs, err)
	return removed, errors.Join(errs...)
}

// slotLock serializes slot allocation between chaos processes.
type slotLock struct{ f *os.File }

func lockSlots() (*slotLock, error) {
	p := filepath.Join(os.TempDir(), "meshkv-chaos-netns.lock")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cluster: slot lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("cluster: slot lock: %w", err)
	}
	return &slotLock{f: f}, nil
}

func (l *slotLock) unlock() {
	_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	_ = l.f.Close()
}

// rootUsedPrefixes lists the IPv4 prefixes in use in the root namespace.
func rootUsedPrefixes() ([]netip.Prefix, error) {
	addrs, err := output("ip", "-j", "-4", "addr", "show")
	if err != nil {
		return nil, err
	}
	routes, err := output("ip", "-j", "-4", "route", "show", "table", "all")
	if err != nil {
		return nil, err
	}
	return usedPrefixes(addrs, routes)
}
