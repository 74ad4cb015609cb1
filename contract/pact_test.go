package contract

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Fatalf("%s differs (-want +got):\n%s", path, diff)
	}
}

func TestReadSpecVersions(t *testing.T) {
	for _, tc := range []struct {
		file  string
		spec  Spec
		kinds []Kind
	}{
		{"v2.json", V2, []Kind{HTTP}},
		{"v3.json", V3, []Kind{HTTP, AsyncMessage}},
		{"v4.json", V4, []Kind{HTTP, HTTP, AsyncMessage, SyncMessage}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			p, err := ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if p.Spec != tc.spec || p.Consumer != "web" || p.Provider != "order" {
				t.Fatalf("spec %v consumer %q provider %q", p.Spec, p.Consumer, p.Provider)
			}
			var kinds []Kind
			for _, in := range p.Interactions {
				kinds = append(kinds, in.Kind)
			}
			if diff := cmp.Diff(tc.kinds, kinds); diff != "" {
				t.Fatalf("kinds (-want +got):\n%s", diff)
			}
			// v2 and v3 rules land in the same categorised model.
			if tc.spec != V4 {
				r := p.Interactions[0].Response.Rules
				if r["body"]["$.items"] == nil || r["body"]["$.items[*].sku"] == nil || r["header"]["Content-Type"] == nil {
					t.Fatalf("rules not categorised: %#v", r)
				}
				if q := p.Interactions[0].Request.Query["expand"]; len(q) != 2 {
					t.Fatalf("query: %v", p.Interactions[0].Request.Query)
				}
			}
			// each version written as V4 and V3 is golden, and reads back the same.
			for _, spec := range []Spec{V4, V3} {
				out, err := p.Marshal(spec)
				if spec == V3 && tc.spec == V4 {
					if err == nil || !strings.Contains(err.Error(), "Synchronous/Messages") {
						t.Fatalf("v4 sync messages as v3: %v", err)
					}
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				golden(t, strings.TrimSuffix(tc.file, ".json")+".as-v"+spec.String()[:1]+".golden.json", out)
				back, err := Parse(out)
				if err != nil {
					t.Fatalf("written pact does not read back: %v", err)
				}
				again, _ := back.Marshal(spec)
				if !bytes.Equal(out, again) {
					t.Fatalf("write is not stable:\n%s\n---\n%s", out, again)
				}
			}
		})
	}
}

