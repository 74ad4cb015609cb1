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
	want.Mode, want.Rate, want.Duration, want.Users = Open, 100, Duration(5*time.Minute), 0 // accounts from the rate
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
		{"open without rate", "targets: {gateway: http://x:1}\nmode: open\n", []string{"rate"}},
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
		if c.Mode == Open && !(c.Rate > 0) || c.Mode == Closed && c.Users < 1 {
			t.Fatalf("accepted an unrunnable config: %+v", c)
		}
	})
}
