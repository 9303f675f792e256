package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

var (
	grantedLease = regexp.MustCompile(`^lease ([0-9a-f]{16}) granted`)
	remaining    = regexp.MustCompile(`remaining\(\d+s\)`)
)

// saveLease records the lease id a "lease grant" printed as variable name,
// and in decimal (as JSON output shows it) as name+"-decimal".
func saveLease(name string) func(*server, string) {
	return func(s *server, out string) {
		if m := grantedLease.FindStringSubmatch(out); m != nil {
			s.vars[name] = m[1]
			if id, err := strconv.ParseUint(m[1], 16, 64); err == nil {
				s.vars[name+"-decimal"] = strconv.FormatUint(id, 10)
			}
		}
	}
}

// attachedKeys matches the key list of "lease timetolive --keys".
var attachedKeys = regexp.MustCompile(`attached keys\(\[(.*)\]\)`)

// normKeyOrder sorts the attached keys of a lease, which etcd lists in no
// particular order, in simple and in JSON output.
func normKeyOrder(s *server, out string) string {
	out = attachedKeys.ReplaceAllStringFunc(out, func(m string) string {
		keys := strings.Fields(attachedKeys.FindStringSubmatch(m)[1])
		slices.Sort(keys)
		return "attached keys([" + strings.Join(keys, " ") + "])"
	})
	var v map[string]any
	if json.Unmarshal([]byte(out), &v) == nil {
		if keys, ok := v["keys"].([]any); ok {
			slices.SortFunc(keys, func(a, b any) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) })
			if b, err := json.Marshal(v); err == nil {
				out = string(b)
			}
		}
	}
	return out
}

// TestLease compares etcdctl's lease commands. Lease ids are chosen by each
// server and are compared by name.
func TestLease(t *testing.T) {
	t.Parallel()
	etcd, mkv := startPair(t)
	norm := chain(normVars, normRegexp(remaining, "remaining(<n>s)"), normKeyOrder)
	compareSteps(t, etcd, mkv, []step{
		cmd("lease", "grant", "100").saving(saveLease("lease")).with(norm),
		cmd("lease", "grant", "1").saving(saveLease("short")).with(norm),
		cmd("lease", "revoke", "{short}").with(norm),
		cmd("lease", "list").with(norm),
		cmd("lease", "timetolive", "{lease}").with(norm),
		cmd("put", "k1", "v1", "--lease={lease}"),
		cmd("put", "k2", "v2", "--lease={lease}"),
		cmd("put", "k3", "v3", "--lease=1234"),
		cmd("lease", "timetolive", "{lease}", "--keys").with(norm),
		cmd("lease", "timetolive", "{lease}", "--keys", "-w", "json").with(chain(normJSON(append(serverIDs, "id", "ttl")...), norm)),
		cmd("lease", "keep-alive", "--once", "{lease}").with(norm),
		cmd("put", "k2", "detached"),
		cmd("put", "k1", "kept", "--ignore-lease"),
		cmd("lease", "timetolive", "{lease}", "--keys").with(norm),
		cmd("get", "k", "--prefix", "-w", "json").with(chain(normJSON(serverIDs...), norm)),
		cmd("lease", "revoke", "{lease}").with(norm).expecting("revoked"),
		cmd("get", "k", "--prefix"),
		cmd("lease", "timetolive", "{lease}").with(norm),
		cmd("lease", "revoke", "{lease}").with(norm),
		cmd("lease", "keep-alive", "--once", "{lease}").with(norm),
		cmd("lease", "list").with(norm),
	})
}

// TestLock runs commands under etcdctl lock, which works through a lease,
// a key per waiter and watches.
func TestLock(t *testing.T) {
	t.Parallel()
	etcd, mkv := startPair(t)
	lockKey := normRegexp(regexp.MustCompile(`(?m)^(mylock/)[0-9a-f]+$`), "${1}<lease>")
	compareSteps(t, etcd, mkv, []step{
		cmd("lock", "mylock", "echo", "locked").expecting("locked"),
		cmd("lock", "mylock", "sh", "-c", "echo $ETCD_LOCK_KEY").with(lockKey),
		cmd("lock", "--ttl=5", "mylock", "sh", "-c", "exit 3"),
		cmd("get", "mylock", "--prefix", "--keys-only"),
	})
}

// TestWatch runs etcdctl watch in the background while another etcdctl
// writes, and compares what the watchers printed.
func TestWatch(t *testing.T) {
	t.Parallel()
	etcd, mkv := startPair(t)
	writes := []step{
		cmd("put", "w/1", "a"),
		cmd("put", "w/2", "b"),
		cmd("put", "other", "x"),
		cmd("del", "w/1"),
		cmd("txn").input("\nput w/3 c\nput w/4 d\ndel w/2\n\n\n"),
		cmd("put", "w/3", "c2"),
	}
	var outs [2]string
	for i, s := range []*server{etcd, mkv} {
		for _, st := range writes {
			if res := runStep(t, s, st); res.code != 0 {
				t.Fatalf("%s: etcdctl %v: %s", s.kind, st.args, res)
			}
		}
		// The last write's value ends the output.
		outs[i] = watchUntil(t, s, "\nc2\n", "watch", "--prefix", "w/", "--rev=1", "--prev-kv")
	}
	if outs[0] != outs[1] {
		t.Errorf("etcdctl watch output differs\n--- etcd:\n%s\n--- meshkv:\n%s", outs[0], outs[1])
	}
}

// watchUntil runs etcdctl with args (a watch) until its output ends with
// last, then stops it by PID and returns the output.
func watchUntil(t *testing.T, s *server, last string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out := &syncBuffer{}
	cmd := exec.CommandContext(ctx, bins.etcdctl, append([]string{"--endpoints=" + s.endpoint}, args...)...)
	cmd.Stdout = out
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	dieWithTest(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start etcdctl watch: %v", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-done
	}()
	for !strings.HasSuffix(out.String(), last) {
		select {
		case <-done:
			t.Fatalf("%s: etcdctl %v exited after printing:\n%s", s.kind, args, out.String())
		case <-ctx.Done():
			t.Fatalf("%s: etcdctl %v did not print %q in 30s, only:\n%s", s.kind, args, last, out.String())
		case <-time.After(20 * time.Millisecond): // polling another process's output
		}
	}
	return out.String()
}
