package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Log rotation (the package doc says why it works from the side): the
// front of a version's log is copied to name.log.1 and cut from the live
// file in place, by collapsing whole blocks where the file system can
// (ext4, XFS) or else by copying the rest and truncating. Readers
// ([LogReader]) and the rotation share a flock on the live file, so a
// reader sees a rotation whole or not at all, and a follower finds what it
// had not read yet at the end of the files rotated meanwhile.

// rotatedName is the name of the i-th rotated file of a log (1 the newest).
func rotatedName(path string, i int) string { return path + "." + strconv.Itoa(i) }

// errNoCollapse says the file system cannot collapse a range of a file.
var errNoCollapse = errors.New("collapse range not supported")

// rotateLog rotates the log at path, keeping maxFiles files with the live
// one. It reports whether what was cut from the live file was cut in place
// without loss (false: copy and truncate).
func rotateLog(path string, maxFiles int) (lossless bool, err error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return false, err
	}
	defer func() { _ = f.Close() }()
	if err := flock(f, syscall.LOCK_EX); err != nil {
		return false, err
	}
	defer func() { _ = flock(f, syscall.LOCK_UN) }()
	st, err := f.Stat()
	if err != nil {
		return false, err
	}
	// The whole blocks before the last one can be collapsed; copy them.
	n := collapsible(st)
	tmp := path + ".rotating"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return false, err
	}
	if _, err := io.Copy(out, io.NewSectionReader(f, 0, n)); err != nil {
		_ = out.Close()
		_ = os.Remove(tmp)
		return false, fmt.Errorf("copy to %s: %w", tmp, err)
	}
	// Shift the rotated files, dropping the oldest, and put the copy in
	// as .1 before anything leaves the live file: a crash in between
	// shows lines twice rather than losing them.
	if err := os.Remove(rotatedName(path, maxFiles-1)); err != nil && !errors.Is(err, os.ErrNotExist) {
		_ = out.Close()
		return false, err
	}
	for i := maxFiles - 2; i >= 1; i-- {
		if err := os.Rename(rotatedName(path, i), rotatedName(path, i+1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			_ = out.Close()
			return false, err
		}
	}
	if err := os.Rename(tmp, rotatedName(path, 1)); err != nil {
		_ = out.Close()
		return false, err
	}
	if n > 0 {
		if err := collapse(f, n); err == nil {
			return true, out.Close()
		}
	}
	// Copy what is left, until nothing more comes, and truncate.
	off := n
	for {
		c, err := io.Copy(out, io.NewSectionReader(f, off, 1<<62))
		if err != nil {
			_ = out.Close()
			return false, fmt.Errorf("copy to %s: %w", rotatedName(path, 1), err)
		}
		off += c
		if c == 0 {
			break
		}
	}
	if err := f.Truncate(0); err != nil {
		_ = out.Close()
		return false, err
	}
	return false, out.Close()
}

