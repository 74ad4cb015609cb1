package chaos

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var shopGraph = map[string][]string{
	"order-service": {"inventory-service", "payment-service", "cart-service"}, "inventory-service": nil, "payment-service": nil,
	"cart-service": {"product-service"}, "product-service": nil,
}

// TestExamplesParse: the experiments kept under chaos/ parse and fit the
// shop's graph.
func TestExamplesParse(t *testing.T) {
	files, _ := filepath.Glob("*.yaml")
	if len(files) < 3 {
		t.Fatalf("want the game day's three experiments under chaos/, found %v", files)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		e, err := Parse(f, data)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if err := e.Check(shopGraph); err != nil {
			t.Errorf("%v", err)
		}
	}
}

const good = `name: slow inventory
duration: 40s
hypothesis:
  probes:
    - /api/product/products?limit=1
faults:
  - kind: delay
    destination: inventory-service
    delay: 500ms
    start: 5s
    duration: 20s
`

func TestParseDefaults(t *testing.T) {
	e, err := Parse("x.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if e.Hypothesis.Window.D() != 3*time.Second || e.Hypothesis.MaxErrorRate != 1 || e.Faults[0].Delay.D() != 500*time.Millisecond {
		t.Errorf("parsed %+v", e)
	}
}

// TestParseErrorsNameLineAndField: each malformed experiment is refused
// with the file, the line and the field.
func TestParseErrorsNameLineAndField(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"unknown field", strings.Replace(good, "    delay: 500ms", "    dely: 500ms", 1), []string{`x.yaml: line 9: unknown field "dely"`}},
		{"bad duration", strings.Replace(good, "delay: 500ms", "delay: fast", 1), []string{`x.yaml: line 9: duration "fast"`}},
		{"wrong type", strings.Replace(good, "probes:\n    - /api/product/products?limit=1", "probes: 3", 1), []string{"x.yaml: line 4"}},
		{"percent over 100", strings.Replace(good, "    delay: 500ms", "    delay: 500ms\n    percent: 150", 1), []string{"x.yaml: line 10: faults[0].percent: 150: want more than 0 and at most 100"}},
		{"outlives the experiment", strings.Replace(good, "duration: 20s", "duration: 60s", 1), []string{"x.yaml: line 11: faults[0].duration: the fault ends 1m5s into the experiment, after its duration (40s)"}},
		{"unknown kind", strings.Replace(good, "kind: delay", "kind: meteor", 1), []string{`x.yaml: line 7: faults[0].kind: "meteor": want one of delay, abort`}},
		{"no name, no faults", "duration: 10s\nhypothesis: {probes: [/x]}\n", []string{"x.yaml: line 1: name: empty", "x.yaml: line 1: faults: none"}},
		{"syntax", "name: [oops\n", []string{"x.yaml: line "}},
		{"empty", "", []string{"x.yaml: empty"}},
		{"two documents", good + "---\nname: b\n", []string{"a second document"}},
		{"kill with a duration", strings.Replace(strings.Replace(good, "kind: delay", "kind: kill\n    service: payment-service", 1), "    destination: inventory-service\n    delay: 500ms\n", "", 1), []string{"faults[0].duration: a kill is instant"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("x.yaml", []byte(tc.yaml))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestCheckAgainstTheGraph(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"unknown service", strings.Replace(good, "destination: inventory-service", "destination: nope-service", 1), `x.yaml: line 8: faults[0].destination: unknown service "nope-service"`},
		{"an edge the graph lacks", strings.Replace(good, "destination: inventory-service", "source: inventory-service\n    destination: order-service", 1), "the graph has no edge inventory-service -> order-service"},
		{"partition without an edge", strings.Replace(strings.Replace(good, "kind: delay", "kind: partition\n    source: payment-service", 1), "    delay: 500ms\n", "", 1), "no edge between payment-service and inventory-service"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := Parse("x.yaml", []byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if err := e.Check(shopGraph); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Check = %v, want %q", err, tc.want)
			}
		})
	}
}

// FuzzParse: any input parses or is refused with an error naming the
// file; it never panics.
func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	files, _ := filepath.Glob("*.yaml")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("faults: [{kind: kill}]"))
	f.Add([]byte("name: x\nduration: -1s\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := Parse("f.yaml", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f.yaml: ") {
				t.Fatalf("error without the file: %q", err)
			}
			return
		}
		_ = e.Check(shopGraph)
		if err := e.Validate(); err != nil {
			t.Fatalf("parsed, then invalid: %v", err)
		}
	})
}
