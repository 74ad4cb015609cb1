package load

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseConfig(t *testing.T) {
	good := `
targets: {gateway: "http://127.0.0.1:8080", search: "http://127.0.0.1:9000"}
mode: open
rate: 100
duration: 5m
flows: {browse: 5, search: 2, add_to_cart: 2, checkout: 1, track: 1}
`
	c, err := ParseConfig([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	want.Targets = Targets{Gateway: "http://127.0.0.1:8080", Search: "http://127.0.0.1:9000"}
	want.Mode, want.RequestRate, want.Duration, want.Users = Open, 100, Duration(5*time.Minute), 0 // accounts from the rate
	want.Flows = map[string]int{Browse: 5, Search: 2, AddToCart: 2, Checkout: 1, Track: 1}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
	if got := c.Targets.URL("order"); got != "http://127.0.0.1:8080/api/order" {
		t.Errorf("order URL = %q, want its prefix on the gateway", got)
	}
	if got := c.Targets.URL("search"); got != "http://127.0.0.1:9000" {
		t.Errorf("search URL = %q, want its own", got)
	}

	for _, tc := range []struct {
		name, yaml string
		want       []string // substrings of the error
	}{
		{"unknown key", "targets: {gateway: http://x:1}\nusers: 2\nspeed: 3\n", []string{"field speed not found"}},
		{"bad duration names the line", "targets: {gateway: http://x:1}\n\nduration: soon\n", []string{"line 3", `"soon"`}},
		{"bad mode", "targets: {gateway: http://x:1}\nmode: burst\n", []string{`mode: "burst"`}},
		{"open without rate", "targets: {gateway: http://x:1}\nmode: open\n", []string{"rate: 0", "requests per second", "flow_rate"}},
		{"open with both rates", "targets: {gateway: http://x:1}\nmode: open\nrate: 100\nflow_rate: 50\n", []string{"rate 100 and flow_rate 50: set one"}},
		{"negative flow rate", "targets: {gateway: http://x:1}\nmode: open\nflow_rate: -5\n", []string{"flow_rate: -5"}},
		{"rate too high", "targets: {gateway: http://x:1}\nmode: open\nrate: 1e9\n", []string{"rate: 1e+09", "100000"}},
		{"rate not a number", "targets: {gateway: http://x:1}\nmode: open\nrate: .nan\n", []string{"rate: NaN"}},
		{"rate in a closed loop", "targets: {gateway: http://x:1}\nrate: 100\n", []string{"closed loop has no rate", "mode: open"}},
		{"rate as text names the line", "targets: {gateway: http://x:1}\nmode: open\n\nrate: fast\n", []string{"line 4", "fast"}},
		{"closed without users", "targets: {gateway: http://x:1}\nusers: 0\n", []string{"users: 0"}},
		{"no end", "targets: {gateway: http://x:1}\nduration: 0s\n", []string{"set duration"}},
		{"unknown flow", "targets: {gateway: http://x:1}\nflows: {browse: 1, dance: 2}\n", []string{`unknown flow "dance"`}},
		{"negative weight", "targets: {gateway: http://x:1}\nflows: {browse: -1}\n", []string{"browse weight -1", "no flow"}},
		{"missing target", "targets: {product: http://x:1}\nflows: {browse: 1, checkout: 1}\n", []string{"checkout needs targets.user", "checkout needs targets.order"}},
		{"search needs its service", "targets: {gateway: http://x:1}\nflows: {search: 1}\n", []string{}},
		{"bad url", "targets: {gateway: 'ftp://x'}\n", []string{`targets.gateway "ftp://x"`}},
		{"not a map", "- 1\n- 2\n", []string{"load config"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.yaml))
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("err = %v; want none (the gateway serves search too)", err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v; want it to mention %q", err, w)
				}
			}
		})
	}
}

