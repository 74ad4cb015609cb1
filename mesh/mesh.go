package mesh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/flotilla-ci/flotilla/canary"
	"github.com/flotilla-ci/flotilla/identity"
	"github.com/flotilla-ci/flotilla/tracing"
)

// The headers the mesh reads. Header names are canonical so the hot path
// can index http.Header directly.
const (
	// CallerHeader carries the calling service's name on every call one
	// service makes to another (the shop's kit sets it). The mesh
	// authorizes the call against the graph with it and labels metrics
	// with it. Without mTLS it is an assertion, not a proof.
	CallerHeader = "X-Flotilla-Caller"
	// CanaryHeader set to "true" sends the request to the canary subset
	// regardless of weights (the scenario's VirtualService header match).
	CanaryHeader = "X-Canary"
	// VersionHeader pins the request to the subset of that name (a
	// version) regardless of weights and lanes.
	VersionHeader = "X-Flotilla-Version"
	// UpstreamVersionHeader is set on the response to the name of the
	// subset that served it.
	UpstreamVersionHeader = "X-Flotilla-Upstream-Version"
)

// GatewayCaller is the caller name the edge gateway uses; the graph's
// policy lets it call every service (the gateway's routes decide what is
// public).
const GatewayCaller = "flotilla-gateway"

var (
	_ canary.Router  = (*Mesh)(nil)
	_ canary.Metrics = (*Mesh)(nil)
)

// Errors returned by the mesh's control methods. They are wrapped with the
// service (and subset) they concern.
var (
	ErrExists        = errors.New("already exists")
	ErrUnknownSubset = errors.New("unknown subset")
	ErrClosed        = errors.New("mesh is closed")
)

// Config configures a Mesh. The zero value of each field means its default
// (see DefaultConfig).
type Config struct {
	// Timeout bounds a request end to end (all attempts), unless a route
	// sets its own. Default 15s.
	Timeout time.Duration
	Retry   RetryConfig
	Outlier OutlierConfig
	Authz   AuthzConfig
	// Logger receives the mesh's logs; default slog.Default().
	Logger *slog.Logger
	// Now is the clock (tests drive outlier ejection with it); default
	// time.Now.
	Now func() time.Time
	// MaxIdleConnsPerEndpoint is how many idle keep-alive connections are
	// kept to each endpoint. Default 256.
	MaxIdleConnsPerEndpoint int
	// StdTransport forwards with net/http's Transport instead of the
	// mesh's own HTTP/1.1 connection pool, which does each exchange on the
	// request's goroutine and adds less latency (bench/README.md).
	StdTransport bool
	// StdServer serves each service's listener with net/http's Server
	// instead of the mesh's own HTTP/1.1 keep-alive loop (which runs each
	// request on its connection's goroutine without a background read).
	StdServer bool
	// TLS, when set, turns on mutual TLS on the listeners and towards the
	// instances, and callers are then known by their certificates only
	// (PeerHeader), never by CallerHeader.
	TLS *TLSConfig
	// Tracing traces every hop (and the gateway's requests); nil or
	// disabled: no spans, at the cost of one nil check.
	Tracing *tracing.Provider
}

// RetryConfig bounds retries. A request is retried on another endpoint
// when it never reached one (the connection failed: any method, as long as
// no byte of its body was sent), and, for idempotent methods without a
// body, on a transport error or a 502/503/504 response.
type RetryConfig struct {
	// Attempts is the most retries per request (not counting the first
	// try). Default 2; negative disables retries.
	Attempts int
	// BudgetRatio caps retries to this fraction of requests (default 0.2,
	// as Linkerd), plus MinPerSecond, so retries cannot amplify an outage.
	BudgetRatio  float64
	MinPerSecond float64 // default 10
}

