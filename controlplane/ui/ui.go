package ui

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flotilla-ci/flotilla/broker"
	"github.com/flotilla-ci/flotilla/canary"
	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/graph"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

// Prefix is where the dashboard is served.
const Prefix = "/ui/"

// Deployer is what the dashboard reads of the deploy side
// (*deploy.Orchestrator).
type Deployer interface {
	Graph() *graph.Graph
	// Status reports every service of the manifest.
	Status(ctx context.Context) ([]deploy.ServiceStatus, error)
	// Running is the release in progress, or nil.
	Running() *deploy.Running
	// History lists records, newest first (service "" for all; limit 0
	// for every one).
	History(ctx context.Context, service string, limit int) ([]deploy.Record, error)
}

var _ Deployer = (*deploy.Orchestrator)(nil)

// Config wires a dashboard. Deployer and API are required.
type Config struct {
	Deployer Deployer
	// API is the control plane's API with its token check: every action
	// of the dashboard is a request to it, carrying the token the user
	// typed, so the API decides who may act.
	API http.Handler
	// Canaries are the canaries as they stand (nil: none).
	Canaries func() []canary.State
	// Metrics gives the services' traffic from the mesh (nil: the
	// overview shows no figures).
	Metrics canary.Metrics
	// Broker is the contract broker's store (nil: the contracts page
	// says there is none).
	Broker broker.Store
	// Registry is the schema registry's base URL ("" : none).
	Registry string
	// Traces, when set, is the control plane's handler that answers GET
	// /api/traces; nil shows "tracing is not enabled".
	Traces http.Handler
	// SampleEvery is how often the services' figures are read from the
	// mesh (default 5s), over Window (default 1m).
	SampleEvery time.Duration
	Window      time.Duration
	// StatusEvery is how often open pages are sent the services'
	// versions, weights and health (default 2s; only while pages are
	// open).
	StatusEvery time.Duration
	// Open serves the read-only pages to any address; by default only
	// loopback clients get them (the actions need a token either way).
	Open   bool
	Logger *slog.Logger
}

// Server is the dashboard.
type Server struct {
	cfg     Config
	pages   map[string]*template.Template
	hub     *hub
	samples *sampler
	log     *slog.Logger
	life    context.Context
	lifeMu  sync.Mutex

	layoutMu    sync.Mutex
	layoutOf    *graph.Graph
	layoutCache *Layout
}

// New returns the dashboard; Start begins its sampling.
func New(cfg Config) (*Server, error) {
	if cfg.Deployer == nil || cfg.API == nil {
		return nil, errors.New("dashboard: a deployer and the control plane's API are required")
	}
	if cfg.SampleEvery <= 0 {
		cfg.SampleEvery = 5 * time.Second
	}
	if cfg.Window <= 0 {
		cfg.Window = time.Minute
	}
	if cfg.StatusEvery <= 0 {
		cfg.StatusEvery = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, hub: newHub(), samples: &sampler{series: map[string]*series{}}, log: cfg.Logger, life: context.Background()}
	if cfg.Canaries != nil {
		s.hub.canaryAt = func(service, version string) (int, bool) {
			for _, st := range cfg.Canaries() {
				if st.Service == service && st.Version == version && !st.Phase.Final() {
					return st.Weight, true
				}
			}
			return 0, false
		}
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	s.pages = pages
	return s, nil
}

var funcs = template.FuncMap{
	"short": func(v string) string {
		if len(v) > 19 {
			return v[:19] + "…"
		}
		return v
	},
	"dur": func(d time.Duration) string {
		switch {
		case d <= 0:
			return "-"
		case d < time.Second:
			return d.Round(time.Millisecond).String()
		case d < time.Minute:
			return d.Round(10 * time.Millisecond).String()
		}
		return d.Round(time.Second).String()
	},
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"iso":  func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) },
	"pct":  func(f float64) string { return strconv.FormatFloat(f*100, 'f', 1, 64) + "%" },
	"f1":   func(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) },
	"f0":   func(f float64) string { return strconv.FormatFloat(f, 'f', 0, 64) },
	"add":  func(a, b float64) float64 { return a + b },
	"join": strings.Join,
	"weights": func(w map[string]int) string {
		keys := make([]string, 0, len(w))
		for k := range w {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s %d%%", shortVersion(k), w[k]))
		}
		return strings.Join(parts, ", ")
	},
	"lower": strings.ToLower,
	"dict": func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	},
	"slug": func(s string) string {
		return strings.NewReplacer(" ", "-", "%", "", "/", "-").Replace(strings.ToLower(s))
	},
}

func shortVersion(v string) string {
	if len(v) > 12 {
		return v[:12]
	}
	return v
}

func parsePages() (map[string]*template.Template, error) {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" || base == "partials" {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/partials.html", n)
		if err != nil {
			return nil, fmt.Errorf("dashboard template %s: %w", n, err)
		}
		pages[base] = t
	}
	return pages, nil
}

