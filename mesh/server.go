package mesh

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// connServer serves HTTP/1.1 with one keep-alive loop per connection that
// runs the handler on the connection's own goroutine. net/http's server
// also starts a background read on the connection for every request
// without a body (to notice a client that goes away) and stops it when the
// handler returns: a goroutine start and two wake-ups per request that a
// proxy hop on a small machine feels. Here a client that goes away is
// noticed when the response is written, and the request's timeout bounds
// the work meanwhile.
type connServer struct {
	h           http.Handler
	log         *slog.Logger
	idleTimeout time.Duration

	mu      sync.Mutex
	conns   map[*srvConn]struct{}
	ln      net.Listener
	closing atomic.Bool
}

type srvConn struct {
	c      net.Conn
	active atomic.Bool
	// served is set once a request was read: before, the connection is
	// new, not idle (its first request may be on its way), and Shutdown
	// leaves it newConnGrace to send it.
	served   atomic.Bool
	accepted time.Time
}

// newConnGrace is how long Shutdown waits for the first request of a
// connection accepted just before it: a listening socket handed over to
// another process (dataplane) goes on accepting there, and a connection
// this process accepted last must still get its answer. A client sends
// its request right after connecting, so a second is ample; net/http
// waits 5 s, which would hold a shutdown up for connections that never
// send anything.
const newConnGrace = time.Second

func newConnServer(h http.Handler, log *slog.Logger) *connServer {
	return &connServer{h: h, log: log, idleTimeout: 2 * time.Minute, conns: map[*srvConn]struct{}{}}
}

// Serve accepts connections until Shutdown.
func (s *connServer) Serve(ln net.Listener) error {
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return http.ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		sc := &srvConn{c: c, accepted: time.Now()}
		s.mu.Lock()
		if s.closing.Load() {
			s.mu.Unlock()
			_ = c.Close()
			continue
		}
		s.conns[sc] = struct{}{}
		s.mu.Unlock()
		go s.serveConn(sc)
	}
}

// Shutdown stops accepting, closes idle connections, and waits for the
// active ones to finish their request (or ctx to end, then closes them).
func (s *connServer) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	s.mu.Lock()
	if s.ln != nil {
		_ = s.ln.Close()
	}
	s.mu.Unlock()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		n := 0
		for sc := range s.conns {
			if !sc.active.Load() && (sc.served.Load() || time.Since(sc.accepted) > newConnGrace) {
				_ = sc.c.Close()
				delete(s.conns, sc)
				continue
			}
			n++
		}
		s.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			s.mu.Lock()
			for sc := range s.conns {
				_ = sc.c.Close()
			}
			s.mu.Unlock()
			return fmt.Errorf("shutdown: %d connections still active: %w", n, ctx.Err())
		case <-tick.C:
		}
	}
}

func (s *connServer) forget(sc *srvConn) {
	s.mu.Lock()
	delete(s.conns, sc)
	s.mu.Unlock()
}

