package registry_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/flotilla-ci/flotilla/internal/sqldb"
	"github.com/flotilla-ci/flotilla/internal/sqldb/sqldbtest"
	"github.com/flotilla-ci/flotilla/registry"
	"github.com/flotilla-ci/flotilla/registry/sqlstore"
	"github.com/flotilla-ci/flotilla/schema"
)

func newServer(t *testing.T, dsn string, cfg registry.Config) *httptest.Server {
	t.Helper()
	ctx := context.Background()
	db, err := sqldb.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	st, err := sqlstore.New(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := registry.New(st, cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return ts
}

type client struct {
	t    *testing.T
	base string
	user string
	pass string
}

// do sends a request and returns the status and the decoded JSON body.
func (c client) do(method, path, body string) (int, any) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", registry.ContentType)
	if c.user != "" {
		req.SetBasicAuth(c.user, c.pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); ct != registry.ContentType {
		c.t.Errorf("%s %s: content type %q", method, path, ct)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return resp.StatusCode, string(b)
	}
	return resp.StatusCode, v
}

func body(schemaText string) string {
	b, _ := json.Marshal(map[string]string{"schema": schemaText})
	return string(b)
}

const (
	v1 = `{"type":"record","name":"OrderCreated","namespace":"shop.order","fields":[{"name":"order_id","type":"string"},{"name":"total_cents","type":"long"}]}`
	v2 = `{"type":"record","name":"OrderCreated","namespace":"shop.order","fields":[{"name":"order_id","type":"string"},{"name":"total_cents","type":"long"},{"name":"currency","type":"string","default":"EUR"}]}`
	// v3 narrows total_cents and adds a field without a default.
	v3 = `{"type":"record","name":"OrderCreated","namespace":"shop.order","fields":[{"name":"order_id","type":"string"},{"name":"total_cents","type":"int"},{"name":"coupon","type":"string"}]}`
)

func num(n int) any { return float64(n) }

func TestAPI(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, dsn string) {
		c := client{t: t, base: newServer(t, dsn, registry.DefaultConfig()).URL}
		steps := []struct {
			method, path, body string
			status             int
			want               any
		}{
			{"GET", "/subjects", "", 200, []any{}},
			{"GET", "/config", "", 200, map[string]any{"compatibilityLevel": "BACKWARD", "compatibility": "BACKWARD"}},
			{"POST", "/subjects/shop.order.OrderCreated-value/versions", body(v1), 200, map[string]any{"id": num(1), "version": num(1)}},
			{"POST", "/subjects/shop.order.OrderCreated-value/versions", body(v1), 200, map[string]any{"id": num(1), "version": num(1)}},
			{"POST", "/subjects/shop.order.OrderCreated-value/versions", body(v2), 200, map[string]any{"id": num(2), "version": num(2)}},
			{"POST", "/subjects/copy-value/versions", body(v2), 200, map[string]any{"id": num(2), "version": num(1)}},
			{"GET", "/schemas/ids/2", "", 200, map[string]any{"schema": v2}},
			{"GET", "/schemas/ids/1?fetchMaxId=true", "", 200, map[string]any{"schema": v1, "maxId": num(2)}},
			{"GET", "/schemas/ids/2/schema", "", 200, mustJSON(v2)},
			{"GET", "/schemas/ids/2/subjects", "", 200, []any{"copy-value", "shop.order.OrderCreated-value"}},
			{"GET", "/schemas/ids/2/versions", "", 200, []any{
				map[string]any{"subject": "copy-value", "version": num(1)},
				map[string]any{"subject": "shop.order.OrderCreated-value", "version": num(2)}}},
			{"GET", "/subjects", "", 200, []any{"copy-value", "shop.order.OrderCreated-value"}},
			{"GET", "/subjects?subjectPrefix=shop", "", 200, []any{"shop.order.OrderCreated-value"}},
			{"GET", "/subjects?offset=1&limit=1", "", 200, []any{"shop.order.OrderCreated-value"}},
			{"GET", "/subjects?offset=0&limit=1", "", 200, []any{"copy-value"}},
			{"GET", "/subjects?offset=5", "", 200, []any{}},
			{"GET", "/subjects/shop.order.OrderCreated-value/versions", "", 200, []any{num(1), num(2)}},
			{"GET", "/subjects/shop.order.OrderCreated-value/versions/latest", "", 200,
				map[string]any{"subject": "shop.order.OrderCreated-value", "version": num(2), "id": num(2), "schema": v2}},
			{"GET", "/subjects/shop.order.OrderCreated-value/versions/1", "", 200,
				map[string]any{"subject": "shop.order.OrderCreated-value", "version": num(1), "id": num(1), "schema": v1}},
			{"POST", "/subjects/shop.order.OrderCreated-value", body(v1), 200,
				map[string]any{"subject": "shop.order.OrderCreated-value", "version": num(1), "id": num(1), "schema": v1}},
			{"POST", "/compatibility/subjects/shop.order.OrderCreated-value/versions/latest", body(v2), 200, map[string]any{"is_compatible": true}},
			{"POST", "/compatibility/subjects/nothing-here/versions/latest", body(v3), 200, map[string]any{"is_compatible": true}},
			{"POST", "/compatibility/subjects/shop.order.OrderCreated-value/versions/latest", body(v3), 200, map[string]any{"is_compatible": false}},
			{"POST", "/subjects/shop.order.OrderCreated-value/versions", body(v3), 409, nil},
			{"GET", "/subjects/shop.order.OrderCreated-value/versions", "", 200, []any{num(1), num(2)}},
			{"PUT", "/config/shop.order.OrderCreated-value", `{"compatibility":"NONE"}`, 200, map[string]any{"compatibility": "NONE"}},
			{"GET", "/config/shop.order.OrderCreated-value", "", 200, map[string]any{"compatibilityLevel": "NONE", "compatibility": "NONE"}},
			{"GET", "/config/copy-value", "", 404, nil},
			{"GET", "/config/copy-value?defaultToGlobal=true", "", 200, map[string]any{"compatibilityLevel": "BACKWARD", "compatibility": "BACKWARD"}},
			{"POST", "/subjects/shop.order.OrderCreated-value/versions", body(v3), 200, map[string]any{"id": num(3), "version": num(3)}},
			{"DELETE", "/config/shop.order.OrderCreated-value", "", 200, map[string]any{"compatibilityLevel": "NONE", "compatibility": "NONE"}},
			{"PUT", "/config", `{"compatibility":"FULL_TRANSITIVE"}`, 200, map[string]any{"compatibility": "FULL_TRANSITIVE"}},
			{"GET", "/config", "", 200, map[string]any{"compatibilityLevel": "FULL_TRANSITIVE", "compatibility": "FULL_TRANSITIVE"}},
			{"DELETE", "/subjects/shop.order.OrderCreated-value/versions/3", "", 200, num(3)},
			{"DELETE", "/subjects/shop.order.OrderCreated-value/versions/3", "", 404, map[string]any{"error_code": num(40406), "message": "Version was soft deleted. Set permanent=true to delete permanently"}},
			{"GET", "/subjects/shop.order.OrderCreated-value/versions/3", "", 404, map[string]any{"error_code": num(40402), "message": "Version 3 not found."}},
			{"GET", "/subjects/shop.order.OrderCreated-value/versions/3?deleted=true", "", 200, nil},
			{"GET", "/subjects/shop.order.OrderCreated-value/versions", "", 200, []any{num(1), num(2)}},
			{"GET", "/subjects/shop.order.OrderCreated-value/versions?deleted=true", "", 200, []any{num(1), num(2), num(3)}},
			{"GET", "/subjects/shop.order.OrderCreated-value/versions?deletedAsNegative=true&deleted=true", "", 200, []any{num(1), num(2), num(-3)}},
			{"GET", "/schemas/ids/3", "", 200, map[string]any{"schema": v3}},
			{"DELETE", "/subjects/copy-value?permanent=true", "", 404, nil},
			{"DELETE", "/subjects/copy-value", "", 200, []any{num(1)}},
			{"GET", "/subjects", "", 200, []any{"shop.order.OrderCreated-value"}},
			{"GET", "/subjects?deleted=true", "", 200, []any{"copy-value", "shop.order.OrderCreated-value"}},
			{"GET", "/subjects?deletedOnly=true", "", 200, []any{"copy-value"}},
			{"DELETE", "/subjects/copy-value?permanent=true", "", 200, []any{num(1)}},
			{"GET", "/subjects?deleted=true", "", 200, []any{"shop.order.OrderCreated-value"}},
			{"GET", "/schemas/types", "", 200, []any{"AVRO", "JSON", "PROTOBUF"}},
			{"GET", "/mode", "", 200, map[string]any{"mode": "READWRITE"}},
		}
		for i, s := range steps {
			status, got := c.do(s.method, s.path, s.body)
			if status != s.status {
				t.Fatalf("step %d %s %s: status %d, want %d: %v", i, s.method, s.path, status, s.status, got)
			}
			if s.want == nil {
				continue
			}
			if diff := cmp.Diff(s.want, got); diff != "" {
				t.Fatalf("step %d %s %s (-want +got):\n%s", i, s.method, s.path, diff)
			}
		}
	})
}

