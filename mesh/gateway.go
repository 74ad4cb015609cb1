package mesh

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// The headers the gateway sets.
const (
	// RequestIDHeader is kept when the client sent a sane one, generated
	// otherwise, passed to the services and returned to the client.
	RequestIDHeader = "X-Request-Id"
	// SubjectHeader carries the verified token's subject to the services;
	// a client's own value is always removed.
	SubjectHeader = "X-Flotilla-Subject"
)

// Gateway is the edge: it routes public paths to services through the
// mesh (in process, as GatewayCaller), checks bearer tokens, rate-limits,
// and logs every request.
type Gateway struct {
	cfg      GatewayConfig
	mesh     *Mesh
	log      *slog.Logger
	now      func() time.Time
	routes   *routeTable[*gwPath]
	exact    map[int][]*gwExact // exact routes by their number of segments
	all      []*gwRoute         // in the config's order
	verifier *verifier

	srv *http.Server
	ln  net.Listener
}

// gwPath is every route on one path: those that list methods, by method,
// and the one that lists none.
type gwPath struct {
	byMethod [len(routeMethods)]*gwRoute
	any      *gwRoute
	methods  uint8 // what byMethod holds, a mask over routeMethods
}

// gwExact is every exact route on one path template.
type gwExact struct {
	segs     []tmplSeg
	literals int
	path     gwPath
}

// matches reports whether the request's segments fit the template.
func (e *gwExact) matches(segs []string) bool {
	for i, s := range e.segs {
		if !s.param && s.text != segs[i] {
			return false
		}
	}
	return true
}

type gwRoute struct {
	entry   RouteEntry
	exact   *gwExact  // the template an exact route matched by
	rewrite []tmplSeg // an exact route's rewrite template (nil: the path as is)
	index   string    // label: the path, after the methods if it lists any
	limiter *limiter
	timeout time.Duration

	requests [5]counter // by status class
	limited  counter
	authFail counter
}

// GatewayOptions are the gateway's collaborators; all optional.
type GatewayOptions struct {
	Logger *slog.Logger
	Now    func() time.Time
	// HTTPClient fetches the JWKS (default: a client with a 5 s timeout).
	HTTPClient *http.Client
}

