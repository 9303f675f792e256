package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// buildEtcd builds etcd from the nested tests/ module (whatever etcd version
// its go.mod requires) into dir/etcd and returns the binary's path.
func buildEtcd(ctx context.Context, dir string, stderr io.Writer) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	out, err := filepath.Abs(filepath.Join(dir, "etcd"))
	if err != nil {
		return "", err
	}
	fmt.Fprintf(stderr, "chaos: building etcd from %s\n", filepath.Join(root, "tests", "go.mod"))
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "go.etcd.io/etcd/server/v3")
	cmd.Dir = filepath.Join(root, "tests")
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building etcd: %w", err)
	}
	return out, nil
}

// moduleRoot finds the meshkv module's directory: the nearest directory
// upwards from the working directory whose go.mod declares the module.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/meshkv/meshkv\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the meshkv module (run from the repository)")
		}
		dir = parent
	}
}
