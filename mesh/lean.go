package mesh

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/flotilla-ci/flotilla/identity"
)

// leanTransport is an HTTP/1.1 client for one endpoint that does the whole
// exchange on the calling goroutine: write the request, read the response
// head, hand the body back; the connection returns to the pool when the
// body is done. net/http's Transport instead hands each request to a
// writer and a reader goroutine per connection, which costs two extra
// goroutine wake-ups per request: at a moderate rate on a small machine
// those wake-ups are most of a Go proxy's added latency (see
// bench/README.md). Upgrades (WebSocket) go to the standard transport.
type leanTransport struct {
	addr    string
	dialer  *net.Dialer
	maxIdle int
	std     *http.Transport  // for upgrades
	tls     *identity.Dialer // mutual TLS over each connection; nil: plaintext

	mu   sync.Mutex
	idle []*leanConn
}

type leanConn struct {
	t    *leanTransport
	c    net.Conn
	rc   syscall.RawConn // for the peek; nil when c has none
	br   *bufio.Reader
	bw   *bufio.Writer
	idle time.Time // since when it is in the pool
}

// peekAfter is how long a pooled connection may sit idle before it is
// peeked at for a close before reuse even by a request that could be sent
// again (one without a body). Servers close idle connections after
// seconds (net/http's IdleTimeout, nginx's keepalive_timeout 75s, Node's
// 5s); a request without a body that meets a connection closed sooner is
// retried on a fresh one (errStale), so the peek, a system call, is kept
// for what cannot be retried.
const peekAfter = time.Second

var (
	bufReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 16<<10) }}
	bufWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 16<<10) }}
)

func newLeanTransport(addr string, maxIdle int, std *http.Transport) *leanTransport {
	return &leanTransport{
		addr:    addr,
		dialer:  &net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second},
		maxIdle: maxIdle,
		std:     std,
	}
}

func (t *leanTransport) get(ctx context.Context, replayable bool) (*leanConn, bool, error) {
	var now time.Time
	for {
		t.mu.Lock()
		n := len(t.idle)
		if n == 0 {
			t.mu.Unlock()
			break
		}
		pc := t.idle[n-1]
		t.idle[n-1] = nil
		t.idle = t.idle[:n-1]
		t.mu.Unlock()
		// The server may have closed it while it was idle (its idle
		// timeout, a restart): a peek without waiting tells.
		if !replayable || now.IsZero() {
			now = time.Now()
		}
		if (!replayable || now.Sub(pc.idle) >= peekAfter) && closedByPeer(pc.rc) {
			pc.close()
			continue
		}
		return pc, true, nil
	}
	c, err := t.dialer.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return nil, false, err
	}
	// The peek looks at the TCP connection under TLS: a close_notify or
	// a close from the instance both read as closed.
	var rc syscall.RawConn
	if sc, ok := c.(syscall.Conn); ok {
		rc, _ = sc.SyscallConn()
	}
	if t.tls != nil {
		tc, err := t.tls.Handshake(ctx, c)
		var rh tls.RecordHeaderError
		switch {
		case err != nil && t.tls.Fallback && errors.As(err, &rh):
			// Permissive: an instance that does not speak TLS.
			if c, err = t.dialer.DialContext(ctx, "tcp", t.addr); err != nil {
				return nil, false, err
			}
			rc = nil
			if sc, ok := c.(syscall.Conn); ok {
				rc, _ = sc.SyscallConn()
			}
		case err != nil:
			// Nothing of the request was sent: a dial error, retried
			// on another endpoint.
			return nil, false, &net.OpError{Op: "dial", Net: "tcp", Err: err}
		default:
			c = tc
		}
	}
	br := bufReaders.Get().(*bufio.Reader)
	br.Reset(c)
	bw := bufWriters.Get().(*bufio.Writer)
	bw.Reset(c)
	pc := &leanConn{t: t, c: c, br: br, bw: bw, rc: rc}
	return pc, false, nil
}