func TestFlowRate(t *testing.T) {
	c, err := ParseConfig([]byte("targets: {gateway: http://x:1}\nmode: open\nflow_rate: 50\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Rate != 50 || c.RequestRate != 0 || c.FlowRate() != 50 {
		t.Errorf("flow_rate 50: Rate %v, RequestRate %v, FlowRate() %v; want 50 flows/s", c.Rate, c.RequestRate, c.FlowRate())
	}
}

func TestRequestsPerFlow(t *testing.T) {
	gw := Targets{Gateway: "http://x:1"}
	noShipping := Targets{User: "http://x:1", Product: "http://x:2", Cart: "http://x:3", Order: "http://x:4"}
	for _, tc := range []struct {
		name    string
		targets Targets
		flows   map[string]int
		want    float64
	}{
		{"browse lists and reads", gw, map[string]int{Browse: 1}, 2},
		{"search and add to cart send one", gw, map[string]int{Search: 3, AddToCart: 1}, 1},
		{"checkout: one to three items and the order", gw, map[string]int{Checkout: 1}, 3},
		{"track with checkouts reads the order and its shipment", gw, map[string]int{Checkout: 1, Track: 1}, 2.5},
		{"track without shipping reads the order", noShipping, map[string]int{Checkout: 1, Track: 1}, 2},
		{"track without checkouts has no order to read", gw, map[string]int{Track: 1}, 1},
		{"weighted", gw, map[string]int{Browse: 4, Search: 3, AddToCart: 1, Checkout: 2, Track: 1}, (4*2 + 3 + 1 + 2*3 + 2) / 11.0},
		{"zero weights do not count", gw, map[string]int{Browse: 1, Checkout: 0}, 2},
		{"no flows", gw, nil, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{Targets: tc.targets, Flows: tc.flows, Mode: Open, RequestRate: 100}
			if got := c.RequestsPerFlow(); got != tc.want {
				t.Errorf("RequestsPerFlow() = %v, want %v", got, tc.want)
			}
			if got := c.FlowRate(); got != 100/tc.want {
				t.Errorf("FlowRate() at 100 requests/s = %v, want %v", got, 100/tc.want)
			}
		})
	}
}

func TestParseFlows(t *testing.T) {
	got, err := ParseFlows("browse=5, checkout=1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]int{Browse: 5, Checkout: 1}, got); diff != "" {
		t.Errorf("flows (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"browse", "browse=x", "=1x"} {
		if _, err := ParseFlows(bad); err == nil {
			t.Errorf("ParseFlows(%q): no error", bad)
		}
	}
}

// FuzzParseConfig: any input is a config or one clear error, never a
// panic; an accepted config is runnable.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		"targets: {gateway: http://127.0.0.1:1}\nmode: open\nrate: 5\nduration: 1s\n",
		"targets: {gateway: http://127.0.0.1:1}\nmode: open\nflow_rate: 2.5\nrequests: 10\n",
		"targets: {gateway: http://127.0.0.1:1}\nmode: open\nrate: 5\nflow_rate: 1\n", "mode: open\nrate: .inf\n", "rate: -0\nflow_rate: 1e-300\n",
		"targets: {user: http://a:1, product: http://a:2}\nflows: {browse: 1}\nrequests: 10\n",
		"duration: -1s\nthink: x\n", "flows: {browse: 99999999999}\n", "mode: [1]\n", "", "~", "targets: !!binary AAA=\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		total := 0
		for _, w := range c.Flows {
			total += w
		}
		if total <= 0 || (c.Duration <= 0 && c.Requests <= 0) || c.Timeout <= 0 {
			t.Fatalf("accepted an unrunnable config: %+v", c)
		}
		if c.Mode == Closed && (c.Users < 1 || c.RequestRate != 0 || c.Rate != 0) {
			t.Fatalf("accepted an unrunnable config: %+v", c)
		}
		if c.Mode == Open {
			// Exactly one rate, and a flow rate the schedule can pace.
			if (c.RequestRate > 0) == (c.Rate > 0) || c.RequestRate < 0 || c.Rate < 0 {
				t.Fatalf("accepted an open loop without exactly one rate: %+v", c)
			}
			if fr := c.FlowRate(); !(fr > 0) || fr > 100000 || c.RequestsPerFlow() < 1 {
				t.Fatalf("flow rate %v at %v requests a flow from %+v", fr, c.RequestsPerFlow(), c)
			}
		}
	})
}
