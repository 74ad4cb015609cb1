package contract

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Config names the two sides of a pact and where it is written.
type Config struct {
	Consumer string
	Provider string
	// Dir is where the pact file is written. When it is empty, the pact
	// goes to the directory EnvPactDir names, and without that variable
	// to a temporary directory of the test, removed when the test ends:
	// a plain `go test` changes no file of the repository.
	Dir string
	// Spec is the specification written: V4 (default) or V3.
	Spec Spec
}

// EnvPactDir is the variable naming the directory a consumer run writes
// its pacts into when Config.Dir is empty: an absolute path (tests run in
// their package's directory), empty when the run starts, so that a pact
// holds exactly the interactions the run's tests declared. The tests of a
// run, in one package or in several running in parallel, merge their
// interactions into the same consumer-provider file there; a command then
// replaces the committed pacts with that directory (make pacts, in
// flotilla's repository).
const EnvPactDir = "FLOTILLA_PACT_DIR"

// ConsumerPact collects a consumer's expectations of one provider, runs
// them against a mock server (HTTP) or the consumer's handler (messages),
// and writes the interactions that passed to the pact file.
type ConsumerPact struct {
	cfg     Config
	mu      sync.Mutex
	pending []*InteractionBuilder
}

// NewConsumerPact starts a pact between cfg.Consumer and cfg.Provider.
func NewConsumerPact(cfg Config) *ConsumerPact {
	if cfg.Spec == 0 {
		cfg.Spec = V4
	}
	return &ConsumerPact{cfg: cfg}
}

// Params are a provider state's parameters.
type Params = map[string]any

// Req describes an expected request. Path, header and query values may be
// strings or Terms; Body may be a JSON-able value holding Terms, a string
// (text/plain unless ContentType says otherwise), or []byte.
type Req struct {
	Method      string
	Path        any
	Query       map[string]any // string, []string or Term
	Headers     map[string]any // string or Term
	Body        any
	ContentType string
}

// Resp describes the response the provider must give.
type Resp struct {
	Status int
	// StatusClass, when set, accepts any status of the class ("success",
	// "clientError", ...): the statusCode matcher.
	StatusClass string
	Headers     map[string]any
	Body        any
	ContentType string
}

// InteractionBuilder builds one HTTP interaction.
type InteractionBuilder struct {
	in  *Interaction
	err error
}

// AddInteraction starts a new interaction, run by the next Run.
func (p *ConsumerPact) AddInteraction() *InteractionBuilder {
	b := &InteractionBuilder{in: &Interaction{Kind: HTTP}}
	p.mu.Lock()
	p.pending = append(p.pending, b)
	p.mu.Unlock()
	return b
}

// Given adds a provider state with optional parameters.
func (b *InteractionBuilder) Given(state string, params ...Params) *InteractionBuilder {
	ps := ProviderState{Name: state}
	if len(params) > 0 {
		ps.Params = normaliseParams(params[0])
	}
	b.in.States = append(b.in.States, ps)
	return b
}

func normaliseParams(p map[string]any) map[string]any {
	if p == nil {
		return nil
	}
	raw, err := json.Marshal(p)
	if err != nil {
		return p
	}
	var out map[string]any
	if d, err := decodeJSON(raw); err == nil {
		out, _ = d.(map[string]any)
	}
	return out
}

// UponReceiving names the interaction.
func (b *InteractionBuilder) UponReceiving(description string) *InteractionBuilder {
	b.in.Description = description
	return b
}

// WithRequest sets the expected request.
func (b *InteractionBuilder) WithRequest(r Req) *InteractionBuilder {
	rules, gens := Rules{}, Generators{}
	req := Request{Method: strings.ToUpper(r.Method)}
	if req.Method == "" {
		req.Method = "GET"
	}
	req.Path = scalarTemplate(r.Path, "path", "", rules, gens)
	if req.Path == "" {
		req.Path = "/"
	}
	if r.Query != nil {
		req.Query = url.Values{}
		for _, k := range sortedKeys(r.Query) {
			switch v := r.Query[k].(type) {
			case []string:
				req.Query[k] = v
			default:
				req.Query[k] = []string{scalarTemplate(v, "query", k, rules, gens)}
			}
		}
	}
	req.Headers = headersTemplate(r.Headers, rules, gens)
	req.Body, b.err = bodyTemplate(r.Body, r.ContentType, req.Headers, rules, gens, "body")
	req.Rules, req.Generators = nonEmpty(rules, gens)
	b.in.Request = req
	return b
}

