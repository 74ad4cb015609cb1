package controlplane_test

import (
	"context"
	"encoding/base64"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/flotilla-ci/flotilla/broker"
	"github.com/flotilla-ci/flotilla/broker/client"
	brokersql "github.com/flotilla-ci/flotilla/broker/sqlstore"
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
	gate := controlplane.CanIDeploy{Broker: c, Environment: "production"}
	check := func(service, source string) deploy.GateResult {
		t.Helper()
		res, err := gate.Check(ctx, deploy.GateRequest{Service: service, Version: source + "-c0ffee", Source: source, Environment: "local"})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if res := check("alpha-service", "a1"); !res.Pass || !strings.Contains(res.Reason, "no data for alpha-service a1") {
		t.Errorf("a version the broker does not know: %+v, want open with a note", res)
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
		{"alpha-service", "a2", false, "The verification for the pact between version b1 of bravo-service and version a2 of alpha-service failed"},
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
	err = controlplane.RecordDeployments{Broker: c, Environment: "moon"}.Record(ctx, deploy.Record{Service: "alpha-service", Result: deploy.Succeeded, Spec: deploy.Spec{Source: "a1"}})
	if err == nil || !strings.Contains(err.Error(), "environment moon does not exist in the broker") {
		t.Errorf("recording to an unknown environment = %v, want the broker's answer", err)
	}
}
