package mesh

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// service is one service's listener, routing table and proxy.
type service struct {
	m       *Mesh
	name    string
	timeout time.Duration
	routes  []routeRule

	mu    sync.Mutex // serialises table writers
	table atomic.Pointer[table]
	rr    atomic.Uint64 // the weighted schedule's position

	proxy      *httputil.ReverseProxy
	retries    *counter
	unroutable *counter

	ln  net.Listener
	srv server
}

// server is the listener's HTTP server: connServer, or net/http's.
type server interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
}

func newService(m *Mesh, name string, timeout time.Duration, routes []routeRule) *service {
	s := &service{m: m, name: name, timeout: timeout, routes: routes}
	s.table.Store(newTable(nil, nil))
	s.retries = m.metrics.retries(name)
	s.unroutable = m.metrics.unroutable(name)
	s.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = name // replaced by the endpoint in RoundTrip
			// Rewrite drops X-Forwarded-*; a mesh hop keeps what the
			// gateway (or the caller) set.
			for _, h := range forwardedHeaders {
				if v := pr.In.Header[h]; len(v) > 0 {
					pr.Out.Header[h] = v
				}
			}
		},
		Transport:    s,
		BufferPool:   bufferPool{},
		ErrorHandler: s.proxyError,
		ErrorLog:     nil,
	}
	return s
}

func (s *service) shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	t := s.table.Load()
	for _, sub := range t.subsets {
		for _, e := range sub.endpoints {
			e.transport.CloseIdleConnections()
		}
	}
	return err
}

var forwardedHeaders = []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"}

// bufferPool lends ReverseProxy its 32 KiB copy buffers.
type bufferPool struct{}

var bufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *(bufs.Get().(*[]byte)) }
func (bufferPool) Put(b []byte) { bufs.Put(&b) }

// reqState is what one request carries from ServeHTTP to RoundTrip.
type reqState struct {
	sub        *subset
	ep         *endpoint // held: counted in ep.inflight
	maxRetries int
	status     int
	// deadlineOnly: the request's context ends only by its deadline (its
	// parent is never cancelled), so the connection's deadline can stand
	// in for a watcher on the context.
	deadlineOnly bool
}

type stateKey struct{}

var states = sync.Pool{New: func() any { return new(reqState) }}

// statusWriter records the status the proxy wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
}

var writers = sync.Pool{New: func() any { return new(statusWriter) }}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// StatusClientClosed is recorded (never sent) when the caller went away
// before the response, as nginx's 499.
const StatusClientClosed = 499

var errNoEndpoint = errors.New("no endpoint available")

func (s *service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	src, ok := s.m.authorize(r, s.name)
	if !ok {
		http.Error(w, "403 forbidden: caller "+src+" does not depend on "+s.name+" (declare it in depends_on)", http.StatusForbidden)
		return
	}
	if s.m.injectFault(w, r, src, s.name) {
		return
	}
	t := s.table.Load()
	sub, _ := t.pick(r.Header, &s.rr)
	if sub == nil {
		s.unroutable.inc()
		msg := "503 no subset of " + s.name + " is routable"
		if v := r.Header[VersionHeader]; len(v) > 0 {
			msg = "503 " + s.name + " has no version " + v[0]
		}
		http.Error(w, msg, http.StatusServiceUnavailable)
		return
	}
	var hop trace.Span
	if s.m.tracer != nil {
		r, hop = s.startHop(r, sub, src)
	}
	timeout, retries := s.timeout, s.m.cfg.Retry.Attempts
	for i := range s.routes {
		if matchPrefix(r.URL.Path, s.routes[i].prefix) {
			if s.routes[i].timeout > 0 {
				timeout = s.routes[i].timeout
			}
			if s.routes[i].retries >= 0 {
				retries = s.routes[i].retries
			}
			break
		}
	}
	st := states.Get().(*reqState)
	st.sub, st.maxRetries = sub, retries
	st.deadlineOnly = r.Context().Done() == nil
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	ctx = context.WithValue(ctx, stateKey{}, st)
	sw := writers.Get().(*statusWriter)
	sw.ResponseWriter = w
	s.proxy.ServeHTTP(sw, r.WithContext(ctx))
	cancel()
	status := sw.status
	if st.status != 0 {
		status = st.status
	}
	if status == 0 {
		status = http.StatusSwitchingProtocols // hijacked: an upgrade
	}
	if hop != nil {
		endHop(hop, st, status)
	}
	if st.ep != nil {
		st.ep.inflight.Add(-1)
	}
	s.m.metrics.record(st.sub.stats, src, status, time.Since(start), s.m.cfg.Now())
	*st = reqState{}
	states.Put(st)
	*sw = statusWriter{}
	writers.Put(sw)
}

func (s *service) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	st, _ := r.Context().Value(stateKey{}).(*reqState)
	code, msg := http.StatusBadGateway, "502 bad gateway: "+s.name+": "+err.Error()
	switch {
	case errors.Is(err, errNoEndpoint):
		code, msg = http.StatusServiceUnavailable, "503 no healthy endpoint of "+s.name
	case errors.Is(err, context.DeadlineExceeded):
		code, msg = http.StatusGatewayTimeout, "504 upstream timeout: "+s.name
	case errors.Is(err, context.Canceled):
		if st != nil {
			st.status = StatusClientClosed
		}
		w.WriteHeader(http.StatusBadGateway) // nobody is listening
		return
	}
	s.m.log.WarnContext(r.Context(), "mesh upstream failed", "service", s.name, "status", code, "err", err)
	http.Error(w, msg, code)
}

// RoundTrip forwards to an endpoint of the chosen subset, retrying on
// another endpoint when that is safe and the budget allows.
func (s *service) RoundTrip(out *http.Request) (*http.Response, error) {
	st, _ := out.Context().Value(stateKey{}).(*reqState)
	if st == nil {
		return nil, errors.New("mesh: request without routing state")
	}
	var body *trackedBody
	if out.Body != nil && out.Body != http.NoBody {
		body = &trackedBody{rc: out.Body}
		out.Body = body
	}
	idempotent := body == nil && isIdempotent(out.Method)
	s.m.budget.deposit()
	req := out
	var last *endpoint
	for attempt := 0; ; attempt++ {
		ep := s.acquire(out, st, last)
		if ep == nil {
			return nil, errNoEndpoint
		}
		if attempt > 0 {
			c := *out
			u := *out.URL
			c.URL = &u
			req = &c
		}
		req.URL.Host = ep.addr
		resp, err := ep.transport.RoundTrip(req)
		retry := attempt < st.maxRetries && out.Context().Err() == nil
		if err != nil {
			s.m.outlierFailure(st.sub, ep)
			neverSent := isDialError(err) && (body == nil || !body.touched.Load())
			if retry && (neverSent || idempotent) && s.m.budget.withdraw() {
				s.retries.inc()
				last = s.release(st)
				continue
			}
			return nil, err
		}
		if resp.StatusCode >= 500 {
			s.m.outlierFailure(st.sub, ep)
		} else {
			s.m.outlierSuccess(ep)
		}
		if retry && idempotent && (resp.StatusCode == 502 || resp.StatusCode == 503 || resp.StatusCode == 504) && s.m.budget.withdraw() {
			s.retries.inc()
			_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
			_ = resp.Body.Close()
			last = s.release(st)
			continue
		}
		resp.Header[UpstreamVersionHeader] = st.sub.nameHeader
		return resp, nil
	}
}

func (s *service) release(st *reqState) *endpoint {
	e := st.ep
	if e != nil {
		e.inflight.Add(-1)
		st.ep = nil
	}
	return e
}

// acquire picks an endpoint of the request's subset and counts the
// request in its in-flight total. When the subset or endpoint was removed
// meanwhile (its drain has begun), it routes again on the current table.
func (s *service) acquire(r *http.Request, st *reqState, avoid *endpoint) *endpoint {
	for range 4 {
		e := st.sub.next(s.m.cfg.Now().UnixNano(), avoid)
		if e != nil {
			e.inflight.Add(1)
			if !e.closed.Load() {
				st.ep = e
				return e
			}
			e.inflight.Add(-1)
		}
		sub, _ := s.table.Load().pick(r.Header, &s.rr)
		if sub == nil {
			return nil
		}
		st.sub = sub
	}
	return nil
}

// next returns the next endpoint in round robin, skipping ejected ones
// and avoid (the one that just failed) when there is another; when every
// endpoint is ejected it ignores ejection (never all out).
func (sub *subset) next(now int64, avoid *endpoint) *endpoint {
	n := uint64(len(sub.endpoints))
	if n == 0 {
		return nil
	}
	start := sub.rr.Add(1)
	var fallback *endpoint
	for i := range n {
		e := sub.endpoints[(start+i)%n]
		if e.closed.Load() {
			continue
		}
		if e == avoid || e.ejected(now) {
			if fallback == nil || (fallback == avoid && e != avoid) {
				fallback = e
			}
			continue
		}
		return e
	}
	return fallback
}

// trackedBody remembers whether any of the request body was read, so a
// failed attempt knows whether it may be sent again. Close is left to the
// server, which owns the incoming body.
type trackedBody struct {
	rc      io.ReadCloser
	touched atomic.Bool
}

func (b *trackedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.touched.Store(true)
	}
	return n, err
}

func (b *trackedBody) Close() error { return nil }

func isIdempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// isDialError reports whether the connection to the endpoint could not be
// made: the request cannot have reached it.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
