package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/flotilla-ci/flotilla/broker"
	"github.com/flotilla-ci/flotilla/contract"
)

// VerificationOptions choose the pacts a provider verifies from the
// broker's pacts for verification, and name the provider version the
// results are published for, as the pact verifier's broker flags do.
type VerificationOptions struct {
	// Provider is the provider's pacticipant name (required).
	Provider string
	// ConsumerVersionSelectors are the broker's selector objects, e.g.
	// {"mainBranch": true} or {"deployedOrReleased": true}. None: the
	// broker's default selection.
	ConsumerVersionSelectors []map[string]any
	// ConsumerVersionTags select the latest pact of each consumer with
	// each tag (selectors are preferred).
	ConsumerVersionTags []string
	// EnablePending makes failures of pending pacts (not yet verified
	// successfully by this provider's branch) not fail the verification.
	EnablePending bool
	// IncludeWIPPactsSince also selects work-in-progress pacts published
	// since this date (YYYY-MM-DD or RFC 3339).
	IncludeWIPPactsSince string
	// ProviderVersion is the version results are published for (required
	// to publish); see `flotilla contract version`.
	ProviderVersion string
	// ProviderBranch is the provider version's git branch: pending and
	// WIP pacts are per branch, and published versions go on it.
	ProviderBranch string
	// ProviderTags are tags put on the provider version before publishing.
	ProviderTags []string
	// BuildURL is the CI build recorded with published results.
	BuildURL string
	// VerifierVersion is recorded as the results' verifiedBy version
	// (default "dev").
	VerifierVersion string
}

// body is the pacts-for-verification request the options make, validated
// by the broker's own parser so bad input fails before any request.
func (o VerificationOptions) body() (map[string]any, error) {
	if o.Provider == "" {
		return nil, errors.New("no provider: the broker selects pacts per provider")
	}
	body := map[string]any{"includePendingStatus": o.EnablePending}
	var sels []any
	for _, s := range o.ConsumerVersionSelectors {
		sels = append(sels, s)
	}
	for _, tag := range o.ConsumerVersionTags {
		sels = append(sels, map[string]any{"tag": tag, "latest": true})
	}
	if len(sels) > 0 {
		body["consumerVersionSelectors"] = sels
	}
	if o.ProviderBranch != "" {
		body["providerVersionBranch"] = o.ProviderBranch
	}
	if len(o.ProviderTags) > 0 {
		body["providerVersionTags"] = o.ProviderTags
	}
	if o.IncludeWIPPactsSince != "" {
		body["includeWipPactsSince"] = o.IncludeWIPPactsSince
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("broker selection: %w", err)
	}
	if _, err := broker.ParseForVerification(raw); err != nil {
		return nil, fmt.Errorf("broker selection: %w", err)
	}
	return body, nil
}

// VerificationSource is a contract.Source: the broker's pacts for
// verification of a provider, each with the link its results go to,
// whether it is pending, and the broker's notices.
type VerificationSource struct {
	c        *Client
	provider string
	body     map[string]any
}

var _ contract.Source = (*VerificationSource)(nil)

// VerificationSource returns the source of the pacts the broker selects
// for opts. It fails, before any request, on options the broker would
// refuse (no provider, an unknown selector key, a bad WIP date).
func (c *Client) VerificationSource(opts VerificationOptions) (*VerificationSource, error) {
	body, err := opts.body()
	if err != nil {
		return nil, err
	}
	return &VerificationSource{c: c, provider: opts.Provider, body: body}, nil
}

