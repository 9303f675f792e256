package cluster

import (
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
)

// reaperScript waits for its standard input to close, then deletes every
// namespace whose name starts with $0 and removes the CPU cgroups under $1
// with that prefix (retrying while the killed members leave them).
const reaperScript = `cat >/dev/null
p="$0"; cg="$1"
ip netns list 2>/dev/null | while read -r n _; do case "$n" in "$p"*) ip netns del "$n" ;; esac; done
if [ -n "$cg" ]; then
  for i in 1 2 3 4 5 6 7 8 9 10; do
    left=0
    for d in "$cg/$p"*; do [ -d "$d" ] && { rmdir "$d" 2>/dev/null || left=1; }; done
    [ "$left" = 0 ] && break
    sleep 0.5
  done
fi`

// reaper is a helper process that removes a cluster's namespaces and CPU
// cgroups when the chaos process goes away without closing the cluster
// (SIGKILL, a panic in any goroutine): it holds the read end of a pipe
// whose write end only this process has, and cleans up when it reads EOF.
// The members are gone by then (their parent-death signal). Close of the
// cluster removes everything itself and then lets the reaper exit.
type reaper struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

// startReaper starts the reaper of the namespaces and cgroups named with
// prefix (cgroupRoot "" when there is no CPU cgroup controller).
func startReaper(prefix, cgroupRoot string) (*reaper, error) {
	if !strings.HasPrefix(prefix, nsPrefix) || strings.ContainsAny(prefix, " \t\n*?[") {
		return nil, fmt.Errorf("cluster: bad reaper prefix %q", prefix)
	}
	cmd := exec.Command("sh", "-c", reaperScript, prefix, cgroupRoot)
	// Its own process group: a Ctrl-C to the terminal must not end it
	// before the run has cleaned up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("cluster: reaper: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("cluster: reaper: %w", err)
	}
	return &reaper{cmd: cmd, stdin: in}, nil
}

// stop lets the reaper run its (by then idle) cleanup and exit, and reaps
// it.
func (r *reaper) stop() error {
	_ = r.stdin.Close()
	if err := r.cmd.Wait(); err != nil {
		return fmt.Errorf("cluster: reaper: %w", err)
	}
	return nil
}
