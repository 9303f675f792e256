//go:build !linux

package client36

import "os/exec"

// setDeathSignal does nothing where the kernel has no parent-death signal;
// the tests' cleanup still stops the server.
func setDeathSignal(*exec.Cmd) {}
