package registry

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode"
	"unicode/utf8"

	"github.com/flotilla-ci/flotilla/schema"
	"github.com/flotilla-ci/flotilla/schema/jsonschema"
	"github.com/flotilla-ci/flotilla/schema/protobuf"
)

// ContentType is the Confluent registry's media type.
const ContentType = "application/vnd.schemaregistry.v1+json"

// Config configures a Server.
type Config struct {
	// DefaultLevel applies to subjects when neither they nor the global
	// configuration set a level.
	DefaultLevel schema.Mode `yaml:"default_level"`
	// MaxBodyBytes bounds request bodies; larger ones get 42209.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// Username and Password, when set, are required (HTTP basic auth) for
	// requests that change state; reads stay open.
	Username string `yaml:"username"`
	Password string `yaml:"password"`
}

// DefaultConfig returns Confluent's defaults: BACKWARD, a 2 MiB body limit,
// no authentication.
func DefaultConfig() Config {
	return Config{DefaultLevel: schema.Backward, MaxBodyBytes: 2 << 20}
}

// Validate reports what is wrong with c.
func (c Config) Validate() error {
	var errs []error
	if _, err := schema.ParseMode(string(c.DefaultLevel)); err != nil {
		errs = append(errs, fmt.Errorf("default_level: %w", err))
	}
	if c.MaxBodyBytes < 1024 {
		errs = append(errs, fmt.Errorf("max_body_bytes: %d is too small; want at least 1024", c.MaxBodyBytes))
	}
	if (c.Username == "") != (c.Password == "") {
		errs = append(errs, errors.New("username and password: set both or neither"))
	}
	return errors.Join(errs...)
}

// Server serves the Confluent Schema Registry REST API from a Store.
type Server struct {
	cfg    Config
	store  Store
	log    *slog.Logger
	mux    *http.ServeMux
	byID   boundedCache // int -> []byte: the JSON answer to GET /schemas/ids/{id} (ids are immutable)
	parsed boundedCache // int -> Parsed
}

// cacheEntries bounds each in-memory cache: past it the cache starts over
// (answers are re-read from the store), so memory stays bounded however
// many schemas the registry holds.
const cacheEntries = 100_000

// boundedCache is a sync.Map that is emptied when it grows past
// cacheEntries.
type boundedCache struct {
	m sync.Map
	n atomic.Int64
}

func (c *boundedCache) Load(k any) (any, bool) { return c.m.Load(k) }

func (c *boundedCache) Store(k, v any) {
	if _, loaded := c.m.Swap(k, v); loaded {
		return
	}
	if c.n.Add(1) > cacheEntries {
		c.m.Clear()
		c.n.Store(0)
	}
}

// Clear empties the cache.
func (c *boundedCache) Clear() {
	c.m.Clear()
	c.n.Store(0)
}

// forget drops what is cached by id: a hard delete may have removed ids.
func (s *Server) forget() {
	s.byID.Clear()
	s.parsed.Clear()
}

// New returns a server on store. A nil log discards.
func New(store Store, cfg Config, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("registry config: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, store: store, log: log, mux: http.NewServeMux()}
	s.routes()
	return s, nil
}

func (s *Server) routes() {
	m := s.mux
	var table []string
	handle := func(pattern string, h http.HandlerFunc) {
		m.HandleFunc(pattern, h)
		table = append(table, pattern)
	}
	m.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { s.reply(w, map[string]any{}) })
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, &Error{Code: 404, Message: fmt.Sprintf("HTTP 404 Not Found: no route for %s %s", r.Method, r.URL.Path)})
	})
	handle("GET /schemas/types", func(w http.ResponseWriter, r *http.Request) { s.reply(w, schemaTypes) })
	handle("GET /contexts", func(w http.ResponseWriter, r *http.Request) { s.reply(w, []string{"."}) })
	handle("GET /schemas/ids/{id}", s.schemaByID)
	handle("GET /schemas/ids/{id}/schema", s.schemaTextByID)
	handle("GET /schemas/ids/{id}/subjects", s.subjectsByID)
	handle("GET /schemas/ids/{id}/versions", s.versionsByID)
	handle("GET /subjects", s.subjects)
	handle("GET /schemas", s.allSchemas)
	handle("GET /subjects/{subject}/versions", s.versions)
	handle("GET /subjects/{subject}/versions/{version}", s.version)
	handle("GET /subjects/{subject}/versions/{version}/schema", s.versionSchema)
	handle("GET /subjects/{subject}/versions/{version}/referencedby", s.referencedBy)
	handle("POST /subjects/{subject}/versions", s.write(s.register))
	handle("POST /subjects/{subject}", s.lookup)
	handle("DELETE /subjects/{subject}", s.write(s.deleteSubject))
	handle("DELETE /subjects/{subject}/versions/{version}", s.write(s.deleteVersion))
	handle("POST /compatibility/subjects/{subject}/versions/{version}", s.compatibility)
	handle("POST /compatibility/subjects/{subject}/versions", s.compatibility)
	handle("GET /config", s.getConfig)
	handle("PUT /config", s.write(s.putConfig))
	handle("DELETE /config", s.write(s.deleteConfig))
	handle("GET /config/{subject}", s.getConfig)
	handle("PUT /config/{subject}", s.write(s.putConfig))
	handle("DELETE /config/{subject}", s.write(s.deleteConfig))
	handle("GET /mode", s.getMode)
	handle("GET /mode/{subject}", s.getMode)
	handle("PUT /mode", s.write(s.putMode))
	handle("PUT /mode/{subject}", s.write(s.putMode))
	handle("DELETE /mode", s.write(s.deleteMode))
	handle("DELETE /mode/{subject}", s.write(s.deleteMode))
	// Any other method on a known path (PATCH, OPTIONS, ...) is 405, as
	// Confluent's server answers, with the methods the path takes.
	allowed := map[string][]string{}
	var paths []string
	for _, route := range table {
		method, p, _ := strings.Cut(route, " ")
		if allowed[p] == nil {
			paths = append(paths, p)
		}
		allowed[p] = append(allowed[p], method)
	}
	for _, p := range paths {
		allow := strings.Join(allowed[p], ", ")
		m.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			s.fail(w, r, &Error{405, "HTTP 405 Method Not Allowed"})
		})
	}
}

