package broker

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Config configures a Server.
type Config struct {
	// BaseURL is the absolute URL links are built on, with the path prefix
	// when the Server is mounted under one (behind http.StripPrefix); empty
	// means the scheme and host of each request, honouring
	// X-Forwarded-Proto, X-Forwarded-Host and X-Forwarded-Prefix.
	BaseURL string `yaml:"base_url" json:"base_url"`
	// Tokens are bearer tokens; a token without Write may only read.
	Tokens []Token `yaml:"tokens" json:"tokens"`
	// Users are HTTP basic-auth users; a user without Write may only read.
	Users []User `yaml:"users" json:"users"`
	// AnonymousRead lets requests without credentials read (GET/HEAD)
	// when Tokens or Users are configured. With neither configured the
	// broker is open to everyone, for local use.
	AnonymousRead bool `yaml:"anonymous_read" json:"anonymous_read"`
	// AllowContractModification lets a consumer version publish different
	// content for a provider than it published before (the Pact Broker's
	// allow_dangerous_contract_modification); otherwise that is a 409.
	AllowContractModification bool `yaml:"allow_contract_modification" json:"allow_contract_modification"`
	// MaxBodyBytes bounds request bodies.
	MaxBodyBytes int64 `yaml:"max_body_bytes" json:"max_body_bytes"`
	// WebhookHosts, when not empty, are the only hosts webhooks may call
	// (the Pact Broker's webhook_host_whitelist): a host name, or
	// "*.example.com" for its subdomains.
	WebhookHosts []string `yaml:"webhook_hosts" json:"webhook_hosts"`
}

// webhookHostAllowed reports whether a webhook may call host.
func (c Config) webhookHostAllowed(host string) bool {
	if len(c.WebhookHosts) == 0 {
		return true
	}
	for _, h := range c.WebhookHosts {
		if h == host || (strings.HasPrefix(h, "*.") && strings.HasSuffix(host, h[1:])) {
			return true
		}
	}
	return false
}

// Token is a bearer token.
type Token struct {
	Value string `yaml:"value" json:"value"`
	Write bool   `yaml:"write" json:"write"`
}

// User is a basic-auth user.
type User struct {
	Name     string `yaml:"name" json:"name"`
	Password string `yaml:"password" json:"password"`
	Write    bool   `yaml:"write" json:"write"`
}

// DefaultConfig is an open broker with links built from each request.
func DefaultConfig() Config {
	return Config{AnonymousRead: true, MaxBodyBytes: 16 << 20}
}

// Validate reports every problem with the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.BaseURL != "" {
		u, err := url.Parse(c.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("base_url %q: want an absolute http(s) URL", c.BaseURL))
		}
	}
	for i, t := range c.Tokens {
		if len(t.Value) < 8 {
			errs = append(errs, fmt.Errorf("tokens[%d]: a token must be at least 8 characters", i))
		}
	}
	for i, u := range c.Users {
		if u.Name == "" || u.Password == "" || strings.Contains(u.Name, ":") {
			errs = append(errs, fmt.Errorf("users[%d]: want a name without ':' and a password", i))
		}
	}
	if c.MaxBodyBytes <= 0 {
		errs = append(errs, fmt.Errorf("max_body_bytes: must be positive"))
	}
	return errors.Join(errs...)
}

// Server serves the Pact Broker HTTP API over a Store.
type Server struct {
	cfg   Config
	store Store
	log   *slog.Logger
	mux   *http.ServeMux
}

