//go:build !(linux || darwin || freebsd)

package mesh

import "net"

// closedByPeer cannot peek here; a stale connection is found (and a
// replayable request retried) on first use instead.
func closedByPeer(net.Conn) bool { return false }
