package contract

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// LoadedPact is a pact to verify with where it came from. A broker source
// also sets ResultsURL (where verification results go) and Pending (a
// failing pending pact does not fail the verification).
type LoadedPact struct {
	Pact       *Pact
	Origin     string // file path or URL
	ResultsURL string
	Pending    bool
	Notices    []string
}

// Source yields the pacts a provider verifies: files, directories and URLs
// (FileSource), or a broker's pacts for verification.
type Source interface {
	Pacts(ctx context.Context) ([]LoadedPact, error)
}

// ResultPublisher receives the result of verifying each pact, e.g. to
// publish it to a broker.
type ResultPublisher interface {
	Publish(ctx context.Context, pact LoadedPact, result PactResult) error
}

// StateHandler sets up (setup true) or tears down a provider state. The
// values it returns feed ProviderState generators (e.g. "/orders/${id}").
type StateHandler func(ctx context.Context, setup bool, params map[string]any) (map[string]any, error)

// MessageProducer produces the message for an interaction, with the
// interaction's provider states already set up.
type MessageProducer func(ctx context.Context, states []ProviderState) (Message, error)

// Verifier checks a provider against pacts.
type Verifier struct {
	Provider string // only pacts for this provider (empty: all)
	// BaseURL is the provider's HTTP base URL, for HTTP interactions, and
	// for message interactions when no MessageProducers are given (the
	// verifier POSTs {description, providerStates} to it as pact's does).
	BaseURL        string
	Sources        []Source
	StateHandlers  map[string]StateHandler
	StateChangeURL string // POST {state, params, action} when no handler is registered
	// StateChangeAsQuery sends state, action and the params as query
	// parameters of the POST instead of a JSON body.
	StateChangeAsQuery bool
	MessageProducers   map[string]MessageProducer
	// FilterDescription and FilterState are regexes selecting interactions.
	FilterDescription string
	FilterState       string
	FilterNoState     bool        // only interactions without a provider state
	FilterConsumers   []string    // only pacts of these consumers (empty: all)
	Headers           http.Header // added to every request to the provider
	Client            *http.Client
	Publisher         ResultPublisher
	Timeout           time.Duration // per request; default 30s
	// NoStateTeardown skips the teardown call after each interaction.
	NoStateTeardown bool
}

// Report is the outcome of a verification.
type Report struct {
	Provider string       `json:"provider"`
	Pacts    []PactResult `json:"pacts"`
}

// PactResult is the outcome for one pact.
type PactResult struct {
	Consumer     string              `json:"consumer"`
	Provider     string              `json:"provider"`
	Origin       string              `json:"origin"`
	Pending      bool                `json:"pending,omitempty"`
	Notices      []string            `json:"notices,omitempty"` // from the source, e.g. why a broker selected it
	Interactions []InteractionResult `json:"interactions"`
}

// InteractionResult is the outcome for one interaction.
type InteractionResult struct {
	ID          string     `json:"interactionId,omitempty"`
	Description string     `json:"description"`
	States      []string   `json:"providerStates,omitempty"`
	Kind        Kind       `json:"type"`
	Mismatches  []Mismatch `json:"mismatches,omitempty"`
	Error       string     `json:"error,omitempty"`
	Duration    float64    `json:"durationMs"`
}

// OK reports whether the interaction passed.
func (r InteractionResult) OK() bool { return len(r.Mismatches) == 0 && r.Error == "" }

// OK reports whether every interaction of the pact passed.
func (r PactResult) OK() bool {
	for _, i := range r.Interactions {
		if !i.OK() {
			return false
		}
	}
	return true
}

// OK reports whether the verification passed: every non-pending pact.
func (r *Report) OK() bool {
	for _, p := range r.Pacts {
		if !p.OK() && !p.Pending {
			return false
		}
	}
	return true
}

