package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// bins are the binaries TestMain builds.
var bins struct {
	etcdctl, etcdutl, etcd, meshkv string
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "meshkv-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	// Linking dominates; the builds run side by side.
	builds := []struct {
		dst       *string
		name, pkg string
	}{
		{&bins.etcdctl, "etcdctl", "go.etcd.io/etcd/etcdctl/v3"},
		{&bins.etcdutl, "etcdutl", "go.etcd.io/etcd/etcdutl/v3"},
		{&bins.etcd, "etcd", "go.etcd.io/etcd/server/v3"},
		{&bins.meshkv, "meshkv", "github.com/meshkv/meshkv/cmd/meshkv"},
	}
	errs := make([]error, len(builds))
	var wg sync.WaitGroup
	for i, b := range builds {
		*b.dst = filepath.Join(dir, b.name)
		wg.Go(func() {
			if msg, err := exec.Command("go", "build", "-o", *b.dst, b.pkg).CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("go build %s: %v\n%s", b.pkg, err, msg)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	return m.Run()
}