func (t *leanTransport) put(pc *leanConn) {
	pc.idle = time.Now()
	t.mu.Lock()
	if len(t.idle) < t.maxIdle {
		t.idle = append(t.idle, pc)
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	pc.close()
}

func (pc *leanConn) close() {
	_ = pc.c.Close()
	pc.br.Reset(nil)
	bufReaders.Put(pc.br)
	pc.bw.Reset(nil)
	bufWriters.Put(pc.bw)
	pc.br, pc.bw = nil, nil
}

// CloseIdleConnections closes the pooled connections.
func (t *leanTransport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.mu.Unlock()
	for _, pc := range idle {
		pc.close()
	}
	t.std.CloseIdleConnections()
}

var errStale = errors.New("stale pooled connection")

// RoundTrip implements http.RoundTripper.
func (t *leanTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if len(req.Header["Upgrade"]) > 0 {
		return t.std.RoundTrip(req)
	}
	ctx := req.Context()
	replayable := req.Body == nil || req.Body == http.NoBody
	for {
		pc, reused, err := t.get(ctx, replayable)
		if err != nil {
			return nil, err
		}
		resp, err := pc.roundTrip(ctx, req)
		if err == nil {
			return resp, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// The connection's deadline is the request's: it may
			// fire a moment before the context's timer.
			return nil, fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
		}
		// A pooled connection the server closed while idle fails before
		// any byte of a response: try a fresh one, as net/http does, when
		// the request can be sent again.
		if reused && errors.Is(err, errStale) && (req.Body == nil || req.Body == http.NoBody || untouched(req.Body)) {
			// The others in the pool may be stale too (a restart):
			// peek at them from now on.
			replayable = false
			continue
		}
		return nil, err
	}
}

func untouched(b io.ReadCloser) bool {
	tb, ok := b.(*trackedBody)
	return ok && !tb.touched.Load()
}

func (pc *leanConn) roundTrip(ctx context.Context, req *http.Request) (*http.Response, error) {
	// Cancellation (a timeout, the caller gone) unblocks I/O through the
	// connection's deadline.
	//
	// A request the mesh's own server took ends only by its deadline
	// (nothing cancels its parent context): the deadline goes on the
	// connection as it is, without a watcher on the context.
	var stop func() bool
	deadline, ok := ctx.Deadline()
	if st, _ := ctx.Value(stateKey{}).(*reqState); ok && st != nil && st.deadlineOnly {
		_ = pc.c.SetDeadline(deadline)
		stop = func() bool { return true } // never called: see leanBody.finish
	} else {
		deadline = time.Time{}
		stop = context.AfterFunc(ctx, func() { _ = pc.c.SetDeadline(time.Unix(1, 0)) })
	}
	if err := req.Write(pc.bw); err != nil {
		stop()
		pc.close()
		return nil, fmt.Errorf("write request: %w", err)
	}
	if err := pc.bw.Flush(); err != nil {
		stop()
		pc.close()
		return nil, errStaleOr(err)
	}
	var resp *http.Response
	for {
		var err error
		resp, err = http.ReadResponse(pc.br, req)
		if err != nil {
			stop()
			pc.close()
			return nil, errStaleOr(err)
		}
		if resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			_ = resp.Body.Close()
			continue // an interim response: the final one follows
		}
		break
	}
	resp.Body = &leanBody{rc: resp.Body, pc: pc, stop: stop, deadline: deadline, reuse: !resp.Close && !req.Close}
	return resp, nil
}

// errStaleOr marks a failure to get the response's first byte (EOF or a
// reset on a connection the server closed) so RoundTrip can retry it.
func errStaleOr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isReset(err) {
		return fmt.Errorf("%w: %w", errStale, err)
	}
	return err
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op != "dial"
}

// leanBody returns the connection to the pool once the body is read to
// the end; a body closed early closes the connection.
type leanBody struct {
	rc   io.ReadCloser
	pc   *leanConn
	stop func() bool
	// deadline, when set, is on the connection in place of stop's
	// watcher.
	deadline time.Time
	reuse    bool
	done     bool
}

func (b *leanBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.finish(true)
	} else if err != nil {
		b.finish(false)
	}
	return n, err
}

func (b *leanBody) Close() error {
	if b.done {
		return nil
	}
	// Drain a little so the connection can be kept.
	_, err := io.CopyN(io.Discard, b.rc, 4<<10)
	b.finish(errors.Is(err, io.EOF))
	return nil
}

func (b *leanBody) finish(clean bool) {
	if b.done {
		return
	}
	b.done = true
	var fired bool
	if !b.deadline.IsZero() {
		fired = !time.Now().Before(b.deadline)
		if !fired {
			_ = b.pc.c.SetDeadline(time.Time{})
		}
	} else {
		fired = !b.stop()
	}
	_ = b.rc.Close()
	if clean && b.reuse && !fired && b.pc.br.Buffered() == 0 {
		b.pc.t.put(b.pc)
		return
	}
	b.pc.close()
}
