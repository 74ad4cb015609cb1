package contract

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestTermsRecordRules: each DSL helper records the matcher the
// specification names, at the path where it sits, and the plain example.
func TestTermsRecordRules(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tmpl    any
		example string
		rules   string
		gens    string
	}{
		{"Like", map[string]any{"a": Like("x")}, `{"a":"x"}`, `{"$.a":{"combine":"AND","matchers":[{"match":"type"}]}}`, ``},
		{"EachLike", map[string]any{"a": EachLike(map[string]any{"b": Integer(1)}, 2, 5)}, `{"a":[{"b":1},{"b":1}]}`,
			`{"$.a":{"combine":"AND","matchers":[{"match":"type","max":5,"min":2}]},"$.a[*].b":{"combine":"AND","matchers":[{"match":"integer"}]}}`, ``},
		{"Regex", Regex("ab", "a.*"), `"ab"`, `{"$":{"combine":"AND","matchers":[{"match":"regex","regex":"a.*"}]}}`, ``},
		{"Equality", Equality(3), `3`, `{"$":{"combine":"AND","matchers":[{"match":"equality"}]}}`, ``},
		{"Includes", Includes("hello world", "world"), `"hello world"`, `{"$":{"combine":"AND","matchers":[{"match":"include","value":"world"}]}}`, ``},
		{"Decimal keeps a point", Decimal(10), `10.0`, `{"$":{"combine":"AND","matchers":[{"match":"decimal"}]}}`, ``},
		{"Number", Number(1.5), `1.5`, `{"$":{"combine":"AND","matchers":[{"match":"number"}]}}`, ``},
		{"Boolean", Boolean(true), `true`, `{"$":{"combine":"AND","matchers":[{"match":"boolean"}]}}`, ``},
		{"Null", Null(), `null`, `{"$":{"combine":"AND","matchers":[{"match":"null"}]}}`, ``},
		{"Date", Date("yyyy-MM-dd", "2026-11-26"), `"2026-11-26"`, `{"$":{"combine":"AND","matchers":[{"format":"yyyy-MM-dd","match":"date"}]}}`, ``},
		{"Time", Time("HH:mm", "10:00"), `"10:00"`, `{"$":{"combine":"AND","matchers":[{"format":"HH:mm","match":"time"}]}}`, ``},
		{"Timestamp", Timestamp("", "2026-11-26T10:00:00Z"), `"2026-11-26T10:00:00Z"`, `{"$":{"combine":"AND","matchers":[{"match":"timestamp"}]}}`, ``},
		{"UUID", UUID("8e2f5c1a-0000-4000-8000-000000000000"), `"8e2f5c1a-0000-4000-8000-000000000000"`,
			`{"$":{"combine":"AND","matchers":[{"match":"regex","regex":"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"}]}}`, `{"$":{"type":"Uuid"}}`},
		{"Values", Values(map[string]any{"k": 1}), `{"k":1}`, `{"$":{"combine":"AND","matchers":[{"match":"values"}]}}`, ``},
		{"EachKey", EachKey(map[string]any{"ab": 1}, Regex("ab", "[a-z]+")), `{"ab":1}`,
			`{"$":{"combine":"AND","matchers":[{"match":"eachKey","rules":[{"match":"regex","regex":"[a-z]+"}],"value":{"ab":1}}]}}`, ``},
		{"ArrayContaining", ArrayContaining(map[string]any{"t": Integer(1)}), `[{"t":1}]`,
			`{"$":{"combine":"AND","matchers":[{"match":"arrayContains","variants":[{"index":0,"rules":{"$.t":{"combine":"AND","matchers":[{"match":"integer"}]}}}]}]}}`, ``},
		{"NotEmpty", NotEmpty("x"), `"x"`, `{"$":{"combine":"AND","matchers":[{"match":"notEmpty"}]}}`, ``},
		{"Semver", Semver("1.2.3"), `"1.2.3"`, `{"$":{"combine":"AND","matchers":[{"match":"semver"}]}}`, ``},
		{"FromProviderState", map[string]any{"id": FromProviderState("${id}", 7)}, `{"id":7}`,
			`{"$.id":{"combine":"AND","matchers":[{"match":"type"}]}}`, `{"$.id":{"expression":"${id}","type":"ProviderState"}}`},
		{"AnyOf", AnyOf(nil, Integer(0), Null()), `null`, `{"$":{"combine":"OR","matchers":[{"match":"integer"},{"match":"null"}]}}`, ``},
		{"typed map of terms", map[string]Term{"a": Like(1)}, `{"a":1}`, `{"$.a":{"combine":"AND","matchers":[{"match":"type"}]}}`, ``},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rules, gens := Rules{}, Generators{}
			ex := buildExample(tc.tmpl, []pathToken{{kind: tokRoot}}, rules, gens, "body")
			b, _ := json.Marshal(ex)
			if string(b) != tc.example {
				t.Errorf("example %s, want %s", b, tc.example)
			}
			got, _ := json.Marshal(rules.toJSON(V4, false)["body"])
			if tc.rules == "" {
				tc.rules = "null"
			}
			if diff := cmp.Diff(tc.rules, string(got)); diff != "" {
				t.Errorf("rules (-want +got):\n%s", diff)
			}
			if tc.gens != "" {
				g, _ := json.Marshal(gens.toJSON(V4, false)["body"])
				if diff := cmp.Diff(tc.gens, string(g)); diff != "" {
					t.Errorf("generators (-want +got):\n%s", diff)
				}
			}
			// the example always satisfies its own rules
			if mm := matchBody("body", Body{Present: true, ContentType: "application/json", Content: b}, "application/json", b, rules["body"], true); len(mm) > 0 {
				t.Errorf("the example does not match its own rules: %v", mm)
			}
		})
	}
}

func TestConsumerWritesV3(t *testing.T) {
	dir := t.TempDir()
	p := NewConsumerPact(Config{Consumer: "web", Provider: "order", Dir: dir, Spec: V3})
	p.AddInteraction().UponReceiving("ping").WithRequest(Req{Path: "/ping", Query: map[string]any{"n": Regex("1", `\d+`)}}).
		WillRespondWith(Resp{Status: 200, Body: "pong"})
	p.Run(t, func(base string) error {
		resp, err := httpGet(base + "/ping?n=42")
		if err != nil {
			return err
		}
		if resp != "pong" {
			return errorf("got %q", resp)
		}
		return nil
	})
	pact, err := ReadFile(dir + "/web-order.json")
	if err != nil {
		t.Fatal(err)
	}
	if pact.Spec != V3 || string(pact.Interactions[0].Response.Body.Content) != "pong" || pact.Interactions[0].Request.Rules["query"]["n"] == nil {
		t.Fatalf("v3 pact: %+v", pact.Interactions[0])
	}
}

func httpGet(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }
