package dataplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The data plane's listening sockets outlive its process. The data plane
// hands copies of them (SCM_RIGHTS, as Envoy's hot restart does) to
// whoever connects to its sockets socket (SocketsIn): the control
// plane's [Keeper], which holds them and gives them to the next data
// plane it starts (inherited file descriptors, FileListeners). So a data
// plane killed with SIGKILL leaves its ports listening, held by the
// keeper: connections wait in the backlog until the restarted one
// accepts them, instead of being refused. An upgrade starts the new
// program on the same sockets beside the old one, which then drains its
// in-flight requests and exits: no connection is refused and none is
// cut. The admin socket is handed over too, so the control plane's
// pushes reach whichever data plane serves.

// SocketsIn is the socket the data plane whose state directory is dir
// hands copies of its listening sockets on.
func SocketsIn(dir string) string { return dir + string(os.PathSeparator) + "sockets.sock" }

// Socket is a copy of one of a data plane's listening sockets.
type Socket struct {
	// Name says what it is: "admin", "gateway", "service NAME".
	Name    string   `json:"name"`
	Network string   `json:"network"` // tcp, unix
	Addr    string   `json:"addr"`
	File    *os.File `json:"-"`
}

// listenerKey names a listener by its address, as inherited listeners
// are matched.
func listenerKey(ln net.Listener) string { return ln.Addr().Network() + ":" + ln.Addr().String() }

// dupFD copies a listener's descriptor (close-on-exec, and non-blocking
// as the listener is: net's File would make it blocking for every holder
// of the socket).
func dupFD(ln net.Listener) (*os.File, error) {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("listener %s has no descriptor", ln.Addr())
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var nfd uintptr
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		nfd, _, errno = syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return nil, err
	}
	if errno != 0 {
		return nil, fmt.Errorf("copy the descriptor of %s: %w", ln.Addr(), errno)
	}
	return os.NewFile(nfd, ln.Addr().Network()+":"+ln.Addr().String()), nil
}

// FileListeners turns the n listening sockets a data plane inherited
// (file descriptors 3 to 3+n-1, as supervise.FilesEnv counts them) into
// listeners, for Config.Inherited.
func FileListeners(n int) ([]net.Listener, error) {
	var out []net.Listener
	for i := 0; i < n; i++ {
		f := os.NewFile(uintptr(3+i), fmt.Sprintf("inherited-%d", i))
		if f == nil {
			continue
		}
		ln, err := net.FileListener(f)
		_ = f.Close()
		if err != nil {
			for _, l := range out {
				_ = l.Close()
			}
			return nil, fmt.Errorf("dataplane: inherited descriptor %d: %w", 3+i, err)
		}
		out = append(out, ln)
	}
	return out, nil
}

// maxSockets bounds the descriptors of one hand-over (the kernel's
// SCM_MAX_FD is 253).
const maxSockets = 250

// serveSockets answers every connection on ln with copies of the
// listening sockets list returns, until ln is closed.
func serveSockets(ln *net.UnixListener, list func() ([]Socket, error), log func(string, ...any)) {
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			return
		}
		go func() {
			defer func() { _ = c.Close() }()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			socks, err := list()
			if err != nil {
				log("dataplane: listening sockets not handed over", "err", err)
				return
			}
			defer closeSockets(socks)
			if len(socks) > maxSockets {
				log("dataplane: too many listening sockets to hand over", "count", len(socks))
				return
			}
			data, err := json.Marshal(socks)
			if err != nil {
				return
			}
			fds := make([]int, len(socks))
			for i, s := range socks {
				fds[i] = int(s.File.Fd())
			}
			if _, _, err := c.WriteMsgUnix(append(data, '\n'), syscall.UnixRights(fds...), nil); err != nil {
				log("dataplane: listening sockets not handed over", "err", err)
			}
		}()
	}
}

func closeSockets(socks []Socket) {
	for _, s := range socks {
		if s.File != nil {
			_ = s.File.Close()
		}
	}
}

