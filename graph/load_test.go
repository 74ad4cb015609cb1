package graph

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestLoadBadInput(t *testing.T) {
	tests := []struct {
		name, file, body string
		want             string // the whole error text, with FILE for the path
	}{
		{"malformed yaml", FileName, "services:\n  a: [\n", "FILE:2: invalid YAML: did not find expected node content"},
		// yaml.v3 names the line the enclosing block starts on; the
		// problem's own line is reported.
		{"indentation", FileName, "services:\n  a:\n    path: a\n   depends_on: [b]\n  b:\n    path: b\n", "FILE:4: invalid YAML: did not find expected key"},
		{"indentation in a list", FileName, "services:\n  a:\n    path: a\n    depends_on:\n      - b\n     - c\n", "FILE:6: invalid YAML: did not find expected key"},
		{"unclosed bracket", FileName, "services:\n  a:\n    path: a\n  b:\n    path: b\n    depends_on: [a\n  c:\n    path: c\n", "FILE:6: invalid YAML: did not find expected ',' or ']'"},
		{"tab", FileName, "services:\n  a:\n    path: a\n\tdepends_on: [b]\n  b:\n    path: b\n", "FILE:4: invalid YAML: found a tab character that violates indentation"},
		{"unclosed quote", FileName, "services:\n  a:\n    path: a\n    health: \"/ready\n  b:\n    path: b\n", "FILE:4: invalid YAML: found unexpected end of stream"},
		{"second document", FileName, "services:\n  a:\n    path: a\n---\nservices:\n  b:\n    path: b\n",
			"FILE:4: a second YAML document starts here; a manifest is one document: merge it into the first or remove the '---'"},
		{"bad second document", FileName, "services:\n  a:\n    path: a\n---\nfoo: [\n", "FILE:5: invalid YAML: did not find expected node content"},
		{"not a mapping", FileName, "- a\n- b\n", "FILE:1: the manifest must be a mapping, got a list"},
		{"empty", FileName, "", "FILE: is empty; it needs at least a services: mapping"},
		{"only a marker", FileName, "---", "FILE: is empty; it needs at least a services: mapping"},
		{"only a comment", FileName, "# nothing yet\n", "FILE: is empty; it needs at least a services: mapping"},
		{"no services", FileName, "shared: [go.mod]\n", "FILE:1: has no services: mapping"},
		{"unknown top field", FileName, "servces: {}\n", `FILE:1: servces: unknown field "servces" (known: ` + topFields + `)`},
		{"unknown service field", FileName, "services:\n  a:\n    path: a\n    dependson: [b]\n",
			`FILE:4: services.a.dependson: unknown field "dependson" (known: ` + serviceFields + `)`},
		{"duplicate service", FileName, "services:\n  a: {path: a}\n  a: {path: b}\n", "FILE:3: services.a: is defined twice (first on line 2)"},
		{"empty service name", FileName, "services:\n  \"\": {path: a}\n", `FILE:2: services: service name is empty`},
		{"bad service name", FileName, "services:\n  Order_Service: {path: a}\n", `FILE:2: services: service name "Order_Service" may hold only lowercase letters, digits and inner dashes`},
		{"bad type", FileName, "services:\n  a:\n    path: a\n    depends_on: b\n", `FILE:4: services.a.depends_on: must be a list, got the text "b"`},
		{"number for text", FileName, "services:\n  a:\n    path: a\n    health: 8080\n", `FILE:4: services.a.health: must be text, got a number (8080)`},
		{"health not a path", FileName, "services:\n  a:\n    path: a\n    health: ready\n", `FILE:4: services.a.health: must be an HTTP path starting with /, got "ready"`},
		{"no path", FileName, "services:\n  a: {depends_on: []}\n", "FILE:2: services.a: has no path: name the folder it owns (path: or paths:)"},
		{"path and paths", FileName, "services:\n  a:\n    path: a\n    paths: [b]\n", "FILE:4: services.a.paths: give either path or paths, not both"},
		{"path outside", FileName, "services:\n  a: {path: ../elsewhere}\n", `FILE:2: services.a.path: "../elsewhere" is outside the repository; paths are relative to the manifest's folder`},
		{"absolute path", FileName, "services:\n  a: {path: /srv/a}\n", `FILE:2: services.a.path: "/srv/a" is absolute; write it relative to the manifest's folder`},
		{"shared path", FileName, "services:\n  a: {path: x/}\n  b:\n    paths: [y, ./x]\n", `FILE:4: service "b": path "x" is already owned by "a" (line 2); give each folder one owner`},
		{"duplicate dep", FileName, "services:\n  a:\n    path: a\n    depends_on: [b,\n      b]\n", `FILE:5: services.a.depends_on[1]: "b" is listed twice (first on line 4)`},
		{"alias", FileName, "services:\n  a: &x {path: a}\n  b: *x\n", "FILE:2: YAML anchors and aliases are not supported in a manifest; write the value out"},
		{"binary", FileName, "\x00\x01\x02services", "FILE: is not a text file (binary or not UTF-8); a manifest is YAML"},
		{"bad glob", FileName, "shared:\n  - go.mod\n  - \"kit/[a\"\nservices: {}\n", `FILE:3: shared[1]: "kit/[a" is not a valid glob (use *, ** and ? with balanced [ ] and { })`},
		{"shared outside", FileName, "shared: [../x]\nservices: {}\n", `FILE:1: shared[0]: "../x" is outside the repository; paths are relative to the manifest's folder`},
		{"bad env target", FileName, "environments:\n  prod: {target: nomad}\nservices: {}\n", `FILE:2: environments.prod.target: unknown target "nomad" (known: local, kubernetes)`},
		{"bad canary step", FileName, "services:\n  a:\n    path: a\n    canary: {steps: [50, 10]}\n", "FILE:4: services.a.canary.steps[1]: steps must increase, got 10 after 50; list the percentages in increasing order, e.g. steps: [5, 25, 50, 100]"},
		{"bad duration", FileName, "services:\n  a:\n    path: a\n    canary: {interval: soon}\n", `FILE:4: services.a.canary.interval: must be a duration such as 30s or 2m, got "soon"`},
		{"smoke without path", FileName, "services:\n  a:\n    path: a\n    smoke:\n      - {status: 200}\n", "FILE:5: services.a.smoke[0]: needs a path (the request path, e.g. /ready)"},
		{"many at once", FileName, "services:\n  a: {path: a, x: 1}\n  b: {path: b, y: 2}\n",
			"FILE:2: services.a.x: unknown field \"x\" (known: " + serviceFields + ")\nFILE:3: services.b.y: unknown field \"y\" (known: " + serviceFields + ")"},

		{"json malformed", "g.json", "{\n \"services\": {\n  \"a\": {\"dependencies\": [}\n}}", "FILE:3: services.a.dependencies: must be a list of names, found '}' in it"},
		{"json unknown field", "g.json", "{\"services\": {\n \"a\": {\"deps\": []}}}", `FILE:2: services.a: unknown field "deps" (known: dependencies, consumers)`},
		{"json unknown top", "g.json", "{\"servicez\": {}}", `FILE:1: unknown field "servicez" (known: services)`},
		{"json duplicate", "g.json", "{\"services\": {\n \"a\": {},\n \"a\": {}}}", "FILE:3: services.a: is defined twice (first on line 2)"},
		{"json empty name", "g.json", "{\"services\": {\"\": {}}}", "FILE:1: services: service name is empty"},
		{"json bad type", "g.json", "{\"services\": {\"a\": {\"dependencies\": \"b\"}}}", "FILE:1: services.a.dependencies: must be a list of names, got a string"},
		{"json missing colon", "g.json", "{\"services\" {}}", `FILE:1: invalid JSON: expected ':' after "services", found an object`},
		{"json missing comma", "g.json", "{\"services\": {\n\"a\": {}\n\"b\": {}}}", "FILE:3: invalid JSON: expected ',' or '}' in services, found a string"},
		{"json bad escape", "g.json", `{"services": {"a\q": {}}}`, `FILE:1: invalid JSON: bad escape in string "a\q"`},
		{"json control char", "g.json", "{\"services\": {\"a\tb\": {}}}", "FILE:1: invalid JSON: control character in a string"},
		{"json duplicate field", "g.json", `{"services": {"a": {"consumers": [], "consumers": []}}}`, "FILE:1: services.a.consumers: is defined twice"},
		{"json number in list", "g.json", `{"services": {"a": {"dependencies": ["b", 3]}}}`, "FILE:1: services.a.dependencies: must be a list of names, found a number in it"},
		{"json duplicate name in list", "g.json", `{"services": {"a": {"dependencies": ["b", "b"]}}}`, `FILE:1: services.a.dependencies: "b" is listed twice`},
		{"json services twice", "g.json", `{"services": {}, "services": {}}`, "FILE:1: services is defined twice"},
		{"json no services", "g.json", `{}`, `FILE:1: has no "services" object`},
		{"json not object", "g.json", "[1]", "FILE:1: the file must be a JSON object, got a list"},
		{"json binary", "g.json", "\xff\xfe{}", "FILE:1: is not a text file (binary or not UTF-8); a dependency graph is JSON"},
		{"json truncated", "g.json", "{\"services\": {\"a\": {}", "FILE:1: invalid JSON: unexpected end of file"},
		{"json trailing", "g.json", "{\"services\": {}} {}", "FILE:1: invalid JSON: more after the top-level object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := write(t, tt.file, tt.body)
			_, _, err := Load(p)
			if err == nil {
				t.Fatal("no error")
			}
			got := strings.ReplaceAll(err.Error(), p, "FILE")
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("error (-want +got):\n%s", d)
			}
		})
	}
	t.Run("directory", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), FileName)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		_, _, err := Load(dir)
		if err == nil || !strings.Contains(err.Error(), "is a directory") {
			t.Errorf("error = %v", err)
		}
	})
	t.Run("missing", func(t *testing.T) {
		_, _, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
		if err == nil || !strings.Contains(err.Error(), "no such file") {
			t.Errorf("error = %v", err)
		}
	})
}

