package contract

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzParse: no input makes the parser panic, and whatever it accepts it
// writes as V4 in a form it reads back.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.json")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"consumer":{"name":"c"},"provider":{"name":"p"},"interactions":[{"description":"d","request":{"path":"/","query":"a=%zz"},"response":{"status":200,"matchingRules":{"$.body[0]":{"match":"regex","regex":"a("}}}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		out, err := p.Marshal(V4)
		if err != nil {
			return
		}
		if _, err := Parse(out); err != nil {
			t.Fatalf("a pact we wrote does not read back: %v\n%s", err, out)
		}
	})
}

// FuzzMatch: no expected/actual body or rule set makes the matcher panic,
// and a JSON body always matches itself when there are no rules.
func FuzzMatch(f *testing.F) {
	f.Add(`{"a":[1,2,{"b":"x"}]}`, `{"a":[1,2,{"b":"y"}]}`, `{"$.a":{"matchers":[{"match":"type","min":1}]}}`)
	f.Add(`{"m":{"k":"v"}}`, `{"m":{"x":"y"}}`, `{"$.m":{"matchers":[{"match":"eachKey","rules":[{"match":"regex","regex":"[a-z]"}]},{"match":"eachValue","rules":[{"match":"type"}]}]}}`)
	f.Add(`[{"t":1}]`, `[{"t":2}]`, `{"$":{"matchers":[{"match":"arrayContains","variants":[{"index":0,"rules":{"$.t":{"matchers":[{"match":"integer"}]}}}]}]}}`)
	f.Add(`{"d":"2020-01-01"}`, `{"d":"x"}`, `{"$.d":{"combine":"OR","matchers":[{"match":"date","format":"yyyy-MM-dd"},{"match":"null"}]}}`)
	f.Fuzz(func(t *testing.T, exp, act, rules string) {
		var rs map[string]*RuleList
		if d, err := decodeJSON([]byte(`{"body":` + rules + `}`)); err == nil {
			if r, err := parseRules(d, V4, false, "matchingRules"); err == nil {
				rs = r["body"]
			}
		}
		_ = matchBody("body", jsonBody(exp), "application/json", []byte(act), rs, true)
		_ = matchBody("body", jsonBody(exp), "application/json", []byte(act), rs, false)
		if _, err := decodeJSON([]byte(exp)); err == nil {
			if mm := matchBody("body", jsonBody(exp), "application/json", []byte(exp), nil, true); len(mm) != 0 {
				t.Fatalf("%s does not match itself: %v", exp, mm)
			}
		}
	})
}

// FuzzDecodeJSON: the matcher's JSON decoder agrees with encoding/json
// (with UseNumber) on what is valid and on the value.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{`{"a":[1,-2.5e3,"x\u00e9\ud83d\ude00",true,null,{}]}`, `"\ud800"`, `[1,]`, `01`, `{"a":1,"a":2}`, "\"\xff\"", ` [ ] `, `1.`, `-`, `"\/\b\f\n\r\t"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := decodeJSON(data)
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var want any
		werr := dec.Decode(&want)
		if werr == nil {
			if _, terr := dec.Token(); terr != io.EOF {
				werr = errors.New("trailing data")
			}
		}
		if (err == nil) != (werr == nil) {
			t.Fatalf("%q: ours %v, encoding/json %v", data, err, werr)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: ours %#v, encoding/json %#v", data, got, want)
		}
	})
}

// FuzzGenerate: no generator attributes make a generator panic or run away.
func FuzzGenerate(f *testing.F) {
	for _, s := range []string{`{"type":"RandomString","size":2000000000}`, `{"type":"RandomInt","min":10,"max":-5}`, `{"type":"Regex","regex":"(a{1000}){1000}"}`,
		`{"type":"RandomDecimal","digits":99999999}`, `{"type":"Date","format":"yyyy-MM-dd","expression":"+ 3 weeks - 1 day"}`, `{"type":"ProviderState","expression":"${a}/${b}","dataType":"INTEGER"}`,
		`{"type":"MockServerURL","regex":".*(/x)$","example":"http://h/x"}`, `{"type":"Uuid","format":"URN"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := decodeJSON([]byte(s))
		m, ok := d.(map[string]any)
		if err != nil || !ok || validateGenerator(Generator(m), "g") != nil {
			return
		}
		v, _ := Generator(m).Generate(GenContext{StateValues: map[string]any{"a": "1"}, MockServerURL: "http://127.0.0.1:1"}, "x")
		if str, ok := v.(string); ok && len(str) > 4*maxGenerated {
			t.Fatalf("generated %d bytes", len(str))
		}
	})
}

// FuzzLoadAndVerify: a pact is either refused (a *ParseError naming the
// place, which `flotilla contract verify` turns into exit 2) or verified,
// with the same verdict twice against the same provider response. A pact
// the loader accepts never has a response without a real status.
func FuzzLoadAndVerify(f *testing.F) {
	// Small seeds only: the large pacts of testdata made the instrumented
	// fuzzer stall on its baseline run.
	for _, s := range []string{
		`{"consumer":{"name":"c"},"provider":{"name":"p"},"interactions":[{"description":"d","request":{"path":"/x"},"response":{"status":"200"}}]}`,
		`{"consumer":{"name":"c"},"provider":{"name":"p"},"interactions":[{"description":"d","request":{"path":"/x"},"response":{}}]}`,
		`{"consumer":{"name":"c"},"provider":{"name":"p"},"metadata":{"pactSpecification":{"version":"4.0"}},"interactions":[{"type":"Synchronous/HTTP","description":"d","request":{"path":"/x"},"response":{"status":200,"body":null}}]}`,
		`{"consumer":{"name":"c"},"provider":{"name":"p"},"interactions":[{"description":"d","request":{"path":"/x"},"response":{"status":200,"headers":{"Content-Type":"application/xml"},"body":"<a><b n=\"1\">t</b></a>"}}]}`,
		`{"consumer":{"name":"c"},"provider":{"name":"p"},"interactions":[{"description":"d","request":{"method":7},"response":{"status":200,"body":""}}]}`,
	} {
		f.Add([]byte(s))
	}
	responses := []HTTPResponse{
		{Status: 200, Headers: http.Header{"Content-Type": {"application/xml"}}, Body: []byte(`<a><b n="1">t</b></a>`)},
		{Status: 200, Headers: http.Header{"Content-Type": {"application/json"}}, Body: []byte(`{"a":[1,{"b":"x"}],"c":true}`)},
		{Status: 404, Headers: http.Header{}},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || err.Error() == "" {
				t.Fatalf("refused without naming the place (%T): %v", err, err)
			}
			return
		}
		for _, in := range p.Interactions {
			if in.Kind != HTTP {
				continue
			}
			if in.Response.Status < 100 || in.Response.Status > 599 {
				t.Fatalf("accepted a response with status %d", in.Response.Status)
			}
			for _, resp := range responses {
				a, b := MatchResponse(in.Response, resp), MatchResponse(in.Response, resp)
				if fmt.Sprint(a) != fmt.Sprint(b) {
					t.Fatalf("two verifications disagree:\n%v\n---\n%v", a, b)
				}
			}
		}
	})
}