// OutlierConfig is passive outlier ejection: an endpoint that fails
// Consecutive times in a row (5xx or no response) is taken out of its
// subset for BaseEjection × the number of times it has been ejected
// (capped at MaxEjection). An endpoint is never ejected if that would leave
// its subset with none, and at most MaxEjectionPercent of a subset is out
// at once (at least one endpoint may always be ejected when two or more
// remain).
type OutlierConfig struct {
	Consecutive        int           // default 5; negative disables ejection
	BaseEjection       time.Duration // default 30s
	MaxEjection        time.Duration // default 5m
	MaxEjectionPercent int           // default 50
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Timeout:                 15 * time.Second,
		Retry:                   RetryConfig{Attempts: 2, BudgetRatio: 0.2, MinPerSecond: 10},
		Outlier:                 OutlierConfig{Consecutive: 5, BaseEjection: 30 * time.Second, MaxEjection: 5 * time.Minute, MaxEjectionPercent: 50},
		Authz:                   AuthzConfig{Mode: AuthzWarn, Unknown: UnknownAllow},
		MaxIdleConnsPerEndpoint: 256,
	}
}

func (c *Config) applyDefaults() {
	d := DefaultConfig()
	if c.Timeout == 0 {
		c.Timeout = d.Timeout
	}
	if c.Retry.Attempts == 0 {
		c.Retry.Attempts = d.Retry.Attempts
	}
	if c.Retry.BudgetRatio == 0 {
		c.Retry.BudgetRatio = d.Retry.BudgetRatio
	}
	if c.Retry.MinPerSecond == 0 {
		c.Retry.MinPerSecond = d.Retry.MinPerSecond
	}
	if c.Outlier.Consecutive == 0 {
		c.Outlier.Consecutive = d.Outlier.Consecutive
	}
	if c.Outlier.BaseEjection == 0 {
		c.Outlier.BaseEjection = d.Outlier.BaseEjection
	}
	if c.Outlier.MaxEjection == 0 {
		c.Outlier.MaxEjection = d.Outlier.MaxEjection
	}
	if c.Outlier.MaxEjectionPercent == 0 {
		c.Outlier.MaxEjectionPercent = d.Outlier.MaxEjectionPercent
	}
	if c.Authz.Mode == "" {
		c.Authz.Mode = d.Authz.Mode
	}
	if c.Authz.Unknown == "" {
		c.Authz.Unknown = d.Authz.Unknown
	}
	if c.MaxIdleConnsPerEndpoint == 0 {
		c.MaxIdleConnsPerEndpoint = d.MaxIdleConnsPerEndpoint
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports every invalid field at once.
func (c Config) Validate() error {
	var errs []error
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout %v: must not be negative", c.Timeout))
	}
	if c.Retry.BudgetRatio < 0 || c.Retry.BudgetRatio > 1 {
		errs = append(errs, fmt.Errorf("retry budget_ratio %v: want 0..1", c.Retry.BudgetRatio))
	}
	if c.Retry.MinPerSecond < 0 {
		errs = append(errs, fmt.Errorf("retry min_per_second %v: must not be negative", c.Retry.MinPerSecond))
	}
	if c.Outlier.BaseEjection < 0 || c.Outlier.MaxEjection < 0 {
		errs = append(errs, errors.New("outlier ejection times must not be negative"))
	}
	if c.Outlier.MaxEjectionPercent < 0 || c.Outlier.MaxEjectionPercent > 100 {
		errs = append(errs, fmt.Errorf("outlier max_ejection_percent %d: want 0..100", c.Outlier.MaxEjectionPercent))
	}
	if err := c.Authz.validate(); err != nil {
		errs = append(errs, err)
	}
	if c.TLS != nil {
		if c.TLS.Source == nil {
			errs = append(errs, errors.New("tls: no source (the mesh's own identity)"))
		}
		switch c.TLS.Mode {
		case "", identity.Strict, identity.Permissive:
		default:
			errs = append(errs, fmt.Errorf("tls mode %q: want strict or permissive", c.TLS.Mode))
		}
	}
	return errors.Join(errs...)
}

// ServiceConfig declares a service: the stable address its callers use and
// its per-route policies.
type ServiceConfig struct {
	Name string
	// Addr is the listen address; "" means 127.0.0.1:0 (a free port,
	// reported by Addr).
	Addr string
	// Timeout overrides the mesh's default for this service.
	Timeout time.Duration
	// Routes override the timeout and retries for path prefixes; the
	// longest matching prefix wins.
	Routes []Route
	// Listener, when set, is an open listener the service is served on
	// instead of listening on Addr (which is then ignored): a caller that
	// must know every address can be had before it changes anything opens
	// them first. The mesh owns it from then on, and closes it when the
	// service is removed, even when AddService fails.
	Listener net.Listener
}

// Route overrides the request policy for requests whose path starts with
// PathPrefix (matched at a segment boundary: /orders matches /orders and
// /orders/1, not /ordersx).
type Route struct {
	PathPrefix string
	// Timeout bounds the request (0: the service's).
	Timeout time.Duration
	// Retries overrides RetryConfig.Attempts (nil: the mesh's; 0 turns
	// retries off for the route).
	Retries *int
}

// Subset is a named group of instances of a service: a version.
type Subset struct {
	// Name names the subset; flotilla uses the version (e.g. "3f2a1b9c").
	// It is what VersionHeader pins, what weights are keyed by and the
	// "version" label of the metrics.
	Name string
	// Canary marks the subset the CanaryHeader lane goes to (at most one
	// per service; setting it on one clears it on the others).
	Canary bool
	// Endpoints are the instances, host:port.
	Endpoints []string
}

// Mesh is the built-in L7 mesh: one listener per service, weighted
// subsets behind it, lanes and pins, timeouts, retries, outlier ejection,
// authorization from the graph, and metrics. All methods are safe for
// concurrent use.
type Mesh struct {
	cfg     Config
	log     *slog.Logger
	budget  *retryBudget
	metrics *registry
	policy  atomic.Pointer[Policy]
	authz   atomic.Pointer[AuthzConfig] // Mode and Unknown (Policy is in policy)
	warned  sync.Map                    // refused edges already logged
	tls     *meshTLS                    // nil: plaintext
	tracer  trace.Tracer                // nil: tracing off
	faults  atomic.Pointer[faultSet]    // nil: none (fault.go)

	mu       sync.Mutex // guards services (the map) and closed
	services map[string]*service
	closed   bool
	// live is a copy of services for lock-free lookups on the hot path
	// (the gateway), replaced on every add and remove.
	live atomic.Pointer[map[string]*service]
}

// publish refreshes the lock-free copy of the services; m.mu is held.
func (m *Mesh) publish() {
	cp := make(map[string]*service, len(m.services))
	for k, v := range m.services {
		cp[k] = v
	}
	m.live.Store(&cp)
}

func (m *Mesh) lookup(name string) *service {
	if p := m.live.Load(); p != nil {
		return (*p)[name]
	}
	return nil
}

// New returns a mesh with no services.
func New(cfg Config) (*Mesh, error) {
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("mesh config: %w", err)
	}
	m := &Mesh{
		cfg:      cfg,
		log:      cfg.Logger,
		budget:   newRetryBudget(cfg.Retry.BudgetRatio, cfg.Retry.MinPerSecond, cfg.Now),
		metrics:  newRegistry(),
		services: map[string]*service{},
		tracer:   hopTracer(cfg.Tracing),
	}
	if cfg.Authz.Policy != nil {
		m.policy.Store(cfg.Authz.Policy)
	}
	m.authz.Store(&AuthzConfig{Mode: cfg.Authz.Mode, Unknown: cfg.Authz.Unknown})
	m.metrics.extra = append(m.metrics.extra, extraWriter{write: m.writeState})
	if cfg.TLS != nil {
		m.tls = newMeshTLS(*cfg.TLS)
		m.metrics.extra = append(m.metrics.extra, extraWriter{write: m.writeTLS})
	}
	return m, nil
}

func (m *Mesh) service(name string) (*service, error) {
	m.mu.Lock()
	s := m.services[name]
	m.mu.Unlock()
	if s == nil {
		return nil, fmt.Errorf("service %q: %w", name, canary.ErrUnknownService)
	}
	return s, nil
}

// AddService starts the service's listener and returns its address. The
// service has no subsets yet: requests get 503 until one is added.
func (m *Mesh) AddService(ctx context.Context, sc ServiceConfig) (string, error) {
	addr, err := m.addService(ctx, sc)
	if err != nil && sc.Listener != nil {
		_ = sc.Listener.Close()
	}
	return addr, err
}

func (m *Mesh) addService(ctx context.Context, sc ServiceConfig) (string, error) {
	if err := checkName("service", sc.Name); err != nil {
		return "", err
	}
	if sc.Timeout < 0 {
		return "", fmt.Errorf("service %s: timeout %v must not be negative", sc.Name, sc.Timeout)
	}
	routes, err := buildRoutes(sc.Routes)
	if err != nil {
		return "", fmt.Errorf("service %s: %w", sc.Name, err)
	}
	addr := sc.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return "", ErrClosed
	}
	if _, ok := m.services[sc.Name]; ok {
		return "", fmt.Errorf("service %s: %w", sc.Name, ErrExists)
	}
	ln := sc.Listener
	if ln == nil {
		var lc net.ListenConfig
		if ln, err = lc.Listen(ctx, "tcp", addr); err != nil {
			return "", fmt.Errorf("service %s: listen: %w", sc.Name, err)
		}
	}
	timeout := sc.Timeout
	if timeout == 0 {
		timeout = m.cfg.Timeout
	}
	s := newService(m, sc.Name, timeout, routes)
	s.ln = ln
	if m.tls != nil {
		stats := m.tls.statsOf(sc.Name)
		stats.OnRefuse = m.logRefusal(sc.Name)
		ln = identity.Listen(ln, m.tls.server, m.tls.cfg.Mode, stats)
	}
	if m.cfg.StdServer {
		s.srv = &http.Server{
			Handler:           stdPeer(s),
			ConnContext:       stdConnContext,
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(m.log.Handler(), slog.LevelWarn),
		}
	} else {
		s.srv = newConnServer(s, m.log)
	}
	m.services[sc.Name] = s
	m.publish()
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.log.Error("mesh listener stopped", "service", sc.Name, "err", err)
		}
	}()
	m.log.Info("mesh service added", "service", sc.Name, "addr", ln.Addr().String())
	return ln.Addr().String(), nil
}

// ownerOf returns the service whose listener is at addr, if any.
func (m *Mesh) ownerOf(addr string) string {
	if p := m.live.Load(); p != nil {
		for name, s := range *p {
			if s.ln.Addr().String() == addr {
				return name
			}
		}
	}
	return ""
}

// Addr returns the service's listen address.
func (m *Mesh) Addr(service string) (string, error) {
	s, err := m.service(service)
	if err != nil {
		return "", err
	}
	return s.ln.Addr().String(), nil
}

// Services returns the names of the services, sorted.
func (m *Mesh) Services() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.services))
	for n := range m.services {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Handler returns the service's request handler, for an in-process caller
// (the gateway) that wants the mesh's routing without a network hop.
func (m *Mesh) Handler(service string) (http.Handler, error) {
	s, err := m.service(service)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// SetSubset adds the subset, or replaces its endpoints and canary mark. A
// new subset gets weight 0, unless it is the service's only one (then
// 100). Endpoints it no longer lists stop getting new requests at once;
// SetSubset returns when their in-flight requests have finished, or with
// ctx's error (the endpoints are removed all the same).
func (m *Mesh) SetSubset(ctx context.Context, service string, sub Subset) error {
	s, err := m.service(service)
	if err != nil {
		return err
	}
	if err := m.checkSubset(service, sub); err != nil {
		return err
	}
	removed := s.setSubset(sub)
	return m.drain(ctx, service, sub.Name, removed)
}

func (m *Mesh) checkSubset(service string, sub Subset) error {
	if err := checkName("subset", sub.Name); err != nil {
		return fmt.Errorf("service %s: %w", service, err)
	}
	seen := map[string]bool{}
	for _, a := range sub.Endpoints {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("service %s subset %s: endpoint %q: want host:port", service, sub.Name, a)
		}
		if seen[a] {
			return fmt.Errorf("service %s subset %s: endpoint %s listed twice", service, sub.Name, a)
		}
		seen[a] = true
		if own := m.ownerOf(a); own != "" {
			return fmt.Errorf("service %s subset %s: endpoint %s is the mesh's own address for %s (a loop): give the instance's address", service, sub.Name, a, own)
		}
	}
	return nil
}

// RemoveSubset stops routing to the subset and waits until its in-flight
// requests have finished (or ctx is done), so the caller can then stop its
// processes. It refuses to remove a subset that carries traffic while the
// others carry none: shift the weights first.
func (m *Mesh) RemoveSubset(ctx context.Context, service, subset string) error {
	s, err := m.service(service)
	if err != nil {
		return err
	}
	removed, err := s.removeSubset(subset)
	if err != nil {
		return fmt.Errorf("service %s: %w", service, err)
	}
	return m.drain(ctx, service, subset, removed)
}

// AddEndpoint adds one instance to a subset (creating the subset, with
// weight 0 unless it is the service's first, when it does not exist).
func (m *Mesh) AddEndpoint(ctx context.Context, service, subset, addr string) error {
	s, err := m.service(service)
	if err != nil {
		return err
	}
	s.mu.Lock() // serialise with other endpoint edits of this service
	defer s.mu.Unlock()
	in := Subset{Name: subset, Endpoints: []string{addr}}
	if sub := s.table.Load().byName[subset]; sub != nil {
		in.Canary = sub.canary
		in.Endpoints = in.Endpoints[:0]
		for _, e := range sub.endpoints {
			if e.addr == addr {
				return nil // already there
			}
			in.Endpoints = append(in.Endpoints, e.addr)
		}
		in.Endpoints = append(in.Endpoints, addr)
	}
	if err := m.checkSubset(service, in); err != nil {
		return err
	}
	s.setSubsetLocked(in)
	return nil
}

// RemoveEndpoint takes one instance out of a subset and waits for its
// in-flight requests to finish (or ctx to be done).
func (m *Mesh) RemoveEndpoint(ctx context.Context, service, subset, addr string) error {
	s, err := m.service(service)
	if err != nil {
		return err
	}
	s.mu.Lock()
	sub := s.table.Load().byName[subset]
	if sub == nil {
		s.mu.Unlock()
		return fmt.Errorf("service %s subset %s: %w", service, subset, ErrUnknownSubset)
	}
	in := Subset{Name: subset, Canary: sub.canary}
	found := false
	for _, e := range sub.endpoints {
		if e.addr == addr {
			found = true
			continue
		}
		in.Endpoints = append(in.Endpoints, e.addr)
	}
	if !found {
		s.mu.Unlock()
		return fmt.Errorf("service %s subset %s: no endpoint %s", service, subset, addr)
	}
	removed := s.setSubsetLocked(in)
	s.mu.Unlock()
	return m.drain(ctx, service, subset, removed)
}

// drain waits for the endpoints' in-flight requests, then closes their
// idle connections.
func (m *Mesh) drain(ctx context.Context, service, subset string, eps []*endpoint) error {
	if len(eps) == 0 {
		return nil
	}
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for _, e := range eps {
		for e.inflight.Load() > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("drain service %s subset %s endpoint %s: %d requests still in flight: %w", service, subset, e.addr, e.inflight.Load(), ctx.Err())
			case <-tick.C:
			}
		}
		e.transport.CloseIdleConnections()
	}
	m.log.InfoContext(ctx, "mesh drained", "service", service, "subset", subset, "endpoints", len(eps))
	return nil
}

