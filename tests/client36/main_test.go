package client36

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/version"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// wantClientVersion is the etcd client this module must be built with.
const wantClientVersion = "3.6.6"

// meshkvBin is the meshkv binary TestMain builds.
var meshkvBin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "meshkv-client36-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "client36:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	meshkvBin = filepath.Join(dir, "meshkv")
	if err := buildMeshkv(meshkvBin); err != nil {
		fmt.Fprintln(os.Stderr, "client36:", err)
		return 1
	}
	return m.Run()
}

// buildMeshkv builds cmd/meshkv from the repository root, with meshkv's own
// go.mod (and so its etcd 3.7 dependencies).
func buildMeshkv(out string) error {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		return err
	}
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	cmd := exec.Command(gobin, "build", "-o", out, "./cmd/meshkv")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOWORK=off")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/meshkv in %s: %v\n%s", root, err, msg)
	}
	return nil
}

// TestClientIsEtcd36 guards the point of this module: the client under test
// is etcd's 3.6 client, not whatever meshkv itself uses.
func TestClientIsEtcd36(t *testing.T) {
	if version.Version != wantClientVersion {
		t.Fatalf("built with etcd API %s, want %s: the module's build list was lifted", version.Version, wantClientVersion)
	}
}

// node is a running meshkv process.
type node struct {
	cmd      *exec.Cmd
	endpoint string // host:port of its client URL
	exited   chan struct{}
	log      *lockedTail
}

// readyLine is the log line meshkv prints once it serves clients.
var readyLine = regexp.MustCompile(`msg="meshkv node ready".*client-urls=\[http://([^\] ]+)`)

// startNode starts a one-node meshkv cluster on loopback ports chosen by
// the kernel and waits until it serves clients. The process is stopped, by
// its PID, when the test ends.
func startNode(t *testing.T) *node {
	t.Helper()
	cmd := exec.Command(meshkvBin,
		"--name", "client36",
		"--listen-client-urls", "http://127.0.0.1:0",
		"--mesh-listen", "127.0.0.1:0",
		"--log-level", "info")
	setDeathSignal(cmd)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatalf("start meshkv: %v", err)
	}
	n := &node{cmd: cmd, exited: make(chan struct{}), log: &lockedTail{}}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			n.log.add(line)
			if m := readyLine.FindStringSubmatch(line); m != nil {
				select {
				case ready <- m[1]:
				default:
				}
			}
		}
		_ = cmd.Wait()
		close(n.exited)
	}()
	t.Cleanup(func() {
		n.stop()
		if t.Failed() {
			t.Logf("meshkv log:\n%s", n.log.String())
		}
	})
	select {
	case n.endpoint = <-ready:
	case <-n.exited:
		t.Fatalf("meshkv exited before it was ready:\n%s", n.log.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("meshkv not ready after 30s:\n%s", n.log.String())
	}
	return n
}

// stop ends the process: SIGTERM, then SIGKILL if it has not exited.
func (n *node) stop() {
	select {
	case <-n.exited:
		return
	default:
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(10 * time.Second):
		_ = n.cmd.Process.Kill()
		<-n.exited
	}
}

// client returns a clientv3 3.6 client of n, closed when the test ends.
func (n *node) client(t *testing.T) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{n.endpoint},
		DialTimeout: 10 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("clientv3.New: %v", err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// testCtx returns a context that ends with the test or after a minute.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// lockedTail keeps the last lines of a process's log.
type lockedTail struct {
	mu    sync.Mutex
	lines []string
}

func (l *lockedTail) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.lines) == 200 {
		l.lines = l.lines[1:]
	}
	l.lines = append(l.lines, line)
}

func (l *lockedTail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}
