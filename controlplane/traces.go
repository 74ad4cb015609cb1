package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/flotilla-ci/flotilla/tracing/store"
	"github.com/flotilla-ci/flotilla/tracing/store/jaeger"
)

// The local trace view: the control plane receives OTLP over HTTP and
// keeps recent traces in memory (package tracing/store).
//
//	POST /v1/traces        OTLP/HTTP export (protobuf or JSON, gzip or not);
//	                       400 and nothing stored for a payload that is not OTLP
//	GET  /api/traces       ?service=&version=&min_duration=&errors=&since=&limit=:
//	                       {"traces"}: summaries, newest first
//	GET  /api/traces/{id}  {"trace","analysis"}: its spans, tree, critical path
//	                       and each service's self-time; 404 for an unknown id
//	GET  /api/traces/edges ?services=a,b&... (the list's filters): {"edges","traces"}:
//	                       the calls and event flows between services seen in
//	                       the traces (spans of services not listed passed through)
//
// The read routes take the read-only token like every read; an export
// takes the admin token or the ingest one (RoleIngest) the platform gives
// its processes.

// TracesPath is where the control plane receives OTLP spans.
const TracesPath = store.TracesPath

// Traces serves the trace routes over a store.
type Traces struct{ Store *store.Store }

// Routes adds the trace routes to mux.
func (t Traces) Routes(mux *http.ServeMux) {
	mux.Handle("POST "+TracesPath, store.Receiver{Store: t.Store})
	mux.HandleFunc("GET /api/traces", t.list)
	mux.HandleFunc("GET /api/traces/{id}", t.get)
	mux.HandleFunc("GET /api/traces/edges", t.edges)
}

func (t Traces) edges(w http.ResponseWriter, r *http.Request) {
	q, err := store.ParseQuery(r.URL.Query(), time.Now())
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	var known map[string]bool
	if s := r.URL.Query().Get("services"); s != "" {
		known = map[string]bool{}
		for _, n := range strings.Split(s, ",") {
			known[strings.TrimSpace(n)] = true
		}
	}
	edges, n := t.Store.Edges(q, known)
	if edges == nil {
		edges = []store.Edge{}
	}
	writeJSON(w, http.StatusOK, EdgesResponse{Edges: edges, Traces: n})
}

// EdgesResponse is the body of GET /api/traces/edges.
type EdgesResponse struct {
	Edges  []store.Edge `json:"edges"`
	Traces int          `json:"traces"`
}

// TraceEdges returns the interactions between services seen in the
// traces that match q; services (when given) are the services of the
// graph, the others' spans passed through.
func (c *Client) TraceEdges(ctx context.Context, q store.Query, services []string) (*EdgesResponse, error) {
	v := q.Values()
	if len(services) > 0 {
		v.Set("services", strings.Join(services, ","))
	}
	var out EdgesResponse
	if err := c.getJSON(ctx, http.MethodGet, "/api/traces/edges?"+v.Encode(), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func (t Traces) list(w http.ResponseWriter, r *http.Request) {
	q, err := store.ParseQuery(r.URL.Query(), time.Now())
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	out := t.Store.List(q)
	if out == nil {
		out = []store.Summary{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"traces": out})
}

// TraceResponse is the body of GET /api/traces/{id}.
type TraceResponse struct {
	Trace    *store.Trace    `json:"trace"`
	Analysis *store.Analysis `json:"analysis"`
}

func (t Traces) get(w http.ResponseWriter, r *http.Request) {
	tr, err := t.Store.Get(r.PathValue("id"))
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, err)
		return
	case err != nil:
		writeError(w, http.StatusBadRequest, err)
		return
	}
	writeJSON(w, http.StatusOK, TraceResponse{Trace: tr, Analysis: store.Analyze(tr)})
}

// Traces lists the traces that match q, newest first.
func (c *Client) Traces(ctx context.Context, q store.Query) ([]store.Summary, error) {
	var out struct {
		Traces []store.Summary `json:"traces"`
	}
	path := "/api/traces"
	if v := q.Values(); len(v) > 0 {
		path += "?" + v.Encode()
	}
	if err := c.getJSON(ctx, http.MethodGet, path, nil, &out); err != nil {
		return nil, err
	}
	return out.Traces, nil
}