func (s *connServer) serveConn(sc *srvConn) {
	c := sc.c
	lr := &limitedConn{Conn: c}
	br := bufReaders.Get().(*bufio.Reader)
	br.Reset(lr)
	bw := bufWriters.Get().(*bufio.Writer)
	bw.Reset(c)
	hijacked := false
	defer func() {
		s.forget(sc)
		if hijacked {
			return // the handler owns the connection and its buffers
		}
		_ = c.Close()
		br.Reset(nil)
		bufReaders.Put(br)
		bw.Reset(nil)
		bufWriters.Put(bw)
	}()
	remote := c.RemoteAddr().String()
	// The caller's verified identity, known once the first request has
	// been read (the handshake is done by then).
	var peer []string
	peerKnown := false
	// The idle timeout is a read deadline, re-armed only when a second has
	// passed since it was last set (each setting takes the runtime's timer
	// lock), and cleared only for a request that reads from the connection
	// (a body, an upgrade): the handler of any other does not read it.
	var armed time.Time
	for {
		if now := time.Now(); now.Sub(armed) >= time.Second {
			_ = c.SetReadDeadline(now.Add(s.idleTimeout))
			armed = now
		}
		lr.n = maxHeaderBytes
		req, err := http.ReadRequest(br)
		lr.n = math.MaxInt64
		if err != nil {
			var ne net.Error
			if errors.Is(err, errHeaderTooLarge) {
				_, _ = io.WriteString(c, "HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: 36\r\n\r\n431 request header fields too large\n")
				return
			}
			if !errors.Is(err, io.EOF) && (!errors.As(err, &ne) || !ne.Timeout()) && !errors.Is(err, net.ErrClosed) {
				_, _ = io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: 16\r\n\r\n400 bad request\n")
			}
			return
		}
		sc.active.Store(true)
		sc.served.Store(true)
		if (req.Body != nil && req.Body != http.NoBody) || len(req.Header["Upgrade"]) > 0 {
			_ = c.SetReadDeadline(time.Time{})
			armed = time.Time{}
		}
		req.RemoteAddr = remote
		if !peerKnown {
			peer, peerKnown = peerValue(c), true
		}
		delete(req.Header, PeerHeader)
		if peer != nil {
			req.Header[PeerHeader] = peer
		}
		if v := req.Header["Expect"]; len(v) > 0 && strings.EqualFold(v[0], "100-continue") && req.ProtoAtLeast(1, 1) {
			_, _ = bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
			_ = bw.Flush()
			delete(req.Header, "Expect")
		}
		w := connWriters.Get().(*connWriter)
		w.reset(c, br, bw, req, s.closing.Load())
		s.run(w, req)
		if w.hijacked {
			hijacked = true
			return
		}
		err = w.finish()
		keep := err == nil && !w.closeAfter && !req.Close && !s.closing.Load()
		if keep && req.Body != nil && req.Body != http.NoBody {
			// Read what the handler left of the body, within reason.
			if _, err := io.CopyN(io.Discard, req.Body, 256<<10); !errors.Is(err, io.EOF) {
				keep = false
			}
		}
		w.release()
		sc.active.Store(false)
		if !keep {
			return
		}
	}
}

// maxHeaderBytes bounds a request's line and headers, as net/http's
// DefaultMaxHeaderBytes (plus what bufio may read ahead).
const maxHeaderBytes = 1<<20 + 4096

var errHeaderTooLarge = errors.New("request headers too large")

// limitedConn stops reads after n bytes (set while headers are read).
type limitedConn struct {
	net.Conn
	n int64
}

func (l *limitedConn) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errHeaderTooLarge
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.Conn.Read(p)
	l.n -= int64(n)
	return n, err
}

func (s *connServer) run(w *connWriter, req *http.Request) {
	defer func() {
		if p := recover(); p != nil {
			if err, ok := p.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				w.closeAfter = true
				return
			}
			s.log.Error("mesh handler panic", "err", fmt.Sprint(p), "stack", string(debug.Stack()))
			w.closeAfter = true
			if !w.wroteHeader {
				w.header = http.Header{}
				w.WriteHeader(http.StatusInternalServerError)
			}
		}
	}()
	s.h.ServeHTTP(w, req)
}

// connWriter is the http.ResponseWriter of connServer.
type connWriter struct {
	conn net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	req  *http.Request

	header      http.Header
	wroteHeader bool
	bodyOK      bool
	chunked     bool
	remaining   int64 // of a Content-Length body; -1 when not known
	closeAfter  bool
	hijacked    bool
	err         error
	scratch     [64]byte
}

var connWriters = sync.Pool{New: func() any { return &connWriter{header: make(http.Header, 8)} }}

func (w *connWriter) reset(c net.Conn, br *bufio.Reader, bw *bufio.Writer, req *http.Request, closing bool) {
	h := w.header
	clear(h)
	*w = connWriter{conn: c, br: br, bw: bw, req: req, header: h, remaining: -1, closeAfter: closing}
}

func (w *connWriter) release() {
	h := w.header
	clear(h)
	*w = connWriter{header: h}
	connWriters.Put(w)
}

func (w *connWriter) Header() http.Header { return w.header }

