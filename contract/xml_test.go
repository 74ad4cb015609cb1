package contract

import (
	"strings"
	"testing"
)

// TestMatchXML: one case per statement of XML matching in the V3
// specification and pact_matching (elements, attributes, text, repeated
// elements, rules on XML paths, unexpected content, namespaces), for
// requests (strict) and responses (lenient).
func TestMatchXML(t *testing.T) {
	tests := []struct {
		name     string
		exp, act string
		rules    string
		strict   bool
		want     string // "" for a match, else a substring of the first mismatch
	}{
		{name: "equal", exp: `<a x="1"><b>t</b></a>`, act: `<?xml version="1.0" encoding="UTF-8"?><a x="1"><b>t</b></a>`},
		{name: "whitespace around text is ignored", exp: `<a><b>t</b></a>`, act: "<a>\n  <b> t </b>\n</a>"},
		{name: "root name differs", exp: `<a/>`, act: `<z/>`, want: "$.a: expected element <a>"},
		{name: "child name differs", exp: `<a><b/></a>`, act: `<a><c/></a>`, want: "$.a.b: expected a child element <b>"},
		{name: "attribute value differs", exp: `<a x="1"/>`, act: `<a x="2"/>`, want: `$.a['@x']: expected "1", got "2"`},
		{name: "attribute missing", exp: `<a x="1"/>`, act: `<a/>`, want: "$.a['@x']: expected attribute x=\"1\", got no such attribute"},
		{name: "unexpected attribute in a response", exp: `<a x="1"/>`, act: `<a x="1" y="2"/>`},
		{name: "unexpected attribute in a request", exp: `<a x="1"/>`, act: `<a x="1" y="2"/>`, strict: true, want: `unexpected attribute y="2"`},
		{name: "text differs", exp: `<a>one</a>`, act: `<a>two</a>`, want: `$.a['#text']: expected "one", got "two"`},
		{name: "text expected, none given", exp: `<a>one</a>`, act: `<a/>`, want: `$.a['#text']`},
		{name: "unexpected child in a response", exp: `<a><b/></a>`, act: `<a><b/><c/></a>`},
		{name: "unexpected child in a request", exp: `<a><b/></a>`, act: `<a><b/><c/></a>`, strict: true, want: "no child element <c>"},
		{name: "extra repeat in a response", exp: `<a><b/></a>`, act: `<a><b/><b/></a>`},
		{name: "extra repeat in a request", exp: `<a><b/></a>`, act: `<a><b/><b/></a>`, strict: true, want: "1 <b> elements"},
		{name: "fewer repeats", exp: `<a><b/><b/></a>`, act: `<a><b/></a>`, want: "2 <b> elements"},
		{name: "repeats compared in order", exp: `<a><b>1</b><b>2</b></a>`, act: `<a><b>2</b><b>1</b></a>`, want: `$.a.b['#text']: expected "1", got "2"`},

		// Matchers on attributes and text.
		{name: "regex on an attribute", exp: `<a id="x1"/>`, act: `<a id="y22"/>`, rules: `{"$.a['@id']":{"matchers":[{"match":"regex","regex":"^[a-z]\\d+$"}]}}`},
		{name: "regex on an attribute fails", exp: `<a id="x1"/>`, act: `<a id="22"/>`, rules: `{"$.a['@id']":{"matchers":[{"match":"regex","regex":"^[a-z]\\d+$"}]}}`, want: "matcher regex"},
		{name: "type on an attribute", exp: `<a id="x1"/>`, act: `<a id="anything"/>`, rules: `{"$.a['@id']":{"matchers":[{"match":"type"}]}}`},
		{name: "integer on an attribute", exp: `<a n="1"/>`, act: `<a n="12"/>`, rules: `{"$.a['@n']":{"matchers":[{"match":"integer"}]}}`},
		{name: "integer on an attribute fails", exp: `<a n="1"/>`, act: `<a n="1.5"/>`, rules: `{"$.a['@n']":{"matchers":[{"match":"integer"}]}}`, want: "matcher integer"},
		{name: "decimal on text", exp: `<a>1.5</a>`, act: `<a>22.25</a>`, rules: `{"$.a['#text']":{"matchers":[{"match":"decimal"}]}}`},
		{name: "number on text", exp: `<a>1</a>`, act: `<a>x</a>`, rules: `{"$.a['#text']":{"matchers":[{"match":"number"}]}}`, want: "matcher number"},
		{name: "boolean on text", exp: `<a>true</a>`, act: `<a>false</a>`, rules: `{"$.a['#text']":{"matchers":[{"match":"boolean"}]}}`},
		{name: "boolean on text fails", exp: `<a>true</a>`, act: `<a>yes</a>`, rules: `{"$.a['#text']":{"matchers":[{"match":"boolean"}]}}`, want: "matcher boolean"},
		{name: "include on text", exp: `<a>hello world</a>`, act: `<a>oh, hello world!</a>`, rules: `{"$.a['#text']":{"matchers":[{"match":"include","value":"hello"}]}}`},
		{name: "date on text", exp: `<a>2026-01-01</a>`, act: `<a>2026-12-07</a>`, rules: `{"$.a['#text']":{"matchers":[{"match":"date","format":"yyyy-MM-dd"}]}}`},
		{name: "date on text fails", exp: `<a>2026-01-01</a>`, act: `<a>07/12/2026</a>`, rules: `{"$.a['#text']":{"matchers":[{"match":"date","format":"yyyy-MM-dd"}]}}`, want: "matcher date"},
		{name: "equality on text", exp: `<a>x</a>`, act: `<a>y</a>`, rules: `{"$.a['#text']":{"matchers":[{"match":"equality"}]}}`, want: "matcher equality"},
		{name: "text path written with a dot", exp: `<a><b>x</b></a>`, act: `<a><b>y</b></a>`, rules: `{"$.a.b.#text":{"matchers":[{"match":"type"}]}}`},
		{name: "wildcard attribute path", exp: `<a><b n="1"/><c n="2"/></a>`, act: `<a><b n="5"/><c n="6"/></a>`, rules: `{"$.a.*['@n']":{"matchers":[{"match":"integer"}]}}`},
		{name: "OR of matchers", exp: `<a>1</a>`, act: `<a>none</a>`, rules: `{"$.a['#text']":{"combine":"OR","matchers":[{"match":"integer"},{"match":"regex","regex":"^none$"}]}}`},

		// Matchers on elements: repeated elements.
		{name: "type on repeated elements", exp: `<a><b id="1"/></a>`, act: `<a><b id="7"/><b id="8"/><b id="9"/></a>`, rules: `{"$.a.b":{"matchers":[{"match":"type"}]}}`},
		{name: "type on repeated elements in a request", exp: `<a><b id="1"/></a>`, act: `<a><b id="7"/><b id="8"/></a>`, rules: `{"$.a.b":{"matchers":[{"match":"type"}]}}`, strict: true},
		{name: "type on repeated elements: a child is missing", exp: `<a><b><c/></b></a>`, act: `<a><b><c/></b><b><d/></b></a>`, rules: `{"$.a.b":{"matchers":[{"match":"type"}]}}`, want: "$.a.b.c: expected a child element <c>"},
		{name: "type cascades to attributes and text", exp: `<a><b id="1">x</b></a>`, act: `<a><b id="2">y</b></a>`, rules: `{"$.a":{"matchers":[{"match":"type"}]}}`},
		{name: "type min on an element counts its child nodes", exp: `<a><b><c/></b></a>`, act: `<a><b><c/><c/></b></a>`, rules: `{"$.a.b":{"matchers":[{"match":"type","min":2}]},"$.a.b.c":{"matchers":[{"match":"type"}]}}`},
		{name: "type min fails", exp: `<a><b><c/></b></a>`, act: `<a><b><c/></b></a>`, rules: `{"$.a.b":{"matchers":[{"match":"type","min":2}]}}`, want: "at least 2 child nodes (matcher type, min 2)"},
		{name: "type max fails", exp: `<a><b><c/></b></a>`, act: `<a><b><c/><c/><c/></b></a>`, rules: `{"$.a.b":{"matchers":[{"match":"type","max":2}]},"$.a.b.c":{"matchers":[{"match":"type"}]}}`, want: "at most 2 child nodes (matcher type, max 2)"},
		{name: "min does not cascade", exp: `<a><b><c/></b></a>`, act: `<a><b><c/></b></a>`, rules: `{"$.a":{"matchers":[{"match":"type","min":1}]}}`},
		{name: "regex on an element cascades to its text", exp: `<a><item-1>x</item-1></a>`, act: `<a><item-1>item-2</item-1></a>`, rules: `{"$.a['item-1']":{"matchers":[{"match":"regex","regex":"^item-\\d$"}]}}`},
		{name: "notEmpty on an element", exp: `<a><b>x</b></a>`, act: `<a><b/></a>`, rules: `{"$.a.b":{"matchers":[{"match":"notEmpty"}]}}`, want: "matcher notEmpty"},
		{name: "a text matcher on an element is refused", exp: `<a><b>1</b></a>`, act: `<a><b>1</b></a>`, rules: `{"$.a.b":{"matchers":[{"match":"integer"}]}}`, want: "put text rules on ['#text']"},
		{name: "type rule makes unexpected siblings mismatches", exp: `<a><b/></a>`, act: `<a><b/><c/></a>`, rules: `{"$.a.c":{"matchers":[{"match":"type"}]}}`, want: "no child element <c>"},

		// Namespaces: names are compared by namespace URI, not prefix.
		{name: "same namespace, other prefix", exp: `<n:a xmlns:n="urn:x"><n:b n:k="1"/></n:a>`, act: `<p:a xmlns:p="urn:x"><p:b p:k="1"/></p:a>`},
		{name: "default namespace against a prefix", exp: `<a xmlns="urn:x"><b/></a>`, act: `<q:a xmlns:q="urn:x"><q:b/></q:a>`},
		{name: "other namespace", exp: `<a xmlns="urn:x"/>`, act: `<a xmlns="urn:y"/>`, want: "expected element <a>"},
		{name: "namespaced against plain", exp: `<a xmlns="urn:x"/>`, act: `<a/>`, want: "expected element <a>"},
		{name: "namespace declarations are not attributes", exp: `<a xmlns:n="urn:n"/>`, act: `<a xmlns:m="urn:m"/>`, strict: true},
		{name: "rule path with a prefix", exp: `<n:a xmlns:n="urn:x"><n:b>1</n:b></n:a>`, act: `<n:a xmlns:n="urn:x"><n:b>22</n:b></n:a>`, rules: `{"$['n:a']['n:b']['#text']":{"matchers":[{"match":"integer"}]}}`},

		// Documents that do not parse.
		{name: "actual does not parse", exp: `<a/>`, act: `<a><b></a>`, want: "invalid XML"},
		{name: "undeclared prefix", exp: `<a/>`, act: `<x:a/>`, want: "not declared"},
		{name: "two roots", exp: `<a/>`, act: `<a/><a/>`, want: "more than one root"},
		{name: "no root", exp: `<a/>`, act: `<?xml version="1.0"?>`, want: "no root element"},
		{name: "too deep", exp: `<a/>`, act: strings.Repeat("<a>", maxXMLDepth+1) + strings.Repeat("</a>", maxXMLDepth+1), want: "nested deeper"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			exp := Body{Present: true, ContentType: "application/xml", Content: []byte(tc.exp)}
			got := matchBody("body", exp, "application/xml", []byte(tc.act), bodyRules(t, tc.rules), tc.strict)
			switch {
			case tc.want == "" && len(got) > 0:
				t.Fatalf("want a match, got %v", got)
			case tc.want != "" && len(got) == 0:
				t.Fatalf("want a mismatch with %q, got a match", tc.want)
			case tc.want != "" && !strings.Contains(got[0].String(), tc.want):
				t.Fatalf("first mismatch %q lacks %q (all: %v)", got[0].String(), tc.want, got)
			}
		})
	}
}