// WillRespondWith sets the response the provider must give.
func (b *InteractionBuilder) WillRespondWith(r Resp) *InteractionBuilder {
	rules, gens := Rules{}, Generators{}
	resp := Response{Status: r.Status}
	if resp.Status == 0 {
		resp.Status = 200
	}
	if r.StatusClass != "" {
		rules.Add("status", "", Matcher{"match": "statusCode", "status": r.StatusClass})
	}
	resp.Headers = headersTemplate(r.Headers, rules, gens)
	var err error
	resp.Body, err = bodyTemplate(r.Body, r.ContentType, resp.Headers, rules, gens, "body")
	if err != nil && b.err == nil {
		b.err = err
	}
	resp.Rules, resp.Generators = nonEmpty(rules, gens)
	b.in.Response = resp
	return b
}

func nonEmpty(r Rules, g Generators) (Rules, Generators) {
	if len(r) == 0 {
		r = nil
	}
	if len(g) == 0 {
		g = nil
	}
	return r, g
}

func headersTemplate(h map[string]any, rules Rules, gens Generators) map[string][]string {
	if len(h) == 0 {
		return nil
	}
	out := map[string][]string{}
	for _, k := range sortedKeys(h) {
		out[k] = []string{scalarTemplate(h[k], "header", k, rules, gens)}
	}
	return out
}

func bodyTemplate(v any, ct string, headers map[string][]string, rules Rules, gens Generators, category string) (Body, error) {
	if v == nil {
		return Body{}, nil
	}
	if ct == "" {
		ct = headerValue(headers, "Content-Type")
	}
	switch x := v.(type) {
	case []byte:
		if ct == "" {
			ct = "application/octet-stream"
		}
		return Body{Present: true, ContentType: ct, Content: x}, nil
	case string:
		if ct == "" {
			ct = "text/plain"
		}
		if !isJSONType(ct) {
			return Body{Present: true, ContentType: ct, Content: []byte(x)}, nil
		}
	case Term:
		if raw, ok := x.Example.([]byte); ok { // e.g. ContentType("image/png", pngBytes)
			scalarTemplate(Term{Matchers: x.Matchers, Combine: x.Combine, Generator: x.Generator}, category, "$", rules, gens)
			if ct == "" {
				for _, m := range x.Matchers {
					if m.Type() == "contentType" {
						ct = m.str("value")
					}
				}
			}
			if ct == "" {
				ct = "application/octet-stream"
			}
			return Body{Present: true, ContentType: ct, Content: raw}, nil
		}
		if s, ok := x.Example.(string); ok && ct != "" && !isJSONType(ct) {
			scalarTemplate(x, category, "$", rules, gens) // text bodies keep their rules at $
			return Body{Present: true, ContentType: ct, Content: []byte(s)}, nil
		}
	}
	if ct == "" {
		ct = "application/json"
	}
	ex := buildExample(v, []pathToken{{kind: tokRoot}}, rules, gens, category)
	raw, err := json.Marshal(ex)
	if err != nil {
		return Body{}, fmt.Errorf("body: %w", err)
	}
	return Body{Present: true, ContentType: ct, Content: raw}, nil
}

// mockServer serves a set of interactions and records what happened.
type mockServer struct {
	mu         sync.Mutex
	inters     []*Interaction
	hits       []int
	unexpected []string
	url        string
}