// Run verifies every selected interaction of every pact from the sources.
// An error is returned for bad input (a source that cannot be read, a bad
// filter); mismatches are in the report.
func (v *Verifier) Run(ctx context.Context) (*Report, error) {
	var descRe, stateRe *regexp.Regexp
	var err error
	if v.FilterDescription != "" {
		if descRe, err = regexp.Compile(v.FilterDescription); err != nil {
			return nil, fmt.Errorf("filter-description: %w", err)
		}
	}
	if v.FilterState != "" {
		if stateRe, err = regexp.Compile(v.FilterState); err != nil {
			return nil, fmt.Errorf("filter-state: %w", err)
		}
	}
	var pacts []LoadedPact
	for _, s := range v.Sources {
		ps, err := s.Pacts(ctx)
		if err != nil {
			return nil, err
		}
		pacts = append(pacts, ps...)
	}
	rep := &Report{Provider: v.Provider}
	for _, lp := range pacts {
		if v.Provider != "" && lp.Pact.Provider != v.Provider {
			continue
		}
		if len(v.FilterConsumers) > 0 && !slices.Contains(v.FilterConsumers, lp.Pact.Consumer) {
			continue
		}
		pr := PactResult{Consumer: lp.Pact.Consumer, Provider: lp.Pact.Provider, Origin: lp.Origin, Pending: lp.Pending, Notices: lp.Notices}
		for _, in := range lp.Pact.Interactions {
			if descRe != nil && !descRe.MatchString(in.Description) {
				continue
			}
			if v.FilterNoState && len(in.States) > 0 {
				continue
			}
			if stateRe != nil {
				ok := false
				for _, s := range in.States {
					if stateRe.MatchString(s.Name) {
						ok = true
					}
				}
				if !ok {
					continue
				}
			}
			pr.Interactions = append(pr.Interactions, v.verifyInteraction(ctx, in))
		}
		if v.Publisher != nil {
			if err := v.Publisher.Publish(ctx, lp, pr); err != nil {
				return rep, fmt.Errorf("publish results for %s: %w", lp.Origin, err)
			}
		}
		rep.Pacts = append(rep.Pacts, pr)
	}
	return rep, nil
}

func (v *Verifier) client() *http.Client {
	if v.Client != nil {
		return v.Client
	}
	t := v.Timeout
	if t == 0 {
		t = 30 * time.Second
	}
	return &http.Client{Timeout: t, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func (v *Verifier) verifyInteraction(ctx context.Context, in *Interaction) (res InteractionResult) {
	start := time.Now()
	res = InteractionResult{ID: in.ID, Description: in.Description, Kind: in.Kind}
	for _, s := range in.States {
		res.States = append(res.States, s.Name)
	}
	defer func() { res.Duration = float64(time.Since(start).Microseconds()) / 1000 }()
	values, err := v.setStates(ctx, in.States, true)
	defer func() {
		if v.NoStateTeardown {
			return
		}
		if _, err := v.setStates(ctx, in.States, false); err != nil && res.Error == "" {
			res.Error = err.Error()
		}
	}()
	if err != nil {
		res.Error = err.Error()
		return res
	}
	gctx := GenContext{StateValues: values}
	switch in.Kind {
	case HTTP:
		mm, err := v.verifyHTTP(ctx, in, gctx)
		res.Mismatches = mm
		if err != nil {
			res.Error = err.Error()
		}
	case AsyncMessage, SyncMessage:
		msg, err := v.produce(ctx, in)
		if err != nil {
			res.Error = err.Error()
			return res
		}
		exp := in.Message
		if in.Kind == SyncMessage && len(in.Responses) > 0 {
			exp = in.Responses[0]
		}
		res.Mismatches = MatchMessage(exp, msg)
	}
	return res
}

func (v *Verifier) setStates(ctx context.Context, states []ProviderState, setup bool) (map[string]any, error) {
	values := map[string]any{}
	for _, s := range states {
		for k, p := range s.Params {
			values[k] = p
		}
		if h, ok := v.StateHandlers[s.Name]; ok {
			out, err := h(ctx, setup, s.Params)
			if err != nil {
				return values, fmt.Errorf("provider state %q %s: %w", s.Name, action(setup), err)
			}
			for k, x := range out {
				values[k] = x
			}
			continue
		}
		if v.StateChangeURL != "" {
			out, err := v.postState(ctx, s, setup)
			if err != nil {
				return values, err
			}
			for k, x := range out {
				values[k] = x
			}
			continue
		}
		if setup && len(v.StateHandlers) > 0 {
			return values, fmt.Errorf("provider state %q: no state handler for it (add one to StateHandlers)", s.Name)
		}
	}
	return values, nil
}

func action(setup bool) string {
	if setup {
		return "setup"
	}
	return "teardown"
}

func (v *Verifier) postState(ctx context.Context, s ProviderState, setup bool) (map[string]any, error) {
	params := s.Params
	if params == nil {
		params = map[string]any{}
	}
	var req *http.Request
	var err error
	if v.StateChangeAsQuery {
		u, perr := url.Parse(v.StateChangeURL)
		if perr != nil {
			return nil, fmt.Errorf("state change url: %w", perr)
		}
		q := u.Query()
		q.Set("state", s.Name)
		q.Set("action", action(setup))
		for k, p := range params {
			str, ok := scalarString(p)
			if !ok {
				b, _ := json.Marshal(p)
				str = string(b)
			}
			q.Set(k, str)
		}
		u.RawQuery = q.Encode()
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, u.String(), nil)
	} else {
		body, _ := json.Marshal(map[string]any{"state": s.Name, "params": params, "action": action(setup)})
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, v.StateChangeURL, bytes.NewReader(body))
		if err == nil {
			req.Header.Set("Content-Type", "application/json")
		}
	}
	if err != nil {
		return nil, fmt.Errorf("state change url: %w", err)
	}
	resp, err := v.client().Do(req)
	if err != nil {
		return nil, fmt.Errorf("provider state %q %s: %w", s.Name, action(setup), err)
	}
	defer func() { _ = resp.Body.Close() }()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return nil, fmt.Errorf("provider state %q %s: state change URL answered %d: %s", s.Name, action(setup), resp.StatusCode, strings.TrimSpace(string(data)))
	}
	var out map[string]any
	if d, err := decodeJSON(data); err == nil {
		out, _ = d.(map[string]any)
	}
	return out, nil
}

