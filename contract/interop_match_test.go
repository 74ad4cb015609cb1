package contract

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// responseCase is one expected response (with rules) and what a provider
// actually sends.
type responseCase struct {
	name       string
	expBody    string // JSON, or text when expCT is not JSON
	expCT      string
	rules      string // the v4 matchingRules object of the response
	expHeaders map[string]string
	// rawBody, when set, is the V4 response's "body" exactly (null, or an
	// object with an empty content); such cases are V4 only.
	rawBody   string
	expStatus int
	status    int
	headers   map[string]string
	body      string
}

var responseCases = []responseCase{
	{name: "extra key allowed", expBody: `{"a":1}`, body: `{"a":1,"b":2}`},
	{name: "missing key", expBody: `{"a":1,"b":2}`, body: `{"a":1}`},
	{name: "value differs", expBody: `{"a":"x"}`, body: `{"a":"y"}`},
	{name: "type matcher", expBody: `{"a":"x"}`, rules: `{"body":{"$.a":{"matchers":[{"match":"type"}]}}}`, body: `{"a":"y"}`},
	{name: "type matcher wrong type", expBody: `{"a":"x"}`, rules: `{"body":{"$.a":{"matchers":[{"match":"type"}]}}}`, body: `{"a":7}`},
	{name: "array min ok", expBody: `{"a":[{"n":1}]}`, rules: `{"body":{"$.a":{"matchers":[{"match":"type","min":2}]}}}`, body: `{"a":[{"n":5},{"n":6}]}`},
	{name: "array min short", expBody: `{"a":[{"n":1}]}`, rules: `{"body":{"$.a":{"matchers":[{"match":"type","min":2}]}}}`, body: `{"a":[{"n":5}]}`},
	{name: "array elements cascade", expBody: `{"a":[{"n":1}]}`, rules: `{"body":{"$.a":{"matchers":[{"match":"type","min":1}]}}}`, body: `{"a":[{"n":5},{"n":"six"}]}`},
	{name: "array length without rules", expBody: `{"a":[1,2]}`, body: `{"a":[1,2,3]}`},
	{name: "regex", expBody: `{"a":"A1"}`, rules: `{"body":{"$.a":{"matchers":[{"match":"regex","regex":"[A-Z]\\d+"}]}}}`, body: `{"a":"B22"}`},
	{name: "regex fails", expBody: `{"a":"A1"}`, rules: `{"body":{"$.a":{"matchers":[{"match":"regex","regex":"[A-Z]\\d+"}]}}}`, body: `{"a":"b22"}`},
	{name: "integer", expBody: `{"a":1}`, rules: `{"body":{"$.a":{"matchers":[{"match":"integer"}]}}}`, body: `{"a":42}`},
	{name: "integer gets decimal", expBody: `{"a":1}`, rules: `{"body":{"$.a":{"matchers":[{"match":"integer"}]}}}`, body: `{"a":4.5}`},
	{name: "decimal", expBody: `{"a":1.5}`, rules: `{"body":{"$.a":{"matchers":[{"match":"decimal"}]}}}`, body: `{"a":2.25}`},
	{name: "decimal gets integer", expBody: `{"a":1.5}`, rules: `{"body":{"$.a":{"matchers":[{"match":"decimal"}]}}}`, body: `{"a":2}`},
	{name: "decimal gets string", expBody: `{"a":1.5}`, rules: `{"body":{"$.a":{"matchers":[{"match":"decimal"}]}}}`, body: `{"a":"2.5"}`},
	{name: "number", expBody: `{"a":1.5}`, rules: `{"body":{"$.a":{"matchers":[{"match":"number"}]}}}`, body: `{"a":2}`},
	{name: "boolean", expBody: `{"a":true}`, rules: `{"body":{"$.a":{"matchers":[{"match":"boolean"}]}}}`, body: `{"a":false}`},
	{name: "null", expBody: `{"a":null}`, rules: `{"body":{"$.a":{"matchers":[{"match":"null"}]}}}`, body: `{"a":null}`},
	{name: "null gets value", expBody: `{"a":null}`, rules: `{"body":{"$.a":{"matchers":[{"match":"null"}]}}}`, body: `{"a":0}`},
	{name: "equality under type", expBody: `{"a":{"b":"x","c":1}}`, rules: `{"body":{"$.a":{"matchers":[{"match":"type"}]},"$.a.b":{"matchers":[{"match":"equality"}]}}}`, body: `{"a":{"b":"y","c":2}}`},
	{name: "include", expBody: `{"a":"hello world"}`, rules: `{"body":{"$.a":{"matchers":[{"match":"include","value":"world"}]}}}`, body: `{"a":"the world"}`},
	{name: "include fails", expBody: `{"a":"hello world"}`, rules: `{"body":{"$.a":{"matchers":[{"match":"include","value":"world"}]}}}`, body: `{"a":"the word"}`},
	{name: "timestamp format", expBody: `{"a":"2026-01-01T00:00:00Z"}`, rules: `{"body":{"$.a":{"matchers":[{"match":"timestamp","format":"yyyy-MM-dd'T'HH:mm:ssX"}]}}}`, body: `{"a":"2026-11-26T14:00:00Z"}`},
	{name: "timestamp format fails", expBody: `{"a":"2026-01-01T00:00:00Z"}`, rules: `{"body":{"$.a":{"matchers":[{"match":"timestamp","format":"yyyy-MM-dd'T'HH:mm:ssX"}]}}}`, body: `{"a":"26/11/2026"}`},
	{name: "date format", expBody: `{"a":"2026-01-01"}`, rules: `{"body":{"$.a":{"matchers":[{"match":"date","format":"yyyy-MM-dd"}]}}}`, body: `{"a":"2026-11-26"}`},
	{name: "time format fails", expBody: `{"a":"10:00"}`, rules: `{"body":{"$.a":{"matchers":[{"match":"time","format":"HH:mm"}]}}}`, body: `{"a":"10h00"}`},
	{name: "values", expBody: `{"m":{"a":1}}`, rules: `{"body":{"$.m":{"matchers":[{"match":"values"}]},"$.m.*":{"matchers":[{"match":"type"}]}}}`, body: `{"m":{"x":2,"y":3}}`},
	{name: "eachKey", expBody: `{"m":{"ab":1}}`, rules: `{"body":{"$.m":{"matchers":[{"match":"eachKey","rules":[{"match":"regex","regex":"[a-z]+"}],"value":{"ab":1}}]}}}`, body: `{"m":{"cd":1}}`},
	{name: "eachKey fails", expBody: `{"m":{"ab":1}}`, rules: `{"body":{"$.m":{"matchers":[{"match":"eachKey","rules":[{"match":"regex","regex":"[a-z]+"}],"value":{"ab":1}}]}}}`, body: `{"m":{"ab":1,"C9":1}}`},
	{name: "eachValue fails", expBody: `{"m":{"a":"x"}}`, rules: `{"body":{"$.m":{"matchers":[{"match":"eachValue","rules":[{"match":"regex","regex":"[a-z]+"}],"value":{"a":"x"}}]}}}`, body: `{"m":{"a":"x","b":"9"}}`},
	{name: "arrayContains", expBody: `{"a":[{"t":"x"}]}`, rules: `{"body":{"$.a":{"matchers":[{"match":"arrayContains","variants":[{"index":0,"rules":{}}]}]}}}`, body: `{"a":[{"t":"y"},{"t":"x"}]}`},
	{name: "arrayContains fails", expBody: `{"a":[{"t":"x"}]}`, rules: `{"body":{"$.a":{"matchers":[{"match":"arrayContains","variants":[{"index":0,"rules":{}}]}]}}}`, body: `{"a":[{"t":"y"}]}`},
	{name: "notEmpty fails", expBody: `{"a":"x"}`, rules: `{"body":{"$.a":{"matchers":[{"match":"notEmpty"}]}}}`, body: `{"a":""}`},
	{name: "semver", expBody: `{"v":"1.0.0"}`, rules: `{"body":{"$.v":{"matchers":[{"match":"semver"}]}}}`, body: `{"v":"2.10.3"}`},
	{name: "semver fails", expBody: `{"v":"1.0.0"}`, rules: `{"body":{"$.v":{"matchers":[{"match":"semver"}]}}}`, body: `{"v":"2.10"}`},
	{name: "combine OR", expBody: `{"a":1}`, rules: `{"body":{"$.a":{"combine":"OR","matchers":[{"match":"integer"},{"match":"null"}]}}}`, body: `{"a":null}`},
	{name: "weighting: exact index beats wildcard", expBody: `{"a":[{"id":1},{"id":2}]}`, rules: `{"body":{"$.a[*].id":{"matchers":[{"match":"type"}]},"$.a[1].id":{"matchers":[{"match":"equality"}]}}}`, body: `{"a":[{"id":9},{"id":3}]}`},
	{name: "statusCode class", expStatus: 200, rules: `{"status":{"matchers":[{"match":"statusCode","status":"success"}]}}`, status: 204},
	{name: "statusCode class fails", expStatus: 200, rules: `{"status":{"matchers":[{"match":"statusCode","status":"success"}]}}`, status: 409},
	{name: "status differs", expStatus: 201, status: 200},
	{name: "header value", expHeaders: map[string]string{"X-Version": "2"}, headers: map[string]string{"x-version": "2"}},
	{name: "header value differs", expHeaders: map[string]string{"X-Version": "2"}, headers: map[string]string{"X-Version": "3"}},
	{name: "header list spacing", expHeaders: map[string]string{"X-Ids": "1, 2"}, headers: map[string]string{"X-Ids": "1,2"}},
	{name: "header regex", expHeaders: map[string]string{"X-Trace": "abc"}, rules: `{"header":{"X-Trace":{"matchers":[{"match":"regex","regex":"[a-f0-9]+"}]}}}`, headers: map[string]string{"X-Trace": "0af7"}},
	{name: "content type charset", expBody: `{"a":1}`, expHeaders: map[string]string{"Content-Type": "application/json"}, headers: map[string]string{"Content-Type": "application/json; charset=utf-8"}, body: `{"a":1}`},
	{name: "text equal", expBody: "hello", expCT: "text/plain", headers: map[string]string{"Content-Type": "text/plain"}, body: "hello"},
	{name: "text differs", expBody: "hello", expCT: "text/plain", headers: map[string]string{"Content-Type": "text/plain"}, body: "hullo"},
	{name: "numbers 1.0 and 1 without rules", expBody: `{"a":1.0}`, body: `{"a":1}`},
	{name: "regex must match the whole value", expBody: `{"a":"12"}`, rules: `{"body":{"$.a":{"matchers":[{"match":"regex","regex":"\\d{2}"}]}}}`, body: `{"a":"123"}`},
	{name: "values without child rules", expBody: `{"m":{"a":1}}`, rules: `{"body":{"$.m":{"matchers":[{"match":"values"}]}}}`, body: `{"m":{"x":2}}`},
	{name: "eachValue ok", expBody: `{"m":{"a":"x"}}`, rules: `{"body":{"$.m":{"matchers":[{"match":"eachValue","rules":[{"match":"regex","regex":"[a-z]+"}],"value":{"a":"x"}}]}}}`, body: `{"m":{"b":"yy","c":"zz"}}`},
	{name: "notEmpty array", expBody: `{"a":[1]}`, rules: `{"body":{"$.a":{"matchers":[{"match":"notEmpty"}]}}}`, body: `{"a":[2,3]}`},
	{name: "null instead of object", expBody: `{"a":{"b":1}}`, body: `{"a":null}`},
	{name: "nested arrays under type", expBody: `{"a":[[1]]}`, rules: `{"body":{"$.a":{"matchers":[{"match":"type"}]}}}`, body: `{"a":[[1,2],[3]]}`},
	{name: "header missing", expHeaders: map[string]string{"X-Version": "2"}},
	{name: "empty body expected, body sent", expBody: "", expCT: "", body: `{"a":1}`},
	{name: "eachKey with other values", expBody: `{"m":{"ab":1}}`, rules: `{"body":{"$.m":{"matchers":[{"match":"eachKey","rules":[{"match":"regex","regex":"[a-z]+"}],"value":{"ab":1}}]}}}`, body: `{"m":{"cd":2}}`},
	{name: "numbers 1.5 and 1.50", expBody: `{"a":1.5}`, body: `{"a":1.50}`},
	{name: "eachValue on an array", expBody: `{"a":["x"]}`, rules: `{"body":{"$.a":{"matchers":[{"match":"eachValue","rules":[{"match":"regex","regex":"[a-z]+"}],"value":["x"]}]}}}`, body: `{"a":["yy","zz","q"]}`},
	{name: "eachValue on an array fails", expBody: `{"a":["x"]}`, rules: `{"body":{"$.a":{"matchers":[{"match":"eachValue","rules":[{"match":"regex","regex":"[a-z]+"}],"value":["x"]}]}}}`, body: `{"a":["yy","Z"]}`},
	{name: "arrayContains with variant rules", expBody: `{"a":[{"n":1,"k":"x"}]}`, rules: `{"body":{"$.a":{"matchers":[{"match":"arrayContains","variants":[{"index":0,"rules":{"$.n":{"matchers":[{"match":"integer"}]}}}]}]}}}`, body: `{"a":[{"n":"s","k":"x"},{"n":5,"k":"x"}]}`},
	{name: "arrayContains variant rules fail", expBody: `{"a":[{"n":1,"k":"x"}]}`, rules: `{"body":{"$.a":{"matchers":[{"match":"arrayContains","variants":[{"index":0,"rules":{"$.n":{"matchers":[{"match":"integer"}]}}}]}]}}}`, body: `{"a":[{"n":5,"k":"y"}]}`},
	{name: "type on an object allows extra keys", expBody: `{"a":{"b":1}}`, rules: `{"body":{"$.a":{"matchers":[{"match":"type"}]}}}`, body: `{"a":{"b":2,"c":3}}`},
	{name: "type on an object needs its keys", expBody: `{"a":{"b":1}}`, rules: `{"body":{"$.a":{"matchers":[{"match":"type"}]}}}`, body: `{"a":{"c":3}}`},
	{name: "date default format", expBody: `{"a":"2026-01-01"}`, rules: `{"body":{"$.a":{"matchers":[{"match":"date"}]}}}`, body: `{"a":"2026-11-26"}`},
	{name: "timestamp default format", expBody: `{"a":"2026-01-01T00:00:00Z"}`, rules: `{"body":{"$.a":{"matchers":[{"match":"timestamp"}]}}}`, body: `{"a":"2026-11-26T10:11:12+01:00"}`},
	{name: "statusCode list", expStatus: 200, rules: `{"status":{"matchers":[{"match":"statusCode","status":[200,202]}]}}`, status: 202},
	{name: "statusCode list fails", expStatus: 200, rules: `{"status":{"matchers":[{"match":"statusCode","status":[200,202]}]}}`, status: 201},
	{name: "wildcard field rule", expBody: `{"m":{"a":1,"b":2}}`, rules: `{"body":{"$.m.*":{"matchers":[{"match":"integer"}]}}}`, body: `{"m":{"a":7,"b":8,"c":"x"}}`},
	{name: "root array with type min", expBody: `[{"id":1}]`, rules: `{"body":{"$":{"matchers":[{"match":"type","min":1}]}}}`, body: `[{"id":2},{"id":3}]`},
	{name: "include on a number", expBody: `{"a":12345}`, rules: `{"body":{"$.a":{"matchers":[{"match":"include","value":"234"}]}}}`, body: `{"a":92345}`},
	{name: "json body of the wrong type", expBody: `{"a":1}`, headers: map[string]string{"Content-Type": "text/plain"}, body: `a=1`},

	// Empty, null and absent bodies.
	{name: "empty body expected, none sent", rawBody: `{"content":""}`},
	{name: "empty body expected, one sent", rawBody: `{"content":""}`, headers: xmlHeaders("text/plain"), body: `hello`},
	{name: "null body expected, none sent", rawBody: `null`},
	{name: "null body expected, one sent", rawBody: `null`, body: `{"a":1}`},
	{name: "no body expected, one sent", body: `{"a":1}`},

	// Content-Type parameters.
	{name: "content type charset differs in case", expBody: `{"a":1}`, expHeaders: map[string]string{"Content-Type": "application/json;charset=UTF-8"},
		headers: map[string]string{"Content-Type": "application/json; charset=utf-8"}, body: `{"a":1}`},
	{name: "content type charset differs", expBody: `{"a":1}`, expHeaders: map[string]string{"Content-Type": "application/json;charset=UTF-16"},
		headers: map[string]string{"Content-Type": "application/json; charset=utf-8"}, body: `{"a":1}`},
	{name: "content type with an extra parameter", expBody: `{"a":1}`, expHeaders: map[string]string{"Content-Type": "application/json"},
		headers: map[string]string{"Content-Type": "application/json; charset=utf-8"}, body: `{"a":1}`},
	{name: "content type missing a parameter", expBody: `{"a":1}`, expHeaders: map[string]string{"Content-Type": "application/json; charset=utf-8"},
		headers: map[string]string{"Content-Type": "application/json"}, body: `{"a":1}`},

	// The boolean matcher takes the strings "true" and "false".
	{name: "boolean matcher on a boolean", expBody: `{"a":true}`, rules: `{"body":{"$.a":{"matchers":[{"match":"boolean"}]}}}`, body: `{"a":false}`},
	{name: "boolean matcher on the string true", expBody: `{"a":true}`, rules: `{"body":{"$.a":{"matchers":[{"match":"boolean"}]}}}`, body: `{"a":"true"}`},
	{name: "boolean matcher on another string", expBody: `{"a":true}`, rules: `{"body":{"$.a":{"matchers":[{"match":"boolean"}]}}}`, body: `{"a":"yes"}`},

	// XML bodies.
	{name: "xml equal", expCT: "application/xml", expBody: `<animals><alligator name="Mary"/></animals>`, headers: xmlHeaders(""), body: `<?xml version="1.0"?><animals><alligator name="Mary"/></animals>`},
	{name: "xml extra attribute", expCT: "application/xml", expBody: `<animals><alligator name="Mary"/></animals>`, headers: xmlHeaders(""), body: `<animals><alligator name="Mary" age="3"/></animals>`},
	{name: "xml attribute differs", expCT: "application/xml", expBody: `<animals><alligator name="Mary"/></animals>`, headers: xmlHeaders(""), body: `<animals><alligator name="Joe"/></animals>`},
	{name: "xml attribute missing", expCT: "application/xml", expBody: `<animals><alligator name="Mary"/></animals>`, headers: xmlHeaders(""), body: `<animals><alligator/></animals>`},
	{name: "xml attribute regex", expCT: "application/xml", expBody: `<animals><alligator name="Mary"/></animals>`, headers: xmlHeaders(""),
		rules: `{"body":{"$.animals.alligator['@name']":{"matchers":[{"match":"regex","regex":"[A-Z][a-z]+"}]}}}`, body: `<animals><alligator name="Joe"/></animals>`},
	{name: "xml attribute regex fails", expCT: "application/xml", expBody: `<animals><alligator name="Mary"/></animals>`, headers: xmlHeaders(""),
		rules: `{"body":{"$.animals.alligator['@name']":{"matchers":[{"match":"regex","regex":"[A-Z][a-z]+"}]}}}`, body: `<animals><alligator name="joe"/></animals>`},
	{name: "xml attribute integer", expCT: "application/xml", expBody: `<animals><alligator age="3"/></animals>`, headers: xmlHeaders(""),
		rules: `{"body":{"$.animals.alligator['@age']":{"matchers":[{"match":"integer"}]}}}`, body: `<animals><alligator age="12"/></animals>`},
	{name: "xml text differs", expCT: "application/xml", expBody: `<a><b>x</b></a>`, headers: xmlHeaders(""), body: `<a><b>y</b></a>`},
	{name: "xml text trimmed", expCT: "application/xml", expBody: `<a><b>x</b></a>`, headers: xmlHeaders(""), body: "<a>\n  <b>  x </b>\n</a>"},
	{name: "xml text type", expCT: "application/xml", expBody: `<a><b>x</b></a>`, headers: xmlHeaders(""),
		rules: `{"body":{"$.a.b['#text']":{"matchers":[{"match":"type"}]}}}`, body: `<a><b>y</b></a>`},
	{name: "xml text integer", expCT: "application/xml", expBody: `<a><b>1</b></a>`, headers: xmlHeaders(""),
		rules: `{"body":{"$.a.b['#text']":{"matchers":[{"match":"integer"}]}}}`, body: `<a><b>42</b></a>`},
	{name: "xml text integer fails", expCT: "application/xml", expBody: `<a><b>1</b></a>`, headers: xmlHeaders(""),
		rules: `{"body":{"$.a.b['#text']":{"matchers":[{"match":"integer"}]}}}`, body: `<a><b>x</b></a>`},
	{name: "xml text regex", expCT: "application/xml", expBody: `<a><b>2026-01-01</b></a>`, headers: xmlHeaders(""),
		rules: `{"body":{"$.a.b['#text']":{"matchers":[{"match":"regex","regex":"\\d{4}-\\d{2}-\\d{2}"}]}}}`, body: `<a><b>2027-12-31</b></a>`},
	{name: "xml missing child", expCT: "application/xml", expBody: `<a><b/><c/></a>`, headers: xmlHeaders(""), body: `<a><b/></a>`},
	{name: "xml extra child", expCT: "application/xml", expBody: `<a><b/><c/></a>`, headers: xmlHeaders(""), body: `<a><b/><c/><d/></a>`},
	{name: "xml element name differs", expCT: "application/xml", expBody: `<a><b/></a>`, headers: xmlHeaders(""), body: `<z><b/></z>`},
	{name: "xml repeated with type", expCT: "application/xml", expBody: `<animals><alligator name="Mary"/></animals>`, headers: xmlHeaders(""),
		rules: `{"body":{"$.animals.alligator":{"matchers":[{"match":"type"}]}}}`, body: `<animals><alligator name="A"/><alligator name="B"/><alligator name="C"/></animals>`},
	{name: "xml repeated with type, wrong child", expCT: "application/xml", expBody: `<animals><alligator><age>1</age></alligator></animals>`, headers: xmlHeaders(""),
		rules: `{"body":{"$.animals.alligator":{"matchers":[{"match":"type"}]}}}`, body: `<animals><alligator><age>2</age></alligator><alligator><weight>3</weight></alligator></animals>`},
	{name: "xml more repeats than expected", expCT: "application/xml", expBody: `<animals><alligator name="Mary"/></animals>`, headers: xmlHeaders(""), body: `<animals><alligator name="Mary"/><alligator name="Mary"/></animals>`},
	{name: "xml fewer repeats than expected", expCT: "application/xml", expBody: `<animals><alligator name="Mary"/><alligator name="Mary"/></animals>`, headers: xmlHeaders(""), body: `<animals><alligator name="Mary"/></animals>`},
	{name: "xml type min with too few", expCT: "application/xml", expBody: `<animals><alligator><age>1</age></alligator></animals>`, headers: xmlHeaders(""),
		rules: `{"body":{"$.animals.alligator":{"matchers":[{"match":"type","min":2}]}}}`, body: `<animals><alligator><age>2</age></alligator></animals>`},
	{name: "xml type min on elements without children", expCT: "application/xml", expBody: `<animals><alligator name="Mary"/></animals>`, headers: xmlHeaders(""),
		rules: `{"body":{"$.animals.alligator":{"matchers":[{"match":"type","min":2}]}}}`, body: `<animals><alligator name="A"/><alligator name="B"/></animals>`},
	{name: "xml type max bounds child nodes, not repeats", expCT: "application/xml", expBody: `<animals><alligator name="Mary"/></animals>`, headers: xmlHeaders(""),
		rules: `{"body":{"$.animals.alligator":{"matchers":[{"match":"type","max":1}]}}}`, body: `<animals><alligator name="A"/><alligator name="B"/></animals>`},
	{name: "xml type min counts child nodes", expCT: "application/xml", expBody: `<animals><alligator><age>1</age></alligator></animals>`, headers: xmlHeaders(""),
		rules: `{"body":{"$.animals.alligator":{"matchers":[{"match":"type","min":2}]}}}`, body: "<animals><alligator>\n <age>2</age>\n</alligator></animals>"},
	{name: "xml namespace prefixes differ", expCT: "application/xml", expBody: `<ns:a xmlns:ns="urn:x"><ns:b>1</ns:b></ns:a>`, headers: xmlHeaders(""), body: `<p:a xmlns:p="urn:x"><p:b>1</p:b></p:a>`},
	{name: "xml namespace differs", expCT: "application/xml", expBody: `<a xmlns="urn:x"><b>1</b></a>`, headers: xmlHeaders(""), body: `<a xmlns="urn:y"><b>1</b></a>`},
	{name: "xml body that is json", expCT: "application/xml", expBody: `<a><b/></a>`, headers: map[string]string{"Content-Type": "application/json"}, body: `{"a":1}`},
	{name: "xml body that does not parse", expCT: "application/xml", expBody: `<a><b/></a>`, headers: xmlHeaders(""), body: `<a><b></a>`},
}