// Subsets returns the service's subsets, in the order they were added.
func (m *Mesh) Subsets(service string) ([]Subset, error) {
	s, err := m.service(service)
	if err != nil {
		return nil, err
	}
	t := s.table.Load()
	out := make([]Subset, 0, len(t.subsets))
	for _, sub := range t.subsets {
		o := Subset{Name: sub.name, Canary: sub.canary}
		for _, e := range sub.endpoints {
			o.Endpoints = append(o.Endpoints, e.addr)
		}
		out = append(out, o)
	}
	return out, nil
}

// SetWeights implements canary.Router: weights are keyed by subset name.
func (m *Mesh) SetWeights(ctx context.Context, service string, weights map[string]int) error {
	s, err := m.service(service)
	if err != nil {
		return err
	}
	if err := s.setWeights(weights); err != nil {
		return fmt.Errorf("service %s: set weights: %w", service, err)
	}
	m.log.InfoContext(ctx, "mesh weights set", "service", service, "weights", weights)
	return nil
}

// Weights implements canary.Router.
func (m *Mesh) Weights(ctx context.Context, service string) (map[string]int, error) {
	s, err := m.service(service)
	if err != nil {
		return nil, err
	}
	t := s.table.Load()
	out := make(map[string]int, len(t.subsets))
	for i, sub := range t.subsets {
		out[sub.name] = t.weights[i]
	}
	return out, nil
}