func (w *connWriter) WriteHeader(code int) {
	if w.wroteHeader || w.hijacked {
		return
	}
	if code < 100 || code > 999 {
		code = http.StatusInternalServerError
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		// An interim response (103 Early Hints): sent as is, the final
		// one follows.
		w.writeStatus(code)
		_ = w.header.Write(w.bw)
		_, _ = w.bw.WriteString("\r\n")
		w.err = w.bw.Flush()
		return
	}
	w.wroteHeader = true
	w.bodyOK = code >= 200 && code != http.StatusNoContent && code != http.StatusNotModified && w.req.Method != http.MethodHead
	if cl := w.header["Content-Length"]; len(cl) > 0 {
		n, err := strconv.ParseInt(cl[0], 10, 64)
		if err != nil || n < 0 {
			delete(w.header, "Content-Length")
		} else {
			w.remaining = n
		}
	}
	delete(w.header, "Transfer-Encoding")
	if w.bodyOK && w.remaining < 0 && code != http.StatusSwitchingProtocols {
		if w.req.ProtoAtLeast(1, 1) {
			w.chunked = true
			w.header["Transfer-Encoding"] = chunkedValue
		} else {
			w.closeAfter = true
		}
	}
	if !w.chunked {
		delete(w.header, "Trailer")
	}
	if w.closeAfter || w.req.Close {
		w.header["Connection"] = closeValue
	}
	w.writeStatus(code)
	for k, vv := range w.header {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		for _, v := range vv {
			_, _ = w.bw.WriteString(k)
			_, _ = w.bw.WriteString(": ")
			_, _ = w.bw.WriteString(headerValue(v))
			_, _ = w.bw.WriteString("\r\n")
		}
	}
	_, w.err = w.bw.WriteString("\r\n")
}

var (
	chunkedValue = []string{"chunked"}
	closeValue   = []string{"close"}
)

// headerValue drops CR and LF, which would split the header.
func headerValue(v string) string {
	if strings.ContainsAny(v, "\r\n") {
		return strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
	}
	return v
}

func (w *connWriter) writeStatus(code int) {
	b := append(w.scratch[:0], "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(code)...)
	b = append(b, '\r', '\n')
	_, _ = w.bw.Write(b)
}

func (w *connWriter) Write(p []byte) (int, error) {
	if w.hijacked {
		return 0, http.ErrHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if !w.bodyOK {
		return 0, http.ErrBodyNotAllowed
	}
	if len(p) == 0 {
		return 0, nil
	}
	if w.chunked {
		b := strconv.AppendInt(w.scratch[:0], int64(len(p)), 16)
		b = append(b, '\r', '\n')
		if _, w.err = w.bw.Write(b); w.err != nil {
			return 0, w.err
		}
		if _, w.err = w.bw.Write(p); w.err != nil {
			return 0, w.err
		}
		_, w.err = w.bw.WriteString("\r\n")
		return len(p), w.err
	}
	if w.remaining >= 0 {
		if int64(len(p)) > w.remaining {
			w.closeAfter = true
			return 0, http.ErrContentLength
		}
		w.remaining -= int64(len(p))
	}
	var n int
	n, w.err = w.bw.Write(p)
	return n, w.err
}

// FlushError sends what is buffered (http.ResponseController uses it).
func (w *connWriter) FlushError() error {
	if w.hijacked {
		return http.ErrHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return w.err
	}
	w.err = w.bw.Flush()
	return w.err
}

// Flush implements http.Flusher.
func (w *connWriter) Flush() { _ = w.FlushError() }

// Hijack implements http.Hijacker (for upgrades through the proxy).
func (w *connWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.hijacked {
		return nil, nil, http.ErrHijacked
	}
	w.hijacked = true
	if err := w.bw.Flush(); err != nil {
		return nil, nil, err
	}
	return w.conn, bufio.NewReadWriter(w.br, w.bw), nil
}

// finish ends the response: the last chunk and trailers, or a check that
// a Content-Length body was complete.
func (w *connWriter) finish() error {
	if !w.wroteHeader {
		w.header["Content-Length"] = zeroValue
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return w.err
	}
	if w.chunked {
		_, _ = w.bw.WriteString("0\r\n")
		for _, list := range w.header["Trailer"] {
			for k := range strings.SplitSeq(list, ",") {
				k = http.CanonicalHeaderKey(strings.TrimSpace(k))
				for _, v := range w.header[k] {
					_, _ = w.bw.WriteString(k + ": " + headerValue(v) + "\r\n")
				}
			}
		}
		for k, vv := range w.header {
			if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
				for _, v := range vv {
					_, _ = w.bw.WriteString(name + ": " + headerValue(v) + "\r\n")
				}
			}
		}
		_, _ = w.bw.WriteString("\r\n")
	} else if w.remaining > 0 && w.bodyOK {
		w.closeAfter = true // short body: the client must see the end
	}
	return w.bw.Flush()
}

var zeroValue = []string{"0"}