func (m *mockServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	act := HTTPRequest{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Headers: r.Header, Body: body}
	if r.URL.RawQuery == "" {
		act.Query = url.Values{}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	bestIdx, best := -1, []Mismatch(nil)
	var matching []int
	for i, in := range m.inters {
		mm := MatchRequest(in.Request, act)
		if len(mm) == 0 {
			matching = append(matching, i)
			continue
		}
		if bestIdx < 0 || distance(mm) < distance(best) {
			bestIdx, best = i, mm
		}
	}
	if len(matching) > 0 {
		i := matching[0]
		for _, j := range matching { // an exact example beats a matcher
			if m.inters[j].Request.Path == act.Path {
				i = j
				break
			}
		}
		m.hits[i]++
		resp, err := generateResponse(m.inters[i].Response, GenContext{MockServerURL: m.url})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeResponse(w, resp)
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", r.Method, r.URL.RequestURI())
	if bestIdx >= 0 {
		fmt.Fprintf(&b, " matched no interaction; nearest is %q:", m.inters[bestIdx].Description)
		for _, mm := range best {
			b.WriteString("\n      " + mm.String())
		}
	} else {
		b.WriteString(" matched no interaction (none are registered)")
	}
	m.unexpected = append(m.unexpected, b.String())
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusInternalServerError)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": "unexpected request", "detail": b.String()})
}

func writeResponse(w http.ResponseWriter, resp Response) {
	for _, k := range sortedKeys(resp.Headers) {
		for _, v := range resp.Headers[k] {
			w.Header().Add(k, v)
		}
	}
	if resp.Body.Present && w.Header().Get("Content-Type") == "" && resp.Body.ContentType != "" {
		w.Header().Set("Content-Type", resp.Body.ContentType)
	}
	w.WriteHeader(resp.Status)
	if resp.Body.Present {
		_, _ = w.Write(resp.Body.Content)
	}
}

// Run starts a mock server on loopback serving the interactions added
// since the last Run, and calls test with its base URL; test exercises the
// consumer's real client code. A request matching no interaction, an
// interaction never exercised, or an error from test fails t with a report;
// otherwise the interactions are merged into the pact file (see
// Config.Dir for where it is).
func (p *ConsumerPact) Run(t testing.TB, test func(baseURL string) error) {
	t.Helper()
	p.mu.Lock()
	builders := p.pending
	p.pending = nil
	p.mu.Unlock()
	var inters []*Interaction
	for _, b := range builders {
		if b.err != nil {
			t.Fatalf("interaction %q: %v", b.in.Description, b.err)
		}
		if b.in.Description == "" {
			t.Fatalf("an interaction has no description: call UponReceiving")
		}
		inters = append(inters, b.in)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("mock server: %v", err)
	}
	ms := &mockServer{inters: inters, hits: make([]int, len(inters))}
	ms.url = "http://" + ln.Addr().String()
	srv := &http.Server{Handler: ms}
	go func() { _ = srv.Serve(ln) }()
	testErr := test(ms.url)
	_ = srv.Close()

	ms.mu.Lock()
	defer ms.mu.Unlock()
	var problems []string
	if testErr != nil {
		problems = append(problems, "the test returned an error: "+testErr.Error())
	}
	for _, u := range ms.unexpected {
		problems = append(problems, "unexpected request: "+u)
	}
	for i, in := range inters {
		if ms.hits[i] == 0 {
			problems = append(problems, fmt.Sprintf("interaction %q was never exercised: expected %s %s", in.Description, in.Request.Method, in.Request.Path))
		}
	}
	if len(problems) > 0 {
		t.Errorf("pact %s -> %s failed; the pact file is not written:\n  %s", p.cfg.Consumer, p.cfg.Provider, strings.Join(problems, "\n  "))
		return
	}
	if err := p.write(t, inters); err != nil {
		t.Errorf("write pact: %v", err)
	}
}

func (p *ConsumerPact) write(t testing.TB, inters []*Interaction) error {
	t.Helper()
	dir, err := p.dir(t)
	if err != nil {
		return err
	}
	path, err := WriteMerged(dir, &Pact{Consumer: p.cfg.Consumer, Provider: p.cfg.Provider, Interactions: inters, Metadata: map[string]any{}}, p.cfg.Spec)
	if err != nil {
		return err
	}
	t.Logf("pact %s -> %s: %d interaction(s) merged into %s", p.cfg.Consumer, p.cfg.Provider, len(inters), path)
	return nil
}

// dir is where the pact is written: Config.Dir, else EnvPactDir, else a
// temporary directory of t.
func (p *ConsumerPact) dir(t testing.TB) (string, error) {
	if p.cfg.Dir != "" {
		return p.cfg.Dir, nil
	}
	if d := os.Getenv(EnvPactDir); d != "" {
		if !filepath.IsAbs(d) {
			return "", fmt.Errorf("%s=%s is a relative path, and each test runs in its own package's directory: give an absolute path", EnvPactDir, d)
		}
		return d, nil
	}
	return t.TempDir(), nil
}

// DefaultDir is where a repository keeps its committed pacts, at the
// module root: what flotilla's contract commands read by default. Tests
// never write there unless EnvPactDir or Config.Dir says so.
const DefaultDir = "pacts"

// --- message pacts -------------------------------------------------------------

// MessageBuilder builds one asynchronous message interaction.
type MessageBuilder struct {
	p   *ConsumerPact
	in  *Interaction
	err error
}

// ExpectsToReceive starts a message interaction with its description.
func (p *ConsumerPact) ExpectsToReceive(description string) *MessageBuilder {
	return &MessageBuilder{p: p, in: &Interaction{Kind: AsyncMessage, Description: description}}
}

// Given adds a provider state.
func (b *MessageBuilder) Given(state string, params ...Params) *MessageBuilder {
	ps := ProviderState{Name: state}
	if len(params) > 0 {
		ps.Params = normaliseParams(params[0])
	}
	b.in.States = append(b.in.States, ps)
	return b
}

// WithMetadata sets the expected metadata; values may be Terms.
func (b *MessageBuilder) WithMetadata(md map[string]any) *MessageBuilder {
	if b.in.Message.Rules == nil {
		b.in.Message.Rules = Rules{}
	}
	if b.in.Message.Generators == nil {
		b.in.Message.Generators = Generators{}
	}
	out := map[string]any{}
	for _, k := range sortedKeys(md) {
		if t, ok := md[k].(Term); ok {
			if len(t.Matchers) > 0 {
				b.in.Message.Rules.Add("metadata", k, t.Matchers...)
			}
			if t.Generator != nil {
				b.in.Message.Generators.Add("metadata", k, t.Generator)
			}
			out[k] = buildExample(t.Example, []pathToken{{kind: tokRoot}}, Rules{}, Generators{}, "metadata")
			continue
		}
		out[k] = buildExample(md[k], []pathToken{{kind: tokRoot}}, Rules{}, Generators{}, "metadata")
	}
	b.in.Message.Metadata = out
	return b
}

// WithContent sets the message contents: a JSON-able value holding Terms
// (or a string or []byte with contentType).
func (b *MessageBuilder) WithContent(content any, contentType ...string) *MessageBuilder {
	if b.in.Message.Rules == nil {
		b.in.Message.Rules = Rules{}
	}
	if b.in.Message.Generators == nil {
		b.in.Message.Generators = Generators{}
	}
	ct := ""
	if len(contentType) > 0 {
		ct = contentType[0]
	}
	body, err := bodyTemplate(content, ct, nil, b.in.Message.Rules, b.in.Message.Generators, "content")
	b.in.Message.Contents = body
	b.err = err
	return b
}

// Verify hands a generated example of the message to the consumer's real
// handler; if it returns nil, the message interaction is merged into the
// pact file (see Config.Dir), otherwise t fails.
func (b *MessageBuilder) Verify(t testing.TB, handler func(Message) error) {
	t.Helper()
	if b.err != nil {
		t.Fatalf("message %q: %v", b.in.Description, b.err)
	}
	b.in.Message.Rules, b.in.Message.Generators = nonEmpty(b.in.Message.Rules, b.in.Message.Generators)
	msg, err := generateMessage(b.in.Message, GenContext{})
	if err != nil {
		t.Fatalf("message %q: %v", b.in.Description, err)
	}
	if err := handler(msg); err != nil {
		t.Errorf("message %q: the consumer's handler failed: %v; the pact file is not written", b.in.Description, err)
		return
	}
	if err := b.p.write(t, []*Interaction{b.in}); err != nil {
		t.Errorf("write pact: %v", err)
	}
}

// JSON decodes the message contents into v.
func (m Message) JSON(v any) error {
	if err := json.Unmarshal(m.Contents.Content, v); err != nil {
		return fmt.Errorf("message contents: %w", err)
	}
	return nil
}

// JSONMessage builds a message with JSON contents, for message producers.
func JSONMessage(contents any, metadata map[string]any) (Message, error) {
	b, err := json.Marshal(contents)
	if err != nil {
		return Message{}, fmt.Errorf("message contents: %w", err)
	}
	return Message{Contents: Body{Present: true, ContentType: "application/json", Content: b}, Metadata: metadata}, nil
}
