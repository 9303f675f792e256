package listen

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/test/bufconn"
)

func TestParseURL(t *testing.T) {
	good := map[string]URL{
		"http://127.0.0.1:2379":      {"http", "tcp", "127.0.0.1:2379"},
		"https://[::1]:0/":           {"https", "tcp", "[::1]:0"},
		"unix://localhost:2379":      {"unix", "unix", "localhost:2379"},
		"unixs:///run/meshkv.sock":   {"unixs", "unix", "/run/meshkv.sock"},
		"unix://relative/dir/a.sock": {"unix", "unix", "relative/dir/a.sock"},
	}
	for s, want := range good {
		got, err := ParseURL(s)
		if err != nil || got != want {
			t.Errorf("ParseURL(%q) = %+v, %v; want %+v", s, got, err, want)
		}
	}
	for _, s := range []string{"ftp://a:1", "http://a", "http://a:1/x", "unix://", "https://u@a:1", "http://a:1?x=1", "127.0.0.1:2379", "%"} {
		if _, err := ParseURL(s); !errors.Is(err, ErrBadURL) {
			t.Errorf("ParseURL(%q) = %v, want ErrBadURL", s, err)
		}
	}
}

func TestGroup(t *testing.T) {
	var urls []URL
	for _, s := range []string{"http://127.0.0.1:1", "https://127.0.0.1:2", "https://127.0.0.1:1", "unix://s", "unixs://s", "http://127.0.0.1:1"} {
		u, err := ParseURL(s)
		if err != nil {
			t.Fatal(err)
		}
		urls = append(urls, u)
	}
	specs := Group(urls)
	want := []Spec{
		{"tcp", "127.0.0.1:1", Both, []string{"http", "https"}},
		{"tcp", "127.0.0.1:2", Secure, []string{"https"}},
		{"unix", "s", Both, []string{"unix", "unixs"}},
	}
	if len(specs) != len(want) {
		t.Fatalf("specs %+v", specs)
	}
	for i := range want {
		if specs[i].Network != want[i].Network || specs[i].Addr != want[i].Addr || specs[i].Mode != want[i].Mode || !slices.Equal(specs[i].Schemes, want[i].Schemes) {
			t.Errorf("spec %d = %+v, want %+v", i, specs[i], want[i])
		}
	}
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4321}
	if got := specs[0].URLs(addr); !slices.Equal(got, []string{"http://127.0.0.1:4321", "https://127.0.0.1:4321"}) {
		t.Errorf("URLs %q", got)
	}
	if got := specs[2].URLs(nil); !slices.Equal(got, []string{"unix://s", "unixs://s"}) {
		t.Errorf("unix URLs %q", got)
	}
}

// server serves the gRPC health service on listeners with Credentials()
// and reports the peer info type of each call.
type server struct {
	g     *grpc.Server
	peers chan credentials.AuthInfo
}

func newServer(t *testing.T, ls ...net.Listener) *server {
	t.Helper()
	s := &server{peers: make(chan credentials.AuthInfo, 16)}
	s.g = grpc.NewServer(grpc.Creds(Credentials()), grpc.UnaryInterceptor(
		func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			p, _ := peer.FromContext(ctx)
			s.peers <- p.AuthInfo
			return h(ctx, req)
		}))
	healthpb.RegisterHealthServer(s.g, health.NewServer())
	for _, l := range ls {
		go func() { _ = s.g.Serve(l) }()
	}
	t.Cleanup(s.g.Stop)
	return s
}

// call makes one health check over a fresh connection.
func call(t *testing.T, target string, creds credentials.TransportCredentials, opts ...grpc.DialOption) error {
	t.Helper()
	cc, err := grpc.NewClient(target, append(opts, grpc.WithTransportCredentials(creds))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

func TestUnixSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "listen") // short: socket paths are limited to ~100 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "c.sock")
	// A stale socket from an earlier process is replaced.
	stale, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()
	l, err := Listen(Spec{Network: "unix", Addr: path, Mode: Both})
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	if m, ok := ModeOf(l); !ok || m != Both {
		t.Fatalf("ModeOf = %v, %v; want %v", m, ok, Both)
	}
	s := newServer(t, l)
	if err := call(t, "unix://"+path, insecure.NewCredentials()); err != nil {
		t.Fatalf("unix: %v", err)
	}
	if got := (<-s.peers).AuthType(); got != "insecure" {
		t.Fatalf("unix peer %q", got)
	}
	// Any other file is left alone.
	regular := filepath.Join(dir, "file")
	if err := os.WriteFile(regular, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(Spec{Network: "unix", Addr: regular, Mode: Plain}); err == nil {
		t.Fatal("Listen replaced a regular file")
	}
}

func TestInproc(t *testing.T) {
	bl := bufconn.Listen(1 << 16)
	s := newServer(t, Inproc(bl))
	err := call(t, "passthrough:///inproc", insecure.NewCredentials(),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return bl.DialContext(ctx) }))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := (<-s.peers).(InprocInfo); !ok {
		t.Fatal("in-process connection without InprocInfo")
	}
	if _, ok := ModeOf(Inproc(bl)); ok {
		t.Fatal("ModeOf an in-process listener reports a network mode")
	}
}