// TestLoadDocumentMarkers: a leading '---' and a trailing one with nothing
// after it hold one document, and load.
func TestLoadDocumentMarkers(t *testing.T) {
	for _, body := range []string{
		"---\nservices:\n  a: {path: a}\n",
		"services:\n  a: {path: a}\n---\n",
		"---\nservices:\n  a: {path: a}\n...\n",
	} {
		if _, _, err := Load(write(t, FileName, body)); err != nil {
			t.Errorf("%q: %v", body, err)
		}
	}
}

func TestLoadSettings(t *testing.T) {
	m, _, err := Load(write(t, FileName, `shared: ["kit/**"]
services:
  a:
    path: a/
    deploy:
      port: 8081
      package: ./cmd/a
      replicas: 2
      timeout: 45s
      env: {MODE: fast, LIMIT: 10}
    smoke:
      - {name: ready, path: /ready}
      - {method: post, path: /orders, body: '{"x":1}', status: 201, json_field: status, json_value: created}
    canary: {steps: [10, 50], interval: 30s, threshold: 2, max_error_rate: 0.01, max_p99: 500ms, min_requests: 20}
`))
	if err != nil {
		t.Fatal(err)
	}
	s := m.Service("a")
	if got := s.MainPackage(); got != "./cmd/a" {
		t.Errorf("MainPackage = %q, want the deploy.package", got)
	}
	got := struct {
		Paths  []string
		Deploy Deploy
		Smoke  []SmokeCheck
		Policy Policy
	}{s.Paths, s.Deploy, s.Smoke, s.Policy}
	want := struct {
		Paths  []string
		Deploy Deploy
		Smoke  []SmokeCheck
		Policy Policy
	}{
		Paths:  []string{"a"},
		Deploy: Deploy{Port: 8081, Package: "./cmd/a", Replicas: 2, Timeout: Duration(45e9), Env: map[string]string{"MODE": "fast", "LIMIT": "10"}},
		Smoke: []SmokeCheck{
			{Name: "ready", Method: "GET", Path: "/ready", Status: 200, Line: 12},
			{Name: "POST /orders", Method: "POST", Path: "/orders", Body: `{"x":1}`, Status: 201, JSONField: "status", JSONValue: "created", Line: 13},
		},
		Policy: Policy{Strategy: StrategyCanary, Steps: []int{10, 50}, LaneFirst: true, Interval: Duration(30e9), Threshold: 2, MaxErrorRate: 0.01, MaxP99: Duration(500e6), MinRequests: 20,
			Confidence: 0.98, MinEffect: 0.1, Bake: Duration(60e9), InconclusiveLimit: 5, ConsecutiveErrorLimit: 4},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("settings (-want +got):\n%s", d)
	}
}