// Pacts fetches the pacts for verification, following the index's
// pb:provider-pacts-for-verification relation. A broker that knows no
// pacts for the provider is an error.
func (s *VerificationSource) Pacts(ctx context.Context) ([]contract.LoadedPact, error) {
	var index struct {
		Links map[string]json.RawMessage `json:"_links"`
	}
	if err := s.c.Get(ctx, "/", &index); err != nil {
		return nil, err
	}
	var l Link
	if err := json.Unmarshal(index.Links["pb:provider-pacts-for-verification"], &l); err != nil || l.Href == "" {
		return nil, errors.New("the broker's index has no pb:provider-pacts-for-verification relation")
	}
	href := strings.ReplaceAll(l.Href, "{provider}", url.PathEscape(s.provider))
	var res struct {
		Embedded struct {
			Pacts []struct {
				ShortDescription       string `json:"shortDescription"`
				VerificationProperties struct {
					Pending bool `json:"pending"`
					WIP     bool `json:"wip"`
					Notices []struct {
						When string `json:"when"`
						Text string `json:"text"`
					} `json:"notices"`
				} `json:"verificationProperties"`
				Links struct {
					Self Link `json:"self"`
				} `json:"_links"`
			} `json:"pacts"`
		} `json:"_embedded"`
	}
	if err := s.c.Send(ctx, http.MethodPost, href, s.body, &res); err != nil {
		if IsNotFound(err) {
			return nil, fmt.Errorf("the broker has no pacts for provider %s", s.provider)
		}
		return nil, err
	}
	var out []contract.LoadedPact
	for _, p := range res.Embedded.Pacts {
		var raw json.RawMessage
		if err := s.c.Get(ctx, p.Links.Self.Href, &raw); err != nil {
			return nil, err
		}
		pact, err := contract.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("pact %s: %w", p.Links.Self.Href, err)
		}
		var links struct {
			Links struct {
				Publish Link `json:"pb:publish-verification-results"`
			} `json:"_links"`
		}
		_ = json.Unmarshal(raw, &links)
		lp := contract.LoadedPact{Pact: pact, Origin: p.Links.Self.Href, ResultsURL: links.Links.Publish.Href,
			Pending: p.VerificationProperties.Pending}
		for _, n := range p.VerificationProperties.Notices {
			if n.When == "before_verification" {
				lp.Notices = append(lp.Notices, n.Text)
			}
		}
		out = append(out, lp)
	}
	return out, nil
}

// ResultPublisher is a contract.ResultPublisher: it publishes each pact's
// verification result to the broker (the interactions' ids, outcomes and
// mismatches), first putting the provider version on its branch and tags
// as the pact verifier does.
type ResultPublisher struct {
	c                 *Client
	provider, version string
	branch            string
	tags              []string
	buildURL          string
	verifier          string
	once              sync.Once
	onceErr           error
}

var _ contract.ResultPublisher = (*ResultPublisher)(nil)

// ResultPublisher returns the publisher of results for opts' provider
// version. It needs opts.Provider and opts.ProviderVersion.
func (c *Client) ResultPublisher(opts VerificationOptions) (*ResultPublisher, error) {
	if opts.Provider == "" {
		return nil, errors.New("no provider to publish verification results for")
	}
	if opts.ProviderVersion == "" {
		return nil, errors.New("no provider version to publish verification results for")
	}
	v := opts.VerifierVersion
	if v == "" {
		v = "dev"
	}
	return &ResultPublisher{c: c, provider: opts.Provider, version: opts.ProviderVersion, branch: opts.ProviderBranch,
		tags: opts.ProviderTags, buildURL: opts.BuildURL, verifier: v}, nil
}

// Publish publishes result, the verification of lp, to lp's
// pb:publish-verification-results link.
func (p *ResultPublisher) Publish(ctx context.Context, lp contract.LoadedPact, result contract.PactResult) error {
	p.once.Do(func() {
		pv := "/pacticipants/" + url.PathEscape(p.provider)
		if p.branch != "" {
			p.onceErr = p.c.Send(ctx, http.MethodPut, pv+"/branches/"+url.PathEscape(p.branch)+"/versions/"+url.PathEscape(p.version), map[string]any{}, nil)
		}
		for _, t := range p.tags {
			if p.onceErr == nil {
				p.onceErr = p.c.Send(ctx, http.MethodPut, pv+"/versions/"+url.PathEscape(p.version)+"/tags/"+url.PathEscape(t), map[string]any{}, nil)
			}
		}
	})
	if p.onceErr != nil {
		return fmt.Errorf("record provider version %s: %w", p.version, p.onceErr)
	}
	if lp.ResultsURL == "" {
		return fmt.Errorf("pact %s has no pb:publish-verification-results link", lp.Origin)
	}
	tests := []map[string]any{}
	for _, in := range result.Interactions {
		mm := []map[string]any{}
		for _, m := range in.Mismatches {
			mm = append(mm, map[string]any{"attribute": m.Part, "identifier": m.Path, "description": fmt.Sprintf("expected %s, got %s", m.Expected, m.Actual)})
		}
		t := map[string]any{"interactionId": in.ID, "interactionDescription": in.Description, "success": in.OK(), "mismatches": mm}
		if in.Error != "" {
			t["exceptions"] = []map[string]any{{"message": in.Error}}
		}
		tests = append(tests, t)
	}
	body := map[string]any{
		"providerApplicationVersion": p.version, "success": result.OK(), "testResults": tests,
		"verifiedBy": map[string]any{"implementation": "flotilla", "version": p.verifier},
	}
	if p.buildURL != "" {
		body["buildUrl"] = p.buildURL
	}
	if err := p.c.Send(ctx, http.MethodPost, lp.ResultsURL, body, nil); err != nil {
		return fmt.Errorf("publish the verification of %s: %w", lp.Origin, err)
	}
	return nil
}