func (v *Verifier) verifyHTTP(ctx context.Context, in *Interaction, gctx GenContext) ([]Mismatch, error) {
	if v.BaseURL == "" {
		return nil, errors.New("no provider base URL to send the request to")
	}
	req, err := generateRequest(in.Request, gctx)
	if err != nil {
		return nil, err
	}
	u := strings.TrimRight(v.BaseURL, "/") + req.Path
	if len(req.Query) > 0 {
		u += "?" + req.Query.Encode()
	}
	var body io.Reader
	if req.Body.Present {
		body = bytes.NewReader(req.Body.Content)
	}
	hr, err := http.NewRequestWithContext(ctx, req.Method, u, body)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	for k, vals := range req.Headers {
		for _, x := range vals {
			hr.Header.Add(k, x)
		}
	}
	if req.Body.Present && hr.Header.Get("Content-Type") == "" && req.Body.ContentType != "" {
		hr.Header.Set("Content-Type", req.Body.ContentType)
	}
	for k, vals := range v.Headers {
		hr.Header.Del(k)
		for _, x := range vals {
			hr.Header.Add(k, x)
		}
	}
	resp, err := v.client().Do(hr)
	if err != nil {
		return nil, fmt.Errorf("request to provider: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read provider response: %w", err)
	}
	return MatchResponse(in.Response, HTTPResponse{Status: resp.StatusCode, Headers: resp.Header, Body: data}), nil
}