func mustJSON(s string) any {
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		panic(err)
	}
	return v
}

func TestVerboseCompatibility(t *testing.T) {
	c := client{t: t, base: newServer(t, sqldbtest.SQLite(t), registry.DefaultConfig()).URL}
	if status, got := c.do("POST", "/subjects/o-value/versions", body(v1)); status != 200 {
		t.Fatalf("register: %d %v", status, got)
	}
	_, got := c.do("POST", "/compatibility/subjects/o-value/versions/latest?verbose=true", body(v3))
	want := map[string]any{"is_compatible": false, "messages": []any{
		"{errorType:'TYPE_MISMATCH', description:'The type (path '/fields/1/type') of a field in the new schema does not match with the old schema', additionalInfo:'reader type: INT not compatible with writer type: LONG'}",
		"{errorType:'READER_FIELD_MISSING_DEFAULT_VALUE', description:'The field 'coupon' at path '/fields/2' in the new schema has no default value and is missing in the old schema', additionalInfo:'coupon'}",
		"{oldSchemaVersion: 1}",
		"{oldSchema: '" + v1 + "'}",
		"{validateFields: 'false', compatibility: 'BACKWARD'}",
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	status, got := c.do("POST", "/subjects/o-value/versions", body(v3))
	m, _ := got.(map[string]any)
	if status != 409 || m["error_code"] != num(40901) || !strings.Contains(fmt.Sprint(m["message"]), "READER_FIELD_MISSING_DEFAULT_VALUE") {
		t.Errorf("incompatible register: %d %v", status, got)
	}
}

func TestBadInput(t *testing.T) {
	sqldbtest.Each(t, testBadInput)
}

func testBadInput(t *testing.T, dsn string) {
	cfg := registry.DefaultConfig()
	cfg.MaxBodyBytes = 4096
	c := client{t: t, base: newServer(t, dsn, cfg).URL}
	if status, got := c.do("POST", "/subjects/o-value/versions", body(v1)); status != 200 {
		t.Fatalf("register: %d %v", status, got)
	}
	tests := []struct {
		name, method, path, body string
		status, code             int
		msg                      string
	}{
		{"bad JSON schema", "POST", "/subjects/o-value/versions", body(`{"type":"record",`), 422, 42201, "invalid JSON"},
		{"unknown type", "POST", "/subjects/o-value/versions", body(`{"type":"record","name":"R","fields":[{"name":"a","type":"integer"}]}`), 422, 42201, "unknown type: integer"},
		{"duplicate field", "POST", "/subjects/o-value/versions", body(`{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"a","type":"int"}]}`), 422, 42201, `duplicate field "a"`},
		{"wrong default", "POST", "/subjects/o-value/versions", body(`{"type":"record","name":"R","fields":[{"name":"a","type":"int","default":"x"}]}`), 422, 42201, `default of field "a": "x" is not an integer`},
		{"bad name", "POST", "/subjects/o-value/versions", body(`{"type":"record","name":"1R","fields":[]}`), 422, 42201, "invalid name"},
		{"body not JSON", "POST", "/subjects/o-value/versions", `schema please`, 422, 42201, "Invalid request body"},
		{"no schema", "POST", "/subjects/o-value/versions", `{}`, 422, 42201, `missing "schema"`},
		{"invalid protobuf", "POST", "/subjects/p-value/versions", `{"schema":"syntax = \"proto3\"; message {","schemaType":"PROTOBUF"}`, 422, 42201, "Invalid schema: invalid schema: schema.proto:1:28"},
		{"unknown schema type", "POST", "/subjects/o-value/versions", `{"schema":"<x/>","schemaType":"XML"}`, 422, 42201, "Invalid schemaType XML: this registry serves AVRO, JSON, PROTOBUF"},
		{"too large", "POST", "/subjects/o-value/versions", body(`{"type":"record","name":"R","doc":"` + strings.Repeat("x", 5000) + `","fields":[]}`), 422, 42209, "larger than the limit"},
		{"incompatible", "POST", "/subjects/o-value/versions", body(v3), 409, 40901, "incompatible"},
		{"unknown subject", "GET", "/subjects/nope/versions", "", 404, 40401, "Subject 'nope' not found."},
		{"unknown subject version", "GET", "/subjects/nope/versions/1", "", 404, 40401, "Subject 'nope' not found."},
		{"unknown version", "GET", "/subjects/o-value/versions/9", "", 404, 40402, "Version 9 not found."},
		{"unknown id", "GET", "/schemas/ids/999", "", 404, 40403, "Schema not found"},
		{"non-numeric id", "GET", "/schemas/ids/abc", "", 404, 40403, "not found"},
		{"version not a number", "GET", "/subjects/o-value/versions/first", "", 422, 42202, "'first' is not a valid version"},
		{"version zero", "GET", "/subjects/o-value/versions/0", "", 422, 42202, "not a valid version"},
		{"version below -1", "GET", "/subjects/o-value/versions/-2", "", 422, 42202, "not a valid version"},
		{"compat bad version", "POST", "/compatibility/subjects/o-value/versions/x", body(v1), 422, 42202, "not a valid version"},
		{"compat unknown version", "POST", "/compatibility/subjects/o-value/versions/5", body(v1), 404, 40402, "Version 5 not found."},
		{"compat unknown subject", "POST", "/compatibility/subjects/nope/versions/1", body(v1), 404, 40401, "Subject 'nope' not found."},
		{"compat invalid schema", "POST", "/compatibility/subjects/o-value/versions/latest", body(`"strng"`), 422, 42201, "unknown type"},
		{"bad level", "PUT", "/config", `{"compatibility":"SIDEWAYS"}`, 422, 42203, "Invalid compatibility level"},
		{"bad subject level", "PUT", "/config/o-value", `{"compatibility":"backwards"}`, 422, 42203, "Invalid compatibility level"},
		{"lookup unregistered", "POST", "/subjects/o-value", body(v2), 404, 40403, "Schema not found"},
		{"lookup unknown subject", "POST", "/subjects/nope", body(v1), 404, 40401, "Subject 'nope' not found."},
		{"delete unknown subject", "DELETE", "/subjects/nope", "", 404, 40401, "Subject 'nope' not found."},
		{"hard delete live subject", "DELETE", "/subjects/o-value?permanent=true", "", 404, 40405, "not deleted first"},
		{"hard delete live version", "DELETE", "/subjects/o-value/versions/1?permanent=true", "", 404, 40407, "not deleted first"},
		{"delete config never set", "DELETE", "/config/o-value", "", 404, 40408, "subject-level compatibility"},
		{"unknown route", "GET", "/nothing/here", "", 404, 404, "no route"},
		{"subject not UTF-8", "POST", "/subjects/%ff-value/versions", body(v1), 422, 42208, "not valid"},
		{"control character in subject", "POST", "/subjects/a%00b/versions", body(v1), 422, 42208, "not valid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, got := c.do(tt.method, tt.path, tt.body)
			m, ok := got.(map[string]any)
			if !ok {
				t.Fatalf("%d: body %v is not an error object", status, got)
			}
			if status != tt.status || m["error_code"] != num(tt.code) || !strings.Contains(fmt.Sprint(m["message"]), tt.msg) {
				t.Errorf("got %d %v, want %d error_code %d message containing %q", status, got, tt.status, tt.code, tt.msg)
			}
		})
	}
	// Nothing was stored by any of them.
	_, subs := c.do("GET", "/subjects?deleted=true", "")
	_, vs := c.do("GET", "/subjects/o-value/versions?deleted=true", "")
	_, level := c.do("GET", "/config", "")
	if diff := cmp.Diff([]any{[]any{"o-value"}, []any{num(1)}, map[string]any{"compatibilityLevel": "BACKWARD", "compatibility": "BACKWARD"}}, []any{subs, vs, level}); diff != "" {
		t.Errorf("state after bad requests (-want +got):\n%s", diff)
	}
}

func TestBasicAuthForWrites(t *testing.T) {
	cfg := registry.DefaultConfig()
	cfg.Username, cfg.Password = "ci", "s3cret"
	base := newServer(t, sqldbtest.SQLite(t), cfg).URL
	anon := client{t: t, base: base}
	wrong := client{t: t, base: base, user: "ci", pass: "guess"}
	ci := client{t: t, base: base, user: "ci", pass: "s3cret"}
	for _, c := range []client{anon, wrong} {
		if status, got := c.do("POST", "/subjects/o-value/versions", body(v1)); status != 401 {
			t.Errorf("register as %q: %d %v", c.user, status, got)
		}
		if status, _ := c.do("PUT", "/config", `{"compatibility":"NONE"}`); status != 401 {
			t.Errorf("set config as %q: %d", c.user, status)
		}
	}
	if status, got := ci.do("POST", "/subjects/o-value/versions", body(v1)); status != 200 {
		t.Fatalf("register with credentials: %d %v", status, got)
	}
	// Reads, lookups and compatibility checks stay open.
	for _, r := range []struct{ method, path, body string }{
		{"GET", "/subjects", ""}, {"GET", "/schemas/ids/1", ""},
		{"POST", "/subjects/o-value", body(v1)}, {"POST", "/compatibility/subjects/o-value/versions/latest", body(v2)},
	} {
		if status, got := anon.do(r.method, r.path, r.body); status != 200 {
			t.Errorf("%s %s without credentials: %d %v", r.method, r.path, status, got)
		}
	}
	if err := (registry.Config{DefaultLevel: schema.Backward, MaxBodyBytes: 4096, Username: "x"}).Validate(); err == nil {
		t.Error("a username without a password validated")
	}
}

// Racing registrations over HTTP: a chain of schemas where each adds a
// required field (so only consecutive ones are BACKWARD compatible) and
// each schema registered from many goroutines. The subject must end with
// each schema once, every version compatible with the one before.
func TestConcurrentRegistrations(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, dsn string) {
		c := client{t: t, base: newServer(t, dsn, registry.DefaultConfig()).URL}
		texts := make([]string, 6)
		for i := range texts {
			fields := `{"name":"f0","type":"int"}`
			for j := 1; j <= i; j++ {
				fields += fmt.Sprintf(`,{"name":"f%d","type":"int","default":%d}`, j, j)
			}
			texts[i] = fmt.Sprintf(`{"type":"record","name":"R","fields":[%s]}`, fields)
		}
		// An incompatible schema thrown into the race: it drops f0's type.
		bad := `{"type":"record","name":"R","fields":[{"name":"f0","type":"string"}]}`
		var wg sync.WaitGroup
		var mu sync.Mutex
		ids := map[string]map[any]bool{}
		for g := 0; g < 6; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for _, text := range append(texts, bad) {
					status, got := c.do("POST", "/subjects/race-value/versions", body(text))
					if status == 200 {
						mu.Lock()
						if ids[text] == nil {
							ids[text] = map[any]bool{}
						}
						ids[text][got.(map[string]any)["id"]] = true
						mu.Unlock()
					}
				}
			}()
		}
		wg.Wait()
		for text, set := range ids {
			if len(set) != 1 {
				t.Errorf("%s registered under ids %v", text, set)
			}
		}
		_, vs := c.do("GET", "/subjects/race-value/versions", "")
		var prev *schema.Schema
		for _, v := range vs.([]any) {
			_, got := c.do("GET", fmt.Sprintf("/subjects/race-value/versions/%v", v), "")
			cur := schema.MustParse(got.(map[string]any)["schema"].(string))
			if prev != nil {
				if p := schema.Backward.Check(cur, []schema.Version{{Version: 1, Schema: prev}}); len(p) > 0 {
					t.Errorf("version %v is incompatible with the one before: %v", v, p)
				}
			}
			prev = cur
		}
		if len(vs.([]any)) != len(ids) {
			t.Errorf("%d versions for %d distinct schemas", len(vs.([]any)), len(ids))
		}
	})
}