// NewGateway builds a gateway over the mesh. Every route's service must
// already be in the mesh.
func NewGateway(cfg GatewayConfig, m *Mesh, opts GatewayOptions) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("gateway config: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = m.log
	}
	if opts.Now == nil {
		opts.Now = m.cfg.Now
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 5 * time.Second}
	}
	d := DefaultGatewayConfig()
	if cfg.Timeout == 0 {
		cfg.Timeout = d.Timeout
	}
	if cfg.JWT.Leeway == 0 {
		cfg.JWT.Leeway = d.JWT.Leeway
	}
	if cfg.JWT.CacheTTL == 0 {
		cfg.JWT.CacheTTL = d.JWT.CacheTTL
	}
	if cfg.JWT.RefetchInterval == 0 {
		cfg.JWT.RefetchInterval = d.JWT.RefetchInterval
	}
	g := &Gateway{cfg: cfg, mesh: m, log: opts.Logger, now: opts.Now}
	if cfg.JWT.JWKSURL != "" {
		g.verifier = newVerifier(cfg.JWT, opts.HTTPClient, opts.Now)
	}
	var errs []error
	for _, e := range cfg.Routes {
		if _, err := m.Handler(e.Service); err != nil {
			errs = append(errs, fmt.Errorf("route %s: %w", e.Path, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	g.buildRoutes(opts.Now)
	m.metrics.mu.Lock()
	m.metrics.extra = append(m.metrics.extra, extraWriter{owner: g, write: g.writeMetrics})
	m.metrics.mu.Unlock()
	return g, nil
}

// Retire stops the mesh's MetricsHandler from reporting the gateway's
// counters, for a gateway replaced by another built on the same mesh
// (whose counters start from zero, which Prometheus reads as a reset).
// The gateway itself still serves whatever is sent to it.
func (g *Gateway) Retire() {
	r := g.mesh.metrics
	r.mu.Lock()
	defer r.mu.Unlock()
	kept := r.extra[:0:0]
	for _, e := range r.extra {
		if e.owner != g {
			kept = append(kept, e)
		}
	}
	r.extra = kept
}

// buildRoutes builds the route table from a validated config: every path
// and method has one route.
func (g *Gateway) buildRoutes(now func() time.Time) {
	var prefixes []string
	var paths []*gwPath
	byPrefix := map[string]*gwPath{}
	byTemplate := map[string]*gwExact{}
	g.exact = map[int][]*gwExact{}
	for _, e := range g.cfg.Routes {
		r := &gwRoute{entry: e, index: e.Path, timeout: time.Duration(g.cfg.Timeout)}
		var gp *gwPath
		if e.Exact {
			key, _ := exactKey(e.Path, e.Rewrite)
			ex := byTemplate[key]
			if ex == nil {
				segs, _ := templateSegments(e.Path)
				ex = &gwExact{segs: segs}
				for _, s := range segs {
					if !s.param {
						ex.literals++
					}
				}
				byTemplate[key] = ex
				g.exact[len(segs)] = append(g.exact[len(segs)], ex)
			}
			gp, r.exact = &ex.path, ex
			if e.Rewrite != "" {
				r.rewrite, _ = templateSegments(e.Rewrite)
				if r.rewrite == nil {
					r.rewrite = []tmplSeg{} // "/"
				}
			}
		} else {
			p, _ := routePrefix(e.Path)
			gp = byPrefix[p]
			if gp == nil {
				gp = &gwPath{}
				byPrefix[p] = gp
				prefixes, paths = append(prefixes, p), append(paths, gp)
			}
		}
		if e.Timeout > 0 {
			r.timeout = time.Duration(e.Timeout)
		}
		if len(e.Methods) == 0 {
			gp.any = r
		}
		var mask uint8
		for _, mt := range e.Methods {
			i := methodIndex(mt)
			gp.byMethod[i] = r
			mask |= 1 << i
		}
		if mask != 0 {
			gp.methods |= mask
			r.index = methodList(mask, ",") + " " + e.Path
		}
		rl := g.cfg.RateLimit
		if e.RateLimit != nil {
			rl = *e.RateLimit
		}
		if rl.RequestsPerSecond > 0 {
			r.limiter = newLimiter(rl, now)
		}
		g.all = append(g.all, r)
	}
	// The most literal template first: /carts/me before /carts/{user}.
	for _, list := range g.exact {
		sort.SliceStable(list, func(i, j int) bool { return list[i].literals > list[j].literals })
	}
	g.routes = newRouteTable(prefixes, paths)
}

// Listen starts serving on cfg.Listen (or addr when not empty) and
// returns the address.
func (g *Gateway) Listen(ctx context.Context, addr string) (string, error) {
	if addr == "" {
		addr = g.cfg.Listen
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return "", fmt.Errorf("gateway listen: %w", err)
	}
	g.ln = ln
	g.srv = &http.Server{Handler: g, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(g.log.Handler(), slog.LevelWarn)}
	go func() {
		if err := g.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			g.log.Error("gateway stopped", "err", err)
		}
	}()
	return ln.Addr().String(), nil
}

// Close stops the listener, letting in-flight requests finish until ctx
// is done.
func (g *Gateway) Close(ctx context.Context) error {
	if g.srv == nil {
		return nil
	}
	return g.srv.Shutdown(ctx)
}

func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	id := r.Header.Get(RequestIDHeader)
	if !saneID(id) {
		id = newRequestID()
		r.Header.Set(RequestIDHeader, id)
	}
	w.Header().Set(RequestIDHeader, id)
	client := clientIP(r)
	path := r.URL.Path // serve rewrites it
	sw := &statusWriter{ResponseWriter: w}
	var edge trace.Span
	if g.mesh.tracer != nil {
		r, edge = g.startEdge(w, r)
	}
	route, subject, reason := g.serve(sw, r, client)
	status := sw.status
	if status == 0 {
		status = http.StatusSwitchingProtocols // hijacked: an upgrade
	}
	if edge != nil {
		endEdge(edge, route, status, reason)
	}
	attrs := []slog.Attr{
		slog.String("request_id", id),
		slog.String("method", r.Method),
		slog.String("path", path),
		slog.Int("status", status),
		slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
		slog.String("client", client),
	}
	if route != nil {
		attrs = append(attrs, slog.String("route", route.index), slog.String("service", route.entry.Service))
		route.requests[classIndex(status)].inc()
	}
	if subject != "" {
		attrs = append(attrs, slog.String("subject", subject))
	}
	if reason != "" {
		attrs = append(attrs, slog.String("reason", reason))
	}
	if tp := r.Header.Get("Traceparent"); len(tp) == 55 {
		attrs = append(attrs, slog.String("trace_id", tp[3:35]))
	}
	g.log.LogAttrs(r.Context(), slog.LevelInfo, "gateway request", attrs...)
}

func classIndex(status int) int {
	c := status/100 - 1
	if c < 0 || c > 4 {
		return 4
	}
	return c
}

// serve does the routing; it returns the route, the token's subject and,
// for a refusal, why.
func (g *Gateway) serve(w http.ResponseWriter, r *http.Request, client string) (*gwRoute, string, string) {
	clean := cleanPath(r.URL.Path)
	route, prefix, allow := g.match(clean, r.Method)
	switch {
	case route == nil && allow == 0:
		problem(w, http.StatusNotFound, "not_found", "no route for "+clean)
		return nil, "", "no route"
	case route == nil:
		// Routes take the path, none the method. Kong answers 404 (no
		// route matched); 405 with Allow says the resource is there and
		// how to reach it (RFC 9110), and is what this gateway has
		// always answered. Neither forwards the request.
		methods := methodList(allow, ", ")
		w.Header().Set("Allow", methods)
		problem(w, http.StatusMethodNotAllowed, "method_not_allowed", "method "+r.Method+" not allowed on "+clean+": use "+methods)
		return nil, "", "method not allowed"
	}
	r.Header.Del(SubjectHeader)
	// Whoever the client says it is, the services learn the caller from
	// the gateway alone (set below).
	r.Header.Del(CallerHeader)
	subject := ""
	if !route.entry.Public {
		raw, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !found || raw == "" {
			route.authFail.inc()
			w.Header().Set("WWW-Authenticate", `Bearer realm="flotilla"`)
			problem(w, http.StatusUnauthorized, "unauthorized", "a bearer token is required")
			return route, "", "no token"
		}
		sub, claims, err := g.verifier.verifyClaims(r.Context(), strings.TrimSpace(raw))
		if err != nil {
			route.authFail.inc()
			var te *tokenError
			if errors.As(err, &te) && te.status == http.StatusServiceUnavailable {
				// The keys cannot be had: not the client's fault, and
				// never a pass.
				w.Header().Set("Retry-After", "1")
				problem(w, http.StatusServiceUnavailable, "auth_unavailable", err.Error()+": try again")
				return route, "", err.Error()
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="flotilla", error="invalid_token", error_description="`+strings.ReplaceAll(err.Error(), `"`, "'")+`"`)
			problem(w, http.StatusUnauthorized, "unauthorized", err.Error())
			return route, "", err.Error()
		}
		for name, want := range route.entry.Claims {
			if got, _ := claims[name].(string); got != want {
				route.authFail.inc()
				problem(w, http.StatusForbidden, "forbidden", "this route needs a token with "+name+" "+want)
				return route, sub, "missing claim " + name
			}
		}
		subject = sub
		r.Header.Set(SubjectHeader, sub)
	}
	if route.limiter != nil {
		key := client
		if subject != "" {
			key = "sub:" + subject
		}
		ok, wait, remaining := route.limiter.take(key)
		w.Header().Set("RateLimit-Limit", strconv.Itoa(route.limiter.burst))
		w.Header().Set("RateLimit-Remaining", strconv.Itoa(remaining))
		// Reset: seconds until the bucket is full again (draft
		// ratelimit-headers' delta-seconds).
		full := (float64(route.limiter.burst) - float64(remaining)) / route.limiter.rate
		if !ok {
			full = wait.Seconds()
		}
		w.Header().Set("RateLimit-Reset", strconv.Itoa(int(math.Ceil(full))))
		if !ok {
			route.limited.inc()
			secs := int(math.Ceil(wait.Seconds()))
			if secs < 1 {
				secs = 1
			}
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			problem(w, http.StatusTooManyRequests, "rate_limited", "rate limit exceeded: retry after "+strconv.Itoa(secs)+"s")
			return route, subject, "rate limited"
		}
	}
	if !g.cfg.PassLaneHeaders {
		r.Header.Del(CanaryHeader)
		r.Header.Del(VersionHeader)
	}
	g.setCaller(r.Header)
	if prior := r.Header.Get("X-Forwarded-For"); prior != "" {
		r.Header.Set("X-Forwarded-For", prior+", "+client)
	} else {
		r.Header.Set("X-Forwarded-For", client)
	}
	if r.Header.Get("X-Forwarded-Proto") == "" {
		proto := "http"
		if r.TLS != nil {
			proto = "https"
		}
		r.Header.Set("X-Forwarded-Proto", proto)
	}
	out := clean
	if route.exact != nil && route.rewrite != nil {
		out = route.expand(clean)
	} else if route.exact == nil && route.entry.Rewrite != "" {
		rw := strings.TrimSuffix(route.entry.Rewrite, "/")
		out = rw + strings.TrimPrefix(clean, prefix)
		if out == "" {
			out = "/"
		}
	}
	r.URL.Path, r.URL.RawPath = out, ""
	// The service is looked up per request: it may have been removed and
	// added again since the gateway was built.
	svc := g.mesh.lookup(route.entry.Service)
	if svc == nil {
		problem(w, http.StatusServiceUnavailable, "not_deployed", route.entry.Service+" is not deployed")
		return route, subject, "service not deployed"
	}
	if reason := g.limitBody(w, r); reason != "" {
		return route, subject, reason
	}
	ctx, cancel := context.WithTimeout(r.Context(), route.timeout)
	defer cancel()
	ew := &edgeWriter{ResponseWriter: w, service: route.entry.Service}
	svc.ServeHTTP(ew, r.WithContext(ctx))
	return route, subject, ""
}

// match picks the route for a request to path (cleaned) with method:
// walking the routes whose path matches, longest first, the first that
// lists the method, else the first that lists none. Without one, allow is
// the methods the routes matching the path take (0 when none matches the
// path).
func (g *Gateway) match(path, method string) (route *gwRoute, prefix string, allow uint8) {
	mi := methodIndex(method)
	if len(g.exact) > 0 {
		segs := pathSegments(path)
		for _, ex := range g.exact[len(segs)] {
			if !ex.matches(segs) {
				continue
			}
			if mi >= 0 && ex.path.byMethod[mi] != nil {
				return ex.path.byMethod[mi], "", 0
			}
			if ex.path.any != nil {
				return ex.path.any, "", 0
			}
			allow |= ex.path.methods
		}
	}
	for i := g.routes.matchFrom(path, 0); i >= 0; i = g.routes.matchFrom(path, i+1) {
		p := g.routes.values[i]
		if mi >= 0 && p.byMethod[mi] != nil {
			return p.byMethod[mi], g.routes.prefixes[i], 0
		}
		if p.any != nil {
			return p.any, g.routes.prefixes[i], 0
		}
		allow |= p.methods
	}
	return nil, "", allow
}

// pathSegments splits a cleaned path into its segments ("/" has none; a
// trailing slash is no segment of its own).
func pathSegments(p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

// expand fills a rewrite template with the request's segments, matched
// by the route's template.
func (r *gwRoute) expand(path string) string {
	segs := pathSegments(path)
	var b strings.Builder
	for _, t := range r.rewrite {
		b.WriteByte('/')
		if !t.param {
			b.WriteString(t.text)
			continue
		}
		for i, s := range r.exact.segs {
			if s.param && s.text == t.text {
				b.WriteString(segs[i])
				break
			}
		}
	}
	if b.Len() == 0 {
		return "/"
	}
	return b.String()
}

// cleanPath resolves . and .. (so /api/public/../orders cannot dodge a
// route's token check) and keeps a trailing slash.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

// ProblemContentType is the media type of the gateway's errors (RFC
// 9457), the same the shop's services answer theirs in.
const ProblemContentType = "application/problem+json"

// problem writes an RFC 9457 problem with a stable code (the shop's
// services write the same shape, shop/kit's Problem):
//
//	{"type":"https://flotilla.dev/problems/not_found","title":"Not Found","status":404,"code":"not_found","detail":"no route for /x"}
func problem(w http.ResponseWriter, status int, code, detail string) {
	h := w.Header()
	h.Set("Content-Type", ProblemContentType)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	w.WriteHeader(status)
	b := make([]byte, 0, len(detail)+160)
	b = append(b, `{"type":"https://flotilla.dev/problems/`...)
	b = append(b, code...)
	b = append(b, `","title":`...)
	b = strconv.AppendQuote(b, http.StatusText(status))
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, `,"code":"`...)
	b = append(b, code...)
	b = append(b, `","detail":`...)
	b = strconv.AppendQuoteToASCII(b, detail)
	b = append(b, "}\n"...)
	_, _ = w.Write(b)
}

// limitBody enforces MaxBody: an announced length over it is refused at
// once; a streamed body (no length) is read up to the limit first, so a
// service never sees part of one. It returns the refusal's reason, "" to
// go on.
func (g *Gateway) limitBody(w http.ResponseWriter, r *http.Request) string {
	limit := g.cfg.MaxBody
	if limit <= 0 {
		limit = DefaultMaxBody
	}
	tooLarge := func() string {
		w.Header().Set("Connection", "close") // the rest of the body is not read
		problem(w, http.StatusRequestEntityTooLarge, "too_large", "request body over "+strconv.FormatInt(limit, 10)+" bytes")
		return "body too large"
	}
	switch {
	case r.ContentLength > limit:
		return tooLarge()
	case r.ContentLength >= 0 || r.Body == nil || r.Body == http.NoBody:
		return ""
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if int64(len(data)) > limit {
		return tooLarge()
	}
	if err != nil {
		problem(w, http.StatusBadRequest, "bad_request", "reading the request body: "+err.Error())
		return "body unreadable"
	}
	r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(data)), int64(len(data))
	r.Header.Del("Transfer-Encoding")
	return ""
}

// edgeWriter stands between the mesh and the client: a server error the
// mesh wrote itself (plain text naming endpoints: no endpoint, the
// connection refused, a timeout) becomes a problem that names only the
// service. A service's own JSON answers pass as they are.
type edgeWriter struct {
	http.ResponseWriter
	service  string
	wrote    bool
	replaced bool
}

func (e *edgeWriter) WriteHeader(code int) {
	if e.wrote {
		return
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		e.ResponseWriter.WriteHeader(code) // 1xx: informational, more follows
		return
	}
	e.wrote = true
	if code >= 500 && !strings.Contains(e.Header().Get("Content-Type"), "json") {
		e.replaced = true
		for _, h := range []string{"Content-Length", "Content-Encoding", "Etag", "Last-Modified"} {
			e.Header().Del(h)
		}
		c, what := "upstream", " failed to answer"
		switch code {
		case http.StatusServiceUnavailable:
			c, what = "unavailable", " is unavailable"
		case http.StatusGatewayTimeout:
			c, what = "upstream_timeout", " did not answer in time"
		}
		problem(e.ResponseWriter, code, c, e.service+what+": try again")
		return
	}
	e.ResponseWriter.WriteHeader(code)
}

func (e *edgeWriter) Write(b []byte) (int, error) {
	if !e.wrote {
		e.WriteHeader(http.StatusOK)
	}
	if e.replaced {
		return len(b), nil
	}
	return e.ResponseWriter.Write(b)
}

func (e *edgeWriter) Flush() {
	if e.replaced {
		return
	}
	_ = http.NewResponseController(e.ResponseWriter).Flush()
}

func (e *edgeWriter) Unwrap() http.ResponseWriter { return e.ResponseWriter }

func saneID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c >= 0x7f || c == '"' {
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (g *Gateway) writeMetrics(w *bufio.Writer) {
	var req, limited, auth []labeledCounter
	for _, r := range g.all {
		for c := range r.requests {
			if r.requests[c].n.Load() > 0 {
				req = append(req, labeledCounter{[]string{"route", r.index, "service", r.entry.Service, "status_class", classNames[c]}, &r.requests[c]})
			}
		}
		limited = append(limited, labeledCounter{[]string{"route", r.index}, &r.limited})
		auth = append(auth, labeledCounter{[]string{"route", r.index}, &r.authFail})
	}
	writeCounters(w, "flotilla_gateway_requests_total", "Requests the gateway answered, by route, service and status class.", req)
	writeCounters(w, "flotilla_gateway_rate_limited_total", "Requests refused with 429.", limited)
	writeCounters(w, "flotilla_gateway_auth_failures_total", "Requests refused with 401 (no, expired, forged or unknown-key token).", auth)
}

// limiter is a token bucket per key (client), in shards.
type limiter struct {
	rate  float64
	burst int
	now   func() time.Time
	seed  maphash.Seed

	shards [16]limiterShard
}

type limiterShard struct {
	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// maxBucketsPerShard bounds memory: past it, full (idle) buckets are
// dropped.
const maxBucketsPerShard = 4096

func newLimiter(rl RateLimit, now func() time.Time) *limiter {
	burst := rl.Burst
	if burst == 0 {
		burst = int(math.Ceil(rl.RequestsPerSecond))
	}
	if burst < 1 {
		burst = 1
	}
	l := &limiter{rate: rl.RequestsPerSecond, burst: burst, now: now, seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].buckets = map[string]*bucket{}
	}
	return l
}

// take spends a token for key; when there is none it says how long until
// there will be.
func (l *limiter) take(key string) (ok bool, wait time.Duration, remaining int) {
	sh := &l.shards[maphash.String(l.seed, key)%uint64(len(l.shards))]
	now := l.now()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b := sh.buckets[key]
	if b == nil {
		if len(sh.buckets) >= maxBucketsPerShard {
			sh.sweep(now, l)
		}
		b = &bucket{tokens: float64(l.burst), last: now}
		sh.buckets[key] = b
	}
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = math.Min(float64(l.burst), b.tokens+el*l.rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0, int(b.tokens)
	}
	need := (1 - b.tokens) / l.rate
	return false, time.Duration(need * float64(time.Second)), 0
}

func (sh *limiterShard) sweep(now time.Time, l *limiter) {
	for k, b := range sh.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= float64(l.burst) {
			delete(sh.buckets, k)
		}
	}
}