// produce gets the message for an interaction: from a Go producer, or by
// POSTing {description, providerStates} to the provider as pact does.
func (v *Verifier) produce(ctx context.Context, in *Interaction) (Message, error) {
	if v.MessageProducers != nil {
		p, ok := v.MessageProducers[in.Description]
		if !ok {
			return Message{}, fmt.Errorf("no message producer for %q (add one to MessageProducers)", in.Description)
		}
		m, err := p(ctx, in.States)
		if err != nil {
			return Message{}, fmt.Errorf("message producer %q: %w", in.Description, err)
		}
		if m.Contents.Present && m.Contents.ContentType == "" {
			m.Contents.ContentType = detectContentType("", m.Contents.Content)
		}
		return m, nil
	}
	if v.BaseURL == "" {
		return Message{}, errors.New("no message producer and no provider base URL to ask for the message")
	}
	var states []any
	for _, s := range in.States {
		states = append(states, map[string]any{"name": s.Name, "params": s.Params})
	}
	body, _ := json.Marshal(map[string]any{"description": in.Description, "providerStates": states})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, v.BaseURL, bytes.NewReader(body))
	if err != nil {
		return Message{}, fmt.Errorf("build message request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := v.client().Do(req)
	if err != nil {
		return Message{}, fmt.Errorf("ask provider for message: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return Message{}, fmt.Errorf("provider answered %d for message %q", resp.StatusCode, in.Description)
	}
	m := Message{Contents: Body{Present: true, ContentType: resp.Header.Get("Content-Type"), Content: data}, Metadata: map[string]any{}}
	if h := resp.Header.Get("Pact-Message-Metadata"); h != "" {
		raw, err := base64.StdEncoding.DecodeString(h)
		if err == nil {
			if d, err := decodeJSON(raw); err == nil {
				if md, ok := d.(map[string]any); ok {
					m.Metadata = md
				}
			}
		}
	}
	return m, nil
}

// Verify runs the verifier as Go subtests, one per pact and interaction,
// each failing with its mismatches.
func Verify(t *testing.T, v Verifier) {
	t.Helper()
	rep, err := v.Run(context.Background())
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if len(rep.Pacts) == 0 {
		t.Fatalf("verify: no pacts found for provider %q", v.Provider)
	}
	for _, p := range rep.Pacts {
		t.Run(p.Consumer, func(t *testing.T) {
			for _, in := range p.Interactions {
				t.Run(in.Description, func(t *testing.T) {
					if in.OK() {
						return
					}
					msg := FormatInteraction(p, in)
					if p.Pending {
						t.Logf("pending pact, not failing:\n%s", msg)
						return
					}
					t.Error(msg)
				})
			}
		})
	}
}

// FormatInteraction renders a failed interaction's report.
func FormatInteraction(p PactResult, in InteractionResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s -> %s: interaction %q", p.Consumer, p.Provider, in.Description)
	if len(in.States) > 0 {
		fmt.Fprintf(&b, " (given %s)", strings.Join(in.States, ", "))
	}
	b.WriteString(" failed:")
	if in.Error != "" {
		b.WriteString("\n    error: " + in.Error)
	}
	for _, m := range in.Mismatches {
		b.WriteString("\n    " + m.String())
	}
	return b.String()
}

// FileSource reads pacts from files, directories (every *.json in them) and
// http(s) URLs.
type FileSource struct {
	Paths  []string
	Client *http.Client
	// Authorize, when set, may add credentials to the request fetching a
	// pact URL (a broker's token).
	Authorize func(req *http.Request)
}

// Pacts implements Source.
func (s FileSource) Pacts(ctx context.Context) ([]LoadedPact, error) {
	var out []LoadedPact
	for _, p := range s.Paths {
		if strings.HasPrefix(p, "http://") || strings.HasPrefix(p, "https://") {
			lp, err := s.fetch(ctx, p)
			if err != nil {
				return nil, err
			}
			out = append(out, lp)
			continue
		}
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("pact %s: %w", p, err)
		}
		files := []string{p}
		if st.IsDir() {
			files, err = filepath.Glob(filepath.Join(p, "*.json"))
			if err != nil {
				return nil, err
			}
			sort.Strings(files)
		}
		for _, f := range files {
			pact, err := ReadFile(f)
			if err != nil {
				return nil, err
			}
			out = append(out, LoadedPact{Pact: pact, Origin: f})
		}
	}
	return out, nil
}

// FetchError is a pact URL answered with a status other than 200. Callers
// tell a refusal (4xx: a wrong URL or credentials) from a server that
// failed (5xx, 408, 429) by Status.
type FetchError struct {
	URL    string
	Status int
}

func (e *FetchError) Error() string {
	if e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden {
		return fmt.Sprintf("fetch pact %s: status %d: give the broker's credentials (--token, or FLOTILLA_BROKER_TOKEN / PACT_BROKER_TOKEN)", e.URL, e.Status)
	}
	return fmt.Sprintf("fetch pact %s: status %d", e.URL, e.Status)
}

// Temporary reports whether asking again may succeed: the server failed or
// was busy, rather than refusing the request.
func (e *FetchError) Temporary() bool {
	return e.Status >= 500 || e.Status == http.StatusRequestTimeout || e.Status == http.StatusTooManyRequests
}

func (s FileSource) fetch(ctx context.Context, u string) (LoadedPact, error) {
	if _, err := url.Parse(u); err != nil {
		return LoadedPact{}, fmt.Errorf("pact url %s: %w", u, err)
	}
	c := s.Client
	if c == nil {
		c = &http.Client{Timeout: 30 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return LoadedPact{}, fmt.Errorf("pact url %s: %w", u, err)
	}
	req.Header.Set("Accept", "application/hal+json, application/json")
	if s.Authorize != nil {
		s.Authorize(req)
	}
	resp, err := c.Do(req)
	if err != nil {
		return LoadedPact{}, fmt.Errorf("fetch pact: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return LoadedPact{}, fmt.Errorf("fetch pact %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return LoadedPact{}, &FetchError{URL: u, Status: resp.StatusCode}
	}
	p, err := Parse(data)
	if err != nil {
		var pe *ParseError
		if errors.As(err, &pe) {
			pe.File = u
		}
		return LoadedPact{}, err
	}
	return LoadedPact{Pact: p, Origin: u}, nil
}