// FuzzParseManifest feeds arbitrary bytes to both parsers: they must return
// a manifest or an error, never panic, and a manifest they return must be
// usable by the graph.
func FuzzParseManifest(f *testing.F) {
	for _, p := range []string{"../flotilla.yaml", "../shop/testdata/scenario-dependency-graph.json"} {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(chain))
	f.Add([]byte("\r0"))
	f.Add([]byte("services:\u2028  a: {path: a}\r\n"))
	f.Add([]byte("services:\n  a: {path: a, depends_on: [a]}\n"))
	f.Add([]byte(`{"services": {"a": {"dependencies": ["b"]}, "b": {"dependencies": ["a"]}}}`))
	// Canary policies: defaults, a service's block over them, queries
	// and webhooks.
	f.Add([]byte("defaults:\n  canary: {steps: [5, 50], interval: 15s, max_p99: 200ms, lane_first: false, confidence: 0.9}\nservices:\n  a:\n    path: a\n    canary: {strategy: direct, bake: 0s}\n  b: {path: b, canary: {compare: baseline, synthetic_load: {rate: 5}}}\n"))
	f.Add([]byte("services:\n  a:\n    path: a\n    canary:\n      strategy: bluegreen\n      iterations: 3\n      queries:\n        - {name: q, query: 'sum(rate(x{service=\"{{service}}\"}[{{range}}]))', max: 1, min: 0}\n      webhooks:\n        - {name: h, type: confirm-promotion, url: 'http://h.test', timeout: 5s}\n"))
	f.Add([]byte("defaults:\n  canary: {strategy: canary}\nservices:\n  a: {path: a, canary: {steps: [50, 10], threshold: 0, max_p95: 1s, queries: [{name: q, query: 'up[{{x}}'}], webhooks: [{type: nope, url: 'ftp://'}]}}\n  b: {path: b}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		// What the JSON scanner accepts, encoding/json must read the same.
		if m, _, err := ParseScenarioJSON("f.json", "/repo", data); err == nil {
			var ref struct {
				Services map[string]struct {
					Dependencies []string `json:"dependencies"`
				} `json:"services"`
			}
			if err := json.Unmarshal(data, &ref); err != nil {
				t.Fatalf("scanner accepted what encoding/json rejects (%v): %q", err, data)
			}
			for _, s := range m.Services {
				if d := cmp.Diff(ref.Services[s.Name].Dependencies, s.DependsOn, cmpopts.EquateEmpty()); d != "" {
					t.Fatalf("service %s (-encoding/json +scanner):\n%s", s.Name, d)
				}
			}
		}
		// A YAML error names a line of the file.
		if _, err := ParseYAML("f.yaml", "/repo", data); err != nil {
			if rest, ok := strings.CutPrefix(err.Error(), "f.yaml:"); ok {
				if n, err := strconv.Atoi(rest[:max(strings.IndexByte(rest, ':'), 0)]); err == nil && (n < 1 || n > yamlLines(data)) {
					t.Fatalf("error on line %d of a %d-line file: %q", n, yamlLines(data), rest)
				}
			}
		}
		for _, parse := range []func() (*Manifest, error){
			func() (*Manifest, error) { return ParseYAML("f.yaml", "/repo", data) },
			func() (*Manifest, error) { m, _, err := ParseScenarioJSON("f.json", "/repo", data); return m, err },
		} {
			m, err := parse()
			if err != nil {
				if strings.Contains(err.Error(), "\n") && !strings.HasPrefix(err.Error(), "f.") {
					t.Fatalf("a multi-line error must locate every line: %q", err)
				}
				continue
			}
			for _, s := range m.Services {
				if err := policyInvariants(s.Policy); err != nil {
					t.Fatalf("service %s was accepted with %v: %+v", s.Name, err, s.Policy)
				}
			}
			g := New(m)
			_ = g.Validate()
			_, _ = g.Waves(nil)
			for _, s := range m.Services {
				if m.Service(s.Name) != s {
					t.Fatalf("service %q not indexed", s.Name)
				}
				_, _ = g.Impact(s.Name)
			}
		}
	})
}