// Start samples the mesh's figures and sends the open pages the services'
// state until ctx ends; the open event streams end with it too.
func (s *Server) Start(ctx context.Context) {
	s.lifeMu.Lock()
	s.life = ctx
	s.lifeMu.Unlock()
	go func() {
		t := time.NewTicker(s.cfg.SampleEvery)
		defer t.Stop()
		s.sample(ctx)
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s.sample(ctx)
			}
		}
	}()
	go func() {
		t := time.NewTicker(s.cfg.StatusEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if s.hub.count() == 0 {
					continue
				}
				c, cancel := context.WithTimeout(ctx, 2*time.Second)
				nodes, running := s.nodes(c)
				cancel()
				s.hub.broadcast("status", map[string]any{"nodes": nodes, "running": running})
			}
		}
	}()
}

// Publish is told of every step of every release (it never blocks).
func (s *Server) Publish(e deploy.Event) { s.hub.publish(e) }

// Pages is how many pages have the event stream open.
func (s *Server) Pages() int { return s.hub.count() }

// Handler serves the dashboard under Prefix.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	assets, _ := fs.Sub(assetFS, "assets")
	mux.Handle("GET /ui/assets/", http.StripPrefix("/ui/assets/", cacheAssets(http.FileServerFS(assets))))
	mux.HandleFunc("GET /ui/{$}", s.overview)
	mux.HandleFunc("GET /ui/services/{service}", s.service)
	mux.HandleFunc("GET /ui/releases", s.releases)
	mux.HandleFunc("GET /ui/releases/{id}", s.release)
	mux.HandleFunc("GET /ui/canaries", s.canaries)
	mux.HandleFunc("GET /ui/contracts", s.contracts)
	mux.HandleFunc("GET /ui/contracts/pacts/{provider}/{consumer}/{sha}", s.pact)
	mux.HandleFunc("GET /ui/schemas", s.schemas)
	mux.HandleFunc("GET /ui/traces", s.traces)
	mux.HandleFunc("GET /ui/events", s.events)
	mux.HandleFunc("POST /ui/actions/rollback", s.actRollback)
	mux.HandleFunc("POST /ui/actions/canary", s.actCanary)
	mux.HandleFunc("/ui/", func(w http.ResponseWriter, r *http.Request) {
		s.notFound(w, r, "page", r.URL.Path, []string{"/ui/", "/ui/releases", "/ui/canaries", "/ui/contracts", "/ui/schemas", "/ui/traces"})
	})
	// Actions are refused when they come from another site (Origin and
	// Sec-Fetch-Site against the host), besides needing the token.
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.actionResult(w, r, http.StatusForbidden, "refused: the request came from another site (its Origin is not this dashboard's)")
	}))
	protected := cop.Handler(mux)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.cfg.Open && !loopback(r.RemoteAddr) {
			http.Error(w, "the dashboard is served to this machine only (loopback); reach it through an SSH tunnel, or use the API with a token", http.StatusForbidden)
			return
		}
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("Referrer-Policy", "same-origin")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'")
		protected.ServeHTTP(w, r)
	})
}

func cacheAssets(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=300")
		h.ServeHTTP(w, r)
	})
}

func loopback(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// sameOrigin reports whether a browser said the request comes from this
// host's pages: its Origin is this host (or, without Origin,
// Sec-Fetch-Site is same-origin). A request that says neither is not a
// page's: the API is there for programs.
func sameOrigin(r *http.Request) bool {
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host == r.Host
	}
	return r.Header.Get("Sec-Fetch-Site") == "same-origin"
}

// page is what every template gets.
type page struct {
	Title   string
	Nav     string
	Running *deploy.Running
	Data    any
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, code int, name, title string, data any) {
	t := s.pages[name]
	var buf bytes.Buffer
	p := page{Title: title, Nav: name, Running: s.cfg.Deployer.Running(), Data: data}
	if err := t.ExecuteTemplate(&buf, "layout.html", p); err != nil {
		s.log.ErrorContext(r.Context(), "dashboard: render", "page", name, "err", err)
		http.Error(w, "the dashboard could not render this page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

// notFoundData is the 404 page's.
type notFoundData struct {
	What, ID string
	Exists   []string
	Link     func(string) string
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request, what, id string, exists []string) {
	s.render(w, r, http.StatusNotFound, "notfound", "Not found", notFoundData{What: what, ID: id, Exists: exists})
}

func (s *Server) failed(w http.ResponseWriter, r *http.Request, err error) {
	s.render(w, r, http.StatusInternalServerError, "error", "Error", err.Error())
}

// events is the pages' event stream: release steps as they happen, the
// services' figures and state.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming is not supported here", http.StatusInternalServerError)
		return
	}
	ch, cancel := s.hub.subscribe()
	defer cancel()
	s.lifeMu.Lock()
	life := s.life
	s.lifeMu.Unlock()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, "retry: 1500\n: flotilla dashboard\n\n")
	flusher.Flush()
	ping := time.NewTicker(15 * time.Second)
	defer ping.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-life.Done():
			return
		case <-ping.C:
			if _, err := io.WriteString(w, ": ping\n\n"); err != nil {
				return
			}
			flusher.Flush()
		case m, ok := <-ch:
			if !ok {
				return // too slow: the browser reconnects
			}
			if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", m.event, m.data); err != nil {
				return
			}
			flusher.Flush()
		}
	}
}

