package repocheck_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/flotilla-ci/flotilla/graph"
	"github.com/flotilla-ci/flotilla/internal/sqldb"
	"github.com/flotilla-ci/flotilla/registry"
	"github.com/flotilla-ci/flotilla/registry/sqlstore"
	"github.com/flotilla-ci/flotilla/schema"
	"github.com/flotilla-ci/flotilla/schema/repocheck"
	"github.com/flotilla-ci/flotilla/schema/serde"
)

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestDiscover(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "flotilla.yaml"), `services:
  order-service:
    paths: [shop/order]
    publishes: [OrderCreated]
  order-audit:
    paths: [shop/order/audit]
    publishes: [Audited]
`)
	rec := func(name string) string {
		return `{"type":"record","name":"` + name + `","namespace":"shop","fields":[{"name":"id","type":"string"}]}`
	}
	write(t, filepath.Join(dir, "shop/order/schemas/OrderCreated.avsc"), rec("OrderCreated"))
	write(t, filepath.Join(dir, "shop/order/audit/Audited.avsc"), rec("Audited"))
	write(t, filepath.Join(dir, "shop/order/schemas/Broken.avsc"), `{"type":"record"`)
	write(t, filepath.Join(dir, "shop/order/schemas/notes.json"), `{}`)
	write(t, filepath.Join(dir, "unowned/Stray.avsc"), rec("Stray"))
	m, _, err := graph.Load(filepath.Join(dir, "flotilla.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	files, err := repocheck.Discover(m)
	if err != nil {
		t.Fatal(err)
	}
	type row struct{ Path, Service, Event, Subject string }
	var got []row
	for _, f := range files {
		got = append(got, row{f.Path, f.Service, f.Event(), f.Subject()})
		if (f.Err != nil) != (f.Event() == "Broken") {
			t.Errorf("%s: parse error %v", f.Path, f.Err)
		}
	}
	want := []row{
		{"shop/order/audit/Audited.avsc", "order-audit", "Audited", "Audited-value"},
		{"shop/order/schemas/Broken.avsc", "order-service", "Broken", "Broken-value"},
		{"shop/order/schemas/OrderCreated.avsc", "order-service", "OrderCreated", "OrderCreated-value"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestNotes(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "flotilla.yaml"), `services:
  order-service:
    paths: [shop/order]
    publishes: [OrderCreated, OrderCancelled]
  payment-service:
    paths: [shop/payment]
    subscribes: [OrderCreated]
`)
	write(t, filepath.Join(dir, "shop/order/schemas/OrderCreated.avsc"), `{"type":"record","name":"OrderCreated","fields":[]}`)
	write(t, filepath.Join(dir, "shop/order/schemas/OrderShipped.avsc"), `{"type":"record","name":"OrderShipped","fields":[]}`)
	m, _, err := graph.Load(filepath.Join(dir, "flotilla.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := repocheck.Check(context.Background(), m, repocheck.Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"shop/order/schemas/OrderShipped.avsc: record OrderShipped is not in order-service's publishes, so no subscriber is known for it",
		"order-service publishes OrderCancelled but owns no schema for it (want a record named OrderCancelled in a .avsc under shop/order)",
		"payment-service keeps no reader schemas (readers/<Event>.avsc) for the 1 event(s) it subscribes to: no reader check applies to it",
	}
	if diff := cmp.Diff(want, rep.Notes); diff != "" {
		t.Errorf("notes (-want +got):\n%s", diff)
	}
	if rep.Failed() {
		t.Error("notes failed the check")
	}
}

// Registered versions that use schema references are read with them.
func TestCheckAgainstRegisteredReferences(t *testing.T) {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	st, err := sqlstore.New(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := registry.New(st, registry.DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	src, err := sr.NewClient(sr.URLs(ts.URL))
	if err != nil {
		t.Fatal(err)
	}
	money := `{"type":"record","name":"Money","namespace":"shop","fields":[{"name":"cents","type":"long"}]}`
	if _, err := src.CreateSchema(ctx, "shop.Money-value", sr.Schema{Schema: money}); err != nil {
		t.Fatal(err)
	}
	if _, err := src.CreateSchema(ctx, "OrderCreated-value", sr.Schema{
		Schema:     `{"type":"record","name":"OrderCreated","namespace":"shop","fields":[{"name":"total","type":"shop.Money"}]}`,
		References: []sr.SchemaReference{{Name: "shop.Money", Subject: "shop.Money-value", Version: 1}},
	}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write(t, filepath.Join(dir, "flotilla.yaml"), "services:\n  order-service:\n    paths: [shop/order]\n    publishes: [OrderCreated]\n")
	// The repository's copy inlines Money, and narrows cents.
	write(t, filepath.Join(dir, "shop/order/schemas/OrderCreated.avsc"),
		`{"type":"record","name":"OrderCreated","namespace":"shop","fields":[{"name":"total","type":{"type":"record","name":"Money","fields":[{"name":"cents","type":"int"}]}}]}`)
	m, _, err := graph.Load(filepath.Join(dir, "flotilla.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := repocheck.Check(ctx, m, repocheck.Options{Registry: serde.NewClient(ts.URL, "", "")})
	if err != nil {
		t.Fatal(err)
	}
	res := rep.Results[0]
	if res.Err != nil || len(res.Comparisons) != 1 {
		t.Fatalf("result %+v", res)
	}
	var got []string
	for _, p := range res.Comparisons[0].Problems {
		got = append(got, string(p.Reason)+" "+p.Location)
	}
	if diff := cmp.Diff([]string{"TYPE_MISMATCH /fields/0/type/fields/0/type"}, got); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
}

// Each consumer's reader is checked against every writer version that may
// be in the topic: the repository's, and the registered ones within the
// retained window; each rule names the version, the field and the line.
func TestReaderChecksAcrossWriterVersions(t *testing.T) {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	st, err := sqlstore.New(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := registry.New(st, registry.DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	src, err := sr.NewClient(sr.URLs(ts.URL))
	if err != nil {
		t.Fatal(err)
	}
	versions := []string{
		`{"type":"record","name":"OrderCreated","namespace":"shop","fields":[{"name":"id","type":"string"},{"name":"status","type":{"type":"enum","name":"Status","symbols":["NEW"]}}]}`,
		`{"type":"record","name":"OrderCreated","namespace":"shop","fields":[{"name":"id","type":"string"},{"name":"status","type":{"type":"enum","name":"Status","symbols":["NEW"]}},{"name":"coupon","type":"string","default":""}]}`,
		`{"type":"record","name":"OrderCreated","namespace":"shop","fields":[{"name":"id","type":"string"},{"name":"status","type":{"type":"enum","name":"Status","symbols":["NEW","PAID"]}},{"name":"coupon","type":"string","default":""}]}`,
	}
	for _, r := range src.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatNone}) {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	for _, v := range versions {
		if _, err := src.CreateSchema(ctx, "OrderCreated-value", sr.Schema{Schema: v}); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	write(t, filepath.Join(dir, "flotilla.yaml"), `services:
  order-service:
    paths: [shop/order]
    publishes: [OrderCreated]
  mail-service:
    paths: [shop/mail]
    subscribes: [OrderCreated]
`)
	write(t, filepath.Join(dir, "shop/order/schemas/OrderCreated.avsc"), versions[2])
	m, _, err := graph.Load(filepath.Join(dir, "flotilla.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	const head = "{\"type\":\"record\",\"name\":\"OrderCreated\",\"namespace\":\"shop\",\"fields\":[\n"
	tests := []struct {
		name     string
		reader   string
		retained int
		want     []string // writer: rule field line
	}{
		{"reads every version", head + `{"name":"id","type":"string"}]}`, 0, nil},
		{"a field without default the oldest lacks", head + `{"name":"id","type":"string"},` + "\n" + `{"name":"coupon","type":"string"}]}`, 0,
			[]string{"registry OrderCreated-value version 1: READER_FIELD_MISSING_DEFAULT_VALUE coupon 3"}},
		{"the oldest version is no longer retained", head + `{"name":"id","type":"string"},` + "\n" + `{"name":"coupon","type":"string"}]}`, 2, nil},
		{"a narrower type", head + `{"name":"id","type":"string"},` + "\n" + `{"name":"coupon","type":"int","default":0}]}`, 0, []string{
			"shop/order/schemas/OrderCreated.avsc: TYPE_MISMATCH coupon 3",
			"registry OrderCreated-value version 2: TYPE_MISMATCH coupon 3",
		}},
		{"an enum symbol the reader lacks", head + `{"name":"status","type":{"type":"enum","name":"Status","symbols":["NEW"]}}]}`, 0,
			[]string{"shop/order/schemas/OrderCreated.avsc: MISSING_ENUM_SYMBOLS status 2"}},
		{"an enum default admits new symbols", head + `{"name":"status","type":{"type":"enum","name":"Status","symbols":["NEW","OTHER"],"default":"OTHER"}}]}`, 0, nil},
		{"another record", `{"type":"record","name":"OrderPlaced","namespace":"shop","fields":[]}`, 0,
			[]string{"shop/order/schemas/OrderCreated.avsc: NAME_MISMATCH  1", "registry OrderCreated-value version 2: NAME_MISMATCH  1", "registry OrderCreated-value version 1: NAME_MISMATCH  1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			write(t, filepath.Join(dir, "shop/mail/readers/OrderCreated.avsc"), tt.reader)
			rep, err := repocheck.Check(ctx, m, repocheck.Options{Registry: serde.NewClient(ts.URL, "", ""), Retained: tt.retained})
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Readers) != 1 {
				t.Fatalf("readers %+v", rep.Readers)
			}
			var got []string
			for _, c := range rep.Readers[0].Checks {
				for _, p := range c.Problems {
					got = append(got, fmt.Sprintf("%s: %s %s %d", c.Writer, p.Reason, p.Field, p.Line))
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
			if rep.Failed() != (len(tt.want) > 0) {
				t.Errorf("failed = %v", rep.Failed())
			}
		})
	}
}

// A .proto event schema may import another .proto beside it; the check
// reads both (the importing file parses against the changed import), and a
// break inside the imported message is named at its field in that file.
func TestProtobufImportsBesideIt(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "flotilla.yaml"), "services:\n  order-service:\n    paths: [shop/order]\n    publishes: [OrderPlaced]\n  mail-service:\n    paths: [shop/mail]\n    subscribes: [OrderPlaced]\n")
	money := "syntax = \"proto3\";\npackage shop;\nmessage Money {\n  int64 cents = 1;\n}\n"
	write(t, filepath.Join(dir, "shop/order/schemas/money.proto"), money)
	write(t, filepath.Join(dir, "shop/order/schemas/OrderPlaced.proto"), "syntax = \"proto3\";\npackage shop;\nimport \"money.proto\";\nmessage OrderPlaced {\n  string id = 1;\n  Money total = 2;\n}\n")
	write(t, filepath.Join(dir, "shop/mail/.keep"), "")
	m, _, err := graph.Load(filepath.Join(dir, "flotilla.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	files, err := repocheck.Discover(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if f.Err != nil || f.Type != repocheck.Protobuf {
			t.Fatalf("%s: type %s, %v", f.Path, f.Type, f.Err)
		}
	}
	for _, args := range [][]string{{"init", "-q"}, {"add", "."}, {"-c", "user.name=ci", "-c", "user.email=ci@example.com", "-c", "commit.gpgsign=false", "commit", "-q", "-m", "v1"}} {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
	}
	write(t, filepath.Join(dir, "shop/order/schemas/money.proto"), strings.Replace(money, "int64 cents", "string cents", 1))
	rep, err := repocheck.Check(context.Background(), m, repocheck.Options{Base: "HEAD"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rep.Results {
		for _, c := range r.Comparisons {
			for _, p := range c.Problems {
				if p.Direction == schema.NewReadsOld {
					got = append(got, r.Path+" "+string(p.Reason)+" "+p.Location+" "+p.Detail[strings.LastIndex(p.Detail, ": ")+2:])
				}
			}
		}
	}
	// As Confluent compares them, a file's own messages are compared; the
	// imported file is a schema of its own, where the break is found.
	want := []string{"shop/order/schemas/money.proto FIELD_SCALAR_KIND_CHANGED #/shop.Money/1 field cents (number 1, line 4)"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
}
