package controlplane_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flotilla-ci/flotilla/controlplane"
	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/graph"
	"github.com/flotilla-ci/flotilla/internal/sqldb"
	"github.com/flotilla-ci/flotilla/registry"
	regsql "github.com/flotilla-ci/flotilla/registry/sqlstore"
	"github.com/flotilla-ci/flotilla/schema/serde"
)

func TestSchemasCompatibleGate(t *testing.T) {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	store, err := regsql.New(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := registry.New(store, registry.DefaultConfig(), quiet)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	resp, err := http.Post(ts.URL+"/subjects/OrderCreated-value/versions", registry.ContentType,
		strings.NewReader(`{"schema":"{\"type\":\"record\",\"name\":\"OrderCreated\",\"fields\":[{\"name\":\"total\",\"type\":\"long\"}]}"}`))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()

	root := t.TempDir()
	write := func(rel, body string) {
		t.Helper()
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(graph.FileName, "services:\n  order-service:\n    paths: [order]\n    publishes: [OrderCreated]\n  user-service:\n    paths: [user]\n  mail-service:\n    paths: [mail]\n    subscribes: [OrderCreated]\n")
	write("user/main.go", "package main\n")
	gate := controlplane.SchemasCompatible{Registry: serde.NewClient(ts.URL, "", ""), Manifest: func() (*graph.Manifest, error) {
		m, _, err := graph.Load(filepath.Join(root, graph.FileName))
		return m, err
	}}
	const reader = `{"type":"record","name":"OrderCreated","fields":[{"name":"total","type":"long"}]}`
	tests := []struct {
		name, service, avsc string
		pass                bool
		reason              string
		reader              string
	}{
		{"a consumer's reader cannot read it", "order-service", `{"type":"record","name":"OrderCreated","fields":[{"name":"total","type":"long"},{"name":"note","type":"string","default":""}]}`, false,
			"order/schemas/OrderCreated.avsc: mail-service cannot read it: mail/readers/OrderCreated.avsc:1, field note: TYPE_MISMATCH (the reader's type does not match the writer's: reader type: INT not compatible with writer type: STRING)",
			`{"type":"record","name":"OrderCreated","fields":[{"name":"total","type":"long"},{"name":"note","type":"int"}]}`},
		{"the consumer's reader cannot read a registered version", "mail-service", `{"type":"record","name":"OrderCreated","fields":[{"name":"total","type":"long"},{"name":"note","type":"string","default":""}]}`, false,
			"mail/readers/OrderCreated.avsc:1 field note cannot read registry OrderCreated-value version 1: READER_FIELD_MISSING_DEFAULT_VALUE",
			`{"type":"record","name":"OrderCreated","fields":[{"name":"total","type":"long"},{"name":"note","type":"string"}]}`},
		{"the consumer reads every version", "mail-service", `{"type":"record","name":"OrderCreated","fields":[{"name":"total","type":"long"}]}`, true, "1 schema(s) compatible", ""},
		{"compatible", "order-service", `{"type":"record","name":"OrderCreated","fields":[{"name":"total","type":"long"},{"name":"note","type":"string","default":""}]}`, true, "1 schema(s) compatible", ""},
		{"narrowed", "order-service", `{"type":"record","name":"OrderCreated","fields":[{"name":"total","type":"int"}]}`, false, "order/schemas/OrderCreated.avsc (subject OrderCreated-value", ""},
		{"does not parse", "order-service", `{"type":"record","name":"OrderCreated","fields":[`, false, "order/schemas/OrderCreated.avsc does not parse", ""},
		{"a service without schemas", "user-service", `{"type":"record","name":"OrderCreated","fields":[{"name":"total","type":"int"}]}`, true, "0 schema(s)", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			write("order/schemas/OrderCreated.avsc", tt.avsc)
			if tt.reader == "" {
				tt.reader = reader
			}
			write("mail/readers/OrderCreated.avsc", tt.reader)
			res, err := gate.Check(ctx, deploy.GateRequest{Service: tt.service, Version: "v"})
			if err != nil {
				t.Fatal(err)
			}
			if res.Pass != tt.pass || !strings.Contains(res.Reason, tt.reason) {
				t.Errorf("gate = %+v, want pass %v with %q", res, tt.pass, tt.reason)
			}
		})
	}
	// A registry that does not answer: the gate cannot answer (closed).
	down := controlplane.SchemasCompatible{Registry: serde.NewClient("http://127.0.0.1:1", "", ""), Manifest: gate.Manifest}
	write("order/schemas/OrderCreated.avsc", `{"type":"record","name":"OrderCreated","fields":[{"name":"total","type":"long"}]}`)
	if _, err := down.Check(ctx, deploy.GateRequest{Service: "order-service"}); err == nil || !strings.Contains(err.Error(), "registry") {
		t.Errorf("gate with the registry down = %v, want an error", err)
	}
}
