package contract

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// bodyRules parses a v4 "body" rule category given as JSON.
func bodyRules(t *testing.T, js string) map[string]*RuleList {
	t.Helper()
	if js == "" {
		return nil
	}
	d, err := decodeJSON([]byte(`{"body":` + js + `}`))
	if err != nil {
		t.Fatalf("rules %s: %v", js, err)
	}
	r, err := parseRules(d, V4, false, "matchingRules")
	if err != nil {
		t.Fatalf("rules %s: %v", js, err)
	}
	return r["body"]
}

func jsonBody(s string) Body {
	return Body{Present: true, ContentType: "application/json", Content: []byte(s)}
}

// TestMatchers: one case per statement of the specification's matching
// rules (pact-specification v3/v4 README, "Supported matchers").
func TestMatchers(t *testing.T) {
	tests := []struct {
		name     string
		exp, act string
		rules    string
		strict   bool
		ok       bool
		path     string // of the first mismatch, when !ok
	}{
		// type: "matches on the type of the value, not the value itself"
		{"type same type", `{"a":"x"}`, `{"a":"y"}`, `{"$.a":{"matchers":[{"match":"type"}]}}`, false, true, ""},
		{"type wrong type", `{"a":"x"}`, `{"a":1}`, `{"$.a":{"matchers":[{"match":"type"}]}}`, false, false, "$.a"},
		{"type min array ok", `{"a":[1]}`, `{"a":[1,2,3]}`, `{"$.a":{"matchers":[{"match":"type","min":2}]}}`, false, true, ""},
		{"type min array short", `{"a":[1]}`, `{"a":[1]}`, `{"$.a":{"matchers":[{"match":"type","min":2}]}}`, false, false, "$.a"},
		{"type max array long", `{"a":[1]}`, `{"a":[1,2,3]}`, `{"$.a":{"matchers":[{"match":"type","max":2}]}}`, false, false, "$.a"},
		{"type cascades to array elements", `{"a":[{"p":1}]}`, `{"a":[{"p":2},{"p":"x"}]}`, `{"$.a":{"matchers":[{"match":"type","min":1}]}}`, false, false, "$.a[1].p"},
		{"type cascades ok", `{"a":[{"p":1}]}`, `{"a":[{"p":2},{"p":3}]}`, `{"$.a":{"matchers":[{"match":"type","min":1}]}}`, false, true, ""},
		// regex: "the string representation of the value must match the regex"
		{"regex match", `{"a":"2020"}`, `{"a":"1999"}`, `{"$.a":{"matchers":[{"match":"regex","regex":"\\d{4}"}]}}`, false, true, ""},
		{"regex must match whole value", `{"a":"2020"}`, `{"a":"19999"}`, `{"$.a":{"matchers":[{"match":"regex","regex":"\\d{4}"}]}}`, false, false, "$.a"},
		{"regex on number", `{"a":1}`, `{"a":12}`, `{"$.a":{"matchers":[{"match":"regex","regex":"\\d+"}]}}`, false, true, ""},
		// equality: "the value must be equal to the expected", resets type matching
		{"equality under type", `{"a":{"b":"x"}}`, `{"a":{"b":"y"}}`, `{"$.a":{"matchers":[{"match":"type"}]},"$.a.b":{"matchers":[{"match":"equality"}]}}`, false, false, "$.a.b"},
		{"equality equal", `{"a":[1,2]}`, `{"a":[1,2]}`, `{"$.a":{"matchers":[{"match":"equality"}]}}`, false, true, ""},
		// include: "the string value must include the expected value"
		{"include", `{"a":"hello world"}`, `{"a":"say hello"}`, `{"$.a":{"matchers":[{"match":"include","value":"hello"}]}}`, false, true, ""},
		{"include missing", `{"a":"hello"}`, `{"a":"bye"}`, `{"$.a":{"matchers":[{"match":"include","value":"hello"}]}}`, false, false, "$.a"},
		// integer/decimal/number: "type must be a number with/without a decimal point"
		{"integer", `{"a":1}`, `{"a":42}`, `{"$.a":{"matchers":[{"match":"integer"}]}}`, false, true, ""},
		{"integer rejects decimal", `{"a":1}`, `{"a":4.2}`, `{"$.a":{"matchers":[{"match":"integer"}]}}`, false, false, "$.a"},
		{"integer rejects string", `{"a":1}`, `{"a":"1"}`, `{"$.a":{"matchers":[{"match":"integer"}]}}`, false, false, "$.a"},
		{"decimal", `{"a":1.5}`, `{"a":2.25}`, `{"$.a":{"matchers":[{"match":"decimal"}]}}`, false, true, ""},
		{"decimal rejects integer", `{"a":1.5}`, `{"a":2}`, `{"$.a":{"matchers":[{"match":"decimal"}]}}`, false, false, "$.a"},
		{"number int", `{"a":1.5}`, `{"a":2}`, `{"$.a":{"matchers":[{"match":"number"}]}}`, false, true, ""},
		{"number rejects string", `{"a":1.5}`, `{"a":"2"}`, `{"$.a":{"matchers":[{"match":"number"}]}}`, false, false, "$.a"},
		// boolean, null
		{"boolean", `{"a":true}`, `{"a":false}`, `{"$.a":{"matchers":[{"match":"boolean"}]}}`, false, true, ""},
		{"boolean rejects string", `{"a":true}`, `{"a":"yes"}`, `{"$.a":{"matchers":[{"match":"boolean"}]}}`, false, false, "$.a"},
		{"null", `{"a":null}`, `{"a":null}`, `{"$.a":{"matchers":[{"match":"null"}]}}`, false, true, ""},
		{"null rejects value", `{"a":null}`, `{"a":0}`, `{"$.a":{"matchers":[{"match":"null"}]}}`, false, false, "$.a"},
		// date/time/timestamp with formats
		{"date format", `{"a":"2020-01-02"}`, `{"a":"2026-11-26"}`, `{"$.a":{"matchers":[{"match":"date","format":"yyyy-MM-dd"}]}}`, false, true, ""},
		{"date format wrong", `{"a":"2020-01-02"}`, `{"a":"26/11/2026"}`, `{"$.a":{"matchers":[{"match":"date","format":"yyyy-MM-dd"}]}}`, false, false, "$.a"},
		{"date other format", `{"a":"02/01/2020"}`, `{"a":"26/11/2026"}`, `{"$.a":{"matchers":[{"match":"date","format":"dd/MM/yyyy"}]}}`, false, true, ""},
		{"time format", `{"a":"10:00"}`, `{"a":"23:59"}`, `{"$.a":{"matchers":[{"match":"time","format":"HH:mm"}]}}`, false, true, ""},
		{"time format wrong", `{"a":"10:00"}`, `{"a":"25:99"}`, `{"$.a":{"matchers":[{"match":"time","format":"HH:mm"}]}}`, false, false, "$.a"},
		{"timestamp format", `{"a":"x"}`, `{"a":"2026-11-26T14:45:00+01:00"}`, `{"$.a":{"matchers":[{"match":"timestamp","format":"yyyy-MM-dd'T'HH:mm:ssXXX"}]}}`, false, true, ""},
		{"timestamp millis", `{"a":"x"}`, `{"a":"2026-11-26 14:45:00.123"}`, `{"$.a":{"matchers":[{"match":"timestamp","format":"yyyy-MM-dd HH:mm:ss.SSS"}]}}`, false, true, ""},
		{"datetime default ISO", `{"a":"x"}`, `{"a":"2026-11-26T14:45:00Z"}`, `{"$.a":{"matchers":[{"match":"datetime"}]}}`, false, true, ""},
		{"datetime default ISO wrong", `{"a":"x"}`, `{"a":"yesterday"}`, `{"$.a":{"matchers":[{"match":"datetime"}]}}`, false, false, "$.a"},
		// values: "match the values in a map, ignoring the keys"
		{"values ignores keys", `{"m":{"a":1}}`, `{"m":{"x":1,"y":1}}`, `{"$.m":{"matchers":[{"match":"values"}]}}`, false, true, ""},
		{"values compares values with the example", `{"m":{"a":1}}`, `{"m":{"x":1,"y":3}}`, `{"$.m":{"matchers":[{"match":"values"}]}}`, false, false, "$.m.y"},
		{"values checks value types", `{"m":{"a":1}}`, `{"m":{"x":2,"y":"z"}}`, `{"$.m":{"matchers":[{"match":"values"}]},"$.m.*":{"matchers":[{"match":"type"}]}}`, false, false, "$.m.y"},
		// arrayContains: "each variant must match at least one element, in any order"
		{"arrayContains", `{"a":[{"t":"x"},{"t":"y"}]}`, `{"a":[{"t":"z"},{"t":"y"},{"t":"x"}]}`, `{"$.a":{"matchers":[{"match":"arrayContains","variants":[{"index":0,"rules":{}},{"index":1,"rules":{}}]}]}}`, false, true, ""},
		{"arrayContains missing variant", `{"a":[{"t":"x"},{"t":"y"}]}`, `{"a":[{"t":"z"},{"t":"y"}]}`, `{"$.a":{"matchers":[{"match":"arrayContains","variants":[{"index":0,"rules":{}},{"index":1,"rules":{}}]}]}}`, false, false, "$.a"},
		{"arrayContains variant rules", `{"a":[{"n":1}]}`, `{"a":["s",{"n":99}]}`, `{"$.a":{"matchers":[{"match":"arrayContains","variants":[{"index":0,"rules":{"$.n":{"matchers":[{"match":"integer"}]}}}]}]}}`, false, true, ""},
		// eachKey / eachValue
		{"eachKey", `{"m":{"ab":1}}`, `{"m":{"cd":1,"ef":2}}`, `{"$.m":{"matchers":[{"match":"eachKey","rules":[{"match":"regex","regex":"[a-z]+"}]}]}}`, false, true, ""},
		{"eachKey bad key", `{"m":{"ab":1}}`, `{"m":{"cd":1,"E1":2}}`, `{"$.m":{"matchers":[{"match":"eachKey","rules":[{"match":"regex","regex":"[a-z]+"}]}]}}`, false, false, "$.m"},
		{"eachValue", `{"m":{"a":"x"}}`, `{"m":{"b":"yy","c":"zz"}}`, `{"$.m":{"matchers":[{"match":"eachValue","rules":[{"match":"regex","regex":"[a-z]+"}]}]}}`, false, true, ""},
		{"eachValue bad value", `{"m":{"a":"x"}}`, `{"m":{"b":"yy","c":"1"}}`, `{"$.m":{"matchers":[{"match":"eachValue","rules":[{"match":"regex","regex":"[a-z]+"}]}]}}`, false, false, "$.m"},
		// notEmpty, semver
		{"notEmpty", `{"a":"x"}`, `{"a":"y"}`, `{"$.a":{"matchers":[{"match":"notEmpty"}]}}`, false, true, ""},
		{"notEmpty empty string", `{"a":"x"}`, `{"a":""}`, `{"$.a":{"matchers":[{"match":"notEmpty"}]}}`, false, false, "$.a"},
		{"notEmpty empty array", `{"a":[1]}`, `{"a":[]}`, `{"$.a":{"matchers":[{"match":"notEmpty"}]}}`, false, false, "$.a"},
		{"semver", `{"v":"1.0.0"}`, `{"v":"2.10.3-rc.1+build.5"}`, `{"$.v":{"matchers":[{"match":"semver"}]}}`, false, true, ""},
		{"semver wrong", `{"v":"1.0.0"}`, `{"v":"2.10"}`, `{"$.v":{"matchers":[{"match":"semver"}]}}`, false, false, "$.v"},
		// combine
		{"combine OR", `{"a":1}`, `{"a":null}`, `{"$.a":{"combine":"OR","matchers":[{"match":"integer"},{"match":"null"}]}}`, false, true, ""},
		{"combine AND", `{"a":"abc"}`, `{"a":"abd"}`, `{"$.a":{"combine":"AND","matchers":[{"match":"regex","regex":"[a-z]+"},{"match":"include","value":"bc"}]}}`, false, false, "$.a"},
		// path weighting: "the most specific path wins; * weighs less than a name or index"
		{"weighting exact beats wildcard", `{"a":[{"id":1}]}`, `{"a":[{"id":"x"}]}`, `{"$.a[*].id":{"matchers":[{"match":"type"}]},"$.a[0].id":{"matchers":[{"match":"integer"}]}}`, false, false, "$.a[0].id"},
		{"weighting wildcard applies", `{"a":[{"id":1}]}`, `{"a":[{"id":2}]}`, `{"$.a[*].id":{"matchers":[{"match":"type"}]}}`, false, true, ""},
		{"weighting deeper rule", `{"a":{"b":1,"c":"s"}}`, `{"a":{"b":2,"c":"t"}}`, `{"$.a":{"matchers":[{"match":"type"}]},"$.a.c":{"matchers":[{"match":"equality"}]}}`, false, false, "$.a.c"},
		{"bracket notation", `{"a b":1}`, `{"a b":7}`, `{"$['a b']":{"matchers":[{"match":"integer"}]}}`, false, true, ""},
		// no rules: equality, lenient responses, strict requests
		{"plain equal", `{"a":1,"b":[1,2]}`, `{"a":1,"b":[1,2]}`, ``, false, true, ""},
		{"plain value differs", `{"items":[{"price":1.5}]}`, `{"items":[{"price":2}]}`, ``, false, false, "$.items[0].price"},
		{"response extra key allowed", `{"a":1}`, `{"a":1,"b":2}`, ``, false, true, ""},
		{"request extra key rejected", `{"a":1}`, `{"a":1,"b":2}`, ``, true, false, "$.b"},
		{"missing key", `{"a":1,"b":2}`, `{"a":1}`, ``, false, false, "$.b"},
		{"array length differs", `[1,2]`, `[1,2,3]`, ``, false, false, "$"},
		{"decimals compare by value", `{"a":1.50}`, `{"a":1.5}`, ``, false, true, ""},
		{"an integer is not a decimal, as in pact's models", `{"a":1.0}`, `{"a":1}`, ``, false, false, "$.a"},
		{"notEmpty array elements by type", `{"a":[1]}`, `{"a":[2,3]}`, `{"$.a":{"matchers":[{"match":"notEmpty"}]}}`, false, true, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := matchBody("body", jsonBody(tc.exp), "application/json", []byte(tc.act), bodyRules(t, tc.rules), tc.strict)
			if tc.ok && len(got) > 0 {
				t.Fatalf("want a match, got %v", got)
			}
			if !tc.ok {
				if len(got) == 0 {
					t.Fatalf("want a mismatch at %s, got a match", tc.path)
				}
				if got[0].Path != tc.path {
					t.Fatalf("mismatch at %s, want %s: %v", got[0].Path, tc.path, got)
				}
			}
		})
	}
}