// RemoveService stops the service's listener after draining its in-flight
// requests (or until ctx is done).
func (m *Mesh) RemoveService(ctx context.Context, service string) error {
	m.mu.Lock()
	s := m.services[service]
	delete(m.services, service)
	m.publish()
	m.mu.Unlock()
	if s == nil {
		return fmt.Errorf("service %q: %w", service, canary.ErrUnknownService)
	}
	return s.shutdown(ctx)
}

// Close stops every listener, letting in-flight requests finish until ctx
// is done.
func (m *Mesh) Close(ctx context.Context) error {
	m.mu.Lock()
	m.closed = true
	svcs := make([]*service, 0, len(m.services))
	for _, s := range m.services {
		svcs = append(svcs, s)
	}
	m.services = map[string]*service{}
	m.publish()
	m.mu.Unlock()
	var errs []error
	for _, s := range svcs {
		errs = append(errs, s.shutdown(ctx))
	}
	return errors.Join(errs...)
}

func checkName(kind, name string) error {
	if name == "" {
		return fmt.Errorf("%s name is empty", kind)
	}
	if len(name) > 128 || strings.ContainsAny(name, " \t\r\n\"\\{}=,") {
		return fmt.Errorf("%s name %q: use letters, digits, '-', '_', '.' (at most 128)", kind, name)
	}
	return nil
}

// ServiceStatus is a point-in-time view of one service, for status
// commands and dashboards.
type ServiceStatus struct {
	Name    string
	Addr    string
	Subsets []SubsetStatus
}

// SubsetStatus is one subset's weight and instances.
type SubsetStatus struct {
	Name      string
	Canary    bool
	Weight    int
	Endpoints []EndpointStatus
}

// EndpointStatus is one instance.
type EndpointStatus struct {
	Addr     string
	InFlight int64
	// EjectedUntil is set while outlier ejection keeps it out.
	EjectedUntil time.Time
}

// Status returns the state of every service, sorted by name.
func (m *Mesh) Status() []ServiceStatus {
	var out []ServiceStatus
	p := m.live.Load()
	if p == nil {
		return nil
	}
	now := m.cfg.Now().UnixNano()
	for _, s := range *p {
		t := s.table.Load()
		ss := ServiceStatus{Name: s.name, Addr: s.ln.Addr().String()}
		for i, sub := range t.subsets {
			st := SubsetStatus{Name: sub.name, Canary: sub.canary, Weight: t.weights[i]}
			for _, e := range sub.endpoints {
				es := EndpointStatus{Addr: e.addr, InFlight: e.inflight.Load()}
				if e.ejected(now) {
					es.EjectedUntil = time.Unix(0, e.ejectedUntil.Load())
				}
				st.Endpoints = append(st.Endpoints, es)
			}
			ss.Subsets = append(ss.Subsets, st)
		}
		out = append(out, ss)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