// Trace returns one trace with its analysis; an unknown id is an
// *APIError with status 404.
func (c *Client) Trace(ctx context.Context, id string) (*TraceResponse, error) {
	var out TraceResponse
	if err := c.getJSON(ctx, http.MethodGet, "/api/traces/"+url.PathEscape(id), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// The OpenTelemetry SDK's variables the platform sets for its processes.
const (
	EnvOTLPEndpoint = "OTEL_EXPORTER_OTLP_ENDPOINT"
	EnvOTLPHeaders  = "OTEL_EXPORTER_OTLP_HEADERS"
	EnvOTLPProtocol = "OTEL_EXPORTER_OTLP_PROTOCOL"
	EnvServiceName  = "OTEL_SERVICE_NAME"
	EnvResourceAttr = "OTEL_RESOURCE_ATTRIBUTES"
)

// TracingConfig says where the platform's processes send their spans.
type TracingConfig struct {
	// Endpoint is an OTLP/HTTP endpoint (base URL; the SDK adds
	// /v1/traces) every service and the data plane export to instead of
	// the control plane: the user's collector, or Jaeger's. Empty: the
	// control plane's own receiver.
	Endpoint string
	// Env are other OTEL_* variables passed to every process as they are
	// (sampling, headers for the user's endpoint).
	Env map[string]string
	// Store bounds the control plane's trace store (zero:
	// store.DefaultConfig()).
	Store store.Config
	// Jaeger is a Jaeger v2 binary (`flotilla up --jaeger`): the platform
	// runs it under its supervisor on JaegerAddrs and every process
	// exports to it (Endpoint is then its OTLP receiver).
	Jaeger      string
	JaegerAddrs jaeger.Addrs // zero: jaeger.DefaultAddrs()
}

// otelEnv is the OpenTelemetry environment of a process of the platform:
// the user's endpoint and variables as given, or the control plane's
// receiver with the ingest token. OTEL_SERVICE_NAME and the version are
// set per instance by the local target.
func otelEnv(cfg TracingConfig, api, ingestToken string) map[string]string {
	env := map[string]string{}
	for k, v := range cfg.Env {
		env[k] = v
	}
	if cfg.Endpoint != "" {
		env[EnvOTLPEndpoint] = cfg.Endpoint
		return env
	}
	env[EnvOTLPEndpoint] = api
	env[EnvOTLPProtocol] = "http/protobuf"
	hdr := "Authorization=Bearer%20" + ingestToken
	if h := strings.TrimSpace(env[EnvOTLPHeaders]); h != "" {
		hdr = h + "," + hdr
	}
	env[EnvOTLPHeaders] = hdr
	return env
}

// withEnv is environ with the variables of env set (replacing any).
func withEnv(environ []string, env map[string]string) []string {
	out := make([]string, 0, len(environ)+len(env))
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := env[k]; !ok {
			out = append(out, kv)
		}
	}
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// TracingFromEnv reads the user's OTEL_* variables (for main): an
// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT of the
// user's is where the platform's processes export, instead of the control
// plane.
func TracingFromEnv(environ []string) TracingConfig {
	cfg := TracingConfig{Env: map[string]string{}}
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(k, "OTEL_") || k == EnvServiceName || k == EnvResourceAttr {
			continue
		}
		switch k {
		case EnvOTLPEndpoint:
			cfg.Endpoint = v
			continue
		case "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT":
			if cfg.Endpoint == "" {
				cfg.Endpoint = strings.TrimSuffix(strings.TrimSuffix(v, "/"), TracesPath)
			}
			continue
		}
		cfg.Env[k] = v
	}
	return cfg
}

// ingestToken is the platform's token for exporting spans.
func ingestToken(data string) (string, error) {
	tok, err := ReadToken(TokenFile(data, RoleIngest))
	if err != nil {
		return "", fmt.Errorf("the trace ingest token: %w", err)
	}
	return tok, nil
}

// DataplaneService is the service name of the data plane's spans (the
// gateway's and the mesh's hops).
const DataplaneService = "gateway"

// dataplaneEnv is the data plane's environment: this one's, with the
// platform's OpenTelemetry variables.
func (p *Platform) dataplaneEnv() []string {
	env := map[string]string{EnvServiceName: DataplaneService}
	if p.cfg.Version != "" {
		v, _, _ := strings.Cut(p.cfg.Version, " ")
		env[EnvResourceAttr] = "service.version=" + v
	}
	for k, v := range p.otel {
		env[k] = v
	}
	return withEnv(os.Environ(), env)
}