func TestModes(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, dsn string) {
		c := client{t: t, base: newServer(t, dsn, registry.DefaultConfig()).URL}
		steps := []struct {
			method, path, body string
			status             int
			want               any
		}{
			{"GET", "/mode", "", 200, map[string]any{"mode": "READWRITE"}},
			{"POST", "/subjects/o-value/versions", body(v1), 200, nil},
			{"PUT", "/mode/o-value", `{"mode":"READONLY"}`, 200, map[string]any{"mode": "READONLY"}},
			{"GET", "/mode/o-value", "", 200, map[string]any{"mode": "READONLY"}},
			{"GET", "/mode/other-value", "", 404, map[string]any{"error_code": num(40409), "message": "Subject other-value does not have subject-level mode configured"}},
			{"GET", "/mode/other-value?defaultToGlobal=true", "", 200, map[string]any{"mode": "READWRITE"}},
			{"POST", "/subjects/o-value/versions", body(v2), 422, map[string]any{"error_code": num(42205), "message": "Subject o-value is in read-only mode"}},
			{"DELETE", "/subjects/o-value", "", 422, nil},
			{"DELETE", "/subjects/o-value/versions/1", "", 422, nil},
			{"POST", "/subjects/other-value/versions", body(v1), 200, nil},
			{"PUT", "/mode", `{"mode":"sideways"}`, 422, map[string]any{"error_code": num(42204), "message": "Invalid mode. Valid values are READWRITE, READONLY, READONLY_OVERRIDE and IMPORT"}},
			{"PUT", "/mode", `{"mode":"IMPORT"}`, 422, nil},
			{"PUT", "/mode", `{"mode":"READONLY_OVERRIDE"}`, 200, nil},
			{"POST", "/subjects/other-value/versions", body(v2), 422, nil},
			{"DELETE", "/mode", "", 200, map[string]any{"mode": "READONLY_OVERRIDE"}},
			{"DELETE", "/mode/o-value", "", 200, map[string]any{"mode": "READONLY"}},
			{"DELETE", "/mode/o-value", "", 404, nil},
			{"POST", "/subjects/o-value/versions", body(v2), 200, nil},
			{"GET", "/subjects/o-value/versions", "", 200, []any{num(1), num(2)}},
			{"GET", "/subjects/other-value/versions", "", 200, []any{num(1)}},
		}
		for i, s := range steps {
			status, got := c.do(s.method, s.path, s.body)
			if status != s.status {
				t.Fatalf("step %d %s %s: status %d, want %d: %v", i, s.method, s.path, status, s.status, got)
			}
			if s.want != nil {
				if diff := cmp.Diff(s.want, got); diff != "" {
					t.Fatalf("step %d %s %s (-want +got):\n%s", i, s.method, s.path, diff)
				}
			}
		}
	})
}