// xmlHeaders is a Content-Type header (application/xml unless given).
func xmlHeaders(ct string) map[string]string {
	if ct == "" {
		ct = "application/xml"
	}
	return map[string]string{"Content-Type": ct}
}

// TestInteropResponseMatchingAgrees: the real pact verifier and ours
// verify one pact whose interactions are the cases above against one
// provider, and must pass and fail the same interactions; the cases whose
// rules V2 can express are verified again from a V2 pact.
func TestInteropResponseMatchingAgrees(t *testing.T) {
	bin := pactCLI(t)
	for _, spec := range []Spec{V4, V2} {
		t.Run("spec "+spec.String(), func(t *testing.T) { responseCasesAgree(t, bin, spec) })
	}
}

// v2Rules turns a case's v4 rules into the v2 flat layout, if it can.
func v2Rules(rules string) (map[string]any, bool) {
	if rules == "" {
		return nil, true
	}
	var r map[string]map[string]struct {
		Matchers []map[string]any `json:"matchers"`
	}
	if err := json.Unmarshal([]byte(rules), &r); err != nil {
		return nil, false
	}
	out := map[string]any{}
	for cat, paths := range r {
		if cat != "body" {
			return nil, false
		}
		for path, rl := range paths {
			if len(rl.Matchers) != 1 {
				return nil, false
			}
			m := rl.Matchers[0]
			if m["match"] != "type" && m["match"] != "regex" {
				return nil, false
			}
			out["$.body"+strings.TrimPrefix(path, "$")] = m
		}
	}
	return out, true
}

