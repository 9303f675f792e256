package meshkv_test

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// goList runs `go list -json` over the main module's packages.
func goList(t *testing.T) []listedPackage {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []listedPackage
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p listedPackage
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) == 0 {
		t.Fatal("go list found no packages")
	}
	return pkgs
}

type listedPackage struct {
	ImportPath string
	Doc        string
	Imports    []string
	Deps       []string
}

// TestPackageDocs fails for any package without a doc comment.
func TestPackageDocs(t *testing.T) {
	for _, p := range goList(t) {
		if strings.TrimSpace(p.Doc) == "" {
			t.Errorf("package %s has no doc comment", p.ImportPath)
		}
	}
}

// TestDependencyDirection enforces the layering in the design: lower packages
// never import upper ones or transports they are meant not to know. Project
// packages and mesh are checked transitively; gRPC only for direct imports
// (etcd's generated protos pull it in everywhere).
func TestDependencyDirection(t *testing.T) {
	const mod = "github.com/meshkv/meshkv"
	const grpc = "google.golang.org/grpc"
	forbidden := map[string][]string{
		mod + "/kvapi/mvcc":  {"go.etcd.io/raft/v3", grpc, "github.com/weaveworks/mesh", mod + "/kvapi", mod + "/raftadapter", mod + "/meshtransport"},
		mod + "/kvapi":       {"github.com/weaveworks/mesh", mod + "/meshtransport", mod + "/raftadapter"},
		mod + "/raftadapter": {"github.com/weaveworks/mesh", grpc, mod + "/kvapi", mod + "/meshtransport"},
		// The snapshot file format knows nothing of meshkv's store; the glue
		// knows the store and the format only.
		mod + "/internal/etcdsnap": {mod + "/kvapi", "go.etcd.io/raft/v3", grpc, "github.com/weaveworks/mesh", mod + "/raftadapter", mod + "/meshtransport"},
		mod + "/internal/backup":   {"go.etcd.io/raft/v3", grpc, "github.com/weaveworks/mesh", mod + "/raftadapter", mod + "/meshtransport"},
		mod + "/meshtransport":     {mod + "/kvapi", mod + "/raftadapter", grpc},
		// The auth core: etcd's protos, the standard library, bcrypt and JWT.
		mod + "/kvapi/auth":         {"go.etcd.io/raft/v3", grpc, "github.com/weaveworks/mesh", mod + "/kvapi", mod + "/raftadapter", mod + "/meshtransport", mod + "/internal"},
		mod + "/internal/tlsconfig": {grpc, mod + "/kvapi", mod + "/raftadapter", mod + "/meshtransport"},
	}
	// Direct imports only: the binary reaches the store and the consensus
	// layer through the root package's façade, never around it.
	forbiddenDirect := map[string][]string{
		mod + "/cmd/meshkv": {mod + "/kvapi", mod + "/raftadapter", mod + "/meshtransport", mod + "/internal/membership", mod + "/internal/bootstrap"},
	}
	for _, p := range goList(t) {
		for _, b := range forbiddenDirect[p.ImportPath] {
			for _, d := range p.Imports {
				if d == b || strings.HasPrefix(d, b+"/") {
					t.Errorf("%s imports %s directly (forbidden: %s; go through the root package)", p.ImportPath, d, b)
				}
			}
		}
		for _, b := range forbidden[p.ImportPath] {
			deps := p.Deps
			if b == grpc {
				deps = p.Imports
			}
			for _, d := range deps {
				if (d == b || strings.HasPrefix(d, b+"/")) && !strings.HasPrefix(d, p.ImportPath+"/") {
					t.Errorf("%s imports %s (forbidden: %s)", p.ImportPath, d, b)
				}
			}
		}
	}
}

// TestNoTestingInProduction fails when a production package links the
// testing package (directly or through a dependency). Helper packages for
// tests, whose names end in "test" (raftadaptertest, meshtransporttest,
// tlstest), are exempt.
func TestNoTestingInProduction(t *testing.T) {
	for _, p := range goList(t) {
		if strings.HasSuffix(p.ImportPath, "test") {
			continue
		}
		for _, d := range p.Deps {
			if d == "testing" {
				t.Errorf("%s links the testing package", p.ImportPath)
			}
		}
	}
}

// TestLeanModule checks that embedding meshkv does not pull in etcd's server.
func TestLeanModule(t *testing.T) {
	out, err := exec.Command("go", "mod", "graph").Output()
	if err != nil {
		t.Fatalf("go mod graph: %v", err)
	}
	if strings.Contains(string(out), "go.etcd.io/etcd/server/v3") {
		t.Fatal("the main module's graph names go.etcd.io/etcd/server/v3; keep etcd's server in tests/")
	}
}

// TestLowestGoDirective keeps go.mod's go directive at the lowest version the
// dependencies allow, so that embedders are not forced onto a newer Go than
// necessary: it must equal the highest go directive among the modules the
// build needs.
func TestLowestGoDirective(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-json", "all").Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	type module struct {
		Path      string
		Main      bool
		GoVersion string
	}
	var main module
	highest, by := "", ""
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var m module
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		if m.Main {
			main = m
			continue
		}
		if m.GoVersion != "" && gover(m.GoVersion) > gover(highest) {
			highest, by = m.GoVersion, m.Path
		}
	}
	// Only modules that the main module's packages import matter, but `all`
	// includes test-only ones too; the bound is therefore conservative.
	if gover(main.GoVersion) > gover(highest) {
		t.Errorf("go.mod says go %s, but no dependency needs more than go %s (%s): lower it", main.GoVersion, highest, by)
	}
}

// gover makes a go version comparable as a string: "1.26.0" -> "001026000".
func gover(v string) string {
	var out strings.Builder
	parts := strings.SplitN(v, ".", 3)
	for len(parts) < 3 {
		parts = append(parts, "0")
	}
	for _, p := range parts {
		n := 0
		for _, c := range p {
			if c < '0' || c > '9' {
				break
			}
			n = n*10 + int(c-'0')
		}
		fmt.Fprintf(&out, "%03d", n)
	}
	return out.String()
}
