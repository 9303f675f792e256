package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the README's table of etcd flags from etcdflags.go")

const (
	tableBegin = "<!-- etcd-flags:begin (generated from cmd/meshkv/etcdflags.go: go test ./cmd/meshkv -run TestREADMEEtcdTable -update) -->"
	tableEnd   = "<!-- etcd-flags:end -->"
)

// etcdFlagTable renders etcdFlags as the README's markdown table.
func etcdFlagTable() string {
	var b strings.Builder
	b.WriteString("| etcd flag | meshkv | notes |\n|---|---|---|\n")
	for _, f := range etcdFlags {
		what := map[treatment]string{same: "same", mapped: "translated", ignored: "accepted, ignored", refused: "refused"}[f.treat]
		fmt.Fprintf(&b, "| `--%s` | %s | %s |\n", f.name, what, f.why)
	}
	return b.String()
}

// TestREADMEEtcdTable keeps the README's "Coming from etcd" table equal to
// etcdflags.go.
func TestREADMEEtcdTable(t *testing.T) {
	const path = "../../README.md"
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	i, j := strings.Index(readme, tableBegin), strings.Index(readme, tableEnd)
	if i < 0 || j < i {
		t.Fatalf("README.md lacks the markers %q ... %q", tableBegin, tableEnd)
	}
	want := readme[:i] + tableBegin + "\n" + etcdFlagTable() + readme[j:]
	if want == readme {
		return
	}
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatal("README.md's etcd flag table is stale: go test ./cmd/meshkv -run TestREADMEEtcdTable -update")
}
