package client_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/flotilla-ci/flotilla/broker"
	"github.com/flotilla-ci/flotilla/broker/client"
	"github.com/flotilla-ci/flotilla/broker/sqlstore"
	"github.com/flotilla-ci/flotilla/contract"
)

// greetingPact is web's pact with greeter: a known person's greeting,
// any string, under a provider state that makes the person known.
const greetingPact = `{
  "consumer": {"name": "web"},
  "provider": {"name": "greeter"},
  "interactions": [{
    "description": "a greeting for Ada",
    "providerStates": [{"name": "Ada is known", "params": {"name": "Ada"}}],
    "request": {"method": "GET", "path": "/greetings/Ada"},
    "response": {
      "status": 200,
      "headers": {"Content-Type": "application/json"},
      "body": {"name": "Ada", "greeting": "hello, Ada"},
      "matchingRules": {"body": {"$.greeting": {"matchers": [{"match": "type"}]}}}
    }
  }],
  "metadata": {"pactSpecification": {"version": "3.0.0"}}
}`

const writeToken = "rw-token"

// startBroker serves flotilla's broker, on SQLite, with a read-write token.
func startBroker(t *testing.T) *client.Client {
	t.Helper()
	store, err := sqlstore.Open(context.Background(), filepath.Join(t.TempDir(), "broker.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	cfg := broker.DefaultConfig()
	cfg.Tokens = []broker.Token{{Value: writeToken, Write: true}}
	srv, err := broker.New(cfg, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	c, err := client.New(hs.URL, client.WithToken(writeToken))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// greeter is a tiny real provider: a store of known people, filled by the
// state handler, and a greeting endpoint; broken renames the field the
// consumer reads.
type greeter struct {
	mu     sync.Mutex
	known  map[string]bool
	broken bool
}

func (g *greeter) start(t *testing.T) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /greetings/{name}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		g.mu.Lock()
		ok := g.known[name]
		g.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		body := map[string]any{"name": name, "greeting": "hi " + name}
		if g.broken {
			body = map[string]any{"name": name, "salutation": "hi " + name}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(body)
	})
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	return hs.URL
}

func (g *greeter) states() map[string]contract.StateHandler {
	return map[string]contract.StateHandler{
		"Ada is known": func(_ context.Context, setup bool, p map[string]any) (map[string]any, error) {
			g.mu.Lock()
			defer g.mu.Unlock()
			if g.known == nil {
				g.known = map[string]bool{}
			}
			g.known[p["name"].(string)] = setup
			return nil, nil
		},
	}
}

func publishGreetingPact(t *testing.T, c *client.Client, version, branch string) {
	t.Helper()
	_, err := c.Publish(context.Background(), broker.PublishRequest{
		PacticipantName: "web", PacticipantVersionNumber: version, Branch: branch,
		Contracts: []broker.PublishContract{{ConsumerName: "web", ProviderName: "greeter", Specification: "pact",
			ContentType: "application/json", Content: base64.StdEncoding.EncodeToString([]byte(greetingPact))}},
	})
	if err != nil {
		t.Fatal(err)
	}
}

// verify runs the verifier over the broker's pacts for verification and
// publishes the results, as the shop's provider tests do in CI.
func verify(t *testing.T, c *client.Client, broken bool, version, branch string) *contract.Report {
	t.Helper()
	opts := client.VerificationOptions{
		Provider:                 "greeter",
		ConsumerVersionSelectors: []map[string]any{{"mainBranch": true}, {"deployedOrReleased": true}},
		EnablePending:            true,
		IncludeWIPPactsSince:     "2020-01-01",
		ProviderVersion:          version,
		ProviderBranch:           branch,
		BuildURL:                 "https://ci.example/run/1",
	}
	src, err := c.VerificationSource(opts)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := c.ResultPublisher(opts)
	if err != nil {
		t.Fatal(err)
	}
	g := &greeter{broken: broken}
	v := contract.Verifier{Provider: "greeter", BaseURL: g.start(t), Sources: []contract.Source{src},
		StateHandlers: g.states(), Publisher: pub}
	rep, err := v.Run(context.Background())
	if err != nil {
		t.Fatalf("verify greeter %s: %v", version, err)
	}
	if len(rep.Pacts) != 1 || len(rep.Pacts[0].Interactions) != 1 {
		t.Fatalf("verify greeter %s: want web's one pact with one interaction, got %+v", version, rep.Pacts)
	}
	return rep
}

// canIDeploy asks the matrix whether greeter's version can go where web
// w1 is deployed.
func canIDeploy(t *testing.T, c *client.Client, version string) client.Matrix {
	t.Helper()
	m, err := c.Matrix(context.Background(), broker.MatrixQuery{
		Selectors: []broker.Selector{{Pacticipant: "greeter", Version: version}},
		LatestBy:  "cvp", Target: broker.Target{Environment: "production"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestVerifyFromBrokerAndPublish is the broker path end to end: a pact
// published to flotilla's broker is verified through VerificationSource
// against a real provider, ResultPublisher publishes the results, and the
// matrix answers with them: deployable after a passing verification, not
// after a provider broken on purpose fails (pending only until main has
// verified the pact once).
func TestVerifyFromBrokerAndPublish(t *testing.T) {
	ctx := context.Background()
	c := startBroker(t)
	publishGreetingPact(t, c, "w1", "main")

	// A broken provider on a feature branch: the pact is pending for
	// greeter (never verified), so its failure does not fail, and the
	// failure is still published.
	rep := verify(t, c, true, "g0", "feat")
	if p := rep.Pacts[0]; p.OK() || !p.Pending || !rep.OK() {
		t.Fatalf("g0: want a failed pending pact that does not fail the verification; pact ok=%v pending=%v, report ok=%v", p.OK(), p.Pending, rep.OK())
	}

	// The real provider on main: passes, published.
	rep = verify(t, c, false, "g1", "main")
	if !rep.OK() {
		t.Fatalf("g1 failed:\n%s", contract.FormatInteraction(rep.Pacts[0], rep.Pacts[0].Interactions[0]))
	}
	if err := c.RecordDeployment(ctx, "web", "w1", "production", "", false); err != nil {
		t.Fatal(err)
	}
	m := canIDeploy(t, c, "g1")
	if m.Summary.Deployable == nil || !*m.Summary.Deployable || m.Summary.Success != 1 || len(m.Rows) != 1 || m.Rows[0].VerificationResult == nil {
		t.Fatalf("can-i-deploy greeter g1 after a passing verification: %+v (%s)", m.Summary, m.Summary.Reason)
	}
	res, err := c.Verification(ctx, m.Rows[0].VerificationResult.Links.Self.Href)
	if err != nil {
		t.Fatal(err)
	}
	if res.ProviderApplicationVersion != "g1" || !res.Success || len(res.TestResults) != 1 ||
		res.TestResults[0].InteractionDescription != "a greeting for Ada" || res.TestResults[0].InteractionID == "" || !res.TestResults[0].Success {
		t.Fatalf("published result of g1: %+v", res)
	}

	// Broken on purpose, on main: no longer pending, so it fails, and
	// can-i-deploy refuses it, naming the failed interaction's mismatch.
	rep = verify(t, c, true, "g2", "main")
	if rep.OK() || rep.Pacts[0].Pending {
		t.Fatalf("g2: a broken provider passed (pending=%v)", rep.Pacts[0].Pending)
	}
	m = canIDeploy(t, c, "g2")
	if m.Summary.Deployable == nil || *m.Summary.Deployable || m.Summary.Failed != 1 {
		t.Fatalf("can-i-deploy greeter g2 after a failed verification: %+v", m.Summary)
	}
	res, err = c.Verification(ctx, m.Rows[0].VerificationResult.Links.Self.Href)
	if err != nil {
		t.Fatal(err)
	}
	if res.Success || len(res.TestResults) != 1 || res.TestResults[0].Success || len(res.TestResults[0].Mismatches) == 0 ||
		!strings.Contains(res.TestResults[0].Mismatches[0].Identifier+res.TestResults[0].Mismatches[0].Description, "greeting") {
		t.Fatalf("published result of g2 does not name the missing $.greeting: %+v", res)
	}
	// g1 is still deployable: the results are per provider version.
	if m := canIDeploy(t, c, "g1"); m.Summary.Deployable == nil || !*m.Summary.Deployable {
		t.Fatalf("can-i-deploy greeter g1 after g2 failed: %+v", m.Summary)
	}
}

// The options the broker would refuse fail before any request; a
// provider without pacts is an error naming it.
func TestVerificationOptionsBadInput(t *testing.T) {
	c := startBroker(t)
	for _, tc := range []struct {
		name string
		opts client.VerificationOptions
		want string
	}{
		{"no provider", client.VerificationOptions{}, "no provider"},
		{"unknown selector key", client.VerificationOptions{Provider: "greeter", ConsumerVersionSelectors: []map[string]any{{"mainBrunch": true}}}, `unknown selector key "mainBrunch"`},
		{"matchingBranch without a branch", client.VerificationOptions{Provider: "greeter", ConsumerVersionSelectors: []map[string]any{{"matchingBranch": true}}}, "providerVersionBranch"},
		{"bad WIP date", client.VerificationOptions{Provider: "greeter", IncludeWIPPactsSince: "last week"}, "includeWipPactsSince"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := c.VerificationSource(tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := c.ResultPublisher(client.VerificationOptions{Provider: "greeter"}); err == nil || !strings.Contains(err.Error(), "provider version") {
		t.Errorf("a publisher without a provider version: %v", err)
	}
	src, err := c.VerificationSource(client.VerificationOptions{Provider: "nobody"})
	if err != nil {
		t.Fatal(err)
	}
	if ps, err := src.Pacts(context.Background()); err == nil || !strings.Contains(err.Error(), "nobody") {
		t.Errorf("pacts for an unknown provider: %v %v", ps, err)
	}
}