// ServeHTTP implements http.Handler. A request body that is not JSON (by
// its Content-Type) is refused with 415, as Confluent's server does; no
// Content-Type, or application/octet-stream, is read as JSON.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost || r.Method == http.MethodPut {
		if ct := r.Header.Get("Content-Type"); ct != "" {
			mt, _, err := mime.ParseMediaType(ct)
			switch {
			case err == nil && (mt == ContentType || mt == "application/vnd.schemaregistry+json" || mt == "application/json" || mt == "application/octet-stream"):
			default:
				s.fail(w, r, &Error{415, fmt.Sprintf("HTTP 415 Unsupported Media Type: %q; send application/vnd.schemaregistry.v1+json or application/json", ct)})
				return
			}
		}
	}
	s.mux.ServeHTTP(w, r)
}

// Error is a Confluent error body. The HTTP status is the code's first
// three digits.
type Error struct {
	Code    int    `json:"error_code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return fmt.Sprintf("%d: %s", e.Code, e.Message) }

// Status is the HTTP status the code travels with.
func (e *Error) Status() int {
	c := e.Code
	for c >= 1000 {
		c /= 10
	}
	return c
}

func (s *Server) reply(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	s.replyRaw(w, b)
}

func (s *Server) replyRaw(w http.ResponseWriter, b []byte) {
	w.Header().Set("Content-Type", ContentType)
	_, _ = w.Write(b)
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = storeError(err)
		// Confluent's messages name what was not found.
		switch sub, v := r.PathValue("subject"), r.PathValue("version"); {
		case e.Code == 40401 && sub != "":
			e.Message = fmt.Sprintf("Subject '%s' not found.", sub)
		case e.Code == 40402 && v != "":
			e.Message = fmt.Sprintf("Version %s not found.", v)
		}
		if e.Code == 50001 {
			s.log.ErrorContext(r.Context(), "registry store failed", "method", r.Method, "path", r.URL.Path, "err", err)
		}
	}
	b, _ := json.Marshal(e)
	w.Header().Set("Content-Type", ContentType)
	w.WriteHeader(e.Status())
	_, _ = w.Write(b)
}

func storeError(err error) *Error {
	switch {
	case errors.Is(err, ErrSubjectNotFound):
		return &Error{40401, "Subject not found."}
	case errors.Is(err, ErrVersionNotFound):
		return &Error{40402, "Version not found."}
	case errors.Is(err, ErrSchemaNotFound):
		return &Error{40403, "Schema not found"}
	case errors.Is(err, ErrSubjectSoftDeleted):
		return &Error{40404, "Subject was soft deleted. Set permanent=true to delete permanently"}
	case errors.Is(err, ErrSubjectNotSoftDeleted):
		return &Error{40405, "Subject was not deleted first before being permanently deleted"}
	case errors.Is(err, ErrVersionSoftDeleted):
		return &Error{40406, "Version was soft deleted. Set permanent=true to delete permanently"}
	case errors.Is(err, ErrVersionNotSoftDeleted):
		return &Error{40407, "Version was not deleted first before being permanently deleted"}
	case errors.Is(err, ErrReferenceExists):
		return &Error{42206, "One or more references exist to the schema: " + err.Error()}
	case errors.Is(err, ErrNoLevel):
		return &Error{40408, "Subject does not have subject-level compatibility configured"}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &Error{50002, "Operation timed out"}
	}
	return &Error{50001, "Error in the backend data store"}
}

// write guards a state-changing handler with basic auth when configured.
func (s *Server) write(h http.HandlerFunc) http.HandlerFunc {
	if s.cfg.Username == "" {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(s.cfg.Username)) != 1 ||
			subtle.ConstantTimeCompare([]byte(p), []byte(s.cfg.Password)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="flotilla schema registry"`)
			s.fail(w, r, &Error{40101, "Unauthorized: this registry needs credentials (basic auth) for changes"})
			return
		}
		h(w, r)
	}
}

