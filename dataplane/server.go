package dataplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flotilla-ci/flotilla/canary"
	"github.com/flotilla-ci/flotilla/mesh"
)

// ServerConfig configures a Server.
type ServerConfig struct {
	// Mesh is what the snapshots configure. Required.
	Mesh *mesh.Mesh
	// State is the directory the last acknowledged snapshot is kept in
	// (SnapshotFile). Required.
	State string
	// DrainTimeout bounds the wait for a removed subset's, endpoint's or
	// service's in-flight requests (default 30s); past it they are cut
	// and the acknowledgement says so (Ack.Warnings).
	DrainTimeout time.Duration
	// Gateway are the options of the gateways the snapshots configure
	// (its HTTPClient fetches the JWKS; default: one that calls as
	// mesh.GatewayCaller).
	Gateway mesh.GatewayOptions
	// Version is flotilla's version, reported by the status.
	Version string
	// Inherited are listening sockets a previous data plane served (by
	// listenerKey): a snapshot's service or gateway at one of their
	// addresses takes it instead of listening anew. Those the first
	// snapshot applied does not take are closed.
	Inherited map[string]net.Listener
	Logger    *slog.Logger
}

// Server applies snapshots to a mesh and its gateway: it runs in the
// data-plane process. Serve its Handler on the admin socket.
type Server struct {
	cfg     ServerConfig
	log     *slog.Logger
	started time.Time

	mu  sync.Mutex // serialises Apply; guards cur, gw, gwSrv, gwLn
	cur *Snapshot  // acknowledged, with the addresses taken
	gw  *mesh.Gateway
	// gwSrv serves whatever gateway is current on gwLn.
	gwSrv     *http.Server
	gwLn      net.Listener
	gwCurrent atomic.Pointer[mesh.Gateway]

	acked     atomic.Uint64
	served    atomic.Pointer[Snapshot] // cur, for readers that must not wait for an Apply's drains
	loadError atomic.Pointer[string]

	// lnMu guards the listeners served, by name ("service NAME",
	// "gateway"), to hand copies over without waiting for an Apply; a
	// listener leaves the map before it is closed.
	lnMu      sync.Mutex
	listening map[string]net.Listener
	inherited map[string]net.Listener // guarded by mu
}

