// Package client talks to a contract broker over the Pact Broker HTTP API
// (flotilla's own broker or a Pact Broker): it publishes pacts, records
// deployments, asks the matrix whether versions can be deployed, and reads
// verification results. It follows HAL links where the Pact CLI does, so it
// works against any broker the Pact CLI works against.
//
// For provider verification, VerificationSource is a contract.Source of
// the broker's pacts for verification (consumer version selectors,
// pending and WIP pacts) and ResultPublisher a contract.ResultPublisher
// of the results, so a provider's Go test verifies what the broker
// selects with contract.Verify:
//
//	c, _ := client.New(brokerURL, client.WithToken(token))
//	opts := client.VerificationOptions{Provider: "payment-service", ProviderVersion: v, ProviderBranch: "main",
//		ConsumerVersionSelectors: []map[string]any{{"mainBranch": true}, {"deployedOrReleased": true}}, EnablePending: true}
//	src, _ := c.VerificationSource(opts)
//	pub, _ := c.ResultPublisher(opts)
//	contract.Verify(t, contract.Verifier{BaseURL: base, Sources: []contract.Source{src}, Publisher: pub, StateHandlers: states})
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/flotilla-ci/flotilla/broker"
)

// Client is a broker client. The zero value is not usable; use New.
type Client struct {
	base               string
	token              string
	username, password string
	http               *http.Client
}

// Option configures a Client.
type Option func(*Client)

// WithToken authenticates with a bearer token.
func WithToken(t string) Option { return func(c *Client) { c.token = t } }

// WithBasicAuth authenticates with a user name and password.
func WithBasicAuth(user, pass string) Option {
	return func(c *Client) { c.username, c.password = user, pass }
}

// WithHTTPClient replaces the default HTTP client (30 s timeout).
func WithHTTPClient(h *http.Client) Option { return func(c *Client) { c.http = h } }

// New returns a client of the broker at baseURL.
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("broker url %q: want an absolute http(s) URL such as http://127.0.0.1:7292", baseURL)
	}
	c := &Client{base: strings.TrimSuffix(baseURL, "/"), http: &http.Client{Timeout: 30 * time.Second}}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// Notice is a message from the broker.
type Notice struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// Error is a broker response outside 2xx.
type Error struct {
	Method, URL string
	Status      int
	// Errors is the `errors` of the body: a map of field to messages, or a
	// list of messages.
	Errors  any
	Notices []Notice
	Message string
}

func (e *Error) Error() string {
	var parts []string
	switch v := e.Errors.(type) {
	case map[string]any:
		for k, msgs := range v {
			parts = append(parts, fmt.Sprintf("%s: %v", k, flatten(msgs)))
		}
	case []any:
		for _, m := range v {
			parts = append(parts, fmt.Sprint(m))
		}
	}
	for _, n := range e.Notices {
		if n.Type == "error" || n.Type == "danger" {
			parts = append(parts, n.Text)
		}
	}
	if e.Message != "" {
		parts = append(parts, e.Message)
	}
	if len(parts) == 0 {
		parts = append(parts, http.StatusText(e.Status))
	}
	return fmt.Sprintf("broker: %s %s: %d: %s", e.Method, e.URL, e.Status, strings.Join(dedupe(parts), "; "))
}

func flatten(v any) string {
	if l, ok := v.([]any); ok {
		var s []string
		for _, x := range l {
			s = append(s, fmt.Sprint(x))
		}
		return strings.Join(s, ", ")
	}
	return fmt.Sprint(v)
}