func subject(r *http.Request) (string, error) {
	sub := r.PathValue("subject")
	if sub == "" || !utf8.ValidString(sub) || strings.IndexFunc(sub, unicode.IsControl) >= 0 {
		return "", &Error{42208, fmt.Sprintf("The specified subject %q is not valid", sub)}
	}
	return sub, nil
}

// parseVersion reads a version path segment: 1..2^31-1, "latest" or -1.
func parseVersion(v string) (int, error) {
	if v == "latest" {
		return Latest, nil
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil || n == 0 || n < -1 {
		return 0, &Error{42202, fmt.Sprintf("The specified version '%s' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\"", v)}
	}
	if n == -1 {
		return Latest, nil
	}
	return int(n), nil
}

func boolParam(r *http.Request, name string) bool {
	v, _ := strconv.ParseBool(r.URL.Query().Get(name))
	return v
}

func parseID(r *http.Request) (int, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 32)
	if err != nil || id < 1 {
		return 0, &Error{40403, fmt.Sprintf("Schema %s not found", r.PathValue("id"))}
	}
	return int(id), nil
}

// request is the body of register, lookup and compatibility requests.
type request struct {
	Schema     *string         `json:"schema"`
	SchemaType string          `json:"schemaType"`
	References []Reference     `json:"references"`
	ID         int             `json:"id"`
	Version    int             `json:"version"`
	Metadata   json.RawMessage `json:"metadata"`
	RuleSet    json.RawMessage `json:"ruleSet"`
}

// readSchema reads and parses the request body's schema, with its
// references resolved.
func (s *Server) readSchema(w http.ResponseWriter, r *http.Request) (Parsed, []Reference, error) {
	sc, refs, _, err := s.readRequest(w, r)
	return sc, refs, err
}

// readRequest is readSchema that also returns the request (for the id and
// version an import chooses).
func (s *Server) readRequest(w http.ResponseWriter, r *http.Request) (Parsed, []Reference, *request, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, nil, nil, &Error{42209, fmt.Sprintf("Request body is larger than the limit of %d bytes", s.cfg.MaxBodyBytes)}
		}
		return nil, nil, nil, &Error{50001, "reading the request body: " + err.Error()}
	}
	var req request
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, nil, nil, &Error{42201, "Invalid request body: " + err.Error()}
	}
	if req.Schema == nil {
		return nil, nil, nil, &Error{42201, `Invalid request body: missing "schema"`}
	}
	typ := strings.ToUpper(req.SchemaType)
	if typ == "" {
		typ = Avro
	}
	if !slices.Contains(schemaTypes, typ) {
		return nil, nil, nil, &Error{42201, fmt.Sprintf("Invalid schemaType %s: this registry serves %s", req.SchemaType, strings.Join(schemaTypes, ", "))}
	}
	refs, texts, err := s.resolveRefs(r.Context(), req.References)
	if err != nil {
		return nil, nil, nil, err
	}
	sc, err := s.parse(r.Context(), typ, *req.Schema, refs, texts)
	if err != nil {
		return nil, nil, nil, &Error{42201, "Invalid schema: " + err.Error()}
	}
	return sc, refs, &req, nil
}

// maxRefDepth bounds how deep references may nest.
const maxRefDepth = 16

// resolveRefs checks references, pins "latest" (-1) to a version number,
// and returns the texts of every schema they reach, dependencies first.
func (s *Server) resolveRefs(ctx context.Context, refs []Reference) ([]Reference, []string, error) {
	var texts []string
	seen := map[Reference]bool{}
	var walk func(refs []Reference, depth int) ([]Reference, error)
	walk = func(refs []Reference, depth int) ([]Reference, error) {
		if depth > maxRefDepth {
			return nil, &Error{42201, fmt.Sprintf("Invalid schema: references nest deeper than %d", maxRefDepth)}
		}
		out := make([]Reference, 0, len(refs))
		names := map[string]bool{}
		for _, ref := range refs {
			if ref.Name == "" || ref.Subject == "" {
				return nil, &Error{42201, "Invalid schema: a reference needs a name, a subject and a version"}
			}
			if names[ref.Name] {
				return nil, &Error{42201, fmt.Sprintf("Invalid schema: reference %q is listed twice", ref.Name)}
			}
			names[ref.Name] = true
			if ref.Version == 0 || ref.Version < -1 {
				return nil, &Error{42201, fmt.Sprintf("Invalid schema: reference %q has version %d; want a version number or -1 for the latest", ref.Name, ref.Version)}
			}
			v, err := s.store.Version(ctx, ref.Subject, ref.Version, false)
			if errors.Is(err, ErrSubjectNotFound) || errors.Is(err, ErrVersionNotFound) {
				return nil, &Error{42201, fmt.Sprintf("Invalid schema: reference %q: subject %s version %d is not registered", ref.Name, ref.Subject, ref.Version)}
			}
			if err != nil {
				return nil, err
			}
			ref.Version = v.Version
			out = append(out, ref)
			if seen[ref] {
				continue
			}
			seen[ref] = true
			if _, err := walk(v.References, depth+1); err != nil {
				return nil, err
			}
			texts = append(texts, v.Schema)
		}
		return out, nil
	}
	out, err := walk(refs, 0)
	if err != nil {
		return nil, nil, err
	}
	if len(out) == 0 {
		out = nil
	}
	return out, texts, nil
}

