// Package jaeger reads traces from a Jaeger v2 query service (its API v3,
// which answers in OTLP's JSON) into the trace store's model, and runs a
// Jaeger v2 binary (all in one: the OTLP receiver, in-memory storage and
// the query service) on chosen addresses.
package jaeger

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/flotilla-ci/flotilla/tracing/store"
)

// Version is the Jaeger release flotilla runs (tools/jaeger/go.mod).
const Version = "v1.75.0"

// Jaeger's standard addresses: the query service (UI and API) and the
// OTLP/HTTP receiver.
const (
	DefaultQueryURL = "http://127.0.0.1:16686"
	DefaultOTLPAddr = "127.0.0.1:4318"
)

// ErrUnreachable is wrapped when no Jaeger answers at the address.
var ErrUnreachable = errors.New("no Jaeger query service answers")

// Client reads traces from Jaeger's query API v3.
type Client struct {
	BaseURL string
	HTTP    *http.Client
	// Lookback bounds a list without --since (Jaeger needs a time range).
	Lookback time.Duration
}

// NewClient returns a client for the query service at base.
func NewClient(base string) *Client {
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	return &Client{BaseURL: strings.TrimRight(base, "/"), HTTP: &http.Client{Timeout: 30 * time.Second}, Lookback: time.Hour}
}

func (c *Client) get(ctx context.Context, path string, q url.Values) ([]byte, int, error) {
	u := c.BaseURL + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("%w at %s: %w", ErrUnreachable, c.BaseURL, err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	return b, resp.StatusCode, err
}

// apiError is Jaeger's error body.
func apiError(path string, code int, b []byte) error {
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	msg := strings.TrimSpace(string(b))
	if json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
		msg = e.Error.Message
	}
	return fmt.Errorf("jaeger %s: %d: %s", path, code, msg)
}

// spans decodes API v3's answer: {"result": TracesData in OTLP JSON},
// one or more.
func spans(b []byte) ([]store.Span, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	var out []store.Span
	for {
		var w struct {
			Result json.RawMessage `json:"result"`
		}
		if err := dec.Decode(&w); err == io.EOF {
			return out, nil
		} else if err != nil {
			return nil, fmt.Errorf("jaeger's answer: %w", err)
		}
		if len(w.Result) == 0 {
			continue
		}
		s, err := store.Decode(w.Result, store.ContentJSON, store.DefaultLimits())
		if err != nil {
			return nil, fmt.Errorf("jaeger's answer: %w", err)
		}
		out = append(out, s...)
	}
}

// Get returns a trace; one Jaeger does not have is store.ErrNotFound.
func (c *Client) Get(ctx context.Context, id string) (*store.Trace, error) {
	id = strings.ToLower(strings.TrimSpace(id))
	path := "/api/v3/traces/" + url.PathEscape(id)
	b, code, err := c.get(ctx, path, nil)
	if err != nil {
		return nil, err
	}
	if code == http.StatusNotFound {
		return nil, fmt.Errorf("trace %s: %w in Jaeger at %s", id, store.ErrNotFound, c.BaseURL)
	}
	if code != http.StatusOK {
		return nil, apiError(path, code, b)
	}
	sp, err := spans(b)
	if err != nil {
		return nil, err
	}
	store.SortSpans(sp)
	return &store.Trace{TraceID: id, Spans: sp}, nil
}