// TestScenarioJSONAgreesWithEncodingJSON: the hand-written scanner reads
// what encoding/json reads (escapes, null lists, odd whitespace).
func TestScenarioJSONAgreesWithEncodingJSON(t *testing.T) {
	data := []byte("{ \"services\" :{\r\n\t\"a\\u002db\" : { \"dependencies\" : null , \"consumers\":[ \"c\" ] },\"c\":{\"dependencies\":[\"a-b\"]} } }\n")
	m, warns, err := ParseScenarioJSON("g.json", "/r", data)
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 0 {
		t.Errorf("warnings: %v", warns)
	}
	got := map[string][]string{}
	for _, s := range m.Services {
		got[s.Name] = s.DependsOn
	}
	if d := cmp.Diff(map[string][]string{"a-b": nil, "c": {"a-b"}}, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

// yamlLines counts the lines of a YAML file as the parser numbers them:
// besides "\n", a lone "\r" and the Unicode line and paragraph separators
// (and NEL) end a line, as they do in most editors; "\r\n" is one break.
func yamlLines(data []byte) int {
	s := strings.ReplaceAll(string(data), "\r\n", "\n")
	n := 1
	for _, r := range s {
		switch r {
		case '\n', '\r', '\u0085', '\u2028', '\u2029':
			n++
		}
	}
	return n
}
