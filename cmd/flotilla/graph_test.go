package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const (
	shopManifest = "../../flotilla.yaml"
	scenarioJSON = "../../shop/testdata/scenario-dependency-graph.json"
)

// TestGraphGolden runs the graph commands on the shop's manifest and the
// scenario's graph and compares everything they print with golden files.
func TestGraphGolden(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"check-shop", []string{"graph", "check", "-f", shopManifest}, 0},
		{"check-scenario", []string{"graph", "check", "-f", scenarioJSON}, 1},
		{"order-text", []string{"graph", "order", "-f", shopManifest}, 0},
		{"order-json", []string{"graph", "order", "-f", shopManifest, "-o", "json"}, 0},
		{"order-github", []string{"graph", "order", "-f", shopManifest, "-o", "github"}, 0},
		{"order-reverse", []string{"graph", "order", "-f", shopManifest, "--reverse"}, 0},
		{"order-only", []string{"graph", "order", "-f", shopManifest, "--only", "shipping-service,product-service", "--only", "user-service", "-o", "json"}, 0},
		{"order-scenario", []string{"graph", "order", "-f", scenarioJSON}, 2},
		{"show-text", []string{"graph", "show", "-f", shopManifest}, 0},
		{"show-dot", []string{"graph", "show", "-f", shopManifest, "-o", "dot"}, 0},
		{"show-mermaid", []string{"graph", "show", "-f", shopManifest, "-o", "mermaid"}, 0},
		{"show-json", []string{"graph", "show", "-f", shopManifest, "-o", "json"}, 0},
		{"impact-user", []string{"graph", "impact", "-f", shopManifest, "user-service"}, 0},
		{"impact-order-json", []string{"graph", "impact", "-f", shopManifest, "order-service", "-o", "json"}, 0},
		{"impact-leaf", []string{"graph", "impact", "-f", shopManifest, "analytics-service"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, tt.args...)
			if code != tt.code {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, tt.code, errOut)
			}
			golden(t, filepath.Join("graph", tt.name+".golden"), out+stderrSection(errOut))
		})
	}
}

func stderrSection(s string) string {
	if s == "" {
		return ""
	}
	return "--- stderr\n" + s
}