// Services lists the services Jaeger has spans of.
func (c *Client) Services(ctx context.Context) ([]string, error) {
	b, code, err := c.get(ctx, "/api/v3/services", nil)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, apiError("/api/v3/services", code, b)
	}
	var out struct {
		Services []string `json:"services"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("jaeger's services: %w", err)
	}
	sort.Strings(out.Services)
	return out.Services, nil
}

// List finds traces as store.Store.List does: Jaeger searches by service
// (every service it knows when q names none) over a time range (q.Since,
// or the Lookback), and the store's filters apply to what it returns.
func (c *Client) List(ctx context.Context, q store.Query) ([]store.Summary, error) {
	services := []string{q.Service}
	if q.Service == "" {
		var err error
		if services, err = c.Services(ctx); err != nil {
			return nil, err
		}
	}
	now := time.Now()
	since := q.Since
	if since.IsZero() {
		since = now.Add(-c.Lookback)
	}
	limit := q.Limit
	if limit == 0 {
		limit = store.DefaultLimit
	}
	byTrace := map[string][]store.Span{}
	for _, svc := range services {
		v := url.Values{}
		v.Set("query.service_name", svc)
		v.Set("query.start_time_min", since.UTC().Format(time.RFC3339Nano))
		v.Set("query.start_time_max", now.Add(time.Minute).UTC().Format(time.RFC3339Nano))
		v.Set("query.num_traces", fmt.Sprint(max(limit, 100)))
		b, code, err := c.get(ctx, "/api/v3/traces", v)
		if err != nil {
			return nil, err
		}
		if code == http.StatusNotFound {
			continue // no traces
		}
		if code != http.StatusOK {
			return nil, apiError("/api/v3/traces", code, b)
		}
		sp, err := spans(b)
		if err != nil {
			return nil, err
		}
		for _, s := range sp {
			if !containsSpan(byTrace[s.TraceID], s.SpanID) {
				byTrace[s.TraceID] = append(byTrace[s.TraceID], s)
			}
		}
	}
	var out []store.Summary
	for id, sp := range byTrace {
		if sum, ok := store.Summarize(id, sp, q); ok {
			out = append(out, sum)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start.After(out[j].Start) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func containsSpan(sp []store.Span, id string) bool {
	for _, s := range sp {
		if s.SpanID == id {
			return true
		}
	}
	return false
}

// Addrs are where a Jaeger process listens.
type Addrs struct {
	OTLPHTTP  string // host:port of the OTLP/HTTP receiver (4318)
	QueryHTTP string // host:port of the query service and UI (16686)
	QueryGRPC string // host:port of the query service's gRPC API (16685)
	Health    string // host:port of the health check (13133)
}

// DefaultAddrs are Jaeger's standard addresses on the loopback interface.
func DefaultAddrs() Addrs {
	return Addrs{OTLPHTTP: DefaultOTLPAddr, QueryHTTP: "127.0.0.1:16686", QueryGRPC: "127.0.0.1:16685", Health: "127.0.0.1:13133"}
}

// Config is a Jaeger v2 configuration: OTLP/HTTP in, memory storage
// (maxTraces), the query service, a health check; no other listener.
func Config(a Addrs, maxTraces int) string {
	return fmt.Sprintf(`service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    resource:
      service.name: jaeger
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: %q
    grpc:
      endpoint: %q
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: %d
  healthcheckv2:
    use_v2: true
    http:
      endpoint: %q
receivers:
  otlp:
    protocols:
      http:
        endpoint: %q
processors:
  batch:
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`, a.QueryHTTP, a.QueryGRPC, maxTraces, a.Health, a.OTLPHTTP)
}

// Process is a running Jaeger.
type Process struct {
	Addrs Addrs
	cmd   *exec.Cmd
	done  chan struct{}
	err   error
}

// QueryURL is the query service's base URL.
func (p *Process) QueryURL() string { return "http://" + p.Addrs.QueryHTTP }

// OTLPEndpoint is the base URL services export to (the SDK adds
// /v1/traces).
func (p *Process) OTLPEndpoint() string { return "http://" + p.Addrs.OTLPHTTP }

// Start runs the Jaeger binary bin with a configuration written in dir,
// its output appended to dir/jaeger.log, and waits until its query
// service answers.
func Start(ctx context.Context, bin, dir string, a Addrs) (*Process, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("jaeger: %w", err)
	}
	cfgPath := filepath.Join(dir, "jaeger.yaml")
	if err := os.WriteFile(cfgPath, []byte(Config(a, 50_000)), 0o644); err != nil {
		return nil, fmt.Errorf("jaeger: %w", err)
	}
	logPath := filepath.Join(dir, "jaeger.log")
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("jaeger: %w", err)
	}
	defer func() { _ = logf.Close() }()
	cmd := exec.Command(bin, "--config", "file:"+cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Jaeger traces itself by default: not into the store it serves.
	cmd.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=none")
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("jaeger: run %s: %w", bin, err)
	}
	p := &Process{Addrs: a, cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	c := NewClient(p.QueryURL())
	deadline := time.Now().Add(60 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := c.Services(cctx)
		cancel()
		if err == nil {
			return p, nil
		}
		select {
		case <-p.done:
			tail, _ := os.ReadFile(logPath)
			if len(tail) > 2000 {
				tail = tail[len(tail)-2000:]
			}
			return nil, fmt.Errorf("jaeger exited (%w) before it was ready; its log %s ends:\n%s", p.err, logPath, tail)
		case <-ctx.Done():
			_ = p.Stop(context.Background())
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = p.Stop(context.Background())
			return nil, fmt.Errorf("jaeger did not answer at %s within 60s: %w (log: %s)", p.QueryURL(), err, logPath)
		}
	}
}

// Stop ends the process (SIGTERM, then SIGKILL after ctx) and waits for it.
func (p *Process) Stop(ctx context.Context) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-ctx.Done():
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	return nil
}