func dedupe(l []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range l {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// IsNotFound reports whether err is a 404 from the broker.
func IsNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == http.StatusNotFound
}

// do sends a request and decodes a JSON response into out (when not nil).
func (c *Client) do(ctx context.Context, method, href string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	if !strings.HasPrefix(href, "http://") && !strings.HasPrefix(href, "https://") {
		href = c.base + href
	}
	req, err := http.NewRequestWithContext(ctx, method, href, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/hal+json, application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	switch {
	case c.token != "":
		req.Header.Set("Authorization", "Bearer "+c.token)
	case c.username != "":
		req.SetBasicAuth(c.username, c.password)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("broker: %s %s: %w", method, href, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		e := &Error{Method: method, URL: href, Status: resp.StatusCode}
		var eb struct {
			Errors  any      `json:"errors"`
			Notices []Notice `json:"notices"`
			Error   struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(data, &eb) == nil {
			e.Errors, e.Notices, e.Message = eb.Errors, eb.Notices, eb.Error.Message
		}
		return e
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("broker: %s %s: not a HAL/JSON response: %w", method, href, err)
	}
	return nil
}

// Link is a HAL link.
type Link struct {
	Href  string `json:"href"`
	Name  string `json:"name,omitempty"`
	Title string `json:"title,omitempty"`
}

// PublishResult is the broker's answer to a publication.
type PublishResult struct {
	Notices []Notice `json:"notices"`
	Links   struct {
		Contracts []Link `json:"pb:contracts"`
	} `json:"_links"`
}

// Publish publishes pacts for a consumer version, following the index's
// pb:publish-contracts relation.
func (c *Client) Publish(ctx context.Context, req broker.PublishRequest) (PublishResult, error) {
	var index struct {
		Links map[string]json.RawMessage `json:"_links"`
	}
	if err := c.do(ctx, http.MethodGet, "/", nil, &index); err != nil {
		return PublishResult{}, err
	}
	var l Link
	if err := json.Unmarshal(index.Links["pb:publish-contracts"], &l); err != nil || l.Href == "" {
		return PublishResult{}, fmt.Errorf("broker %s: its index has no pb:publish-contracts relation; is it a Pact Broker 2.86 or later?", c.base)
	}
	var res PublishResult
	err := c.do(ctx, http.MethodPost, l.Href, req, &res)
	return res, err
}

// RecordDeployment records that a version is deployed to (or, with
// release, released in) an environment, through the version's
// pb:record-deployment (pb:record-release) links as the Pact CLI does.
func (c *Client) RecordDeployment(ctx context.Context, pacticipant, version, environment, instance string, release bool) error {
	var v struct {
		Links struct {
			Deploy  []Link `json:"pb:record-deployment"`
			Release []Link `json:"pb:record-release"`
		} `json:"_links"`
	}
	if err := c.do(ctx, http.MethodGet, "/pacticipants/"+url.PathEscape(pacticipant)+"/versions/"+url.PathEscape(version), nil, &v); err != nil {
		if IsNotFound(err) {
			return fmt.Errorf("version %s of %s is not in the broker: publish its pacts or verification results first", version, pacticipant)
		}
		return err
	}
	links := v.Links.Deploy
	if release {
		links = v.Links.Release
	}
	var names []string
	for _, l := range links {
		if l.Name == environment {
			body := map[string]any{}
			if instance != "" && !release {
				body["applicationInstance"] = instance
			}
			return c.do(ctx, http.MethodPost, l.Href, body, nil)
		}
		names = append(names, l.Name)
	}
	return fmt.Errorf("environment %s does not exist in the broker (it has: %s)", environment, strings.Join(names, ", "))
}

// RecordUndeployment records that the versions of a pacticipant currently
// deployed to an environment (only the given application instance, when
// not empty) are no longer deployed, following the environment's
// pb:currently-deployed-deployed-versions link as the Pact CLI does. It
// returns the versions undeployed.
func (c *Client) RecordUndeployment(ctx context.Context, pacticipant, environment, instance string) ([]string, error) {
	var envs struct {
		Embedded struct {
			Environments []struct {
				Name  string `json:"name"`
				Links struct {
					Current Link `json:"pb:currently-deployed-deployed-versions"`
				} `json:"_links"`
			} `json:"environments"`
		} `json:"_embedded"`
	}
	if err := c.do(ctx, http.MethodGet, "/environments", nil, &envs); err != nil {
		return nil, err
	}
	var names []string
	for _, e := range envs.Embedded.Environments {
		if e.Name != environment {
			names = append(names, e.Name)
			continue
		}
		var current struct {
			Embedded struct {
				DeployedVersions []struct {
					ApplicationInstance *string `json:"applicationInstance"`
					Embedded            struct {
						Version struct {
							Number string `json:"number"`
						} `json:"version"`
					} `json:"_embedded"`
					Links struct {
						Self Link `json:"self"`
					} `json:"_links"`
				} `json:"deployedVersions"`
			} `json:"_embedded"`
		}
		if err := c.do(ctx, http.MethodGet, e.Links.Current.Href+"?pacticipant="+url.QueryEscape(pacticipant), nil, &current); err != nil {
			return nil, err
		}
		var done []string
		for _, d := range current.Embedded.DeployedVersions {
			if instance != "" && (d.ApplicationInstance == nil || *d.ApplicationInstance != instance) {
				continue
			}
			if err := c.do(ctx, http.MethodPatch, d.Links.Self.Href, map[string]any{"currentlyDeployed": false}, nil); err != nil {
				return done, err
			}
			done = append(done, d.Embedded.Version.Number)
		}
		if len(done) == 0 {
			return nil, fmt.Errorf("%s is not currently deployed to %s", pacticipant, environment)
		}
		return done, nil
	}
	return nil, fmt.Errorf("environment %s does not exist in the broker (it has: %s)", environment, strings.Join(names, ", "))
}

// Matrix is the broker's answer to a matrix query.
type Matrix struct {
	Summary struct {
		Deployable *bool  `json:"deployable"`
		Reason     string `json:"reason"`
		Success    int    `json:"success"`
		Failed     int    `json:"failed"`
		Unknown    int    `json:"unknown"`
		Ignored    int    `json:"ignored"`
	} `json:"summary"`
	Notices []Notice    `json:"notices"`
	Rows    []MatrixRow `json:"matrix"`
}

// MatrixRow is one integration in a Matrix.
type MatrixRow struct {
	Consumer Party `json:"consumer"`
	Provider Party `json:"provider"`
	Pact     struct {
		CreatedAt string `json:"createdAt"`
		Links     struct {
			Self Link `json:"self"`
		} `json:"_links"`
	} `json:"pact"`
	VerificationResult *struct {
		Success    bool   `json:"success"`
		VerifiedAt string `json:"verifiedAt"`
		Links      struct {
			Self Link `json:"self"`
		} `json:"_links"`
	} `json:"verificationResult"`
	Ignored bool `json:"ignored"`
}

// Party is the consumer or provider of a MatrixRow.
type Party struct {
	Name    string `json:"name"`
	Version *struct {
		Number string  `json:"number"`
		Branch *string `json:"branch"`
	} `json:"version"`
}

// VersionNumber is the party's version, or "" when there is none.
func (p Party) VersionNumber() string {
	if p.Version == nil {
		return ""
	}
	return p.Version.Number
}

// MatrixQueryString encodes a matrix query as the Pact CLI does.
func MatrixQueryString(q broker.MatrixQuery) string {
	var parts []string
	add := func(k, v string) { parts = append(parts, url.QueryEscape(k)+"="+url.QueryEscape(v)) }
	sel := func(prefix string, s broker.Selector) {
		add(prefix+"[][pacticipant]", s.Pacticipant)
		switch {
		case s.Version != "":
			add(prefix+"[][version]", s.Version)
		case s.Environment != "":
			add(prefix+"[][environment]", s.Environment)
		case s.Branch != "":
			add(prefix+"[][branch]", s.Branch)
		case s.MainBranch:
			add(prefix+"[][mainBranch]", "true")
		}
		if s.Latest {
			add(prefix+"[][latest]", "true")
		}
		if s.Tag != "" {
			add(prefix+"[][tag]", s.Tag)
		}
	}
	for _, s := range q.Selectors {
		sel("q", s)
	}
	for _, s := range q.Ignore {
		sel("ignore", s)
	}
	if q.LatestBy != "" {
		add("latestby", q.LatestBy)
	}
	switch t := q.Target; {
	case t.Environment != "":
		add("environment", t.Environment)
	case t.Tag != "":
		add("tag", t.Tag)
		add("latest", "true")
	case t.MainBranch:
		add("mainBranch", "true")
		add("latest", "true")
	case t.Latest:
		add("latest", "true")
	}
	return strings.Join(parts, "&")
}

// Matrix asks the broker's matrix.
func (c *Client) Matrix(ctx context.Context, q broker.MatrixQuery) (Matrix, error) {
	var m Matrix
	err := c.do(ctx, http.MethodGet, "/matrix?"+MatrixQueryString(q), nil, &m)
	return m, err
}

// VerificationResult is a published verification result.
type VerificationResult struct {
	ProviderName               string       `json:"providerName"`
	ProviderApplicationVersion string       `json:"providerApplicationVersion"`
	Success                    bool         `json:"success"`
	VerificationDate           string       `json:"verificationDate"`
	TestResults                []TestResult `json:"-"`
}

// TestResult is one interaction's outcome in a VerificationResult.
type TestResult struct {
	InteractionID          string     `json:"interactionId"`
	InteractionDescription string     `json:"interactionDescription"`
	Success                bool       `json:"success"`
	Mismatches             []Mismatch `json:"mismatches"`
}

// Mismatch is one difference the verifier found.
type Mismatch struct {
	Attribute   string `json:"attribute"`
	Identifier  string `json:"identifier"`
	Description string `json:"description"`
}

// Verification fetches a verification result by its URL.
func (c *Client) Verification(ctx context.Context, href string) (VerificationResult, error) {
	var raw struct {
		VerificationResult
		TestResults json.RawMessage `json:"testResults"`
	}
	if err := c.do(ctx, http.MethodGet, href, nil, &raw); err != nil {
		return VerificationResult{}, err
	}
	v := raw.VerificationResult
	// The broker stores testResults as the verifier sent them: a list from
	// the Pact verifiers, sometimes an object from others (left empty).
	_ = json.Unmarshal(raw.TestResults, &v.TestResults)
	return v, nil
}

// Get fetches any broker resource as JSON.
func (c *Client) Get(ctx context.Context, href string, out any) error {
	return c.do(ctx, http.MethodGet, href, nil, out)
}

// Send sends a JSON body to a broker resource and decodes the answer.
func (c *Client) Send(ctx context.Context, method, href string, body, out any) error {
	return c.do(ctx, method, href, body, out)
}