func flock(f *os.File, how int) error {
	for {
		err := syscall.Flock(int(f.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// rotator rotates one version's log while the version runs.
type rotator struct {
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// rotateLogs starts rotating a version's log file.
func (t *Target) rotateLogs(v *version) {
	if t.cfg.LogMaxSize < 0 {
		return
	}
	r := &rotator{stop: make(chan struct{}), done: make(chan struct{})}
	v.rot = r
	path := t.LogFile(v.spec.Service, v.spec.Version)
	if len(v.insts) > 0 {
		path = v.insts[0].logPath // an adopted version's, from state.json
	}
	go func() {
		defer close(r.done)
		tick := time.NewTicker(t.cfg.LogCheckInterval)
		defer tick.Stop()
		warned := false
		for {
			select {
			case <-r.stop:
				return
			case <-tick.C:
			}
			if err := t.checkLog(v, path); err != nil {
				if !warned {
					t.log.Warn("rotate log", "service", v.spec.Service, "version", v.spec.Version, "path", path, "err", err)
					warned = true
				}
				continue
			}
			warned = false
		}
	}()
}

// checkLog is one check of a version's log: rotated when past
// LogMaxSize.
func (t *Target) checkLog(v *version, path string) error {
	st, err := os.Stat(path)
	if err != nil || st.Size() <= t.cfg.LogMaxSize {
		return nil
	}
	lossless, err := rotateLog(path, t.cfg.LogMaxFiles)
	if err != nil {
		return err
	}
	t.log.Debug("log rotated", "service", v.spec.Service, "version", v.spec.Version, "path", path, "size", st.Size(), "in_place", lossless)
	return nil
}

// stopRotation stops rotating a version's log and waits for a rotation
// under way to finish.
func (v *version) stopRotation() {
	if v.rot == nil {
		return
	}
	v.rot.once.Do(func() { close(v.rot.stop) })
	<-v.rot.done
}

// LogReader reads a version's log and its rotated files as one stream,
// oldest first. Its methods are not safe for concurrent use.
type LogReader struct {
	path string
	f    *os.File    // the live file, read and locked
	pos  int64       // what has been read of it
	rot1 os.FileInfo // name.log.1 when last read (nil: none)
}

// OpenLog opens the log at path (a version's name.log) for reading.
func OpenLog(path string) (*LogReader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	return &LogReader{path: path, f: f}, nil
}

// Close closes the reader.
func (r *LogReader) Close() error { return r.f.Close() }

// Tail writes the last n lines of the log (all of it when n is 0), the
// rotated files included, and leaves the reader at the end for Follow.
func (r *LogReader) Tail(w io.Writer, n int) error {
	if err := flock(r.f, syscall.LOCK_SH); err != nil {
		return err
	}
	data, err := r.tail(n)
	_ = flock(r.f, syscall.LOCK_UN)
	if err != nil {
		return err
	}
	if n > 0 {
		s := bytes.TrimSuffix(data, []byte("\n"))
		if i := lastLines(s, n); i > 0 {
			data = data[i:]
		}
	}
	_, err = w.Write(data)
	return err
}

// tail reads, newest file first, until it has more than n lines (all
// files when n is 0), and returns them oldest first. Called locked.
func (r *LogReader) tail(n int) ([]byte, error) {
	live, err := io.ReadAll(io.NewSectionReader(r.f, 0, 1<<62))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", r.path, err)
	}
	r.pos = int64(len(live))
	r.rot1, _ = os.Stat(rotatedName(r.path, 1))
	chunks := [][]byte{live}
	lines := bytes.Count(live, []byte("\n"))
	for i := 1; n == 0 || lines <= n; i++ {
		b, err := os.ReadFile(rotatedName(r.path, i))
		if errors.Is(err, os.ErrNotExist) {
			break
		}
		if err != nil {
			return nil, err
		}
		chunks = append(chunks, b)
		lines += bytes.Count(b, []byte("\n"))
	}
	var out []byte
	for i := len(chunks) - 1; i >= 0; i-- {
		out = append(out, chunks[i]...)
	}
	return out, nil
}

// lastLines returns the offset in s (a log without its final newline)
// where its last n lines begin.
func lastLines(s []byte, n int) int {
	i := len(s)
	for ; n > 0; n-- {
		j := bytes.LastIndexByte(s[:i], '\n')
		if j < 0 {
			return 0
		}
		i = j
	}
	return i + 1
}

// Follow writes what is appended to the log, across rotations, checking
// every interval, until ctx is done.
func (r *LogReader) Follow(ctx context.Context, w io.Writer, every time.Duration) error {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		data, err := r.next()
		if err != nil {
			return err
		}
		if len(data) > 0 {
			if _, err := w.Write(data); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// next returns what was written since the last read: the rest of the
// files rotated meanwhile, then the live file's new lines.
func (r *LogReader) next() ([]byte, error) {
	if err := flock(r.f, syscall.LOCK_SH); err != nil {
		return nil, err
	}
	defer func() { _ = flock(r.f, syscall.LOCK_UN) }()
	var out []byte
	rot1, _ := os.Stat(rotatedName(r.path, 1))
	if rot1 != nil && (r.rot1 == nil || !os.SameFile(r.rot1, rot1)) {
		// Rotated since: the files newer than the one that was .1 (all of
		// them when there was none) hold, oldest first, what followed
		// what was read; the position counts through them.
		var fresh []string
		for i := 1; ; i++ {
			st, err := os.Stat(rotatedName(r.path, i))
			if err != nil || (r.rot1 != nil && os.SameFile(r.rot1, st)) {
				break
			}
			fresh = append(fresh, rotatedName(r.path, i))
		}
		for i := len(fresh) - 1; i >= 0; i-- {
			b, err := os.ReadFile(fresh[i])
			if err != nil {
				return nil, err
			}
			if r.pos < int64(len(b)) {
				out = append(out, b[r.pos:]...)
				r.pos = 0
			} else {
				r.pos -= int64(len(b))
			}
		}
	}
	r.rot1 = rot1
	if st, err := r.f.Stat(); err == nil && st.Size() < r.pos {
		r.pos = 0 // truncated by someone else
	}
	b, err := io.ReadAll(io.NewSectionReader(r.f, r.pos, 1<<62))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", r.path, err)
	}
	r.pos += int64(len(b))
	return append(out, b...), nil
}
