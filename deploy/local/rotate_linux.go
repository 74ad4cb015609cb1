package local

import (
	"errors"
	"os"
	"syscall"
)

// fallocFlCollapseRange is FALLOC_FL_COLLAPSE_RANGE from linux/falloc.h.
const fallocFlCollapseRange = 0x08

// collapsible is how much of the front of a file can be collapsed: its
// whole blocks, short of its end (a collapse may not reach the end).
func collapsible(st os.FileInfo) int64 {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok || sys.Blksize <= 0 {
		return 0
	}
	bs, size := int64(sys.Blksize), st.Size() //nolint:unconvert // int32 on some architectures
	n := size / bs * bs
	if n >= size {
		n -= bs
	}
	return max(n, 0)
}

// collapse cuts the first n bytes out of f; the kernel orders it with
// O_APPEND writes (both hold the inode lock).
func collapse(f *os.File, n int64) error {
	for {
		err := syscall.Fallocate(int(f.Fd()), fallocFlCollapseRange, 0, n)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOSYS) {
			return errNoCollapse
		}
		return err
	}
}