// NewServer checks the configuration. Call Start to load the snapshot
// kept on disk.
func NewServer(cfg ServerConfig) (*Server, error) {
	var errs []error
	if cfg.Mesh == nil {
		errs = append(errs, errors.New("dataplane server: no mesh"))
	}
	if cfg.State == "" {
		errs = append(errs, errors.New("dataplane server: no state directory"))
	}
	if cfg.DrainTimeout < 0 {
		errs = append(errs, errors.New("dataplane server: drain timeout must not be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Gateway.Logger == nil {
		cfg.Gateway.Logger = cfg.Logger.With("component", "gateway")
	}
	if cfg.Gateway.HTTPClient == nil {
		var rt http.RoundTripper = asGateway{http.DefaultTransport}
		if c := cfg.Mesh.GatewayClient(); c != nil {
			rt = c.Transport // mutual TLS, as the gateway's identity
		}
		cfg.Gateway.HTTPClient = &http.Client{Timeout: 5 * time.Second, Transport: rt}
	}
	s := &Server{cfg: cfg, log: cfg.Logger, started: time.Now(), cur: &Snapshot{},
		listening: map[string]net.Listener{}, inherited: map[string]net.Listener{}}
	for k, ln := range cfg.Inherited {
		s.inherited[k] = ln
	}
	s.served.Store(s.cur)
	return s, nil
}

// asGateway names the gateway as the caller of what it fetches itself
// (the JWKS), so the mesh labels and authorizes it as the gateway.
type asGateway struct{ next http.RoundTripper }

func (t asGateway) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(mesh.CallerHeader, mesh.GatewayCaller)
	return t.next.RoundTrip(r)
}

// Start applies the snapshot kept in the state directory, if any, so the
// data plane serves at once with the last configuration it acknowledged.
// A snapshot that cannot be read or applied (a port another process took
// meanwhile) leaves the data plane empty until the next push; the status
// reports why (LoadError), and so does the error returned.
func (s *Server) Start(ctx context.Context) error {
	snap, err := load(s.cfg.State)
	if err == nil && snap != nil {
		_, err = s.apply(ctx, snap, false)
	}
	if err != nil {
		msg := err.Error()
		s.loadError.Store(&msg)
		s.log.ErrorContext(ctx, "dataplane: the saved snapshot is not served; waiting for a push", "err", err)
		return err
	}
	if snap != nil {
		s.log.InfoContext(ctx, "dataplane: serving the saved snapshot", "version", snap.Version, "services", len(snap.Services))
	}
	return nil
}

// Ack acknowledges an applied snapshot.
type Ack struct {
	Version uint64 `json:"version"`
	// Listeners are the services' addresses, by name (ports taken for
	// port 0 included).
	Listeners map[string]string `json:"listeners"`
	Gateway   string            `json:"gateway,omitempty"`
	// Warnings say what of the snapshot did not go as it should although
	// it is applied: a removed subset, endpoint or service whose in-flight
	// requests were cut after the drain timeout, a snapshot not saved.
	Warnings []string `json:"warnings,omitempty"`
}

// RefusedError is a snapshot the data plane did not apply: it still
// serves the one it acknowledged last (Acked).
type RefusedError struct {
	Version uint64 // the version refused
	Acked   uint64 // the version still served
	Stale   bool   // refused for its version, not its content
	Reason  string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("data plane refused snapshot version %d (it still serves version %d): %s", e.Version, e.Acked, e.Reason)
}

// Acked returns the version acknowledged last (0: none).
func (s *Server) Acked() uint64 { return s.acked.Load() }

// Current returns a copy of the acknowledged snapshot, with the addresses
// taken.
func (s *Server) Current() *Snapshot {
	return s.served.Load().Clone()
}

// Apply reconciles the mesh and the gateway to the snapshot: services
// and their listeners added and removed, subsets set, weights set,
// removed subsets drained, the gateway replaced. A snapshot that is
// invalid, older than the acknowledged one, or that cannot be served (an
// address in use, a service asked to move) is refused whole with a
// *RefusedError and nothing of it applied. The snapshot applied is saved
// before Apply returns.
func (s *Server) Apply(ctx context.Context, in *Snapshot) (*Ack, error) {
	return s.apply(ctx, in, true)
}

// apply is Apply; persist is false for the snapshot just read from disk
// (saving it again would only delay a restarted data plane's first
// answers by an fsync).
func (s *Server) apply(ctx context.Context, in *Snapshot, persist bool) (*Ack, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	refuse := func(stale bool, format string, a ...any) (*Ack, error) {
		err := &RefusedError{Version: in.Version, Acked: s.cur.Version, Stale: stale, Reason: fmt.Sprintf(format, a...)}
		s.log.WarnContext(ctx, "dataplane: snapshot refused", "version", in.Version, "acked", s.cur.Version, "reason", err.Reason)
		return nil, err
	}
	if err := in.Validate(); err != nil {
		return refuse(false, "%v", err)
	}
	if in.Version < s.cur.Version {
		return refuse(true, "version %d is older than the acknowledged %d", in.Version, s.cur.Version)
	}
	// Resolve addresses against what listens now; a copy, so a refusal
	// leaves the caller's snapshot as it was.
	next := in.Clone()
	if in.Version == s.cur.Version {
		resolved := next.Clone()
		s.resolve(resolved)
		if !sameConfig(resolved, s.cur) {
			return refuse(true, "version %d is acknowledged already, with another configuration: send a higher version", in.Version)
		}
		return s.ack(s.cur, nil), nil
	}
	plan, err := s.prepare(ctx, next)
	if err != nil {
		return refuse(false, "%v", err)
	}
	warnings := s.reconcile(ctx, next, plan)
	s.closeInherited(ctx, plan)
	if persist { // else it is on disk already
		if err := save(s.cfg.State, next); err != nil {
			// Served, not kept: a restart would serve the previous one.
			s.log.ErrorContext(ctx, "dataplane: snapshot applied but not saved", "version", next.Version, "err", err)
			warnings = append(warnings, "saving the snapshot failed ("+err.Error()+"): a restarted data plane serves the previous one until the next push")
		}
	}
	s.cur = next
	s.served.Store(next)
	s.acked.Store(next.Version)
	s.loadError.Store(nil)
	s.log.InfoContext(ctx, "dataplane: snapshot applied", "version", next.Version, "services", len(next.Services))
	return s.ack(next, warnings), nil
}

func (s *Server) ack(snap *Snapshot, warnings []string) *Ack {
	a := &Ack{Version: snap.Version, Listeners: map[string]string{}, Warnings: warnings}
	for _, svc := range snap.Services {
		a.Listeners[svc.Name] = svc.Addr
	}
	if snap.Gateway != nil {
		a.Gateway = snap.Gateway.Listen
	}
	return a
}

// resolve puts the addresses taken already in place of port 0.
func (s *Server) resolve(next *Snapshot) {
	for i := range next.Services {
		svc := &next.Services[i]
		if old := s.cur.Service(svc.Name); old != nil && zeroPort(svc.Addr) && sameHost(svc.Addr, old.Addr) {
			svc.Addr = old.Addr
		}
	}
	if next.Gateway != nil && s.cur.Gateway != nil && zeroPort(next.Gateway.Listen) && sameHost(next.Gateway.Listen, s.cur.Gateway.Listen) {
		next.Gateway.Listen = s.cur.Gateway.Listen
	}
}

func zeroPort(addr string) bool {
	_, port, err := splitAddr(addr)
	return err == nil && port == 0
}

func sameHost(a, b string) bool {
	ha, _, _ := net.SplitHostPort(a)
	hb, _, _ := net.SplitHostPort(b)
	return ha == hb
}

// plan is what prepare opened for reconcile.
type plan struct {
	listeners map[string]net.Listener // new services'
	gwLn      net.Listener            // a new gateway listener
	// taken are the inherited listeners among them (by listenerKey): a
	// refused snapshot leaves them for the next.
	taken map[string]bool
}

func (p *plan) close() {
	for _, ln := range p.listeners {
		if !p.taken[listenerKey(ln)] {
			_ = ln.Close()
		}
	}
	if p.gwLn != nil && !p.taken[listenerKey(p.gwLn)] {
		_ = p.gwLn.Close()
	}
}

// listen takes the inherited listener at addr, or listens on it.
func (s *Server) listen(ctx context.Context, p *plan, addr string) (net.Listener, error) {
	if ln := s.inherited["tcp:"+addr]; ln != nil {
		p.taken["tcp:"+addr] = true
		return ln, nil
	}
	var lc net.ListenConfig
	return lc.Listen(ctx, "tcp", addr)
}

// closeInherited closes the inherited listeners the applied snapshot
// did not take: nothing is to listen there any more. s.mu is held.
func (s *Server) closeInherited(ctx context.Context, p *plan) {
	for k, ln := range s.inherited {
		if !p.taken[k] {
			s.log.InfoContext(ctx, "dataplane: an inherited listener is not in the snapshot: closed", "addr", k)
			_ = ln.Close()
		}
	}
	s.inherited = map[string]net.Listener{}
}

// Sockets returns copies of the listening sockets served (the services'
// and the gateway's), to hand over; the caller closes their files.
func (s *Server) Sockets() ([]Socket, error) {
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	var out []Socket
	for name, ln := range s.listening {
		f, err := dupFD(ln)
		if err != nil {
			closeSockets(out)
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out = append(out, Socket{Name: name, Network: ln.Addr().Network(), Addr: ln.Addr().String(), File: f})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (s *Server) setListening(name string, ln net.Listener) {
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	if ln == nil {
		delete(s.listening, name)
		return
	}
	s.listening[name] = ln
}

// prepare checks what only the running data plane can (addresses) and
// opens the new listeners, so reconcile cannot fail half-way. It fills
// in the addresses taken.
func (s *Server) prepare(ctx context.Context, next *Snapshot) (*plan, error) {
	s.resolve(next)
	p := &plan{listeners: map[string]net.Listener{}, taken: map[string]bool{}}
	var errs []error
	for i := range next.Services {
		svc := &next.Services[i]
		if old := s.cur.Service(svc.Name); old != nil {
			if svc.Addr != old.Addr {
				errs = append(errs, fmt.Errorf("service %s listens on %s: it cannot move to %s (remove it in one snapshot, add it in the next)", svc.Name, old.Addr, svc.Addr))
			}
			continue
		}
		ln, err := s.listen(ctx, p, svc.Addr)
		if err != nil {
			errs = append(errs, fmt.Errorf("service %s: listen on %s: %w", svc.Name, svc.Addr, err))
			continue
		}
		p.listeners[svc.Name] = ln
		svc.Addr = ln.Addr().String()
	}
	if g := next.Gateway; g != nil {
		switch {
		case s.cur.Gateway != nil && g.Listen != s.cur.Gateway.Listen:
			errs = append(errs, fmt.Errorf("the gateway listens on %s: it cannot move to %s (remove it in one snapshot, add it in the next)", s.cur.Gateway.Listen, g.Listen))
		case s.cur.Gateway == nil:
			ln, err := s.listen(ctx, p, g.Listen)
			if err != nil {
				errs = append(errs, fmt.Errorf("gateway: listen on %s: %w", g.Listen, err))
				break
			}
			p.gwLn = ln
			g.Listen = ln.Addr().String()
		}
	}
	if err := errors.Join(errs...); err != nil {
		p.close()
		return nil, err
	}
	// With every address known, an endpoint must not be one of them.
	own := map[string]string{}
	for _, svc := range next.Services {
		own[svc.Addr] = svc.Name
	}
	if next.Gateway != nil {
		own[next.Gateway.Listen] = "the gateway"
	}
	for _, svc := range next.Services {
		for _, sub := range svc.Subsets {
			for _, ep := range sub.Endpoints {
				if who := own[ep]; who != "" {
					errs = append(errs, fmt.Errorf("service %s subset %s: endpoint %s is the data plane's own address for %s (a loop): give the instance's address", svc.Name, sub.Name, ep, who))
				}
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

// reconcile changes the mesh and the gateway to next. Everything that
// could refuse was checked by Validate and prepare; what still fails is
// logged and returned with what did not drain.
func (s *Server) reconcile(ctx context.Context, next *Snapshot, p *plan) []string {
	m := s.cfg.Mesh
	var notes []string
	note := func(format string, a ...any) {
		msg := fmt.Sprintf(format, a...)
		notes = append(notes, msg)
		s.log.WarnContext(ctx, "dataplane: "+msg)
	}
	drainCtx := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.WithoutCancel(ctx), s.cfg.DrainTimeout)
	}
	var policy *mesh.Policy
	if next.Authz.Policy != nil {
		policy = mesh.NewPolicy(next.Authz.Policy)
	}
	if err := m.SetAuthz(mesh.AuthzConfig{Mode: next.Authz.Mode, Unknown: next.Authz.Unknown, Policy: policy}); err != nil {
		note("authz: %v", err)
	}
	for _, svc := range next.Services {
		if ln := p.listeners[svc.Name]; ln != nil {
			if _, err := m.AddService(ctx, mesh.ServiceConfig{Name: svc.Name, Listener: ln}); err != nil {
				note("service %s: %v", svc.Name, err)
			} else {
				s.setListening("service "+svc.Name, ln)
			}
		}
	}
	for _, svc := range next.Services {
		old := s.cur.Service(svc.Name)
		if old == nil {
			old = &Service{}
		}
		s.reconcileService(ctx, svc, *old, drainCtx, note)
	}
	for _, old := range s.cur.Services {
		if next.Service(old.Name) != nil {
			continue
		}
		s.setListening("service "+old.Name, nil)
		dctx, cancel := drainCtx()
		if err := m.RemoveService(dctx, old.Name); err != nil {
			note("remove service %s: %v", old.Name, err)
		}
		cancel()
	}
	s.reconcileGateway(ctx, next, p, note)
	if err := m.SetFaults(next.Faults); err != nil {
		note("faults: %v", err)
	}
	return notes
}

func (s *Server) reconcileService(ctx context.Context, svc, old Service, drainCtx func() (context.Context, context.CancelFunc), note func(string, ...any)) {
	m := s.cfg.Mesh
	oldSubs := map[string]Subset{}
	for _, sub := range old.Subsets {
		oldSubs[sub.Name] = sub
	}
	// Unmarked subsets first: marking one clears the mark of the others,
	// so a canary mark moving to another subset ends on the new one.
	subs := append([]Subset(nil), svc.Subsets...)
	sort.SliceStable(subs, func(i, j int) bool { return !subs[i].Canary && subs[j].Canary })
	for _, sub := range subs {
		if o, ok := oldSubs[sub.Name]; ok && o.Canary == sub.Canary && equalStrings(o.Endpoints, sub.Endpoints) {
			continue
		}
		dctx, cancel := drainCtx()
		if err := m.SetSubset(dctx, svc.Name, mesh.Subset{Name: sub.Name, Canary: sub.Canary, Endpoints: sub.Endpoints}); err != nil {
			note("service %s subset %s: %v", svc.Name, sub.Name, err)
		}
		cancel()
	}
	if len(svc.Subsets) > 0 {
		cur, err := m.Weights(ctx, svc.Name)
		want := map[string]int{}
		for _, sub := range svc.Subsets {
			want[sub.Name] = svc.Weights[sub.Name]
		}
		if err != nil || !sameWeights(cur, want) {
			if err := m.SetWeights(ctx, svc.Name, want); err != nil {
				note("service %s: weights: %v", svc.Name, err)
			}
		}
	}
	// Removed subsets, those without traffic first (the mesh keeps the
	// last one with traffic until the others are gone).
	keep := map[string]bool{}
	for _, sub := range svc.Subsets {
		keep[sub.Name] = true
	}
	var gone []string
	for _, sub := range old.Subsets {
		if !keep[sub.Name] {
			gone = append(gone, sub.Name)
		}
	}
	sort.SliceStable(gone, func(i, j int) bool { return old.Weights[gone[i]] < old.Weights[gone[j]] })
	for _, name := range gone {
		dctx, cancel := drainCtx()
		if err := m.RemoveSubset(dctx, svc.Name, name); err != nil {
			note("service %s: remove subset %s: %v", svc.Name, name, err)
		}
		cancel()
	}
}

func sameWeights(cur, want map[string]int) bool {
	for k, v := range cur {
		if want[k] != v {
			return false
		}
	}
	for k, v := range want {
		if cur[k] != v {
			return false
		}
	}
	return true
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// reconcileGateway replaces the gateway when its configuration changed,
// stops it when the snapshot has none, and starts serving a new listener.
func (s *Server) reconcileGateway(ctx context.Context, next *Snapshot, p *plan, note func(string, ...any)) {
	if next.Gateway == nil {
		s.setListening("gateway", nil)
		if s.gwSrv != nil {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.DrainTimeout)
			if err := s.gwSrv.Shutdown(dctx); err != nil {
				note("gateway: stop: %v", err)
			}
			cancel()
			s.gwSrv, s.gwLn = nil, nil
		}
		if s.gw != nil {
			s.gw.Retire()
			s.gw = nil
			s.gwCurrent.Store(nil)
		}
		return
	}
	if s.gw == nil || !sameGateway(s.cur.Gateway, next.Gateway) {
		gw, err := mesh.NewGateway(*next.Gateway, s.cfg.Mesh, s.cfg.Gateway)
		if err != nil {
			note("gateway: %v", err)
		} else {
			old := s.gw
			s.gw = gw
			s.gwCurrent.Store(gw)
			if old != nil {
				old.Retire()
			}
		}
	}
	if p.gwLn != nil {
		s.gwLn = p.gwLn
		s.setListening("gateway", p.gwLn)
		s.gwSrv = &http.Server{
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				gw := s.gwCurrent.Load()
				if gw == nil {
					http.Error(w, "the gateway is not configured", http.StatusServiceUnavailable)
					return
				}
				gw.ServeHTTP(w, r)
			}),
			ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
			ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		}
		srv, ln := s.gwSrv, s.gwLn
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("dataplane: gateway stopped", "err", err)
			}
		}()
	}
}

func sameGateway(a, b *mesh.GatewayConfig) bool {
	if a == nil || b == nil {
		return a == b
	}
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// Close stops the gateway (in-flight requests finish until ctx is done).
// The mesh is the caller's to close.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lnMu.Lock()
	s.listening = map[string]net.Listener{}
	s.lnMu.Unlock()
	for _, ln := range s.inherited {
		_ = ln.Close()
	}
	s.inherited = map[string]net.Listener{}
	if s.gwSrv == nil {
		return nil
	}
	err := s.gwSrv.Shutdown(ctx)
	s.gwSrv = nil
	return err
}

// Status is what GET /status answers.
type Status struct {
	// Version is the snapshot version acknowledged (0: none yet).
	Version uint64    `json:"version"`
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
	// Flotilla is the version of the flotilla binary running.
	Flotilla  string            `json:"flotilla"`
	Listeners map[string]string `json:"listeners"`
	Gateway   string            `json:"gateway,omitempty"`
	// LoadError says why the snapshot saved on disk is not served (until
	// a push is acknowledged).
	LoadError string `json:"load_error,omitempty"`
}

// Status returns the data plane's status.
func (s *Server) Status() Status {
	a := s.ack(s.served.Load(), nil)
	st := Status{Version: a.Version, PID: os.Getpid(), Started: s.started.UTC(), Flotilla: s.cfg.Version,
		Listeners: a.Listeners, Gateway: a.Gateway}
	if e := s.loadError.Load(); e != nil {
		st.LoadError = *e
	}
	return st
}

// maxSnapshotBytes bounds a pushed snapshot.
const maxSnapshotBytes = 16 << 20

// Handler is the admin API:
//
//	PUT /snapshot   apply a snapshot: 200 with an Ack; 400 undecodable or
//	                invalid (code "invalid"), 422 unservable (an address
//	                in use: "refused"), 409 stale version ("stale"); each
//	                refusal {"error", "code", "version": the one still
//	                served}
//	GET /snapshot   the acknowledged snapshot, addresses taken
//	GET /status     Status
//	GET /metrics    the mesh's and the gateway's metrics (Prometheus)
//	GET /stats?service=S&version=V&window=30s   canary.Stats of a subset
//	                (404 {"error", "code": "no_data"} when there is none)
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /snapshot", s.putSnapshot)
	mux.HandleFunc("GET /snapshot", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.Current())
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.Status())
	})
	mux.Handle("GET /metrics", s.cfg.Mesh.MetricsHandler())
	mux.HandleFunc("GET /stats", s.stats)
	return mux
}