func TestV4KeepsOtherFields(t *testing.T) {
	p, err := Parse([]byte(`{"consumer":{"name":"c"},"provider":{"name":"p"},"metadata":{"pactSpecification":{"version":"4.0"}},
		"interactions":[{"type":"Synchronous/HTTP","description":"d","transport":"https","interactionMarkup":{"markup":"# d","markupType":"COMMON_MARK"},
		"request":{"method":"GET","path":"/"},"response":{"status":200}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Marshal(V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"transport": "https"`, `"markupType": "COMMON_MARK"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("rewritten pact lost %s:\n%s", want, out)
		}
	}
}

func TestV4BodiesDecode(t *testing.T) {
	p, err := ReadFile("testdata/v4.json")
	if err != nil {
		t.Fatal(err)
	}
	pdf := p.Interactions[1].Response.Body
	if pdf.ContentType != "application/pdf" || string(pdf.Content) != "%PDF-1.4\n" {
		t.Fatalf("base64 body: %q %q", pdf.ContentType, pdf.Content)
	}
	if got := string(p.Interactions[0].Request.Body.Content); got != `{"qty":2,"sku":"A1"}` {
		t.Fatalf("json body %s", got)
	}
	if p.Interactions[3].Responses[0].Contents.ContentType != "application/json" {
		t.Fatalf("sync message response: %+v", p.Interactions[3].Responses)
	}
}

func TestBadPactFiles(t *testing.T) {
	for _, tc := range []struct {
		name, doc, want string
	}{
		{"not json", `{"consumer": `, "not a JSON object"},
		{"not an object", `[1]`, "not a JSON object"},
		{"no consumer", `{"provider":{"name":"p"}}`, "consumer.name: missing"},
		{"unknown version", `{"consumer":{"name":"c"},"provider":{"name":"p"},"metadata":{"pactSpecification":{"version":"9.0.0"}}}`, `metadata.pactSpecification.version: unknown specification version "9.0.0"`},
		{"invalid regex", `{"consumer":{"name":"c"},"provider":{"name":"p"},"metadata":{"pactSpecification":{"version":"3.0.0"}},
			"interactions":[{"description":"d","request":{"method":"GET","path":"/"},"response":{"status":200,"matchingRules":{"body":{"$.a":{"matchers":[{"match":"regex","regex":"(["}]}}}}}]}`,
			`interactions[0] ("d").response.matchingRules.body["$.a"].matchers[0].regex: invalid regex`},
		{"bad matcher path", `{"consumer":{"name":"c"},"provider":{"name":"p"},"metadata":{"pactSpecification":{"version":"3.0.0"}},
			"interactions":[{"description":"d","request":{"method":"GET","path":"/"},"response":{"status":200,"matchingRules":{"body":{"$.a[x":{"matchers":[{"match":"type"}]}}}}}]}`,
			`interactions[0] ("d").response.matchingRules.body["$.a[x"]: matcher path "$.a[x": unclosed [`},
		{"bad v2 path", `{"consumer":{"name":"c"},"provider":{"name":"p"},
			"interactions":[{"description":"d","request":{"method":"GET","path":"/"},"response":{"status":200,"matchingRules":{"$.bogus.a":{"match":"type"}}}}]}`,
			`unknown part "bogus"`},
		{"unknown matcher", `{"consumer":{"name":"c"},"provider":{"name":"p"},"metadata":{"pactSpecification":{"version":"4.0"}},
			"interactions":[{"type":"Synchronous/HTTP","description":"d","request":{"method":"GET","path":"/"},"response":{"status":200,"matchingRules":{"body":{"$":{"matchers":[{"match":"fuzzy"}]}}}}}]}`,
			`unknown matcher "fuzzy"`},
		{"bad base64", `{"consumer":{"name":"c"},"provider":{"name":"p"},"metadata":{"pactSpecification":{"version":"4.0"}},
			"interactions":[{"type":"Synchronous/HTTP","description":"d","request":{"method":"GET","path":"/"},"response":{"status":200,"body":{"contentType":"image/png","encoded":"base64","content":"!!!"}}}]}`,
			`interactions[0] ("d").response.body.content: base64 content does not decode`},
		{"unknown type", `{"consumer":{"name":"c"},"provider":{"name":"p"},"metadata":{"pactSpecification":{"version":"4.0"}},
			"interactions":[{"type":"Synchronous/GRPC","description":"d"}]}`, `unknown interaction type "Synchronous/GRPC"`},
		{"bad status", `{"consumer":{"name":"c"},"provider":{"name":"p"},
			"interactions":[{"description":"d","request":{},"response":{"status":42}}]}`, `response.status: 42 is not an HTTP status`},
		{"unknown generator", `{"consumer":{"name":"c"},"provider":{"name":"p"},"metadata":{"pactSpecification":{"version":"3.0.0"}},
			"interactions":[{"description":"d","request":{"method":"GET","path":"/","generators":{"path":{"type":"Nope"}}},"response":{"status":200}}]}`, `unknown generator "Nope"`},
		{"bad date format", `{"consumer":{"name":"c"},"provider":{"name":"p"},"metadata":{"pactSpecification":{"version":"3.0.0"}},
			"interactions":[{"description":"d","request":{"method":"GET","path":"/"},"response":{"status":200,"matchingRules":{"body":{"$.a":{"matchers":[{"match":"date","format":"yyyy-GG"}]}}}}}]}`, `pattern letter "G" is not supported`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "bad.json")
			if err := os.WriteFile(path, []byte(tc.doc), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := ReadFile(path)
			if err == nil {
				t.Fatal("want an error")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), path+": ") {
				t.Fatalf("error %q: want it to start with the file and contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error spans lines: %q", err)
			}
		})
	}
}

func TestMergeIsDeterministic(t *testing.T) {
	mk := func(desc string, status int) *Interaction {
		return &Interaction{Kind: HTTP, Description: desc, Request: Request{Method: "GET", Path: "/" + desc}, Response: Response{Status: status}}
	}
	dir1, dir2 := t.TempDir(), t.TempDir()
	a := &Pact{Consumer: "web", Provider: "order", Interactions: []*Interaction{mk("b", 404)}}
	b := &Pact{Consumer: "web", Provider: "order", Interactions: []*Interaction{mk("a", 200), mk("c", 200)}}
	// Another test of the run declares "b" again, as it is.
	b2 := &Pact{Consumer: "web", Provider: "order", Interactions: []*Interaction{mk("b", 404)}}
	for _, order := range []struct {
		dir   string
		pacts []*Pact
	}{{dir1, []*Pact{a, b, b2}}, {dir2, []*Pact{b2, b, a}}} {
		for _, p := range order.pacts {
			if _, err := WriteMerged(order.dir, p, V4); err != nil {
				t.Fatal(err)
			}
		}
	}
	f1, _ := os.ReadFile(filepath.Join(dir1, "web-order.json"))
	f2, _ := os.ReadFile(filepath.Join(dir2, "web-order.json"))
	if !bytes.Equal(f1, f2) {
		t.Fatalf("merge depends on order:\n%s\n---\n%s", f1, f2)
	}
	p, err := ReadFile(filepath.Join(dir1, "web-order.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, in := range p.Interactions {
		got = append(got, in.Description+":"+strings.TrimSpace(string(rune('0'+in.Response.Status/100))))
	}
	if diff := cmp.Diff([]string{"a:2", "b:4", "c:2"}, got); diff != "" {
		t.Fatalf("merged (-want +got):\n%s", diff)
	}
}

// Two tests declaring one interaction differently would leave whichever
// wrote last in the pact: the merge refuses, names it, and keeps the file.
func TestMergeRefusesAConflictingInteraction(t *testing.T) {
	dir := t.TempDir()
	mk := func(status int) *Pact {
		return &Pact{Consumer: "web", Provider: "order", Interactions: []*Interaction{{
			Kind: HTTP, Description: "a request for an order", States: []ProviderState{{Name: "an order exists"}},
			Request: Request{Method: "GET", Path: "/orders/7"}, Response: Response{Status: status},
		}}}
	}
	path, err := WriteMerged(dir, mk(200), V4)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	_, err = WriteMerged(dir, mk(404), V4)
	if err == nil {
		t.Fatal("merging a changed interaction: want an error")
	}
	for _, want := range []string{path, `"a request for an order" (given "an order exists")`, "different content"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Errorf("a refused merge changed the file:\n%s", after)
	}
	// The same interaction again is no conflict, and changes nothing.
	if _, err := WriteMerged(dir, mk(200), V4); err != nil {
		t.Fatalf("merging the same interaction again: %v", err)
	}
	if again, _ := os.ReadFile(path); !bytes.Equal(before, again) {
		t.Errorf("merging the same interaction changed the file:\n%s", again)
	}
}

func TestConcurrentMergeLosesNothing(t *testing.T) {
	dir := t.TempDir()
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := &Pact{Consumer: "web", Provider: "order", Interactions: []*Interaction{{Kind: HTTP, Description: "d" + string(rune('a'+i)), Request: Request{Method: "GET", Path: "/"}, Response: Response{Status: 200}}}}
			if _, err := WriteMerged(dir, p, V4); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	p, err := ReadFile(filepath.Join(dir, "web-order.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Interactions) != 20 {
		t.Fatalf("%d interactions after 20 concurrent merges", len(p.Interactions))
	}
}
