package load

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
)

// FuzzParseFlows: any --flows value parses or fails with an error naming
// the item and the syntax, never a panic; what parses prints back as the
// same weights, and a config with them validates or names the bad flow.
func FuzzParseFlows(f *testing.F) {
	for _, s := range []string{"browse=5,checkout=1", "browse", "=3", "browse=5,,search=2 ", " track = 1", "checkout=-1", "browse=99999999999999999999",
		"browse=1=2", "nope=1", ",,,", "browse=0x10", "browse=+1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		flows, err := ParseFlows(s)
		if err != nil {
			if flows != nil || !strings.Contains(err.Error(), "want name=weight") {
				t.Fatalf("ParseFlows(%q) = %v, %v; want no flows and an error with the syntax", s, flows, err)
			}
			return
		}
		var items []string
		for _, k := range slices.Sorted(maps.Keys(flows)) {
			items = append(items, fmt.Sprintf("%s=%d", k, flows[k]))
		}
		again, err := ParseFlows(strings.Join(items, ","))
		if err != nil || !maps.Equal(again, flows) {
			t.Fatalf("ParseFlows(%q) = %v; printed back %q it parses as %v, %v", s, flows, items, again, err)
		}
		c := DefaultConfig()
		c.Targets.Gateway = "http://127.0.0.1:7400"
		c.Flows = flows
		err = c.Validate()
		for name, w := range flows {
			switch {
			case !slices.Contains(FlowNames, name):
				if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("unknown flow %q", name)) {
					t.Fatalf("flows %v: err %v; want it to name the unknown flow %q", flows, err, name)
				}
			case w < 0 || w > 1000000:
				if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%s weight %d", name, w)) {
					t.Fatalf("flows %v: err %v; want it to name %s's weight", flows, err, name)
				}
			}
		}
	})
}