// TestMatchEmptyNullAbsentBodies: the specification's three states of a
// body. Absent matches anything; empty and null match only no body; a
// present body is not matched by an empty one. Parsed from pact files so
// the reading of "body": null and "" is covered as well.
func TestMatchEmptyNullAbsentBodies(t *testing.T) {
	tests := []struct {
		name string
		spec string // pact specification of the file
		body string // the response's "body" member, or "" for none
		ct   string // the response's Content-Type header in the pact
		act  string
		want bool
	}{
		{name: "v3 absent, none sent", spec: "3.0.0", act: "", want: true},
		{name: "v3 absent, one sent", spec: "3.0.0", act: `{"a":1}`, want: true},
		{name: "v3 null, none sent", spec: "3.0.0", body: `null`, act: "", want: true},
		{name: "v3 null, one sent", spec: "3.0.0", body: `null`, act: `{"a":1}`},
		{name: "v3 null with a JSON type, none sent", spec: "3.0.0", body: `null`, ct: "application/json", act: "", want: true},
		{name: "v3 null with a JSON type, JSON null sent", spec: "3.0.0", body: `null`, ct: "application/json", act: "null"},
		{name: "v3 empty, none sent", spec: "3.0.0", body: `""`, act: "", want: true},
		{name: "v3 empty, one sent", spec: "3.0.0", body: `""`, act: "x"},
		{name: "v3 empty with a JSON type, none sent", spec: "3.0.0", body: `""`, ct: "application/json", act: "", want: true},
		{name: "v3 empty with a JSON type, one sent", spec: "3.0.0", body: `""`, ct: "application/json", act: `{}`},
		{name: "v3 body expected, none sent", spec: "3.0.0", body: `{"a":1}`, act: ""},
		{name: "v3 JSON written as a string", spec: "3.0.0", body: `"{\"a\":1}"`, ct: "application/json", act: `{"a":1}`, want: true},
		{name: "v4 absent, one sent", spec: "4.0", act: "x", want: true},
		{name: "v4 null, none sent", spec: "4.0", body: `null`, act: "", want: true},
		{name: "v4 null, one sent", spec: "4.0", body: `null`, act: "x"},
		{name: "v4 empty content, none sent", spec: "4.0", body: `{"content":""}`, act: "", want: true},
		{name: "v4 empty content, one sent", spec: "4.0", body: `{"content":""}`, act: "x"},
		{name: "v4 empty JSON content, one sent", spec: "4.0", body: `{"contentType":"application/json","content":""}`, act: `{}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := `"status":200`
			if tc.ct != "" {
				resp += `,"headers":{"Content-Type":"` + tc.ct + `"}`
			}
			if tc.body != "" {
				resp += `,"body":` + tc.body
			}
			doc := `{"consumer":{"name":"c"},"provider":{"name":"p"},"metadata":{"pactSpecification":{"version":"` + tc.spec + `"}},` +
				`"interactions":[{"type":"Synchronous/HTTP","description":"d","request":{"method":"GET","path":"/"},"response":{` + resp + `}}]}`
			p, err := Parse([]byte(doc))
			if err != nil {
				t.Fatal(err)
			}
			h := map[string][]string{}
			if tc.ct != "" {
				h["Content-Type"] = []string{tc.ct}
			}
			if tc.act != "" {
				h["Content-Type"] = []string{"application/json"}
				if !strings.HasPrefix(tc.act, "{") && tc.act != "null" {
					h["Content-Type"] = []string{"text/plain"}
				}
			}
			got := MatchResponse(p.Interactions[0].Response, HTTPResponse{Status: 200, Headers: h, Body: []byte(tc.act)})
			if (len(got) == 0) != tc.want {
				t.Fatalf("match=%v, want %v: %v", len(got) == 0, tc.want, got)
			}
			// What is written reads back the same way.
			out, err := p.Marshal(p.Spec)
			if err != nil {
				t.Fatal(err)
			}
			q, err := Parse(out)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if a, b := p.Interactions[0].Response.Body, q.Interactions[0].Response.Body; a.Present != b.Present || a.Null != b.Null || len(a.Content) != len(b.Content) {
				t.Fatalf("body %+v reads back as %+v\n%s", a, b, out)
			}
		})
	}
}
