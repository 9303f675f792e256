//go:build !amd64 && !arm64

package cluster

// sysSetns is unknown on this architecture: netns mode reports setns as
// unsupported (ENOSYS) and proxy mode is unaffected.
const sysSetns = -1
