//go:build !(linux || darwin || freebsd)

package mesh

import "syscall"

// closedByPeer cannot peek here; a stale connection is found (and a
// replayable request retried) on first use instead.
func closedByPeer(syscall.RawConn) bool { return false }