// schemaTypes are the types served, as GET /schemas/types lists them.
var schemaTypes = []string{Avro, JSON, Protobuf}

// parse parses a schema of a type; texts are the texts of its references,
// dependencies first (Avro), and refs the references themselves (Protobuf
// imports them by name).
func (s *Server) parse(ctx context.Context, typ, text string, refs []Reference, texts []string) (Parsed, error) {
	switch typ {
	case JSON:
		// As Confluent resolves them: each reference's name is what a
		// "$ref" says, its text the referenced version's schema.
		files := map[string]string{}
		if err := s.protoImports(ctx, refs, files, 0); err != nil {
			return nil, err
		}
		return jsonschema.ParseWithReferences(text, files)
	case Protobuf:
		files := map[string]string{}
		if err := s.protoImports(ctx, refs, files, 0); err != nil {
			return nil, err
		}
		return protobuf.Parse(text, files)
	case Avro, "":
		return schema.ParseWithReferences(text, texts)
	}
	return nil, fmt.Errorf("schemaType %s is not served", typ)
}

// protoImports collects the texts of a Protobuf or JSON schema's
// references, and theirs, by reference name (the import path, or the name
// a JSON "$ref" uses).
func (s *Server) protoImports(ctx context.Context, refs []Reference, into map[string]string, depth int) error {
	if depth > maxRefDepth {
		return fmt.Errorf("references nest deeper than %d", maxRefDepth)
	}
	for _, ref := range refs {
		if _, done := into[ref.Name]; done {
			continue
		}
		v, err := s.store.Version(ctx, ref.Subject, ref.Version, false)
		if err != nil {
			return fmt.Errorf("reference %q: %w", ref.Name, err)
		}
		into[ref.Name] = v.Schema
		if err := s.protoImports(ctx, v.References, into, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// parsedVersion parses a stored version with its references.
func (s *Server) parsedVersion(ctx context.Context, v SubjectVersion) (Parsed, error) {
	if p, ok := s.parsed.Load(v.ID); ok {
		return p.(Parsed), nil
	}
	_, texts, err := s.resolveRefs(ctx, v.References)
	if err != nil {
		return nil, fmt.Errorf("references of stored schema %d: %w", v.ID, err)
	}
	sc, err := s.parse(ctx, v.SchemaType, v.Schema, v.References, texts)
	if err != nil {
		return nil, fmt.Errorf("stored schema %d: %w", v.ID, err)
	}
	s.parsed.Store(v.ID, sc)
	return sc, nil
}

// effective picks the level that applies to a subject.
func (s *Server) effective(subjectLevel, globalLevel schema.Mode) schema.Mode {
	switch {
	case subjectLevel != "":
		return subjectLevel
	case globalLevel != "":
		return globalLevel
	}
	return s.cfg.DefaultLevel
}

func (s *Server) levelsFor(ctx context.Context, sub string) (schema.Mode, error) {
	sl, err := s.store.Level(ctx, sub)
	if err != nil && !errors.Is(err, ErrNoLevel) {
		return "", err
	}
	gl, err := s.store.Level(ctx, "")
	if err != nil && !errors.Is(err, ErrNoLevel) {
		return "", err
	}
	return s.effective(sl, gl), nil
}

// problem is one incompatibility, of any schema type.
type problem struct {
	Version int
	Message string // Confluent's {errorType:..., description:...} rendering
}

// check runs the level's check of candidate against versions, by the rules
// of the candidate's type; a version of another type is incompatible, as
// Confluent answers.
func (s *Server) check(ctx context.Context, level schema.Mode, candidate Parsed, vs []SubjectVersion) ([]problem, []SubjectVersion, error) {
	if level == schema.None || len(vs) == 0 {
		return nil, vs, nil
	}
	check := vs[len(vs)-1:]
	if level.Transitive() {
		check = vs
	}
	parsed := make([]Parsed, len(check))
	for i, v := range check {
		sc, err := s.parsedVersion(ctx, v)
		if err != nil {
			return nil, nil, err
		}
		if sc.SchemaType() != candidate.SchemaType() {
			return []problem{{Version: v.Version, Message: "Incompatible because of different schema type"}}, vs, nil
		}
		parsed[i] = sc
	}
	var out []problem
	switch c := candidate.(type) {
	case *schema.Schema:
		prev := make([]schema.Version, len(check))
		for i, p := range parsed {
			prev[i] = schema.Version{Version: check[i].Version, Schema: p.(*schema.Schema)}
		}
		for _, p := range level.Check(c, prev) {
			out = append(out, problem{p.Version, fmt.Sprintf("{errorType:'%s', description:'%s', additionalInfo:'%s'}", p.Reason, p.Description(), p.Detail)})
		}
	case *protobuf.Schema:
		prev := make([]*protobuf.Schema, len(check))
		for i, p := range parsed {
			prev[i] = p.(*protobuf.Schema)
		}
		for _, p := range protobuf.Check(level, c, prev) {
			out = append(out, problem{check[p.Version-1].Version, fmt.Sprintf("{errorType:\"%s\", description:\"%s\"}", p.Type, p.Description())})
		}
	case *jsonschema.Schema:
		prev := make([]*jsonschema.Schema, len(check))
		for i, p := range parsed {
			prev[i] = p.(*jsonschema.Schema)
		}
		for _, p := range jsonschema.Check(level, c, prev) {
			update, original := "new", "old"
			if p.Direction == schema.OldReadsNew {
				update, original = "old", "new"
			}
			out = append(out, problem{check[p.Version-1].Version, fmt.Sprintf("{errorType:\"%s\", description:\"%s\"}", p.Type, p.Description(update, original))})
		}
	}
	return out, vs, nil
}

// messages renders problems in the Confluent verbose style.
func messages(level schema.Mode, problems []problem, vs []SubjectVersion) []string {
	out := []string{}
	if len(problems) == 0 {
		return out
	}
	for _, p := range problems {
		out = append(out, p.Message)
	}
	v := problems[0].Version
	out = append(out, fmt.Sprintf("{oldSchemaVersion: %d}", v))
	for _, sv := range vs {
		if sv.Version == v {
			old := sv.Schema
			if len(old) > 10<<10 {
				old = old[:10<<10] + "..."
			}
			out = append(out, fmt.Sprintf("{oldSchema: '%s'}", old))
		}
	}
	out = append(out, fmt.Sprintf("{validateFields: 'false', compatibility: '%s'}", level))
	return out
}

type incompatible struct {
	sub  string
	msgs []string
}

func (e *incompatible) Error() string { return "incompatible with " + e.sub }

func (s *Server) register(w http.ResponseWriter, r *http.Request) {
	sub, err := subject(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	mode, err := s.modeFor(r.Context(), sub)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if mode == ReadOnly || mode == ReadOnlyOverride {
		s.fail(w, r, &Error{42205, fmt.Sprintf("Subject %s is in read-only mode", sub)})
		return
	}
	sc, refs, req, err := s.readRequest(w, r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if mode == Import {
		s.importSchema(w, r, sub, sc, refs, req)
		return
	}
	if req.ID > 0 {
		s.fail(w, r, &Error{42205, fmt.Sprintf("Operation not permitted: registering with a chosen id needs IMPORT mode; subject %s is in %s mode", sub, mode)})
		return
	}
	res, err := s.store.Register(r.Context(), sub, sc, refs, func(vs []SubjectVersion, sl, gl schema.Mode) error {
		level := s.effective(sl, gl)
		problems, _, err := s.check(r.Context(), level, sc, vs)
		if err != nil {
			return err
		}
		if len(problems) > 0 {
			return &incompatible{sub: sub, msgs: messages(level, problems, vs)}
		}
		return nil
	})
	var inc *incompatible
	if errors.As(err, &inc) {
		s.fail(w, r, &Error{40901, fmt.Sprintf("Schema being registered is incompatible with an earlier schema for subject %q, details: [%s]", sub, strings.Join(inc.msgs, ", "))})
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if res.Created {
		s.log.InfoContext(r.Context(), "schema registered", "subject", sub, "version", res.Version, "id", res.ID)
	}
	s.reply(w, map[string]any{"id": res.ID, "version": res.Version})
}

// importSchema registers with the id and version the request chooses, and
// no compatibility check (IMPORT mode).
func (s *Server) importSchema(w http.ResponseWriter, r *http.Request, sub string, sc Parsed, refs []Reference, req *request) {
	if req.ID < 0 || req.Version < 0 {
		s.fail(w, r, &Error{42202, "An imported id and version must be positive"})
		return
	}
	res, err := s.store.Import(r.Context(), sub, sc, refs, req.ID, req.Version)
	if errors.Is(err, ErrConflict) {
		s.fail(w, r, &Error{42207, "Overwrite new schema is not permitted: " + err.Error()})
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if res.Created {
		s.log.InfoContext(r.Context(), "schema imported", "subject", sub, "version", res.Version, "id", res.ID)
	}
	s.reply(w, map[string]any{"id": res.ID, "version": res.Version})
}

func (s *Server) lookup(w http.ResponseWriter, r *http.Request) {
	sub, err := subject(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	sc, refs, err := s.readSchema(w, r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	v, err := s.store.Lookup(r.Context(), sub, sc, refs, boolParam(r, "deleted"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.reply(w, versionBody(v))
}

func versionBody(v SubjectVersion) map[string]any {
	out := map[string]any{"subject": v.Subject, "version": v.Version, "id": v.ID, "schema": v.Schema}
	if len(v.References) > 0 {
		out["references"] = v.References
	}
	if v.SchemaType != "" && v.SchemaType != Avro {
		out["schemaType"] = v.SchemaType
	}
	return out
}

func (s *Server) schemaByID(w http.ResponseWriter, r *http.Request) {
	id, err := parseID(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	fetchMax := boolParam(r, "fetchMaxId")
	if b, ok := s.byID.Load(id); ok && !fetchMax {
		s.replyRaw(w, b.([]byte))
		return
	}
	st, err := s.store.SchemaByID(r.Context(), id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	body := map[string]any{"schema": st.Schema}
	if len(st.References) > 0 {
		body["references"] = st.References
	}
	if st.SchemaType != "" && st.SchemaType != Avro {
		body["schemaType"] = st.SchemaType // Confluent omits AVRO, the default
	}
	if fetchMax {
		// Clients use it to learn that newer ids exist (and refresh caches).
		if body["maxId"], err = s.store.MaxID(r.Context()); err != nil {
			s.fail(w, r, err)
			return
		}
		s.reply(w, body)
		return
	}
	b, err := json.Marshal(body)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.byID.Store(id, b)
	s.replyRaw(w, b)
}

func (s *Server) schemaTextByID(w http.ResponseWriter, r *http.Request) {
	id, err := parseID(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	st, err := s.store.SchemaByID(r.Context(), id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.replyRaw(w, []byte(st.Schema))
}

func (s *Server) subjectsByID(w http.ResponseWriter, r *http.Request) {
	id, err := parseID(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	us, err := s.store.Usages(r.Context(), id, boolParam(r, "deleted"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := []string{}
	for _, u := range us {
		if len(out) == 0 || out[len(out)-1] != u.Subject {
			out = append(out, u.Subject)
		}
	}
	s.reply(w, out)
}

func (s *Server) versionsByID(w http.ResponseWriter, r *http.Request) {
	id, err := parseID(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	us, err := s.store.Usages(r.Context(), id, boolParam(r, "deleted"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	type sv struct {
		Subject string `json:"subject"`
		Version int    `json:"version"`
	}
	out := []sv{}
	for _, u := range us {
		out = append(out, sv{u.Subject, u.Version})
	}
	s.reply(w, out)
}

// page applies offset and limit (-1: no limit).
func page[T any](r *http.Request, list []T) []T {
	q := r.URL.Query()
	if off, err := strconv.Atoi(q.Get("offset")); err == nil && off > 0 {
		if off > len(list) {
			off = len(list)
		}
		list = list[off:]
	}
	if lim, err := strconv.Atoi(q.Get("limit")); err == nil && lim >= 0 && lim < len(list) {
		list = list[:lim]
	}
	return list
}

func (s *Server) subjects(w http.ResponseWriter, r *http.Request) {
	deletedOnly := boolParam(r, "deletedOnly")
	all, err := s.store.Subjects(r.Context(), boolParam(r, "deleted") || deletedOnly)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var live map[string]bool
	if deletedOnly {
		ls, err := s.store.Subjects(r.Context(), false)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		live = map[string]bool{}
		for _, l := range ls {
			live[l] = true
		}
	}
	prefix := r.URL.Query().Get("subjectPrefix")
	out := []string{}
	for _, sub := range all {
		if strings.HasPrefix(sub, prefix) && !live[sub] {
			out = append(out, sub)
		}
	}
	sort.Strings(out)
	s.reply(w, page(r, out))
}

// allSchemas lists every version of every subject (latestOnly: the newest
// of each), filtered by subjectPrefix.
func (s *Server) allSchemas(w http.ResponseWriter, r *http.Request) {
	deleted, latestOnly := boolParam(r, "deleted"), boolParam(r, "latestOnly")
	subs, err := s.store.Subjects(r.Context(), deleted)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	prefix := r.URL.Query().Get("subjectPrefix")
	out := []map[string]any{}
	for _, sub := range subs {
		if !strings.HasPrefix(sub, prefix) {
			continue
		}
		vs, err := s.store.Versions(r.Context(), sub, deleted)
		if errors.Is(err, ErrSubjectNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if latestOnly && len(vs) > 0 {
			vs = vs[len(vs)-1:]
		}
		for _, v := range vs {
			out = append(out, versionBody(v))
		}
	}
	s.reply(w, page(r, out))
}

func (s *Server) versions(w http.ResponseWriter, r *http.Request) {
	sub, err := subject(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	deletedOnly := boolParam(r, "deletedOnly")
	vs, err := s.store.Versions(r.Context(), sub, boolParam(r, "deleted") || deletedOnly)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	negative := boolParam(r, "deletedAsNegative")
	out := []int{}
	for _, v := range vs {
		switch {
		case deletedOnly && !v.Deleted:
		case v.Deleted && negative:
			out = append(out, -v.Version)
		default:
			out = append(out, v.Version)
		}
	}
	s.reply(w, page(r, out))
}

func (s *Server) findVersion(r *http.Request) (SubjectVersion, error) {
	sub, err := subject(r)
	if err != nil {
		return SubjectVersion{}, err
	}
	v, err := parseVersion(r.PathValue("version"))
	if err != nil {
		return SubjectVersion{}, err
	}
	return s.store.Version(r.Context(), sub, v, boolParam(r, "deleted"))
}

func (s *Server) version(w http.ResponseWriter, r *http.Request) {
	v, err := s.findVersion(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.reply(w, versionBody(v))
}

func (s *Server) versionSchema(w http.ResponseWriter, r *http.Request) {
	v, err := s.findVersion(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.replyRaw(w, []byte(v.Schema))
}

func (s *Server) referencedBy(w http.ResponseWriter, r *http.Request) {
	v, err := s.findVersion(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ids, err := s.store.ReferencedBy(r.Context(), v.Subject, v.Version)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.reply(w, ids)
}

func (s *Server) deleteSubject(w http.ResponseWriter, r *http.Request) {
	sub, err := subject(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.writable(r.Context(), sub); err != nil {
		s.fail(w, r, err)
		return
	}
	vs, err := s.store.DeleteSubject(r.Context(), sub, boolParam(r, "permanent"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if boolParam(r, "permanent") {
		s.forget()
	}
	s.log.InfoContext(r.Context(), "subject deleted", "subject", sub, "permanent", boolParam(r, "permanent"), "versions", vs)
	s.reply(w, vs)
}

func (s *Server) deleteVersion(w http.ResponseWriter, r *http.Request) {
	sub, err := subject(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	n, err := parseVersion(r.PathValue("version"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.writable(r.Context(), sub); err != nil {
		s.fail(w, r, err)
		return
	}
	permanent := boolParam(r, "permanent")
	if n == Latest {
		v, err := s.store.Version(r.Context(), sub, Latest, permanent)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		n = v.Version
	}
	if err := s.store.DeleteVersion(r.Context(), sub, n, permanent); err != nil {
		s.fail(w, r, err)
		return
	}
	if permanent {
		s.forget()
	}
	s.log.InfoContext(r.Context(), "version deleted", "subject", sub, "version", n, "permanent", permanent)
	s.reply(w, n)
}

func (s *Server) compatibility(w http.ResponseWriter, r *http.Request) {
	sub, err := subject(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	one, all := 0, r.PathValue("version") == ""
	if !all {
		if one, err = parseVersion(r.PathValue("version")); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	sc, _, err := s.readSchema(w, r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	level, err := s.levelsFor(r.Context(), sub)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var vs []SubjectVersion
	if all {
		vs, err = s.store.Versions(r.Context(), sub, false)
		if errors.Is(err, ErrSubjectNotFound) {
			err = nil
		}
	} else {
		var v SubjectVersion
		v, err = s.store.Version(r.Context(), sub, one, false)
		switch {
		case err == nil:
			vs = []SubjectVersion{v}
		case one == Latest && errors.Is(err, ErrSubjectNotFound):
			err = nil // nothing to be incompatible with
		}
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	problems, _, err := s.check(r.Context(), level, sc, vs)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := map[string]any{"is_compatible": len(problems) == 0}
	if boolParam(r, "verbose") {
		out["messages"] = messages(level, problems, vs)
	}
	s.reply(w, out)
}

func (s *Server) getConfig(w http.ResponseWriter, r *http.Request) {
	sub := r.PathValue("subject")
	l, err := s.store.Level(r.Context(), sub)
	if errors.Is(err, ErrNoLevel) {
		switch {
		case sub == "":
			l, err = s.cfg.DefaultLevel, nil
		case boolParam(r, "defaultToGlobal"):
			l, err = s.levelsFor(r.Context(), sub)
		}
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// Confluent answers with compatibilityLevel; hamba's client reads
	// compatibility (the PUT field name): send both.
	s.reply(w, map[string]any{"compatibilityLevel": l, "compatibility": l})
}

func (s *Server) putConfig(w http.ResponseWriter, r *http.Request) {
	sub := r.PathValue("subject")
	if sub != "" {
		if _, err := subject(r); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		s.fail(w, r, &Error{42209, "Request body is too large"})
		return
	}
	var req struct {
		Compatibility string `json:"compatibility"`
		// CompatibilityLevel is the name Confluent's Config entity (and
		// older clients) use; it is understood as compatibility.
		CompatibilityLevel string `json:"compatibilityLevel"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		s.fail(w, r, &Error{42203, "Invalid compatibility level: " + err.Error()})
		return
	}
	level := req.Compatibility
	switch {
	case level == "":
		level = req.CompatibilityLevel
	case req.CompatibilityLevel != "" && !strings.EqualFold(req.CompatibilityLevel, level):
		s.fail(w, r, &Error{42203, fmt.Sprintf("Invalid compatibility level: the body says both compatibility %q and compatibilityLevel %q; send one (compatibility)", level, req.CompatibilityLevel)})
		return
	}
	m, err := schema.ParseMode(level)
	if err != nil {
		s.fail(w, r, &Error{42203, "Invalid compatibility level. Valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive"})
		return
	}
	if err := s.store.SetLevel(r.Context(), sub, m); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.InfoContext(r.Context(), "compatibility level set", "subject", sub, "level", m)
	s.reply(w, map[string]any{"compatibility": m})
}

func (s *Server) deleteConfig(w http.ResponseWriter, r *http.Request) {
	sub := r.PathValue("subject")
	prev, err := s.store.DeleteLevel(r.Context(), sub)
	if sub == "" && errors.Is(err, ErrNoLevel) {
		prev, err = s.cfg.DefaultLevel, nil
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// Confluent answers with the Config entity (compatibilityLevel); clients
	// such as franz-go read the PUT field name (compatibility): send both.
	s.reply(w, map[string]any{"compatibilityLevel": prev, "compatibility": prev})
}

// Modes.
const (
	ReadWrite        = "READWRITE"
	ReadOnly         = "READONLY"
	ReadOnlyOverride = "READONLY_OVERRIDE"
	Import           = "IMPORT"
)

// modeFor is the mode in force for a subject: its own, else the global
// one, else READWRITE.
func (s *Server) modeFor(ctx context.Context, sub string) (string, error) {
	for _, key := range []string{sub, ""} {
		m, err := s.store.Mode(ctx, key)
		if err == nil {
			return m, nil
		}
		if !errors.Is(err, ErrNoMode) {
			return "", err
		}
	}
	return ReadWrite, nil
}

// writable refuses changes to a subject in a read-only mode.
func (s *Server) writable(ctx context.Context, sub string) error {
	m, err := s.modeFor(ctx, sub)
	if err != nil {
		return err
	}
	if m == ReadOnly || m == ReadOnlyOverride {
		return &Error{42205, fmt.Sprintf("Subject %s is in read-only mode", sub)}
	}
	return nil
}

func (s *Server) getMode(w http.ResponseWriter, r *http.Request) {
	sub := r.PathValue("subject")
	m, err := s.store.Mode(r.Context(), sub)
	if errors.Is(err, ErrNoMode) {
		switch {
		case sub == "":
			m, err = ReadWrite, nil
		case boolParam(r, "defaultToGlobal"):
			m, err = s.modeFor(r.Context(), sub)
		default:
			err = &Error{40409, fmt.Sprintf("Subject %s does not have subject-level mode configured", sub)}
		}
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.reply(w, map[string]any{"mode": m})
}

func (s *Server) putMode(w http.ResponseWriter, r *http.Request) {
	sub := r.PathValue("subject")
	if sub != "" {
		if _, err := subject(r); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		s.fail(w, r, &Error{42209, "Request body is too large"})
		return
	}
	var req struct {
		Mode string `json:"mode"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		s.fail(w, r, &Error{42204, "Invalid mode: " + err.Error()})
		return
	}
	m := strings.ToUpper(req.Mode)
	switch m {
	case ReadWrite, ReadOnly, ReadOnlyOverride:
	case Import:
		// Importing into a registry (or subject) that already has schemas
		// could collide with their ids: Confluent asks for force=true.
		if !boolParam(r, "force") {
			var subs []string
			if sub == "" {
				subs, err = s.store.Subjects(r.Context(), true)
			} else if vs, verr := s.store.Versions(r.Context(), sub, true); verr == nil && len(vs) > 0 {
				subs = []string{sub}
			} else if verr != nil && !errors.Is(verr, ErrSubjectNotFound) {
				err = verr
			}
			if err != nil {
				s.fail(w, r, err)
				return
			}
			if len(subs) > 0 {
				s.fail(w, r, &Error{42205, "Cannot import since found existing subjects; set force=true to import anyway"})
				return
			}
		}
	default:
		s.fail(w, r, &Error{42204, "Invalid mode. Valid values are READWRITE, READONLY, READONLY_OVERRIDE and IMPORT"})
		return
	}
	if err := s.store.SetMode(r.Context(), sub, m); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.InfoContext(r.Context(), "mode set", "subject", sub, "mode", m)
	s.reply(w, map[string]any{"mode": m})
}

func (s *Server) deleteMode(w http.ResponseWriter, r *http.Request) {
	sub := r.PathValue("subject")
	prev, err := s.store.DeleteMode(r.Context(), sub)
	if errors.Is(err, ErrNoMode) {
		if sub == "" {
			prev, err = ReadWrite, nil
		} else {
			err = &Error{40409, fmt.Sprintf("Subject %s does not have subject-level mode configured", sub)}
		}
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.reply(w, map[string]any{"mode": prev})
}
