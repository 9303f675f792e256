package e2e

import (
	"os/exec"
	"syscall"
)

// dieWithTest asks the kernel to kill cmd's process when the test process
// dies, so that a test binary killed by a timeout leaves no server behind.
func dieWithTest(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
