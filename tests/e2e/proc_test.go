package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// memberName is the --name of every server the tests start, so that member
// lists can be compared.
const memberName = "e2e"

// server is a running etcd or meshkv process.
type server struct {
	kind      string // "etcd" or "meshkv"
	clientURL string // http://127.0.0.1:port
	endpoint  string // 127.0.0.1:port, for etcdctl
	cmd       *exec.Cmd
	out       *syncBuffer   // the process's stdout and stderr
	exited    chan struct{} // closed when the process has exited
	waitErr   error         // set before exited is closed
	vars      map[string]string
}

// syncBuffer is a bytes.Buffer safe for a writer process and a reader test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startEtcd starts a single-member etcd process in a temporary directory,
// with extra flags appended.
func startEtcd(t *testing.T, extra ...string) *server {
	t.Helper()
	cport, pport := freePort(t), freePort(t)
	client := fmt.Sprintf("http://127.0.0.1:%d", cport)
	peer := fmt.Sprintf("http://127.0.0.1:%d", pport)
	return startProcess(t, "etcd", cport, bins.etcd, append([]string{
		"--name", memberName, "--data-dir", t.TempDir(),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", memberName + "=" + peer,
		"--unsafe-no-fsync", "--log-level", "error"}, extra...)...)
}

// startMeshkv starts a single meshkv node (its own one-node cluster), with
// extra flags appended.
func startMeshkv(t *testing.T, extra ...string) *server {
	t.Helper()
	cport, mport := freePort(t), freePort(t)
	client := fmt.Sprintf("http://127.0.0.1:%d", cport)
	return startProcess(t, "meshkv", cport, bins.meshkv, append([]string{
		"--name", memberName,
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--mesh-listen", fmt.Sprintf("127.0.0.1:%d", mport),
		"--log-level", "warn"}, extra...)...)
}

// startPair starts a fresh etcd and a fresh meshkv, both with the extra
// flags (which must mean the same to both).
func startPair(t *testing.T, extra ...string) (etcd, mkv *server) {
	t.Helper()
	return startEtcd(t, extra...), startMeshkv(t, extra...)
}

func startProcess(t *testing.T, kind string, port int, bin string, args ...string) *server {
	t.Helper()
	s := startProcessNoWait(t, kind, port, bin, args...)
	s.waitReady(t)
	return s
}

// startProcessNoWait is startProcess without waiting for the server to be
// ready (a member of a cluster is ready only once its peers run too).
func startProcessNoWait(t *testing.T, kind string, port int, bin string, args ...string) *server {
	t.Helper()
	s := &server{
		kind:      kind,
		clientURL: fmt.Sprintf("http://127.0.0.1:%d", port),
		endpoint:  "127.0.0.1:" + strconv.Itoa(port),
		out:       &syncBuffer{},
		exited:    make(chan struct{}),
		vars:      map[string]string{},
	}
	s.cmd = exec.Command(bin, args...)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	dieWithTest(s.cmd)
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", kind, err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("%s output:\n%s", kind, tail(s.out.String(), 4000))
		}
	})
	return s
}

// stop ends the process by its PID: SIGTERM, then SIGKILL after 10 s.
func (s *server) stop() {
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// waitReady polls until the server answers a Range, which needs a leader.
func (s *server) waitReady(t *testing.T) {
	t.Helper()
	conn, err := grpc.NewClient(s.endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial %s: %v", s.kind, err)
	}
	defer conn.Close()
	kv := pb.NewKVClient(conn)
	deadline := time.Now().Add(30 * time.Second)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			t.Fatalf("%s exited while starting (%v):\n%s", s.kind, s.waitErr, tail(s.out.String(), 4000))
		default:
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		_, lastErr = kv.Range(ctx, &pb.RangeRequest{Key: []byte("ready?")})
		cancel()
		if lastErr == nil {
			return
		}
		time.Sleep(50 * time.Millisecond) // polling a process we do not control
	}
	t.Fatalf("%s not ready after 30s: %v\n%s", s.kind, lastErr, tail(s.out.String(), 4000))
}

// ctlResult is what one etcdctl run printed.
type ctlResult struct {
	stdout string
	errors string // stderr lines that are errors or panics, not client logs
	code   int    // exit code
}

func (r ctlResult) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nerrors:\n%s", r.code, indent(r.stdout), indent(r.errors))
}

// ctl runs etcdctl against the server with stdin as input.
func (s *server) ctl(t *testing.T, stdin string, args ...string) ctlResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	full := append([]string{"--endpoints=" + s.endpoint, "--dial-timeout=5s", "--command-timeout=20s"}, args...)
	cmd := exec.CommandContext(ctx, bins.etcdctl, full...)
	cmd.Stdin = strings.NewReader(stdin)
	dieWithTest(cmd)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := ctlResult{stdout: stdout.String(), errors: errorLines(stderr.String())}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		res.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("run etcdctl %v: %v", args, err)
	}
	return res
}

// errorLines keeps the lines of etcdctl's stderr that report an error or a
// crash, dropping the client library's JSON log lines and stack traces.
func errorLines(stderr string) string {
	var keep []string
	for _, l := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(l, "Error:") || strings.HasPrefix(l, "panic:") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func indent(s string) string {
	if s == "" {
		return "  (nothing)"
	}
	return "  " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n  ")
}
