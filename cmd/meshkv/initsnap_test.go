package main

import (
	"os"
	"path/filepath"
	"testing"
)

// --initial-snapshot reaches the config from the command line, the
// environment and the config file alike.
func TestInitialSnapshotSetting(t *testing.T) {
	o, err := parseFlags([]string{"--initial-snapshot", "/backups/a.db"}, nil)
	if err != nil || o.cfg.InitialSnapshot != "/backups/a.db" {
		t.Fatalf("flag: %q, %v", o.cfg.InitialSnapshot, err)
	}
	o, err = parseFlags(nil, []string{"MESHKV_INITIAL_SNAPSHOT=/backups/b.db"})
	if err != nil || o.cfg.InitialSnapshot != "/backups/b.db" {
		t.Fatalf("environment: %q, %v", o.cfg.InitialSnapshot, err)
	}
	file := filepath.Join(t.TempDir(), "meshkv.yaml")
	if err := os.WriteFile(file, []byte("initial-snapshot: /backups/c.db\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err = parseFlags([]string{"--config-file", file}, nil)
	if err != nil || o.cfg.InitialSnapshot != "/backups/c.db" {
		t.Fatalf("config file: %q, %v", o.cfg.InitialSnapshot, err)
	}
}
