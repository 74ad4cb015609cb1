package broker_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http/httptest"

	"github.com/flotilla-ci/flotilla/broker"
	"github.com/flotilla-ci/flotilla/broker/client"
	"github.com/flotilla-ci/flotilla/broker/sqlstore"
)

// A broker on an in-memory SQLite store: a consumer publishes its pact,
// the provider's verification is published, both are recorded in
// production, and can-i-deploy answers for the next provider version.
func Example() {
	ctx := context.Background()
	store, err := sqlstore.Open(ctx, "") // "" is in-memory SQLite; a file path or postgres:// DSN in production
	if err != nil {
		panic(err)
	}
	defer func() { _ = store.Close() }()
	srv, err := broker.New(broker.DefaultConfig(), store, nil)
	if err != nil {
		panic(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	c, _ := client.New(hs.URL)

	pact := `{"consumer":{"name":"web"},"provider":{"name":"api"},"interactions":[{"description":"a greeting",
		"request":{"method":"GET","path":"/hello"},"response":{"status":200}}],"metadata":{"pactSpecification":{"version":"3.0.0"}}}`
	res, err := c.Publish(ctx, broker.PublishRequest{PacticipantName: "web", PacticipantVersionNumber: "w1", Branch: "main",
		Contracts: []broker.PublishContract{{ConsumerName: "web", ProviderName: "api", Specification: "pact",
			ContentType: "application/json", Content: base64.StdEncoding.EncodeToString([]byte(pact))}}})
	if err != nil {
		panic(err)
	}
	fmt.Println(res.Notices[0].Text)

	// The provider's verifier publishes its results to the pact's link.
	for v, ok := range map[string]bool{"a1": true, "a2": false} {
		if err := c.Send(ctx, "POST", res.Links.Contracts[0].Href+"/verification-results",
			map[string]any{"providerApplicationVersion": v, "success": ok}, nil); err != nil {
			panic(err)
		}
	}
	_ = c.RecordDeployment(ctx, "web", "w1", "production", "", false)
	_ = c.RecordDeployment(ctx, "api", "a1", "production", "", false)

	for _, v := range []string{"a1", "a2"} {
		m, err := c.Matrix(ctx, broker.MatrixQuery{
			Selectors: []broker.Selector{{Pacticipant: "api", Version: v}},
			Target:    broker.Target{Environment: "production"}, LatestBy: "cvpv",
		})
		if err != nil {
			panic(err)
		}
		fmt.Printf("api %s to production: deployable=%v: %s\n", v, *m.Summary.Deployable, m.Summary.Reason)
	}
	// Output:
	// Created web version w1 with branch main
	// api a1 to production: deployable=true: All required verification results are published and successful
	// api a2 to production: deployable=false: The verification for the pact between version w1 of web and version a2 of api failed
}