func refBody(schemaText string, refs ...registry.Reference) string {
	b, _ := json.Marshal(map[string]any{"schema": schemaText, "references": refs})
	return string(b)
}

func TestReferences(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, dsn string) {
		c := client{t: t, base: newServer(t, dsn, registry.DefaultConfig()).URL}
		money := `{"type":"record","name":"Money","namespace":"shop.common","fields":[{"name":"cents","type":"long"},{"name":"currency","type":"string"}]}`
		narrowMoney := strings.Replace(money, `"cents","type":"long"`, `"cents","type":"int"`, 1)
		order := `{"type":"record","name":"OrderCreated","namespace":"shop.order","fields":[{"name":"total","type":"shop.common.Money"}]}`
		ref := registry.Reference{Name: "shop.common.Money", Subject: "shop.common.Money-value", Version: 1}
		narrowRef := registry.Reference{Name: "shop.common.Money", Subject: "narrow.Money-value", Version: -1}
		pinnedRef := map[string]any{"name": "shop.common.Money", "subject": "shop.common.Money-value", "version": num(1)}
		steps := []struct {
			method, path, body string
			status             int
			want               any
		}{
			{"POST", "/subjects/shop.common.Money-value/versions", body(money), 200, map[string]any{"id": num(1), "version": num(1)}},
			{"POST", "/subjects/narrow.Money-value/versions", body(narrowMoney), 200, map[string]any{"id": num(2), "version": num(1)}},
			{"POST", "/subjects/OrderCreated-value/versions", body(order), 422, nil},
			{"POST", "/subjects/OrderCreated-value/versions", refBody(order, registry.Reference{Name: "shop.common.Money", Subject: "nope-value", Version: 1}), 422,
				map[string]any{"error_code": num(42201), "message": `Invalid schema: reference "shop.common.Money": subject nope-value version 1 is not registered`}},
			{"POST", "/subjects/OrderCreated-value/versions", refBody(order, ref), 200, map[string]any{"id": num(3), "version": num(1)}},
			{"POST", "/subjects/OrderCreated-value/versions", refBody(order, registry.Reference{Name: ref.Name, Subject: ref.Subject, Version: -1}), 200, map[string]any{"id": num(3), "version": num(1)}},
			{"GET", "/subjects/OrderCreated-value/versions/1", "", 200, map[string]any{"subject": "OrderCreated-value", "version": num(1), "id": num(3), "schema": order, "references": []any{pinnedRef}}},
			{"GET", "/schemas/ids/3", "", 200, map[string]any{"schema": order, "references": []any{pinnedRef}}},
			{"POST", "/subjects/OrderCreated-value", refBody(order, ref), 200, map[string]any{"subject": "OrderCreated-value", "version": num(1), "id": num(3), "schema": order, "references": []any{pinnedRef}}},
			{"GET", "/subjects/shop.common.Money-value/versions/1/referencedby", "", 200, []any{num(3)}},
			{"GET", "/subjects/narrow.Money-value/versions/1/referencedby", "", 200, []any{}},
			{"DELETE", "/subjects/shop.common.Money-value/versions/1", "", 422, map[string]any{"error_code": num(42206), "message": "One or more references exist to the schema: shop.common.Money-value version 1 is referenced by schema 3: another schema references this version"}},
			{"DELETE", "/subjects/shop.common.Money-value", "", 422, nil},
			// The same record over a narrowed Money: the check sees inside the reference.
			{"POST", "/compatibility/subjects/OrderCreated-value/versions/latest?verbose=true", refBody(order, narrowRef), 200, nil},
			{"POST", "/subjects/OrderCreated-value/versions", refBody(order, narrowRef), 409, nil},
			{"DELETE", "/subjects/OrderCreated-value", "", 200, []any{num(1)}},
			{"DELETE", "/subjects/OrderCreated-value?permanent=true", "", 200, []any{num(1)}},
			// A hard delete removes the schema id too, as Confluent documents.
			{"GET", "/schemas/ids/3", "", 404, map[string]any{"error_code": num(40403), "message": "Schema not found"}},
			{"GET", "/schemas/ids/3/versions", "", 404, nil},
			{"GET", "/subjects/shop.common.Money-value/versions/1/referencedby", "", 200, []any{}},
			{"DELETE", "/subjects/shop.common.Money-value", "", 200, []any{num(1)}},
		}
		for i, s := range steps {
			status, got := c.do(s.method, s.path, s.body)
			if status != s.status {
				t.Fatalf("step %d %s %s: status %d, want %d: %v", i, s.method, s.path, status, s.status, got)
			}
			if s.want != nil {
				if diff := cmp.Diff(s.want, got); diff != "" {
					t.Fatalf("step %d %s %s (-want +got):\n%s", i, s.method, s.path, diff)
				}
			}
			if strings.Contains(s.path, "verbose=true") {
				msgs := fmt.Sprint(got.(map[string]any)["messages"])
				if got.(map[string]any)["is_compatible"] != false || !strings.Contains(msgs, "/fields/0/type/fields/0/type") {
					t.Fatalf("step %d: %v", i, got)
				}
			}
		}
	})
}

