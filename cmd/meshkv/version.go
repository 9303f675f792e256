package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/meshkv/meshkv"
)

// printVersion prints meshkv's version with what the build recorded: the
// VCS revision and time (and whether the tree was modified), the Go version
// and the platform.
func printVersion(w io.Writer) {
	fmt.Fprintf(w, "meshkv Version: %s\n", meshkv.Version)
	fmt.Fprintf(w, "etcd API Version: %s\n", meshkv.APIVersion)
	rev, when, modified := "unknown", "", false
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				when = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if modified {
		rev += " (modified)"
	}
	fmt.Fprintf(w, "Git SHA: %s\n", rev)
	if when != "" {
		fmt.Fprintf(w, "Commit time: %s\n", when)
	}
	fmt.Fprintf(w, "Go Version: %s\n", runtime.Version())
	fmt.Fprintf(w, "Go OS/Arch: %s/%s\n", runtime.GOOS, runtime.GOARCH)
}