// TestGraphOrderShop is the acceptance line, checked on the JSON
// itself: user first, order after cart, inventory and payment.
func TestGraphOrderShop(t *testing.T) {
	code, out, errOut := runCLI(t, "graph", "order", "-f", shopManifest, "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var got struct {
		Order []string   `json:"order"`
		Waves [][]string `json:"waves"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v in %s", err, out)
	}
	wave := map[string]int{}
	for i, w := range got.Waves {
		for _, s := range w {
			wave[s] = i
		}
	}
	if wave["user-service"] != 0 {
		t.Errorf("user-service in wave %d", wave["user-service"])
	}
	for _, dep := range []string{"cart-service", "inventory-service", "payment-service"} {
		if wave["order-service"] <= wave[dep] {
			t.Errorf("order-service (wave %d) not after %s (wave %d)", wave["order-service"], dep, wave[dep])
		}
	}
	if len(got.Order) != 10 {
		t.Errorf("order has %d services", len(got.Order))
	}
}

// TestGraphBadInput: every bad manifest is one clear line and exit 1 or 2,
// never a panic.
func TestGraphBadInput(t *testing.T) {
	dir := t.TempDir()
	put := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cycle := put("cycle.yaml", "services:\n  a: {path: a, depends_on: [b]}\n  b: {path: b, depends_on: [a]}\n")
	tests := []struct {
		name string
		args []string
		code int
		want string // in stderr (or stdout for check)
	}{
		{"malformed yaml", []string{"graph", "check", "-f", put("bad.yaml", "services: [\n")}, 1, "bad.yaml:1: invalid YAML"},
		{"malformed json", []string{"graph", "order", "-f", put("bad.json", `{"services": {"a": }}`)}, 2, "bad.json:1: invalid JSON"},
		{"unknown field", []string{"graph", "check", "-f", put("unk.yaml", "services:\n  a: {path: a, port: 1}\n")}, 1, `unk.yaml:2: services.a.port: unknown field "port"`},
		{"directory", []string{"graph", "check", "-f", dir}, 2, "is a directory"},
		{"missing", []string{"graph", "check", "-f", filepath.Join(dir, "none.yaml")}, 2, "no such file"},
		{"binary", []string{"graph", "show", "-f", put("bin.yaml", "\x7fELF\x00\x00")}, 2, "is not a text file"},
		{"bad canary check", []string{"graph", "check", "-f", put("canary.yaml", "services:\n  a:\n    path: a\n    canary: {strategy: direct, steps: [5, 50]}\n")}, 1,
			"error: " + filepath.Join(dir, "canary.yaml") + ":4: services.a.canary.steps: takes effect only with strategy canary, and the strategy is direct (line 4); remove steps, or write strategy: canary\n1 problem(s) reading the manifest"},
		{"bad canary order", []string{"graph", "order", "-f", put("query.yaml", "services:\n  a:\n    path: a\n    canary:\n      queries: [{name: q, query: 'rate(x[1m]', max: 1}]\n")}, 2,
			"query.yaml:5: services.a.canary.queries[0].query: is not valid PromQL"},
		{"cycle order", []string{"graph", "order", "-f", cycle}, 2, "dependency cycle: a → b → a"},
		{"cycle check", []string{"graph", "check", "-f", cycle}, 1, "dependency cycle: a → b → a"},
		{"unknown only", []string{"graph", "order", "-f", shopManifest, "--only", "odrer-service"}, 2, `--only: unknown service "odrer-service" (did you mean order-service?)`},
		{"unknown impact", []string{"graph", "impact", "-f", shopManifest, "nope"}, 2, `unknown service "nope"`},
		{"bad format", []string{"graph", "order", "-f", shopManifest, "-o", "yaml"}, 2, `unknown output format "yaml" (known: text, json, github)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, out, errOut)
			}
			if !strings.Contains(out+errOut, tt.want) {
				t.Errorf("output lacks %q\nstdout: %s\nstderr: %s", tt.want, out, errOut)
			}
			if strings.Contains(errOut, "goroutine") || strings.Contains(errOut, "panic") {
				t.Errorf("stack trace:\n%s", errOut)
			}
			// One line for unusable input; an invalid graph lists each
			// problem, then one summary line.
			if tt.code == 2 && !strings.Contains(errOut, "problem(s)") && strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
				t.Errorf("want one error line, got:\n%s", errOut)
			}
		})
	}
}

// TestGraphFindsManifest: without -f the nearest flotilla.yaml upwards is
// used, and its absence is a clear error.
func TestGraphFindsManifest(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "flotilla.yaml"), []byte("services:\n  a: {path: a, depends_on: [b]}\n  b: {path: b}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(root, "x", "y")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(sub)
	code, out, errOut := runCLI(t, "graph", "order", "-o", "github")
	if code != 0 || out != "[\"b\",\"a\"]\n" {
		t.Errorf("exit %d, out %q, stderr %q", code, out, errOut)
	}
	t.Chdir(t.TempDir())
	code, _, errOut = runCLI(t, "graph", "order")
	if code != 2 || !strings.Contains(errOut, "no flotilla.yaml here or in any parent directory") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
	if d := cmp.Diff(1, strings.Count(errOut, "\n")); d != "" {
		t.Errorf("lines (-want +got):\n%s", d)
	}
}

// TestGraphShowDOTRenders hands `graph show -o dot` to Graphviz itself: it
// must parse, with every service a node, sync edges solid and event edges
// dashed.
func TestGraphShowDOTRenders(t *testing.T) {
	dot, err := exec.LookPath("dot")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("Graphviz's dot is not installed, and CI must render the graph (.ci/run installs graphviz)")
		}
		t.Skip("Graphviz's dot is not installed: the DOT output is not rendered (apt-get install graphviz)")
	}
	code, out, errOut := runCLI(t, "graph", "show", "-f", shopManifest, "-o", "dot")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	cmd := exec.Command(dot, "-Tplain")
	cmd.Stdin = strings.NewReader(out)
	plain, err := cmd.Output()
	if err != nil {
		t.Fatalf("dot rejected the output: %v", err)
	}
	counts := map[string]int{}
	for _, line := range strings.Split(string(plain), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		switch f[0] {
		case "node":
			counts["node"]++
		case "edge":
			counts["edge "+f[len(f)-2]]++ // the style
		}
	}
	want := map[string]int{"node": 10, "edge solid": 15, "edge dashed": 14}
	if d := cmp.Diff(want, counts); d != "" {
		t.Errorf("rendered graph (-want +got):\n%s", d)
	}
}