func responseCasesAgree(t *testing.T, bin string, spec Spec) {
	var inters []string
	cases := map[int]bool{}
	for i, c := range responseCases {
		st := c.expStatus
		if st == 0 {
			st = 200
		}
		resp := map[string]any{"status": st}
		if c.rawBody != "" {
			if spec != V4 {
				continue
			}
			resp["body"] = json.RawMessage(c.rawBody)
		}
		if c.expBody != "" {
			ct := c.expCT
			if ct == "" {
				ct = "application/json"
			}
			switch {
			case spec == V2 && isJSONType(ct):
				resp["body"] = json.RawMessage(c.expBody)
			case spec == V2:
				resp["body"] = c.expBody
			case isJSONType(ct):
				resp["body"] = map[string]any{"contentType": ct, "encoded": false, "content": json.RawMessage(c.expBody)}
			default:
				resp["body"] = map[string]any{"contentType": ct, "encoded": false, "content": c.expBody}
			}
			if spec == V2 { // V2 bodies take their content type from the headers
				h := map[string]string{"Content-Type": ct}
				for k, v := range c.expHeaders {
					h[k] = v
				}
				c.expHeaders = h
			}
		}
		if c.expHeaders != nil {
			h := map[string]any{}
			for k, v := range c.expHeaders {
				if spec == V2 {
					h[k] = v
				} else {
					h[k] = []string{v}
				}
			}
			resp["headers"] = h
		}
		if spec == V2 {
			r, ok := v2Rules(c.rules)
			if !ok || strings.Contains(c.name, "content type") || strings.Contains(c.name, "wrong type") {
				continue
			}
			if r != nil {
				resp["matchingRules"] = r
			}
		} else if c.rules != "" {
			resp["matchingRules"] = json.RawMessage(c.rules)
		}
		in := map[string]any{"description": c.name, "request": map[string]any{"method": "GET", "path": "/case/" + strconv.Itoa(i)}, "response": resp}
		if spec == V4 {
			in["type"] = "Synchronous/HTTP"
		}
		b, _ := json.Marshal(in)
		inters = append(inters, string(b))
		cases[i] = true
	}
	doc := `{"consumer":{"name":"web"},"provider":{"name":"cases"},"metadata":{"pactSpecification":{"version":"` + spec.String() + `"}},"interactions":[` + strings.Join(inters, ",") + `]}`
	dir := t.TempDir()
	file := filepath.Join(dir, "web-cases.json")
	if err := os.WriteFile(file, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/case/"))
		if err != nil || i < 0 || i >= len(responseCases) {
			http.NotFound(w, r)
			return
		}
		c := responseCases[i]
		for k, v := range c.headers {
			w.Header()[http.CanonicalHeaderKey(k)] = []string{v}
		}
		if c.body != "" && w.Header().Get("Content-Type") == "" {
			w.Header().Set("Content-Type", "application/json")
		}
		st := c.status
		if st == 0 {
			st = 200
		}
		w.WriteHeader(st)
		_, _ = w.Write([]byte(c.body))
	}))
	defer srv.Close()
	host, port := hostPort(t, srv.URL)
	report := filepath.Join(dir, "report.json")
	out, _ := runPact(t, bin, "verifier", "-f", file, "--hostname", host, "--port", port, "--no-colour", "--retries", "0", "-j", report)
	raw, err := os.ReadFile(report)
	if err != nil {
		t.Fatalf("pact verifier wrote no report: %v\n%s", err, out)
	}
	var rep struct {
		InteractionResults []struct {
			Description string `json:"description"`
			Result      string `json:"result"`
		} `json:"interactionResults"`
	}
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatal(err)
	}
	theirs := map[string]bool{}
	for _, r := range rep.InteractionResults {
		theirs[r.Description] = r.Result == "OK"
	}
	ours, err := (&Verifier{BaseURL: srv.URL, Sources: []Source{FileSource{Paths: []string{file}}}}).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	passed, failed := 0, 0
	for _, in := range ours.Pacts[0].Interactions {
		their, ok := theirs[in.Description]
		if !ok {
			t.Errorf("%s: not in pact verifier's report", in.Description)
			continue
		}
		if their != in.OK() {
			t.Errorf("%s: pact verifier ok=%v, ours ok=%v %v", in.Description, their, in.OK(), fmt.Sprint(in.Mismatches))
		}
		if in.OK() {
			passed++
		} else {
			failed++
		}
	}
	t.Logf("%d cases: %d pass, %d fail in both verifiers", len(cases), passed, failed)
}