func importBody(schemaText string, id, version int) string {
	b, _ := json.Marshal(map[string]any{"schema": schemaText, "id": id, "version": version})
	return string(b)
}

// IMPORT mode: subjects move from another registry with their ids and
// versions (events already written still decode), and ids assigned later
// continue after the largest imported one.
func TestImport(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, dsn string) {
		c := client{t: t, base: newServer(t, dsn, registry.DefaultConfig()).URL}
		steps := []struct {
			method, path, body string
			status             int
			want               any
		}{
			{"POST", "/subjects/imp-value/versions", importBody(v1, 100, 3), 422, map[string]any{"error_code": num(42205),
				"message": "Operation not permitted: registering with a chosen id needs IMPORT mode; subject imp-value is in READWRITE mode"}},
			{"PUT", "/mode/imp-value", `{"mode":"IMPORT"}`, 200, map[string]any{"mode": "IMPORT"}},
			{"POST", "/subjects/imp-value/versions", importBody(v1, 100, 3), 200, map[string]any{"id": num(100), "version": num(3)}},
			{"POST", "/subjects/imp-value/versions", importBody(v1, 100, 3), 200, map[string]any{"id": num(100), "version": num(3)}},
			{"POST", "/subjects/imp-value/versions", importBody(v2, 100, 4), 422, map[string]any{"error_code": num(42207), "message": "Overwrite new schema is not permitted: id 100 already holds another schema"}},
			{"POST", "/subjects/imp-value/versions", importBody(v1, 101, 4), 422, map[string]any{"error_code": num(42207), "message": "Overwrite new schema is not permitted: schema is registered with id 100, not 101: already holds another schema"}},
			{"POST", "/subjects/imp-value/versions", importBody(v2, 101, 3), 422, map[string]any{"error_code": num(42207), "message": "Overwrite new schema is not permitted: version 3 of imp-value already holds another schema"}},
			// No compatibility check on import: v3 is not BACKWARD compatible with v2.
			{"POST", "/subjects/imp-value/versions", importBody(v2, 101, 4), 200, map[string]any{"id": num(101), "version": num(4)}},
			{"POST", "/subjects/imp-value/versions", importBody(v3, 150, 0), 200, map[string]any{"id": num(150), "version": num(5)}},
			{"GET", "/schemas/ids/100", "", 200, map[string]any{"schema": v1}},
			{"GET", "/subjects/imp-value/versions", "", 200, []any{num(3), num(4), num(5)}},
			{"PUT", "/mode/imp-value", `{"mode":"READWRITE"}`, 200, nil},
			{"POST", "/subjects/fresh-value/versions", body(`{"type":"record","name":"Fresh","fields":[]}`), 200, map[string]any{"id": num(151), "version": num(1)}},
			{"PUT", "/mode", `{"mode":"IMPORT"}`, 422, map[string]any{"error_code": num(42205), "message": "Cannot import since found existing subjects; set force=true to import anyway"}},
			{"PUT", "/mode?force=true", `{"mode":"IMPORT"}`, 200, map[string]any{"mode": "IMPORT"}},
		}
		for i, s := range steps {
			status, got := c.do(s.method, s.path, s.body)
			if status != s.status {
				t.Fatalf("step %d %s %s: status %d, want %d: %v", i, s.method, s.path, status, s.status, got)
			}
			if s.want != nil {
				if diff := cmp.Diff(s.want, got); diff != "" {
					t.Fatalf("step %d %s %s (-want +got):\n%s", i, s.method, s.path, diff)
				}
			}
		}
	})
}

