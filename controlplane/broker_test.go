package controlplane_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/flotilla-ci/flotilla/broker"
	"github.com/flotilla-ci/flotilla/broker/client"
	brokersql "github.com/flotilla-ci/flotilla/broker/sqlstore"
	"github.com/flotilla-ci/flotilla/contract"
	"github.com/flotilla-ci/flotilla/controlplane"
	"github.com/flotilla-ci/flotilla/deploy"
)

// The gate and the recorder against a real broker: bravo-service (the
// consumer) has a pact with alpha-service (the provider); alpha a1
// verified it, a2 broke it.
func TestCanIDeployAndRecordDeployments(t *testing.T) {
	ctx := context.Background()
	store, err := brokersql.Open(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = store.Close() }()
	srv, err := broker.New(broker.DefaultConfig(), store, quiet)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	c, err := client.New(hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	gate := &controlplane.CanIDeploy{Broker: c, Environment: "production"}
	check := func(service, source string) deploy.GateResult {
		t.Helper()
		res, err := gate.Check(ctx, deploy.GateRequest{Service: service, Version: source + "-c0ffee", Source: source, Environment: "local"})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if res := check("alpha-service", "a1"); res.Pass || !strings.Contains(res.Reason, "no data for alpha-service a1") {
		t.Errorf("a version the broker does not know: %+v, want closed, saying so", res)
	}

	pact := `{"consumer":{"name":"bravo-service"},"provider":{"name":"alpha-service"},"interactions":[{"description":"a user",
		"request":{"method":"GET","path":"/users/1"},"response":{"status":200}}],"metadata":{"pactSpecification":{"version":"3.0.0"}}}`
	pub, err := c.Publish(ctx, broker.PublishRequest{PacticipantName: "bravo-service", PacticipantVersionNumber: "b1", Branch: "main",
		Contracts: []broker.PublishContract{{ConsumerName: "bravo-service", ProviderName: "alpha-service", Specification: "pact",
			ContentType: "application/json", Content: base64.StdEncoding.EncodeToString([]byte(pact))}}})
	if err != nil {
		t.Fatal(err)
	}
	for v, ok := range map[string]bool{"a1": true, "a2": false} {
		if err := c.Send(ctx, "POST", pub.Links.Contracts[0].Href+"/verification-results", map[string]any{"providerApplicationVersion": v, "success": ok}, nil); err != nil {
			t.Fatal(err)
		}
	}
	rec := controlplane.RecordDeployments{Broker: c, Environment: "production"}
	if err := rec.Record(ctx, deploy.Record{Service: "bravo-service", Version: "b1-c0ffee", Result: deploy.Succeeded, Spec: deploy.Spec{Source: "b1"}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		service, source string
		pass            bool
		reason          string
	}{
		{"alpha-service", "a1", true, "All required verification results are published and successful"},
		{"alpha-service", "a2", false, "alpha-service a2 fails the pact of bravo-service b1"},
	}
	for _, tt := range tests {
		t.Run(tt.source, func(t *testing.T) {
			res := check(tt.service, tt.source)
			if res.Pass != tt.pass || !strings.Contains(res.Reason, tt.reason) {
				t.Errorf("can-i-deploy %s %s = %+v, want pass %v with %q", tt.service, tt.source, res, tt.pass, tt.reason)
			}
		})
	}
	// A failed deploy is not recorded; a successful one is, under its
	// source version: bravo b2 then finds alpha a1 in production.
	if err := rec.Record(ctx, deploy.Record{Service: "alpha-service", Version: "a2-c0ffee", Result: deploy.Failed, Spec: deploy.Spec{Source: "a2"}}); err != nil {
		t.Fatal(err)
	}
	if err := rec.Record(ctx, deploy.Record{Service: "alpha-service", Version: "a1-c0ffee", Result: deploy.Succeeded, Spec: deploy.Spec{Source: "a1"}}); err != nil {
		t.Fatal(err)
	}
	m, err := c.Matrix(ctx, broker.MatrixQuery{Selectors: []broker.Selector{{Pacticipant: "bravo-service", Version: "b1"}}, Target: broker.Target{Environment: "production"}, LatestBy: "cvpv"})
	if err != nil {
		t.Fatal(err)
	}
	if m.Summary.Deployable == nil || !*m.Summary.Deployable || len(m.Rows) != 1 || m.Rows[0].Provider.VersionNumber() != "a1" {
		t.Errorf("bravo b1 against production after recording alpha a1: %+v", m.Summary)
	}
	// A release rollback that stopped alpha (nothing served before it)
	// records the undeployment: nothing of alpha is left to undeploy.
	if err := rec.Record(ctx, deploy.Record{Service: "alpha-service", Version: "a1-c0ffee", Action: deploy.RecordRollback, Result: deploy.RolledBack, Spec: deploy.Spec{Source: "a1"}}); err != nil {
		t.Fatal(err)
	}
	if left, err := c.RecordUndeployment(ctx, "alpha-service", "production", ""); err == nil || !strings.Contains(err.Error(), "not currently deployed") {
		t.Errorf("alpha still deployed after its rollback was recorded: %v, %v", left, err)
	}
	err = controlplane.RecordDeployments{Broker: c, Environment: "moon"}.Record(ctx, deploy.Record{Service: "alpha-service", Result: deploy.Succeeded, Spec: deploy.Spec{Source: "a1"}})
	if err == nil || !strings.Contains(err.Error(), "environment moon does not exist in the broker") {
		t.Errorf("recording to an unknown environment = %v, want the broker's answer", err)
	}
}

// newBroker runs an embedded broker and returns its client and URL.
func newBroker(t *testing.T) (*client.Client, string) {
	t.Helper()
	store, err := brokersql.Open(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	srv, err := broker.New(broker.DefaultConfig(), store, quiet)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	c, err := client.New(hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	return c, hs.URL
}

// The gate fails closed: a verification not published yet (the answer
// is unknown) and a broker that cannot be asked keep the service out.
func TestCanIDeployFailsClosed(t *testing.T) {
	ctx := context.Background()
	c, _ := newBroker(t)
	pact := `{"consumer":{"name":"bravo-service"},"provider":{"name":"alpha-service"},"interactions":[{"description":"a user",
		"request":{"method":"GET","path":"/users/1"},"response":{"status":200}}],"metadata":{"pactSpecification":{"version":"3.0.0"}}}`
	if _, err := c.Publish(ctx, broker.PublishRequest{PacticipantName: "bravo-service", PacticipantVersionNumber: "b1", Branch: "main",
		Contracts: []broker.PublishContract{{ConsumerName: "bravo-service", ProviderName: "alpha-service", Specification: "pact",
			ContentType: "application/json", Content: base64.StdEncoding.EncodeToString([]byte(pact))}}}); err != nil {
		t.Fatal(err)
	}
	// alpha a1 is deployed, and never verified bravo's pact.
	if err := c.Send(ctx, "PUT", "/pacticipants/alpha-service/branches/main/versions/a1", map[string]any{}, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.RecordDeployment(ctx, "alpha-service", "a1", "production", "", false); err != nil {
		t.Fatal(err)
	}
	gate := &controlplane.CanIDeploy{Broker: c, Environment: "production"}
	res, err := gate.Check(ctx, deploy.GateRequest{Service: "bravo-service", Version: "b1", Source: "b1"})
	if err != nil || res.Pass || !strings.Contains(res.Reason, "not known yet") {
		t.Errorf("bravo b1 against an unverified alpha = %+v, %v; want closed as not known yet", res, err)
	}

	down, err := client.New("http://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	gate = &controlplane.CanIDeploy{Broker: down, Environment: "production"}
	if res, err := gate.Check(ctx, deploy.GateRequest{Service: "bravo-service", Source: "b1"}); err == nil || res.Pass {
		t.Errorf("a broker that is down = %+v, %v; want an error (the orchestrator closes the gate on it)", res, err)
	}
	if err := gate.Prepare(ctx, deploy.PrepareRequest{Plan: &deploy.Plan{}}); err != nil {
		t.Errorf("Prepare without Contracts = %v, want nothing done", err)
	}
}

// The release step: the deployed consumers' pacts published under their
// source versions, the providers verified against them (here by the
// real verifier against a fake alpha-service) and the results published,
// the deployments recorded; then can-i-deploy answers from that data. A
// provider version that breaks the pact is refused, naming the consumer
// and the interaction. Nothing is verified twice.
func TestContractsPrepareThenGate(t *testing.T) {
	ctx := context.Background()
	c, brokerURL := newBroker(t)
	dir := t.TempDir()
	pact := `{"consumer":{"name":"bravo-service"},"provider":{"name":"alpha-service"},"interactions":[{"description":"a user",
		"request":{"method":"GET","path":"/users/1"},"response":{"status":200,"body":{"id":"1"}}}],"metadata":{"pactSpecification":{"version":"3.0.0"}}}`
	if err := os.WriteFile(filepath.Join(dir, "bravo-service-alpha-service.json"), []byte(pact), 0o644); err != nil {
		t.Fatal(err)
	}
	// echo-service consumes what foxtrot-service provides, and does not
	// depend on it (an event consumer): it may deploy first.
	echo := strings.NewReplacer("bravo-service", "echo-service", "alpha-service", "foxtrot-service").Replace(pact)
	if err := os.WriteFile(filepath.Join(dir, "echo-service-foxtrot-service.json"), []byte(echo), 0o644); err != nil {
		t.Fatal(err)
	}
	var broken atomic.Bool
	alpha := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if broken.Load() {
			_, _ = w.Write([]byte(`{"userId":"1"}`))
			return
		}
		_, _ = w.Write([]byte(`{"id":"1"}`))
	}))
	defer alpha.Close()
	var verified []string
	verify := func(ctx context.Context, req controlplane.VerifyRequest) error {
		verified = append(verified, req.Provider+" "+req.Version)
		if req.Broker != brokerURL || req.Branch != "main" {
			t.Errorf("verify %+v, want the broker %s and branch main", req, brokerURL)
		}
		opts := client.VerificationOptions{Provider: req.Provider, ProviderVersion: req.Version, ProviderBranch: req.Branch, ConsumerVersionSelectors: req.Selectors}
		src, err := c.VerificationSource(opts)
		if err != nil {
			return err
		}
		pub, err := c.ResultPublisher(opts)
		if err != nil {
			return err
		}
		_, err = (&contract.Verifier{Provider: req.Provider, BaseURL: alpha.URL, Sources: []contract.Source{src}, Publisher: pub}).Run(ctx)
		return err
	}
	gate := &controlplane.CanIDeploy{Broker: c, Environment: "production",
		Contracts: &controlplane.Contracts{Pacts: dir, BrokerURL: brokerURL, Branch: "main", Verify: verify}}
	rec := controlplane.RecordDeployments{Broker: c, Environment: "production"}
	item := func(service, source string) deploy.PlanItem {
		return deploy.PlanItem{Service: service, Version: source + "-c0ffee", Action: deploy.ActionDeploy, Spec: deploy.Spec{Service: service, Source: source}}
	}
	// release deploys the plan's waves as the orchestrator does: gate,
	// then record; it returns each service's gate result.
	release := func(waves ...[]deploy.PlanItem) map[string]deploy.GateResult {
		t.Helper()
		if err := gate.Prepare(ctx, deploy.PrepareRequest{Plan: &deploy.Plan{Waves: waves}, Environment: "production"}); err != nil {
			t.Fatal(err)
		}
		out := map[string]deploy.GateResult{}
		for _, w := range waves {
			for _, it := range w {
				res, err := gate.Check(ctx, deploy.GateRequest{Service: it.Service, Version: it.Version, Source: it.Spec.Source})
				if err != nil {
					t.Fatal(err)
				}
				out[it.Service] = res
				if res.Pass {
					if err := rec.Record(ctx, deploy.Record{Service: it.Service, Version: it.Version, Action: deploy.RecordDeploy, Result: deploy.Succeeded, Spec: it.Spec}); err != nil {
						t.Fatalf("record %s: %v", it.Service, err)
					}
				}
			}
		}
		return out
	}

	got := release([]deploy.PlanItem{item("alpha-service", "a1")}, []deploy.PlanItem{item("bravo-service", "b1"), item("delta-service", "d1")})
	for s, res := range got {
		if !res.Pass {
			t.Errorf("first release: %s = %+v, want deployable", s, res)
		}
	}
	if d := cmp.Diff([]string{"alpha-service a1"}, verified); d != "" {
		t.Errorf("verifications (-want +got):\n%s", d)
	}
	// The same release again: every result is there, nothing runs.
	verified = nil
	release([]deploy.PlanItem{item("alpha-service", "a1")}, []deploy.PlanItem{item("bravo-service", "b1")})
	if len(verified) != 0 {
		t.Errorf("a release of verified versions verified %v again", verified)
	}

	// alpha a2 renames the field bravo reads: refused, naming bravo and
	// the interaction; a1 keeps serving bravo.
	broken.Store(true)
	got = release([]deploy.PlanItem{item("alpha-service", "a2")})
	res := got["alpha-service"]
	t.Logf("alpha a2: %s", res.Reason)
	for _, want := range []string{"alpha-service a2 fails the pact of bravo-service b1", `interaction "a user"`, "$.id"} {
		if res.Pass || !strings.Contains(res.Reason, want) {
			t.Errorf("alpha a2 = %+v, want closed with %q", res, want)
		}
	}

	// A consumer whose provider is neither deployed nor released goes
	// (its provider's gate checks the pact when it comes); one whose
	// provider comes later in the same release is checked against that
	// provider's version: refused when it breaks the pact.
	if res := release([]deploy.PlanItem{item("echo-service", "e0")})["echo-service"]; !res.Pass || !strings.Contains(res.Reason, "foxtrot-service is not deployed in production") {
		t.Errorf("echo e0 without foxtrot anywhere = %+v, want open with a note", res)
	}
	got = release([]deploy.PlanItem{item("echo-service", "e1")}, []deploy.PlanItem{item("foxtrot-service", "f1")})
	if res := got["echo-service"]; res.Pass || !strings.Contains(res.Reason, "foxtrot-service f1 fails the pact of echo-service e1") {
		t.Errorf("echo e1 with a breaking foxtrot f1 in the same release = %+v, want closed", res)
	}
	broken.Store(false)
	got = release([]deploy.PlanItem{item("echo-service", "e1")}, []deploy.PlanItem{item("foxtrot-service", "f2")})
	if res := got["echo-service"]; !res.Pass {
		t.Errorf("echo e1 with foxtrot f2 in the same release = %+v, want deployable", res)
	}
}
