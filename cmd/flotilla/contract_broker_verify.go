package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/spf13/pflag"

	"github.com/flotilla-ci/flotilla/broker"
	"github.com/flotilla-ci/flotilla/broker/client"
	"github.com/flotilla-ci/flotilla/contract"
)

// brokerVerify extends `flotilla contract verify` with pacts from a broker
// (pacts for verification: selectors, pending, WIP) and the publication of
// the results, with the pact verifier's flags.
type brokerVerify struct {
	fs              *pflag.FlagSet
	url, token      string
	user, password  string
	providerVersion string
	providerBranch  string
	providerTags    []string
	selectors       []string
	consumerTags    []string
	enablePending   bool
	wipSince        string
	publish         bool
	buildURL        string
}

var _ verifyHook = (*brokerVerify)(nil)

func (a *app) brokerVerifyHook() verifyHook { return &brokerVerify{} }

func (h *brokerVerify) AddFlags(fs *pflag.FlagSet) {
	h.fs = fs
	fs.StringVarP(&h.url, "broker-url", "b", "", "verify the pacts a contract broker selects for --provider-name")
	fs.StringVarP(&h.token, "token", "t", "", "the broker's bearer token (env FLOTILLA_BROKER_TOKEN or PACT_BROKER_TOKEN)")
	fs.StringVar(&h.token, "broker-token", "", "the same as --token")
	fs.StringVar(&h.user, "user", "", "the broker's basic-auth user (env PACT_BROKER_USERNAME)")
	fs.StringVar(&h.password, "password", "", "the broker's basic-auth password (env PACT_BROKER_PASSWORD)")
	fs.StringVar(&h.providerVersion, "provider-version", "", "the provider version the results are published for (see 'flotilla contract version')")
	fs.StringVar(&h.providerBranch, "provider-branch", "", "the provider's git branch (pending and WIP pacts are per branch)")
	fs.StringSliceVar(&h.providerTags, "provider-tags", nil, "tags for the provider version (comma-separated)")
	fs.StringArrayVar(&h.selectors, "consumer-version-selectors", nil, `a consumer version selector as JSON, e.g. '{"mainBranch":true}' (repeatable)`)
	fs.StringSliceVar(&h.consumerTags, "consumer-version-tags", nil, "verify the latest pact of each consumer with these tags (comma-separated; selectors are preferred)")
	fs.BoolVar(&h.enablePending, "enable-pending", false, "failures of pending pacts do not fail the verification")
	fs.StringVar(&h.wipSince, "include-wip-pacts-since", "", "also verify work-in-progress pacts published since this date (YYYY-MM-DD)")
	fs.BoolVar(&h.publish, "publish", false, "publish the verification results to the broker")
	fs.StringVar(&h.buildURL, "build-url", "", "the CI build, recorded with published results")
}

// Prepare returns the broker source and publisher, or nothing without
// --broker-url.
func (h *brokerVerify) Prepare(ctx context.Context) ([]contract.Source, contract.ResultPublisher, error) {
	if h.url == "" {
		for _, f := range []string{"provider-version", "provider-branch", "provider-tags", "consumer-version-selectors", "consumer-version-tags", "enable-pending", "include-wip-pacts-since", "publish"} {
			if h.fs.Changed(f) {
				return nil, nil, fmt.Errorf("--%s needs --broker-url", f)
			}
		}
		return nil, nil, nil
	}
	provider, _ := h.fs.GetString("provider-name")
	if provider == "" {
		return nil, nil, errors.New("--broker-url needs --provider-name: the broker selects pacts per provider")
	}
	if h.publish && h.providerVersion == "" {
		return nil, nil, errors.New("--publish needs --provider-version")
	}
	body := map[string]any{"includePendingStatus": h.enablePending}
	var sels []any
	for i, s := range h.selectors {
		var sel map[string]any
		if err := json.Unmarshal([]byte(s), &sel); err != nil {
			return nil, nil, fmt.Errorf("--consumer-version-selectors #%d %s: not a JSON object: %w", i+1, s, err)
		}
		sels = append(sels, sel)
	}
	for _, tag := range h.consumerTags {
		sels = append(sels, map[string]any{"tag": tag, "latest": true})
	}
	if len(sels) > 0 {
		body["consumerVersionSelectors"] = sels
	}
	if h.providerBranch != "" {
		body["providerVersionBranch"] = h.providerBranch
	}
	if len(h.providerTags) > 0 {
		body["providerVersionTags"] = h.providerTags
	}
	if h.wipSince != "" {
		body["includeWipPactsSince"] = h.wipSince
	}
	raw, _ := json.Marshal(body)
	if _, err := broker.ParseForVerification(raw); err != nil {
		return nil, nil, fmt.Errorf("broker selection: %w", err)
	}
	var opts []client.Option
	if t := firstEnv(h.token, "FLOTILLA_BROKER_TOKEN", "PACT_BROKER_TOKEN"); t != "" {
		opts = append(opts, client.WithToken(t))
	} else if u := firstEnv(h.user, "PACT_BROKER_USERNAME"); u != "" {
		opts = append(opts, client.WithBasicAuth(u, firstEnv(h.password, "PACT_BROKER_PASSWORD")))
	}
	c, err := client.New(h.url, opts...)
	if err != nil {
		return nil, nil, err
	}
	src := &brokerSource{c: c, provider: provider, body: body}
	if !h.publish {
		return []contract.Source{src}, nil, nil
	}
	return []contract.Source{src}, &brokerPublisher{c: c, provider: provider,
		version: h.providerVersion, branch: h.providerBranch, tags: h.providerTags, buildURL: h.buildURL}, nil
}

// brokerSource is the broker's pacts for verification.
type brokerSource struct {
	c        *client.Client
	provider string
	body     map[string]any
}

func (s *brokerSource) Pacts(ctx context.Context) ([]contract.LoadedPact, error) {
	var index struct {
		Links map[string]json.RawMessage `json:"_links"`
	}
	if err := s.c.Get(ctx, "/", &index); err != nil {
		return nil, err
	}
	var l client.Link
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
					Self client.Link `json:"self"`
				} `json:"_links"`
			} `json:"pacts"`
		} `json:"_embedded"`
	}
	if err := s.c.Send(ctx, http.MethodPost, href, s.body, &res); err != nil {
		if client.IsNotFound(err) {
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
				Publish client.Link `json:"pb:publish-verification-results"`
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

// brokerPublisher publishes each pact's result, first putting the provider
// version on its branch and tags as the pact verifier does.
type brokerPublisher struct {
	c                 *client.Client
	provider, version string
	branch            string
	tags              []string
	buildURL          string
	once              sync.Once
	onceErr           error
}

func (p *brokerPublisher) Publish(ctx context.Context, lp contract.LoadedPact, result contract.PactResult) error {
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
		"verifiedBy": map[string]any{"implementation": "flotilla", "version": version},
	}
	if p.buildURL != "" {
		body["buildUrl"] = p.buildURL
	}
	return p.c.Send(ctx, http.MethodPost, lp.ResultsURL, body, nil)
}