// apiError is the body of every error answer.
type apiError struct {
	Error   string `json:"error"`
	Code    string `json:"code,omitempty"`
	Version uint64 `json:"version"`
}

func (s *Server) putSnapshot(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxSnapshotBytes))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{Error: "read snapshot: " + err.Error(), Version: s.Acked()})
		return
	}
	snap, err := Decode("snapshot", data)
	if err != nil {
		s.log.WarnContext(r.Context(), "dataplane: snapshot refused", "err", err)
		writeJSON(w, http.StatusBadRequest, apiError{Error: err.Error(), Code: "invalid", Version: s.Acked()})
		return
	}
	// The request's cancellation must not cut an apply half-way.
	ack, err := s.Apply(context.WithoutCancel(r.Context()), snap)
	var re *RefusedError
	switch {
	case errors.As(err, &re) && re.Stale:
		writeJSON(w, http.StatusConflict, apiError{Error: re.Reason, Code: "stale", Version: re.Acked})
	case errors.As(err, &re):
		writeJSON(w, http.StatusUnprocessableEntity, apiError{Error: re.Reason, Code: "refused", Version: re.Acked})
	case err != nil:
		writeJSON(w, http.StatusInternalServerError, apiError{Error: err.Error(), Version: s.Acked()})
	default:
		writeJSON(w, http.StatusOK, ack)
	}
}

func (s *Server) stats(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	service, version := q.Get("service"), q.Get("version")
	window, err := time.ParseDuration(q.Get("window"))
	if service == "" || version == "" || err != nil || window <= 0 {
		writeJSON(w, http.StatusBadRequest, apiError{Error: "want ?service=S&version=V&window=30s (a positive duration)", Version: s.Acked()})
		return
	}
	st, err := s.cfg.Mesh.Stats(r.Context(), service, version, window)
	if errors.Is(err, canary.ErrNoData) {
		writeJSON(w, http.StatusNotFound, apiError{Error: err.Error(), Code: "no_data", Version: s.Acked()})
		return
	}
	if err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{Error: err.Error(), Version: s.Acked()})
		return
	}
	writeJSON(w, http.StatusOK, wireStats{Requests: st.Requests, Errors: st.Errors, ErrorRate: st.ErrorRate,
		P50: st.P50.String(), P90: st.P90.String(), P99: st.P99.String(), Window: st.Window.String(), Latency: st.Latency})
}

// wireStats is canary.Stats in JSON.
type wireStats struct {
	Requests  int64   `json:"requests"`
	Errors    int64   `json:"errors"`
	ErrorRate float64 `json:"error_rate"`
	P50       string  `json:"p50"`
	P90       string  `json:"p90"`
	P99       string  `json:"p99"`
	Window    string  `json:"window"`
	// Latency is the histogram, for the baseline comparison's rank test.
	Latency canary.Histogram `json:"latency"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