// New returns a Server; it validates cfg.
func New(cfg Config, store Store, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("broker config: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, store: store, log: log, mux: http.NewServeMux()}
	s.routes()
	return s, nil
}

func (s *Server) routes() {
	h := func(pattern string, f func(w http.ResponseWriter, r *http.Request) error) {
		s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			if err := f(w, r); err != nil {
				s.fail(w, r, err)
			}
		})
	}
	const pact = "/pacts/provider/{provider}/consumer/{consumer}/pact-version/{sha}"
	h("GET /{$}", s.index)
	h("POST /contracts/publish", s.publish)
	h("GET /pacticipants", s.pacticipants)
	h("POST /pacticipants", s.createPacticipant)
	h("GET /pacticipants/{pacticipant}", s.pacticipant)
	h("PATCH /pacticipants/{pacticipant}", s.updatePacticipant)
	h("PUT /pacticipants/{pacticipant}", s.updatePacticipant)
	h("GET /pacticipants/{pacticipant}/latest-version", s.latestVersion)
	h("GET /pacticipants/{pacticipant}/versions/{version}", s.version)
	h("PUT /pacticipants/{pacticipant}/versions/{version}", s.putVersion)
	h("GET /pacticipants/{pacticipant}/versions/{version}/tags/{tag}", s.tag)
	h("PUT /pacticipants/{pacticipant}/versions/{version}/tags/{tag}", s.tag)
	h("GET /pacticipants/{pacticipant}/branches/{branch}/versions/{version}", s.branchVersion)
	h("PUT /pacticipants/{pacticipant}/branches/{branch}/versions/{version}", s.branchVersion)
	h("POST /pacticipants/{pacticipant}/versions/{version}/deployed-versions/environment/{env}", s.recordDeployment)
	h("POST /pacticipants/{pacticipant}/versions/{version}/released-versions/environment/{env}", s.recordRelease)
	h("GET /pacts/provider/{provider}/for-verification", s.forVerificationLink)
	h("POST /pacts/provider/{provider}/for-verification", s.forVerification)
	h("GET /pacts/provider/{provider}/latest", s.latestProviderPacts)
	h("GET /pacts/latest", s.latestPactVersions)
	h("GET "+pact, s.pactVersion)
	h("GET "+pact+"/metadata/{metadata}", s.pactVersion)
	h("POST "+pact+"/verification-results", s.publishVerification)
	h("POST "+pact+"/metadata/{metadata}/verification-results", s.publishVerification)
	h("GET "+pact+"/verification-results/{id}", s.verification)
	h("GET /pacts/provider/{provider}/consumer/{consumer}/version/{version}", s.pactForVersion)
	h("PUT /pacts/provider/{provider}/consumer/{consumer}/version/{version}", s.putPact)
	h("GET /pacts/provider/{provider}/consumer/{consumer}/latest", s.latestPact)
	h("GET /environments", s.environments)
	h("POST /environments", s.createEnvironment)
	h("GET /environments/{env}", s.environment)
	h("GET /environments/{env}/deployed-versions/currently-deployed", s.currentlyDeployed)
	h("GET /environments/{env}/released-versions/currently-supported", s.currentlyDeployed)
	h("GET /deployed-versions/{uuid}", s.deployment)
	h("PATCH /deployed-versions/{uuid}", s.patchDeployment)
	h("GET /released-versions/{uuid}", s.deployment)
	h("PATCH /released-versions/{uuid}", s.patchDeployment)
	h("GET /webhooks", s.webhooks)
	h("POST /webhooks", s.createWebhook)
	h("POST /webhooks/provider/{provider}/consumer/{consumer}", s.createWebhook)
	// POST /webhooks/provider/{provider}, /webhooks/consumer/{consumer}
	// (the legacy creation paths) and /webhooks/{uuid}/execute share a
	// shape the mux cannot tell apart.
	h("POST /webhooks/{first}/{second}", func(w http.ResponseWriter, r *http.Request) error {
		switch first, second := r.PathValue("first"), r.PathValue("second"); {
		case second == "execute" && first != "provider" && first != "consumer":
			r.SetPathValue("uuid", first)
			return s.executeWebhook(w, r)
		case first == "provider" || first == "consumer":
			r.SetPathValue(first, second)
			return s.createWebhook(w, r)
		}
		return fmt.Errorf("%s: %w", r.URL.Path, ErrNotFound)
	})
	h("GET /webhooks/{uuid}", s.webhook)
	h("PUT /webhooks/{uuid}", s.createWebhook)
	h("DELETE /webhooks/{uuid}", s.deleteWebhook)
	h("GET /webhooks/{uuid}/deliveries", s.webhookDeliveries)
	h("DELETE /pacticipants/{pacticipant}", s.deletePacticipant)
	h("DELETE /pacticipants/{pacticipant}/versions/{version}", s.deleteVersion)
	h("DELETE /pacticipants/{pacticipant}/versions/{version}/tags/{tag}", s.deleteTag)
	h("GET /pacticipants/{pacticipant}/branches/{branch}", s.branch)
	h("DELETE /pacticipants/{pacticipant}/branches/{branch}", s.deleteBranch)
	h("DELETE /pacts/provider/{provider}/consumer/{consumer}/version/{version}", s.deletePact)
	h("PUT /environments/{env}", s.updateEnvironment)
	h("DELETE /environments/{env}", s.deleteEnvironment)
	for _, p := range []string{"/pacts/provider/{provider}", "/pacts/provider/{provider}/consumer/{consumer}"} {
		h("GET "+p+"/branch", s.branchPacts)
		h("GET "+p+"/branch/latest", s.branchPacts)
		h("GET "+p+"/branch/{branch}", s.branchPacts)
		h("GET "+p+"/branch/{branch}/latest", s.branchPacts)
	}
	h("GET /pacts/provider/{provider}/provider-states", s.providerStates)
	h("GET /pacts/provider/{provider}/provider-states/branch/{branch}", s.providerStates)
	h("GET /pacts/provider/{provider}/provider-states/environment/{environment}", s.providerStates)
	h("GET /doc/{rel}", s.doc)
	h("GET /matrix", s.matrix)
	h("GET /can-i-deploy", s.canIDeploy)
}

