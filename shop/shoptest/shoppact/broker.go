package shoppact

import (
	"encoding/json"
	"os"
	"strconv"
	"testing"

	"github.com/flotilla-ci/flotilla/broker/client"
	"github.com/flotilla-ci/flotilla/contract"
)

// The variables that point the shop's provider verifications at a
// contract broker instead of pacts/ (CI sets them; see
// .github/workflows/contract-test.yml). Read here only: this is test code.
const (
	// EnvBrokerURL is the broker's base URL. Unset or empty: the
	// verifications read pacts/ and publish nothing.
	EnvBrokerURL = "FLOTILLA_BROKER_URL"
	// EnvBrokerToken is the broker's bearer token.
	EnvBrokerToken = "FLOTILLA_BROKER_TOKEN"
	// EnvProviderVersion is the provider version results are published
	// for (`flotilla contract version --service S`).
	EnvProviderVersion = "FLOTILLA_PROVIDER_VERSION"
	// EnvProviderBranch is the provider's git branch (pending and WIP
	// pacts are per branch).
	EnvProviderBranch = "FLOTILLA_PROVIDER_BRANCH"
	// EnvConsumerVersionSelectors is a JSON array of consumer version
	// selectors, e.g. [{"mainBranch":true},{"deployedOrReleased":true}].
	EnvConsumerVersionSelectors = "FLOTILLA_CONSUMER_VERSION_SELECTORS"
	// EnvEnablePending, true: failures of pending pacts do not fail.
	EnvEnablePending = "FLOTILLA_ENABLE_PENDING"
	// EnvIncludeWIPPactsSince also verifies work-in-progress pacts
	// published since this date (YYYY-MM-DD).
	EnvIncludeWIPPactsSince = "FLOTILLA_INCLUDE_WIP_PACTS_SINCE"
	// EnvPublishVerificationResults, true: publish the results to the
	// broker (needs EnvProviderVersion).
	EnvPublishVerificationResults = "FLOTILLA_PUBLISH_VERIFICATION_RESULTS"
	// EnvBuildURL is the CI build recorded with published results.
	EnvBuildURL = "FLOTILLA_BUILD_URL"
)

// Files is the pacts in Dir: what a verification reads without a broker,
// and what a check against a provider broken on purpose always reads.
func Files(t testing.TB) []contract.Source {
	t.Helper()
	return []contract.Source{contract.FileSource{Paths: []string{Dir(t)}}}
}

// Sources is where provider's verification reads its pacts: Files by
// default; with FLOTILLA_BROKER_URL set, the broker's pacts for
// verification, selected by FLOTILLA_CONSUMER_VERSION_SELECTORS,
// FLOTILLA_ENABLE_PENDING, FLOTILLA_INCLUDE_WIP_PACTS_SINCE and
// FLOTILLA_PROVIDER_BRANCH. A variable that does not parse fails t.
func Sources(t testing.TB, provider string) []contract.Source {
	t.Helper()
	c, opts, ok := fromEnv(t, provider)
	if !ok {
		return Files(t)
	}
	src, err := c.VerificationSource(opts)
	if err != nil {
		t.Fatalf("%s: %v", EnvConsumerVersionSelectors, err)
	}
	t.Logf("verifying %s against the pacts the broker at %s selects", provider, os.Getenv(EnvBrokerURL))
	return []contract.Source{src}
}

// Publisher publishes provider's verification results to the broker when
// FLOTILLA_BROKER_URL is set and FLOTILLA_PUBLISH_VERIFICATION_RESULTS is
// true, for the version FLOTILLA_PROVIDER_VERSION on the branch
// FLOTILLA_PROVIDER_BRANCH; otherwise it is nil and nothing is published.
func Publisher(t testing.TB, provider string) contract.ResultPublisher {
	t.Helper()
	c, opts, ok := fromEnv(t, provider)
	if !ok || !envBool(t, EnvPublishVerificationResults) {
		return nil
	}
	pub, err := c.ResultPublisher(opts)
	if err != nil {
		t.Fatalf("%s is true: %v (set %s)", EnvPublishVerificationResults, err, EnvProviderVersion)
	}
	return pub
}

// fromEnv is the broker client and options the variables describe, or
// false when FLOTILLA_BROKER_URL is not set.
func fromEnv(t testing.TB, provider string) (*client.Client, client.VerificationOptions, bool) {
	t.Helper()
	u := os.Getenv(EnvBrokerURL)
	if u == "" {
		return nil, client.VerificationOptions{}, false
	}
	var copts []client.Option
	if tok := os.Getenv(EnvBrokerToken); tok != "" {
		copts = append(copts, client.WithToken(tok))
	}
	c, err := client.New(u, copts...)
	if err != nil {
		t.Fatalf("%s: %v", EnvBrokerURL, err)
	}
	opts := client.VerificationOptions{
		Provider:             provider,
		EnablePending:        envBool(t, EnvEnablePending),
		IncludeWIPPactsSince: os.Getenv(EnvIncludeWIPPactsSince),
		ProviderVersion:      os.Getenv(EnvProviderVersion),
		ProviderBranch:       os.Getenv(EnvProviderBranch),
		BuildURL:             os.Getenv(EnvBuildURL),
	}
	if s := os.Getenv(EnvConsumerVersionSelectors); s != "" {
		if err := json.Unmarshal([]byte(s), &opts.ConsumerVersionSelectors); err != nil {
			t.Fatalf(`%s=%s: want a JSON array of selector objects, e.g. [{"mainBranch":true}]: %v`, EnvConsumerVersionSelectors, s, err)
		}
	}
	return c, opts, true
}

func envBool(t testing.TB, name string) bool {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return false
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		t.Fatalf("%s=%s: want true or false", name, s)
	}
	return b
}