func TestMismatchReportNamesPathRuleAndValue(t *testing.T) {
	got := matchBody("body", jsonBody(`{"items":[{"price":1.5}]}`), "application/json", []byte(`{"items":[{"price":12}]}`),
		bodyRules(t, `{"$.items[*].price":{"matchers":[{"match":"decimal"}]}}`), false)
	want := []Mismatch{{Part: "body", Path: "$.items[0].price", Expected: "a decimal number (matcher decimal)", Actual: "12"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("mismatch (-want +got):\n%s", diff)
	}
	if s := got[0].String(); s != "body $.items[0].price: expected a decimal number (matcher decimal), got 12" {
		t.Fatalf("String() = %q", s)
	}
}

func TestMatchRequestParts(t *testing.T) {
	exp := Request{
		Method:  "POST",
		Path:    "/orders",
		Query:   url.Values{"page": {"1"}, "tag": {"a", "b"}},
		Headers: map[string][]string{"Content-Type": {"application/json"}, "X-Ids": {"1, 2"}},
		Body:    jsonBody(`{"sku":"A1"}`),
		Rules: Rules{
			"query":  {"page": {Combine: "AND", Matchers: []Matcher{{"match": "regex", "regex": `\d+`}}}},
			"header": {"X-Trace": {Combine: "AND", Matchers: []Matcher{{"match": "regex", "regex": `[0-9a-f]+`}}}},
		},
	}
	base := func() HTTPRequest {
		return HTTPRequest{
			Method: "POST", Path: "/orders",
			Query:   url.Values{"page": {"7"}, "tag": {"a", "b"}},
			Headers: http.Header{"Content-Type": {"application/json; charset=utf-8"}, "X-Ids": {"1,2"}, "X-Extra": {"ok"}},
			Body:    []byte(`{"sku":"A1"}`),
		}
	}
	tests := []struct {
		name   string
		mutate func(*HTTPRequest)
		want   []string // "part path"
	}{
		{"matches", func(*HTTPRequest) {}, nil},
		{"method", func(r *HTTPRequest) { r.Method = "PUT" }, []string{"method "}},
		{"path", func(r *HTTPRequest) { r.Path = "/order" }, []string{"path "}},
		{"query regex", func(r *HTTPRequest) { r.Query.Set("page", "x") }, []string{"query page"}},
		{"query missing", func(r *HTTPRequest) { r.Query.Del("tag") }, []string{"query tag"}},
		{"query unexpected", func(r *HTTPRequest) { r.Query.Set("debug", "1") }, []string{"query debug"}},
		{"query order of values", func(r *HTTPRequest) { r.Query["tag"] = []string{"b", "a"} }, []string{"query tag"}},
		{"header case-insensitive", func(r *HTTPRequest) { r.Headers = http.Header{"content-type": {"application/json"}, "x-ids": {"1, 2"}} }, nil},
		{"header missing", func(r *HTTPRequest) { r.Headers.Del("X-Ids") }, []string{"header X-Ids"}},
		{"header value", func(r *HTTPRequest) { r.Headers.Set("X-Ids", "1,3") }, []string{"header X-Ids"}},
		{"content type", func(r *HTTPRequest) { r.Headers.Set("Content-Type", "text/plain") }, []string{"header Content-Type", "body "}},
		{"body strict", func(r *HTTPRequest) { r.Body = []byte(`{"sku":"A1","qty":1}`) }, []string{"body $.qty"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := base()
			tc.mutate(&r)
			var got []string
			for _, m := range MatchRequest(exp, r) {
				got = append(got, m.Part+" "+m.Path)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Fatalf("mismatches (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMatchResponseStatusAndText(t *testing.T) {
	tests := []struct {
		name string
		exp  Response
		act  HTTPResponse
		ok   bool
	}{
		{"status equal", Response{Status: 200}, HTTPResponse{Status: 200}, true},
		{"status differs", Response{Status: 200}, HTTPResponse{Status: 201}, false},
		{"statusCode success", Response{Status: 200, Rules: Rules{"status": {"": {Matchers: []Matcher{{"match": "statusCode", "status": "success"}}}}}}, HTTPResponse{Status: 204}, true},
		{"statusCode clientError", Response{Status: 400, Rules: Rules{"status": {"": {Matchers: []Matcher{{"match": "statusCode", "status": "clientError"}}}}}}, HTTPResponse{Status: 500}, false},
		{"statusCode list", Response{Status: 200, Rules: Rules{"status": {"": {Matchers: []Matcher{{"match": "statusCode", "status": []any{200, 201}}}}}}}, HTTPResponse{Status: 201}, true},
		{"text equal", Response{Status: 200, Body: Body{Present: true, ContentType: "text/plain", Content: []byte("hi")}}, HTTPResponse{Status: 200, Headers: http.Header{"Content-Type": {"text/plain"}}, Body: []byte("hi")}, true},
		{"text differs", Response{Status: 200, Body: Body{Present: true, ContentType: "text/plain", Content: []byte("hi")}}, HTTPResponse{Status: 200, Headers: http.Header{"Content-Type": {"text/plain"}}, Body: []byte("ho")}, false},
		{"text regex", Response{Status: 200, Body: Body{Present: true, ContentType: "text/plain", Content: []byte("id-1")}, Rules: Rules{"body": {"$": {Matchers: []Matcher{{"match": "regex", "regex": `id-\d+`}}}}}}, HTTPResponse{Status: 200, Body: []byte("id-77")}, true},
		{"form fields", Response{Status: 200, Body: Body{Present: true, ContentType: "application/x-www-form-urlencoded", Content: []byte("a=1&b=2")}}, HTTPResponse{Status: 200, Body: []byte("b=2&a=1")}, true},
		{"form differs", Response{Status: 200, Body: Body{Present: true, ContentType: "application/x-www-form-urlencoded", Content: []byte("a=1&b=2")}}, HTTPResponse{Status: 200, Body: []byte("b=3&a=1")}, false},
		{"bytes equal", Response{Status: 200, Body: Body{Present: true, ContentType: "application/octet-stream", Content: []byte{0, 1, 2}}}, HTTPResponse{Status: 200, Body: []byte{0, 1, 2}}, true},
		{"bytes differ", Response{Status: 200, Body: Body{Present: true, ContentType: "application/octet-stream", Content: []byte{0, 1, 2}}}, HTTPResponse{Status: 200, Body: []byte{0, 1, 3}}, false},
		{"contentType matcher", Response{Status: 200, Body: Body{Present: true, ContentType: "image/png", Content: []byte("x")}, Rules: Rules{"body": {"$": {Matchers: []Matcher{{"match": "contentType", "value": "image/png"}}}}}}, HTTPResponse{Status: 200, Body: append([]byte("\x89PNG\r\n\x1a\n"), make([]byte, 20)...)}, true},
		{"contentType matcher wrong", Response{Status: 200, Body: Body{Present: true, ContentType: "image/png", Content: []byte("x")}, Rules: Rules{"body": {"$": {Matchers: []Matcher{{"match": "contentType", "value": "image/png"}}}}}}, HTTPResponse{Status: 200, Body: []byte("GIF89a....")}, false},
		{"absent body not compared", Response{Status: 200}, HTTPResponse{Status: 200, Body: []byte("anything")}, true},
		{"header extra allowed", Response{Status: 200, Headers: map[string][]string{"X-A": {"1"}}}, HTTPResponse{Status: 200, Headers: http.Header{"X-A": {"1"}, "X-B": {"2"}}}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.act.Headers == nil {
				tc.act.Headers = http.Header{}
			}
			got := MatchResponse(tc.exp, tc.act)
			if (len(got) == 0) != tc.ok {
				t.Fatalf("ok=%v, got %v", tc.ok, got)
			}
		})
	}
}

func TestMatchMessageMetadata(t *testing.T) {
	exp := Message{
		Contents: jsonBody(`{"id":1}`),
		Metadata: map[string]any{"topic": "orders", "key": "o-1"},
		Rules:    Rules{"metadata": {"key": {Matchers: []Matcher{{"match": "regex", "regex": `o-\d+`}}}}, "content": {"$.id": {Matchers: []Matcher{{"match": "integer"}}}}},
	}
	ok := Message{Contents: jsonBody(`{"id":9,"extra":true}`), Metadata: map[string]any{"topic": "orders", "key": "o-9"}}
	if got := MatchMessage(exp, ok); len(got) != 0 {
		t.Fatalf("want match, got %v", got)
	}
	bad := Message{Contents: jsonBody(`{"id":"9"}`), Metadata: map[string]any{"topic": "payments", "key": "x"}}
	var got []string
	for _, m := range MatchMessage(exp, bad) {
		got = append(got, m.Part+" "+m.Path)
	}
	if diff := cmp.Diff([]string{"content $.id", "metadata key", "metadata topic"}, got); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
}

func TestPathParsing(t *testing.T) {
	for _, tc := range []struct {
		in, out string
		bad     bool
	}{
		{in: "$", out: "$"},
		{in: "$.a.b", out: "$.a.b"},
		{in: "$.a[0].b", out: "$.a[0].b"},
		{in: "$.a[*].b", out: "$.a[*].b"},
		{in: "$.a.*", out: "$.a[*]"},
		{in: "$['a.b'][2]", out: "$['a.b'][2]"},
		{in: "a.b", out: "$.a.b"},
		{in: "$.a[", bad: true},
		{in: "$.a[x]", bad: true},
		{in: "$..a", bad: true},
		{in: "$a", bad: true},
		{in: "", bad: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			toks, err := parsePath(tc.in)
			if tc.bad {
				if err == nil {
					t.Fatalf("want an error, got %s", renderTokens(toks))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := renderTokens(toks); got != tc.out {
				t.Fatalf("got %s, want %s", got, tc.out)
			}
		})
	}
}

func TestPathWeight(t *testing.T) {
	p := func(s string) []pathToken { toks, _ := parsePath(s); return toks }
	act := p("$.a[1].b")
	for _, tc := range []struct {
		rule string
		want int
	}{
		{"$", 2}, {"$.a", 4}, {"$.a[1]", 8}, {"$.a[*]", 4}, {"$.a[1].b", 16}, {"$.a[*].b", 8}, {"$.*[*].b", 4},
		{"$.a[0].b", 0}, {"$.x", 0}, {"$.a[1].b.c", 0},
	} {
		if got := weight(p(tc.rule), act); got != tc.want {
			t.Errorf("weight(%s, $.a[1].b) = %d, want %d", tc.rule, got, tc.want)
		}
	}
}

func TestJavaDateFormats(t *testing.T) {
	for _, tc := range []struct{ format, value string }{
		{"yyyy-MM-dd", "2026-11-26"},
		{"dd.MM.yy", "26.11.26"},
		{"HH:mm:ss", "14:45:00"},
		{"hh:mm a", "02:45 PM"},
		{"EEE, dd MMM yyyy HH:mm:ss Z", "Thu, 26 Nov 2026 14:45:00 +0000"},
		{"yyyy-MM-dd'T'HH:mm:ss.SSSX", "2026-11-26T14:45:00.123Z"},
		{"yyyy-MM-dd'T'HH:mm:ssXXX", "2026-11-26T14:45:00+05:30"},
	} {
		t.Run(tc.format, func(t *testing.T) {
			if err := parseJavaTime(tc.format, "timestamp", tc.value); err != nil {
				t.Fatalf("parse %q with %q: %v", tc.value, tc.format, err)
			}
			if err := parseJavaTime(tc.format, "timestamp", tc.value+"x"); err == nil {
				t.Fatalf("%q should not parse with %q", tc.value+"x", tc.format)
			}
		})
	}
	if _, err := javaLayout("yyyy-GG"); err == nil || !strings.Contains(err.Error(), "G") {
		t.Fatalf("unsupported letter: %v", err)
	}
}

// TestRuleTrieAgreesWithWeights: the compiled trie picks the same rule as
// scoring every rule path with the specification's weighting.
func TestRuleTrieAgreesWithWeights(t *testing.T) {
	paths := []string{"$", "$.a", "$.a[*]", "$.a[0]", "$.a[*].b", "$.a[1].b", "$.*", "$.*[*].b", "$.a.*", "$['a'][2].c", "$.x.y"}
	cat := map[string]*RuleList{}
	for _, p := range paths {
		cat[p] = &RuleList{Matchers: []Matcher{{"match": "type", "id": p}}}
	}
	rs := compileCategory(cat)
	brute := func(actual []pathToken) (string, bool) {
		bestW, bestLen, best, direct := 0, -1, "", false
		for _, p := range sortedKeys(cat) {
			toks, _ := parsePath(p)
			w := weight(toks, actual)
			if w > 0 && (w > bestW || (w == bestW && len(toks) > bestLen)) {
				bestW, bestLen, best, direct = w, len(toks), p, len(toks) == len(actual)
			}
		}
		return best, direct
	}
	for _, a := range []string{"$", "$.a", "$.a[0]", "$.a[1]", "$.a[2]", "$.a[0].b", "$.a[1].b", "$.a[2].b", "$.a[2].c", "$.a[5].b.z", "$.q", "$.q[3].b", "$.x.y", "$.x.z", "$.a.k"} {
		toks, err := parsePath(a)
		if err != nil {
			t.Fatal(err)
		}
		rl, direct := rs.best(toks)
		got := ""
		if rl != nil {
			got = rl.Matchers[0]["id"].(string)
		}
		want, wantDirect := brute(toks)
		// "$.a[*]" and "$.a.*" are one path in the trie: either id is right
		same := got == want || (strings.Trim(got, "$.a[]*") == "" && strings.Trim(want, "$.a[]*") == "" && len(got) > 2 && len(want) > 2)
		if !same || direct != wantDirect {
			t.Errorf("%s: trie picked %q (direct %v), weights pick %q (direct %v)", a, got, direct, want, wantDirect)
		}
	}
}