// callAPI makes a request to the control plane's API with the user's
// token, in this process, and returns the status and body.
func (s *Server) callAPI(ctx context.Context, token, method, path string, body any) (int, []byte) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req := httptest.NewRequestWithContext(ctx, method, path, rd)
	req.RemoteAddr = "127.0.0.1:0"
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	s.cfg.API.ServeHTTP(rec, req)
	return rec.Code, rec.Body.Bytes()
}

// apiError is the "error" of an API answer, or the body.
func apiError(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return e.Error
	}
	return strings.TrimSpace(string(body))
}

// actionResult answers an action: JSON to the page's script, a page to a
// browser without it.
func (s *Server) actionResult(w http.ResponseWriter, r *http.Request, code int, msg string) {
	if strings.Contains(r.Header.Get("Accept"), "application/json") {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": code < 300, "message": msg})
		return
	}
	s.render(w, r, code, "action", "Action", map[string]any{"OK": code < 300, "Message": msg, "Back": r.Referer()})
}

// actionForm reads an action's form: the token and the confirmation are
// required before anything is asked of the API.
func (s *Server) actionForm(w http.ResponseWriter, r *http.Request) (url.Values, string, bool) {
	if !sameOrigin(r) {
		s.actionResult(w, r, http.StatusForbidden, "refused: an action must come from the dashboard's own page (the request has no Origin of this host)")
		return nil, "", false
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		s.actionResult(w, r, http.StatusBadRequest, "bad form: "+err.Error())
		return nil, "", false
	}
	f := r.PostForm
	if !slices.Contains(f["confirm"], "yes") {
		s.actionResult(w, r, http.StatusBadRequest, "not done: the action was not confirmed")
		return nil, "", false
	}
	tok := strings.TrimSpace(f.Get("token"))
	if tok == "" {
		s.actionResult(w, r, http.StatusUnauthorized, "refused: an action needs the control plane's admin token (flotilla up wrote it to .flotilla/tokens/admin.token)")
		return nil, "", false
	}
	return f, tok, true
}

func (s *Server) actRollback(w http.ResponseWriter, r *http.Request) {
	f, tok, ok := s.actionForm(w, r)
	if !ok {
		return
	}
	svc := f.Get("service")
	if !s.knownService(svc) {
		s.actionResult(w, r, http.StatusNotFound, fmt.Sprintf("unknown service %q", svc))
		return
	}
	who := "dashboard"
	code, body := s.callAPI(r.Context(), tok, http.MethodPost, "/api/rollback", deploy.RollbackRequest{Service: svc, To: f.Get("to"), Who: who})
	if code != http.StatusOK {
		s.actionResult(w, r, code, "refused: "+apiError(body))
		return
	}
	// NDJSON: events, then the report and the error.
	lines := bytes.Split(bytes.TrimSpace(body), []byte("\n"))
	var last struct {
		Report *deploy.Report `json:"report"`
		Error  string         `json:"error"`
	}
	if len(lines) > 0 {
		_ = json.Unmarshal(lines[len(lines)-1], &last)
	}
	if last.Error != "" {
		s.actionResult(w, r, http.StatusConflict, "rollback of "+svc+" failed: "+last.Error)
		return
	}
	msg := "rolled back " + svc
	if last.Report != nil {
		for _, o := range last.Report.Outcomes {
			if o.Service == svc {
				msg = fmt.Sprintf("rolled back %s to %s (release %d, %s)", svc, o.Version, last.Report.Release, o.Result)
			}
		}
	}
	s.actionResult(w, r, http.StatusOK, msg)
}

func (s *Server) actCanary(w http.ResponseWriter, r *http.Request) {
	f, tok, ok := s.actionForm(w, r)
	if !ok {
		return
	}
	svc, action := f.Get("service"), f.Get("action")
	if action != "promote" && action != "abort" {
		s.actionResult(w, r, http.StatusBadRequest, fmt.Sprintf("action %q: want promote or abort", action))
		return
	}
	if !s.knownService(svc) {
		s.actionResult(w, r, http.StatusNotFound, fmt.Sprintf("unknown service %q", svc))
		return
	}
	code, body := s.callAPI(r.Context(), tok, http.MethodPost, "/api/canaries/"+url.PathEscape(svc)+"/"+action,
		map[string]string{"who": "dashboard", "reason": "from the dashboard"})
	if code != http.StatusOK {
		s.actionResult(w, r, code, "refused: "+apiError(body))
		return
	}
	var st canary.State
	_ = json.Unmarshal(body, &st)
	s.actionResult(w, r, http.StatusOK, fmt.Sprintf("%s of %s's canary %s: %s", action, svc, st.Version, st.Phase))
}

func (s *Server) knownService(name string) bool {
	return name != "" && s.cfg.Deployer.Graph().Manifest().Service(name) != nil
}