// statusWriter remembers the status a handler answered with.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
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

// ServeHTTP authenticates the request and routes it. Refused requests
// (4xx) are logged with their method, path and status, so a client that
// calls a route the broker lacks shows up in its log.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sw := &statusWriter{ResponseWriter: w}
	s.serve(sw, r)
	if sw.status >= 400 && sw.status < 500 {
		s.log.WarnContext(r.Context(), "broker request refused", "method", r.Method, "path", r.URL.Path, "status", sw.status)
	}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if code, msg := s.authorize(r); code != 0 {
		if code == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="flotilla broker"`)
		}
		writeJSON(w, code, map[string]any{"error": map[string]any{"message": msg}})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	s.mux.ServeHTTP(w, r)
}

// authorize returns 0, or the status and message refusing the request.
func (s *Server) authorize(r *http.Request) (int, string) {
	if len(s.cfg.Tokens) == 0 && len(s.cfg.Users) == 0 {
		return 0, ""
	}
	read := r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions ||
		isForVerification(r)
	auth := r.Header.Get("Authorization")
	if auth == "" {
		if read && s.cfg.AnonymousRead {
			return 0, ""
		}
		return http.StatusUnauthorized, "authentication required: send a bearer token or basic auth credentials"
	}
	write, ok := false, false
	if tok, found := strings.CutPrefix(auth, "Bearer "); found {
		for _, t := range s.cfg.Tokens {
			if subtle.ConstantTimeCompare([]byte(tok), []byte(t.Value)) == 1 {
				ok, write = true, t.Write
			}
		}
	} else if name, pass, found := r.BasicAuth(); found {
		for _, u := range s.cfg.Users {
			if subtle.ConstantTimeCompare([]byte(name), []byte(u.Name)) == 1 && subtle.ConstantTimeCompare([]byte(pass), []byte(u.Password)) == 1 {
				ok, write = true, u.Write
			}
		}
	}
	switch {
	case !ok:
		return http.StatusUnauthorized, "invalid credentials"
	case !read && !write:
		return http.StatusForbidden, "these credentials may only read"
	}
	return 0, ""
}

// isForVerification: asking which pacts to verify is a POST only because
// selectors do not fit a query string; it changes nothing, so read-only
// credentials (how CI is configured) may ask, as with the Pact Broker.
func isForVerification(r *http.Request) bool {
	if r.Method != http.MethodPost {
		return false
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	return len(parts) == 4 && parts[0] == "pacts" && parts[1] == "provider" && parts[3] == "for-verification"
}

// httpError is an error with the status and body to answer with.
type httpError struct {
	status int
	body   map[string]any
}

func (e *httpError) Error() string {
	b, _ := json.Marshal(e.body)
	return fmt.Sprintf("%d %s", e.status, b)
}

func badRequest(errs any) error {
	return &httpError{status: http.StatusBadRequest, body: map[string]any{"errors": errs}}
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var he *httpError
	var ve ValidationErrors
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &he):
		writeJSON(w, he.status, he.body)
	case errors.As(err, &ve):
		writeJSON(w, http.StatusBadRequest, map[string]any{"errors": ve})
	case errors.As(err, &mbe):
		writeJSON(w, http.StatusRequestEntityTooLarge, map[string]any{"errors": map[string][]string{"body": {fmt.Sprintf("is larger than %d bytes", mbe.Limit)}}})
	case errors.Is(err, ErrNotFound):
		writeJSON(w, http.StatusNotFound, map[string]any{"error": map[string]any{"message": capitalise(err.Error())}})
	case errors.Is(err, ErrConflict):
		writeJSON(w, http.StatusConflict, map[string]any{
			"errors":  map[string][]string{"content": {err.Error()}},
			"notices": []notice{{Type: "error", Text: err.Error()}},
		})
	case errors.Is(err, ErrInvalid):
		writeJSON(w, http.StatusBadRequest, map[string]any{"errors": []string{err.Error()}})
	default:
		s.log.ErrorContext(r.Context(), "broker request failed", "method", r.Method, "path", r.URL.Path, "error", err)
		writeJSON(w, http.StatusInternalServerError, map[string]any{"error": map[string]any{"message": "internal error: " + err.Error()}})
	}
}

func capitalise(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/hal+json;charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func writeRaw(w http.ResponseWriter, status int, b []byte) {
	w.Header().Set("Content-Type", "application/hal+json;charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// base is the absolute URL links are built on.
func (s *Server) base(r *http.Request) string {
	if s.cfg.BaseURL != "" {
		return strings.TrimSuffix(s.cfg.BaseURL, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p == "http" || p == "https" {
		scheme = p
	}
	host := r.Host
	if h := r.Header.Get("X-Forwarded-Host"); h != "" {
		host = h
	}
	prefix := strings.TrimSuffix(r.Header.Get("X-Forwarded-Prefix"), "/")
	if prefix != "" && !strings.HasPrefix(prefix, "/") {
		prefix = ""
	}
	return scheme + "://" + host + prefix
}

// link builds an absolute link from path segments, escaping each.
func link(base string, segments ...string) string {
	var b strings.Builder
	b.WriteString(base)
	for _, s := range segments {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	return b.String()
}

type notice struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

func href(h string) map[string]any { return map[string]any{"href": h} }

func hrefT(h, title string) map[string]any { return map[string]any{"href": h, "title": title} }

func templated(h, title string) map[string]any {
	return map[string]any{"href": h, "title": title, "templated": true}
}

func ts(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// isJSONContentType accepts JSON and HAL media types (and none given).
func isJSONContentType(ct string) bool {
	if ct == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/json" || mt == "application/hal+json" || strings.HasSuffix(mt, "+json")
}

func decodeBody(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); !isJSONContentType(ct) {
		return &httpError{status: http.StatusUnsupportedMediaType, body: map[string]any{"errors": map[string][]string{
			"Content-Type": {fmt.Sprintf("%s is not JSON: send application/json", ct)}}}}
	}
	dec := json.NewDecoder(r.Body)
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		return badRequest(map[string][]string{"body": {"must be a JSON object: " + err.Error()}})
	}
	return nil
}