// The small things a Confluent client or script sees: 405 on a known path
// with another method, 415 for a body that is not JSON, the older
// compatibilityLevel field in a config PUT, and an id that goes away with
// the only version that held it.
func TestConfluentEdges(t *testing.T) {
	ts := newServer(t, "", registry.DefaultConfig())
	c := client{t: t, base: ts.URL}
	raw := func(method, path, contentType, body string) (int, http.Header, map[string]any) {
		t.Helper()
		req, err := http.NewRequest(method, ts.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, resp.Header, m
	}
	v1 := `{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}`
	for _, tt := range []struct {
		name, method, path, contentType, body string
		status, code                          int
		allow                                 string
	}{
		{"PATCH a subject's versions", "PATCH", "/subjects/r-value/versions", registry.ContentType, body(v1), 405, 405, "GET, POST"},
		{"OPTIONS the config", "OPTIONS", "/config", "", "", 405, 405, "GET, PUT, DELETE"},
		{"PUT a schema id", "PUT", "/schemas/ids/1", registry.ContentType, "{}", 405, 405, "GET"},
		{"text/plain", "POST", "/subjects/r-value/versions", "text/plain", body(v1), 415, 415, ""},
		{"form", "PUT", "/config", "application/x-www-form-urlencoded", `compatibility=NONE`, 415, 415, ""},
		{"an unknown path is still 404", "PATCH", "/nothing", "", "", 404, 404, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, h, m := raw(tt.method, tt.path, tt.contentType, tt.body)
			if status != tt.status || m["error_code"] != num(tt.code) || h.Get("Allow") != tt.allow {
				t.Errorf("got %d %v (Allow %q), want %d error_code %d (Allow %q)", status, m, h.Get("Allow"), tt.status, tt.code, tt.allow)
			}
		})
	}
	// JSON under its plain names, and no content type at all, are read.
	for _, ct := range []string{"application/json", "application/vnd.schemaregistry+json", "application/octet-stream", ""} {
		if status, _, m := raw("POST", "/subjects/r-value/versions", ct, body(v1)); status != 200 || m["id"] != num(1) {
			t.Errorf("register as %q: %d %v", ct, status, m)
		}
	}
	steps := []struct {
		method, path, body string
		status             int
		want               any
	}{
		{"PUT", "/config/r-value", `{"compatibilityLevel":"full"}`, 200, map[string]any{"compatibility": "FULL"}},
		{"GET", "/config/r-value", "", 200, map[string]any{"compatibilityLevel": "FULL", "compatibility": "FULL"}},
		{"PUT", "/config/r-value", `{"compatibility":"NONE","compatibilityLevel":"FULL"}`, 422, map[string]any{"error_code": num(42203),
			"message": `Invalid compatibility level: the body says both compatibility "NONE" and compatibilityLevel "FULL"; send one (compatibility)`}},
		{"PUT", "/config/r-value", `{"compatibility":"NONE","compatibilityLevel":"none"}`, 200, map[string]any{"compatibility": "NONE"}},
		{"GET", "/schemas/ids/1", "", 200, map[string]any{"schema": v1}},
		{"DELETE", "/subjects/r-value/versions/1", "", 200, num(1)},
		{"GET", "/schemas/ids/1", "", 200, map[string]any{"schema": v1}}, // a soft delete keeps the id
		{"DELETE", "/subjects/r-value/versions/1?permanent=true", "", 200, num(1)},
		{"GET", "/schemas/ids/1", "", 404, map[string]any{"error_code": num(40403), "message": "Schema not found"}},
		{"GET", "/subjects/r-value/versions", "", 404, map[string]any{"error_code": num(40401), "message": "Subject 'r-value' not found."}},
		// The same schema again is a new schema: ids are never reused.
		{"POST", "/subjects/r-value/versions", body(v1), 200, map[string]any{"id": num(2), "version": num(1)}},
	}
	for i, s := range steps {
		status, got := c.do(s.method, s.path, s.body)
		if status != s.status {
			t.Fatalf("step %d %s %s: status %d, want %d: %v", i, s.method, s.path, status, s.status, got)
		}
		if diff := cmp.Diff(s.want, got); diff != "" {
			t.Errorf("step %d %s %s (-want +got):\n%s", i, s.method, s.path, diff)
		}
	}
}
