package shoppact_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flotilla-ci/flotilla/broker"
	"github.com/flotilla-ci/flotilla/broker/client"
	"github.com/flotilla-ci/flotilla/broker/sqlstore"
	"github.com/flotilla-ci/flotilla/contract"
	"github.com/flotilla-ci/flotilla/shop/shoptest/shoppact"
)

// unsetBroker clears every variable Sources and Publisher read.
func unsetBroker(t *testing.T) {
	for _, v := range []string{shoppact.EnvBrokerURL, shoppact.EnvBrokerToken, shoppact.EnvProviderVersion, shoppact.EnvProviderBranch,
		shoppact.EnvConsumerVersionSelectors, shoppact.EnvEnablePending, shoppact.EnvIncludeWIPPactsSince,
		shoppact.EnvPublishVerificationResults, shoppact.EnvBuildURL} {
		t.Setenv(v, "")
	}
}

// Without a broker, a verification reads pacts/ and publishes nothing.
func TestSourcesDefaultToPactsDir(t *testing.T) {
	unsetBroker(t)
	src := shoppact.Sources(t, "user-service")
	fs, ok := src[0].(contract.FileSource)
	if len(src) != 1 || !ok || len(fs.Paths) != 1 || fs.Paths[0] != shoppact.Dir(t) {
		t.Fatalf("sources without a broker: %#v", src)
	}
	t.Setenv(shoppact.EnvPublishVerificationResults, "true")
	if p := shoppact.Publisher(t, "user-service"); p != nil {
		t.Fatalf("a publisher without a broker: %#v", p)
	}
}

// With FLOTILLA_BROKER_URL, the shop's own pacts come from the broker, and
// the results go back to it for FLOTILLA_PROVIDER_VERSION.
func TestSourcesFromBroker(t *testing.T) {
	ctx := context.Background()
	unsetBroker(t)
	store, err := sqlstore.Open(ctx, filepath.Join(t.TempDir(), "broker.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	cfg := broker.DefaultConfig()
	cfg.Tokens = []broker.Token{{Value: "rw-token", Write: true}}
	srv, err := broker.New(cfg, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	c, err := client.New(hs.URL, client.WithToken("rw-token"))
	if err != nil {
		t.Fatal(err)
	}
	// payment-service's pact with user-service, as its consumer test wrote it.
	raw, err := os.ReadFile(filepath.Join(shoppact.Dir(t), "payment-service-user-service.json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, broker.PublishRequest{PacticipantName: "payment-service", PacticipantVersionNumber: "p1", Branch: "main",
		Contracts: []broker.PublishContract{{ConsumerName: "payment-service", ProviderName: "user-service", Specification: "pact",
			ContentType: "application/json", Content: base64.StdEncoding.EncodeToString(raw)}}}); err != nil {
		t.Fatal(err)
	}
	t.Setenv(shoppact.EnvBrokerURL, hs.URL)
	t.Setenv(shoppact.EnvBrokerToken, "rw-token")
	t.Setenv(shoppact.EnvConsumerVersionSelectors, `[{"mainBranch": true}, {"deployedOrReleased": true}]`)
	t.Setenv(shoppact.EnvEnablePending, "true")
	t.Setenv(shoppact.EnvProviderBranch, "main")
	t.Setenv(shoppact.EnvProviderVersion, "u1")

	pacts, err := shoppact.Sources(t, "user-service")[0].Pacts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want, err := contract.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(pacts) != 1 || pacts[0].Pact.Consumer != "payment-service" || len(pacts[0].Pact.Interactions) != len(want.Interactions) ||
		!pacts[0].Pending || pacts[0].ResultsURL == "" {
		t.Fatalf("the broker's pacts for user-service: %+v", pacts)
	}
	if p := shoppact.Publisher(t, "user-service"); p != nil {
		t.Fatalf("published without %s=true: %#v", shoppact.EnvPublishVerificationResults, p)
	}
	t.Setenv(shoppact.EnvPublishVerificationResults, "true")
	pub := shoppact.Publisher(t, "user-service")
	if pub == nil {
		t.Fatal("no publisher")
	}
	if err := pub.Publish(ctx, pacts[0], contract.PactResult{Consumer: "payment-service", Provider: "user-service"}); err != nil {
		t.Fatal(err)
	}
	m, err := c.Matrix(ctx, broker.MatrixQuery{Selectors: []broker.Selector{{Pacticipant: "payment-service", Version: "p1"}, {Pacticipant: "user-service", Version: "u1"}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Rows) != 1 || m.Rows[0].VerificationResult == nil || !m.Rows[0].VerificationResult.Success {
		t.Fatalf("the matrix after publishing user-service u1's result: %+v", m)
	}
}

// fatalTB records a Fatalf and stops the function under test.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic(f)
}

func fatal(t *testing.T, fn func(tb testing.TB)) (msg string) {
	f := &fatalTB{TB: t}
	defer func() {
		if r := recover(); r != nil && r != any(f) {
			panic(r)
		}
		msg = f.msg
	}()
	fn(f)
	return ""
}

// Variables that do not parse fail the test, naming the variable.
func TestSourcesBadEnv(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		fn   func(testing.TB)
		want string
	}{
		{"selectors not JSON", map[string]string{shoppact.EnvConsumerVersionSelectors: `{"mainBranch":true}`},
			func(tb testing.TB) { shoppact.Sources(tb, "user-service") }, shoppact.EnvConsumerVersionSelectors},
		{"unknown selector", map[string]string{shoppact.EnvConsumerVersionSelectors: `[{"mainBrunch":true}]`},
			func(tb testing.TB) { shoppact.Sources(tb, "user-service") }, "mainBrunch"},
		{"pending not a bool", map[string]string{shoppact.EnvEnablePending: "yes please"},
			func(tb testing.TB) { shoppact.Sources(tb, "user-service") }, shoppact.EnvEnablePending},
		{"bad broker url", map[string]string{shoppact.EnvBrokerURL: "127.0.0.1:1"},
			func(tb testing.TB) { shoppact.Sources(tb, "user-service") }, shoppact.EnvBrokerURL},
		{"publish without a version", map[string]string{shoppact.EnvPublishVerificationResults: "true"},
			func(tb testing.TB) { shoppact.Publisher(tb, "user-service") }, shoppact.EnvProviderVersion},
	} {
		t.Run(tc.name, func(t *testing.T) {
			unsetBroker(t)
			t.Setenv(shoppact.EnvBrokerURL, "http://127.0.0.1:1")
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			if msg := fatal(t, tc.fn); !strings.Contains(msg, tc.want) {
				t.Errorf("fatal %q, want one naming %q", msg, tc.want)
			}
		})
	}
}