// FetchSockets asks the data plane whose state directory is dir for
// copies of its listening sockets. The caller closes their files.
func FetchSockets(ctx context.Context, dir string) ([]Socket, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", SocketsIn(dir))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	defer func() { _ = conn.Close() }()
	c := conn.(*net.UnixConn)
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	buf := make([]byte, 64<<10)
	oob := make([]byte, syscall.CmsgSpace(4*maxSockets))
	n, oobn, flags, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, fmt.Errorf("dataplane: listening sockets: %w", err)
	}
	var fds []int
	if oobn > 0 {
		msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return nil, fmt.Errorf("dataplane: listening sockets: %w", err)
		}
		for _, m := range msgs {
			got, err := syscall.ParseUnixRights(&m)
			if err == nil {
				fds = append(fds, got...)
			}
		}
	}
	files := make([]*os.File, len(fds))
	for i, fd := range fds {
		files[i] = os.NewFile(uintptr(fd), fmt.Sprintf("socket-%d", i))
	}
	fail := func(err error) ([]Socket, error) {
		for _, f := range files {
			_ = f.Close()
		}
		return nil, fmt.Errorf("dataplane: listening sockets: %w", err)
	}
	if flags&syscall.MSG_CTRUNC != 0 {
		return fail(errors.New("descriptors cut short"))
	}
	rest, err := io.ReadAll(c)
	if err != nil {
		return fail(err)
	}
	var socks []Socket
	if err := json.Unmarshal(append(buf[:n:n], rest...), &socks); err != nil {
		return fail(err)
	}
	if len(socks) != len(files) {
		return fail(fmt.Errorf("%d sockets named, %d descriptors received", len(socks), len(files)))
	}
	for i := range socks {
		socks[i].File = files[i]
	}
	return socks, nil
}

// Keeper holds copies of a data plane's listening sockets for its
// supervisor (the control plane), to give to the next data plane it
// starts (Files) and keep them listening in between. Its methods are
// safe for concurrent use.
type Keeper struct {
	dir  string
	mu   sync.Mutex
	held []Socket
}

// NewKeeper keeps the sockets of the data plane whose state directory is
// dir.
func NewKeeper(dir string) *Keeper { return &Keeper{dir: dir} }

// Sync replaces the copies held with the data plane's current listening
// sockets (a listener the data plane closed is let go too). A data plane
// that does not answer leaves the copies as they are.
func (k *Keeper) Sync(ctx context.Context) error {
	socks, err := FetchSockets(ctx, k.dir)
	if err != nil {
		return err
	}
	k.mu.Lock()
	old := k.held
	k.held = socks
	k.mu.Unlock()
	closeSockets(old)
	return nil
}

// Files returns copies of the sockets held, for a process to inherit
// (supervise.Spec.ExtraFiles); the caller closes them.
func (k *Keeper) Files() []*os.File {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []*os.File
	for _, s := range k.held {
		r, _, errno := syscall.Syscall(syscall.SYS_FCNTL, s.File.Fd(), syscall.F_DUPFD_CLOEXEC, 0)
		if errno == 0 {
			out = append(out, os.NewFile(r, s.Name))
		}
	}
	return out
}

// Sockets are the sockets held (their files are the keeper's).
func (k *Keeper) Sockets() []Socket {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]Socket(nil), k.held...)
}

// Covers reports whether the TCP sockets held are exactly an
// acknowledgement's listeners (the services' and the gateway's).
func (k *Keeper) Covers(ack *Ack) bool {
	want := map[string]bool{}
	for _, a := range ack.Listeners {
		want[a] = true
	}
	if ack.Gateway != "" {
		want[ack.Gateway] = true
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for _, s := range k.held {
		if s.Network != "tcp" {
			continue
		}
		if !want[s.Addr] {
			return false
		}
		n++
	}
	return n == len(want)
}

// String lists the sockets held.
func (k *Keeper) String() string {
	var names []string
	for _, s := range k.Sockets() {
		names = append(names, s.Name+" "+s.Addr)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// Close lets every socket held go.
func (k *Keeper) Close() {
	k.mu.Lock()
	old := k.held
	k.held = nil
	k.mu.Unlock()
	closeSockets(old)
}
