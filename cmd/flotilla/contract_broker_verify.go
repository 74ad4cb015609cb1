package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/spf13/pflag"

	"github.com/flotilla-ci/flotilla/broker/client"
	"github.com/flotilla-ci/flotilla/contract"
)

// brokerVerify extends `flotilla contract verify` with pacts from a broker
// (pacts for verification: selectors, pending, WIP) and the publication of
// the results, with the pact verifier's flags: a flag layer over
// client.VerificationSource and client.ResultPublisher.
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

// Authorize adds the broker's credentials (--token, --user or their
// environment variables) to a request fetching a --pact URL: to every
// URL without --broker-url, else only to URLs on the broker's host.
func (h *brokerVerify) Authorize(req *http.Request) {
	if h.url != "" {
		b, err := url.Parse(h.url)
		if err != nil || !strings.EqualFold(b.Scheme, req.URL.Scheme) || !strings.EqualFold(b.Host, req.URL.Host) {
			return
		}
	}
	if t := firstEnv(h.token, "FLOTILLA_BROKER_TOKEN", "PACT_BROKER_TOKEN"); t != "" {
		req.Header.Set("Authorization", "Bearer "+t)
	} else if u := firstEnv(h.user, "PACT_BROKER_USERNAME"); u != "" {
		req.SetBasicAuth(u, firstEnv(h.password, "PACT_BROKER_PASSWORD"))
	}
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
	opts := client.VerificationOptions{
		Provider:             provider,
		ConsumerVersionTags:  h.consumerTags,
		EnablePending:        h.enablePending,
		IncludeWIPPactsSince: h.wipSince,
		ProviderVersion:      h.providerVersion,
		ProviderBranch:       h.providerBranch,
		ProviderTags:         h.providerTags,
		BuildURL:             h.buildURL,
		VerifierVersion:      version,
	}
	for i, s := range h.selectors {
		var sel map[string]any
		if err := json.Unmarshal([]byte(s), &sel); err != nil {
			return nil, nil, fmt.Errorf("--consumer-version-selectors #%d %s: not a JSON object: %w", i+1, s, err)
		}
		opts.ConsumerVersionSelectors = append(opts.ConsumerVersionSelectors, sel)
	}
	var copts []client.Option
	if t := firstEnv(h.token, "FLOTILLA_BROKER_TOKEN", "PACT_BROKER_TOKEN"); t != "" {
		copts = append(copts, client.WithToken(t))
	} else if u := firstEnv(h.user, "PACT_BROKER_USERNAME"); u != "" {
		copts = append(copts, client.WithBasicAuth(u, firstEnv(h.password, "PACT_BROKER_PASSWORD")))
	}
	c, err := client.New(h.url, copts...)
	if err != nil {
		return nil, nil, err
	}
	src, err := c.VerificationSource(opts)
	if err != nil {
		return nil, nil, err
	}
	if !h.publish {
		return []contract.Source{src}, nil, nil
	}
	pub, err := c.ResultPublisher(opts)
	if err != nil {
		return nil, nil, err
	}
	return []contract.Source{src}, pub, nil
}
