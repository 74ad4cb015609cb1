//go:build linux || darwin || freebsd

package mesh

import "syscall"

// closedByPeer reports whether an idle connection has been closed (or
// reset) by the other side, with one non-blocking peek. Unread data on an
// idle HTTP/1.1 connection is a protocol error too, so it counts.
func closedByPeer(rc syscall.RawConn) bool {
	if rc == nil {
		return false
	}
	closed := false
	var buf [1]byte
	err := rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK:
		case err != nil || n >= 0:
			closed = true
		}
		return true
	})
	return closed || err != nil
}