// TestInteropRequestMatchingAgrees: the real mock server and ours serve the
// same interactions and accept and refuse the same requests (headers,
// query, JSON, form, text and XML bodies, path rules); both answer a
// refused request with 500. XML requests are matched strictly by both:
// an unexpected attribute, child or repeat is refused.
func TestInteropRequestMatchingAgrees(t *testing.T) {
	bin := pactCLI(t)
	file, err := filepath.Abs("testdata/requests.json")
	if err != nil {
		t.Fatal(err)
	}
	master := freePort(t)
	log := startPact(t, bin, "mock", "start", "-p", strconv.Itoa(master), "-o", t.TempDir(), "--no-file-log", "--no-term-log")
	waitPort(t, master, log)
	doc, _ := os.ReadFile(file)
	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/", master), "application/json", strings.NewReader(string(doc)))
	if err != nil {
		t.Fatal(err)
	}
	var created struct {
		MockServer struct{ Port int } `json:"mockServer"`
	}
	err = json.NewDecoder(resp.Body).Decode(&created)
	_ = resp.Body.Close()
	if err != nil || created.MockServer.Port == 0 {
		t.Fatalf("create mock server: %v\n%s", err, log)
	}
	theirs := fmt.Sprintf("http://127.0.0.1:%d", created.MockServer.Port)
	pact, err := ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	ours := httptest.NewServer(&mockServer{inters: pact.Interactions, hits: make([]int, len(pact.Interactions))})
	defer ours.Close()

	type rq struct {
		method, path, body string
		headers            map[string]string
	}
	jsonCT := map[string]string{"Content-Type": "application/json"}
	form := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	text := map[string]string{"Content-Type": "text/plain"}
	xml := map[string]string{"Content-Type": "application/xml"}
	accepted, refused := 0, 0
	for _, r := range []rq{
		{method: "GET", path: "/q?a=1&b=2"},
		{method: "GET", path: "/q?b=2&a=1"},
		{method: "GET", path: "/q?a=1"},
		{method: "GET", path: "/q?a=1&b=2&c=3"},
		{method: "GET", path: "/q?a=1&b=3"},
		{method: "GET", path: "/q?a=1&b=2&b=2"},
		{method: "GET", path: "/qr?page=7"},
		{method: "GET", path: "/qr?page=x"},
		{method: "GET", path: "/h", headers: map[string]string{"Accept": "application/json", "X-Ids": "1, 2"}},
		{method: "GET", path: "/h", headers: map[string]string{"accept": "application/json", "x-ids": "1,2", "X-Other": "y"}},
		{method: "GET", path: "/h", headers: map[string]string{"Accept": "application/json"}},
		{method: "GET", path: "/h", headers: map[string]string{"Accept": "text/html", "X-Ids": "1, 2"}},
		{method: "GET", path: "/h", headers: map[string]string{"Accept": "application/json", "X-Ids": "2, 1"}},
		{method: "GET", path: "/hr", headers: map[string]string{"X-Trace": "0af7"}},
		{method: "GET", path: "/hr", headers: map[string]string{"X-Trace": "zz"}},
		{method: "POST", path: "/b", body: `{"name":"y","tags":["a"],"n":1}`, headers: jsonCT},
		{method: "POST", path: "/b", body: `{"name":7,"tags":["a"],"n":1}`, headers: jsonCT},
		{method: "POST", path: "/b", body: `{"name":"y","tags":["a"],"n":1,"extra":true}`, headers: jsonCT},
		{method: "POST", path: "/b", body: `{"name":"y","tags":["a","b"],"n":1}`, headers: jsonCT},
		{method: "POST", path: "/b", body: `{"name":"y","tags":["a"],"n":2}`, headers: jsonCT},
		{method: "POST", path: "/b", body: `{"name":"y","tags":["a"]}`, headers: jsonCT},
		{method: "POST", path: "/b", body: `{"name":"y","tags":["a"],"n":1}`, headers: map[string]string{"Content-Type": "application/json; charset=utf-8"}},
		{method: "POST", path: "/f", body: "a=1&b=2", headers: form},
		{method: "POST", path: "/f", body: "b=2&a=1", headers: form},
		{method: "POST", path: "/f", body: "a=1&b=3", headers: form},
		{method: "PUT", path: "/t", body: "hello", headers: text},
		{method: "PUT", path: "/t", body: "hullo", headers: text},
		{method: "DELETE", path: "/items/99"},
		{method: "DELETE", path: "/items/x9"},
		{method: "PATCH", path: "/items/99"},

		// XML bodies (requests are matched strictly).
		{method: "POST", path: "/x", body: `<animals><alligator name="Mary" age="3"><note>hi</note></alligator></animals>`, headers: xml},
		{method: "POST", path: "/x", body: "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<animals>\n  <alligator age=\"3\" name=\"Mary\">\n    <note> hi </note>\n  </alligator>\n</animals>\n", headers: xml},
		{method: "POST", path: "/x", body: `<animals><alligator name="Joe" age="40"><note>hi</note></alligator></animals>`, headers: xml},
		{method: "POST", path: "/x", body: `<animals><alligator name="joe" age="40"><note>hi</note></alligator></animals>`, headers: xml},
		{method: "POST", path: "/x", body: `<animals><alligator name="Mary" age="3.5"><note>hi</note></alligator></animals>`, headers: xml},
		{method: "POST", path: "/x", body: `<animals><alligator name="Mary"><note>hi</note></alligator></animals>`, headers: xml},
		{method: "POST", path: "/x", body: `<animals><alligator name="Mary" age="3" color="green"><note>hi</note></alligator></animals>`, headers: xml},
		{method: "POST", path: "/x", body: `<animals><alligator name="Mary" age="3"><note>hi</note><tail/></alligator></animals>`, headers: xml},
		{method: "POST", path: "/x", body: `<animals><alligator name="Mary" age="3"/></animals>`, headers: xml},
		{method: "POST", path: "/x", body: `<animals><alligator name="Mary" age="3"><note>ho</note></alligator></animals>`, headers: xml},
		{method: "POST", path: "/x", body: `<zoo><alligator name="Mary" age="3"><note>hi</note></alligator></zoo>`, headers: xml},
		{method: "POST", path: "/x", body: `<animals><alligator name="Mary" age="3"><note>hi</note></alligator>`, headers: xml},
		{method: "POST", path: "/x", body: `<animals><alligator name="Mary" age="3"><note>hi</note></alligator></animals>`, headers: map[string]string{"Content-Type": "text/xml"}},
		{method: "POST", path: "/x", body: `<animals><alligator name="Mary" age="3"><note>hi</note></alligator></animals>`, headers: map[string]string{"Content-Type": "application/xml; charset=UTF-8"}},
		{method: "POST", path: "/x", body: `{"animals":{"alligator":{"name":"Mary"}}}`, headers: jsonCT},
		{method: "POST", path: "/xr", body: `<animals><alligator name="Mary"/></animals>`, headers: xml},
		{method: "POST", path: "/xr", body: `<animals><alligator name="Ann"/><alligator name="Bob"/><alligator name="Cy"/></animals>`, headers: xml},
		{method: "POST", path: "/xr", body: `<animals/>`, headers: xml},
		{method: "POST", path: "/xr", body: `<animals><alligator name="Ann"/><alligator/></animals>`, headers: xml},
		{method: "POST", path: "/xr", body: `<animals><alligator name="Ann"/><crocodile name="Bob"/></animals>`, headers: xml},
		{method: "POST", path: "/xt", body: `<order><id>12</id><day>2026-01-01</day><note>x</note></order>`, headers: xml},
		{method: "POST", path: "/xt", body: `<order><id>9000</id><day>2027-12-31</day><note>x</note></order>`, headers: xml},
		{method: "POST", path: "/xt", body: `<order><id>nine</id><day>2027-12-31</day><note>x</note></order>`, headers: xml},
		{method: "POST", path: "/xt", body: `<order><id>9</id><day>31/12/2027</day><note>x</note></order>`, headers: xml},
		{method: "POST", path: "/xt", body: `<order><id>9</id><day>2027-12-31</day><note>y</note></order>`, headers: xml},
		{method: "POST", path: "/xt", body: `<order><id>9</id><day>2027-12-31</day><note>x<!-- a comment --></note></order>`, headers: xml},
		{method: "POST", path: "/xp", body: `<a><b>1</b><b>2</b></a>`, headers: xml},
		{method: "POST", path: "/xp", body: `<a><b>2</b><b>1</b></a>`, headers: xml},
		{method: "POST", path: "/xp", body: `<a><b>1</b></a>`, headers: xml},
		{method: "POST", path: "/xp", body: `<a><b>1</b><b>2</b><b>3</b></a>`, headers: xml},
		{method: "POST", path: "/xn", body: `<ns:a xmlns:ns="urn:x"><ns:b>1</ns:b></ns:a>`, headers: xml},
		{method: "POST", path: "/xn", body: `<p:a xmlns:p="urn:x"><p:b>1</p:b></p:a>`, headers: xml},
		{method: "POST", path: "/xn", body: `<a xmlns="urn:x"><b>1</b></a>`, headers: xml},
		{method: "POST", path: "/xn", body: `<p:a xmlns:p="urn:y"><p:b>1</p:b></p:a>`, headers: xml},
		{method: "POST", path: "/xn", body: `<a><b>1</b></a>`, headers: xml},
		{method: "POST", path: "/xn", body: `<ns:a xmlns:ns="urn:x"><ns:b>1</ns:b></ns:a>`},
		{method: "POST", path: "/xm", body: `<order><item><sku>a</sku></item></order>`, headers: xml},
		{method: "POST", path: "/xm", body: `<order><item><sku>b</sku></item><item><sku>c</sku></item></order>`, headers: xml},
		{method: "POST", path: "/xm", body: `<order><item><sku>b</sku><sku>c</sku></item></order>`, headers: xml},
		{method: "POST", path: "/xm", body: `<order><item/></order>`, headers: xml},
		{method: "POST", path: "/xm", body: `<order><item><code>b</code></item></order>`, headers: xml},
	} {
		name := r.method + " " + r.path + " " + r.body + " " + fmt.Sprint(r.headers)
		do := func(base string) int {
			var body *strings.Reader
			if r.body != "" {
				body = strings.NewReader(r.body)
			} else {
				body = strings.NewReader("")
			}
			req, _ := http.NewRequest(r.method, base+r.path, body)
			for k, v := range r.headers {
				req.Header[k] = []string{v}
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			return resp.StatusCode
		}
		theirStatus, ourStatus := do(theirs), do(ours.URL)
		if (theirStatus == 500) != (ourStatus == 500) {
			t.Errorf("%s: pact mock %d, ours %d", name, theirStatus, ourStatus)
		}
		if ourStatus == 500 {
			refused++
		} else {
			accepted++
		}
	}
	t.Logf("requests: %d accepted and %d refused by both", accepted, refused)
	if accepted < 8 || refused < 8 {
		t.Errorf("lopsided request set: %d accepted, %d refused", accepted, refused)
	}
}

// messageCase is an expected message and what a producer actually sends.
type messageCase struct {
	name        string
	content     string // expected JSON
	metadata    map[string]any
	rules       string // v4 message matchingRules
	actual      string
	actMetadata map[string]any
}

var messageCases = []messageCase{
	{name: "same message", content: `{"id":1}`, actual: `{"id":1}`},
	{name: "extra key allowed", content: `{"id":1}`, actual: `{"id":1,"x":2}`},
	{name: "missing key", content: `{"id":1,"y":2}`, actual: `{"id":1}`},
	{name: "value differs", content: `{"id":1}`, actual: `{"id":2}`},
	{name: "integer rule", content: `{"id":1}`, rules: `{"content":{"$.id":{"matchers":[{"match":"integer"}]}}}`, actual: `{"id":77}`},
	{name: "integer rule fails", content: `{"id":1}`, rules: `{"content":{"$.id":{"matchers":[{"match":"integer"}]}}}`, actual: `{"id":"77"}`},
	{name: "array of like items", content: `{"items":[{"sku":"A"}]}`, rules: `{"content":{"$.items":{"matchers":[{"match":"type","min":1}]}}}`, actual: `{"items":[{"sku":"B"},{"sku":"C"}]}`},
	{name: "array of like items fails", content: `{"items":[{"sku":"A"}]}`, rules: `{"content":{"$.items":{"matchers":[{"match":"type","min":1}]}}}`, actual: `{"items":[{"sku":1}]}`},
	{name: "metadata equal", content: `{"id":1}`, metadata: map[string]any{"topic": "orders"}, actual: `{"id":1}`, actMetadata: map[string]any{"topic": "orders"}},
	{name: "metadata differs", content: `{"id":1}`, metadata: map[string]any{"topic": "orders"}, actual: `{"id":1}`, actMetadata: map[string]any{"topic": "payments"}},
	{name: "metadata missing", content: `{"id":1}`, metadata: map[string]any{"topic": "orders"}, actual: `{"id":1}`},
	{name: "metadata regex", content: `{"id":1}`, metadata: map[string]any{"key": "o-1"}, rules: `{"metadata":{"key":{"matchers":[{"match":"regex","regex":"o-\\d+"}]}}}`, actual: `{"id":1}`, actMetadata: map[string]any{"key": "o-42"}},
	{name: "metadata regex fails", content: `{"id":1}`, metadata: map[string]any{"key": "o-1"}, rules: `{"metadata":{"key":{"matchers":[{"match":"regex","regex":"o-\\d+"}]}}}`, actual: `{"id":1}`, actMetadata: map[string]any{"key": "x-42"}},
	{name: "extra metadata allowed", content: `{"id":1}`, metadata: map[string]any{"topic": "orders"}, actual: `{"id":1}`, actMetadata: map[string]any{"topic": "orders", "trace": "t"}},
}

// TestInteropMessageMatchingAgrees: the pact verifier (asking the producer
// over HTTP) and ours pass and fail the same message interactions.
func TestInteropMessageMatchingAgrees(t *testing.T) {
	bin := pactCLI(t)
	var inters []string
	for _, c := range messageCases {
		in := map[string]any{"type": "Asynchronous/Messages", "description": c.name,
			"contents": map[string]any{"contentType": "application/json", "encoded": false, "content": json.RawMessage(c.content)}}
		if c.metadata != nil {
			in["metadata"] = c.metadata
		}
		if c.rules != "" {
			in["matchingRules"] = json.RawMessage(c.rules)
		}
		b, _ := json.Marshal(in)
		inters = append(inters, string(b))
	}
	doc := `{"consumer":{"name":"mailer"},"provider":{"name":"producer"},"metadata":{"pactSpecification":{"version":"4.0"}},"interactions":[` + strings.Join(inters, ",") + `]}`
	dir := t.TempDir()
	file := filepath.Join(dir, "mailer-producer.json")
	if err := os.WriteFile(file, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Description string `json:"description"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		for _, c := range messageCases {
			if c.name == req.Description {
				if c.actMetadata != nil {
					md, _ := json.Marshal(c.actMetadata)
					w.Header().Set("Pact-Message-Metadata", base64.StdEncoding.EncodeToString(md))
				}
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(c.actual))
				return
			}
		}
		http.NotFound(w, r)
	}))
	defer srv.Close()
	host, port := hostPort(t, srv.URL)
	report := filepath.Join(dir, "report.json")
	out, _ := runPact(t, bin, "verifier", "-f", file, "--hostname", host, "--port", port, "--base-path", "/", "--no-colour", "--retries", "0", "-j", report)
	raw, err := os.ReadFile(report)
	if err != nil {
		t.Fatalf("pact verifier wrote no report: %v\n%s", err, out)
	}
	var rep struct {
		InteractionResults []struct {
			Description string `json:"description"`
			Result      string `json:"result"`
		} `json:"interactionResults"`
	}
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatal(err)
	}
	theirs := map[string]bool{}
	for _, r := range rep.InteractionResults {
		theirs[r.Description] = r.Result == "OK"
	}
	ours, err := (&Verifier{BaseURL: srv.URL, Sources: []Source{FileSource{Paths: []string{file}}}}).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	passed := 0
	for _, in := range ours.Pacts[0].Interactions {
		their, ok := theirs[in.Description]
		if !ok {
			t.Errorf("%s: not in pact verifier's report\n%s", in.Description, out)
			continue
		}
		if their != in.OK() {
			t.Errorf("%s: pact verifier ok=%v, ours ok=%v %v %s", in.Description, their, in.OK(), in.Mismatches, in.Error)
		}
		if in.OK() {
			passed++
		}
	}
	t.Logf("%d message cases: %d pass, %d fail in both verifiers", len(messageCases), passed, len(messageCases)-passed)
}
