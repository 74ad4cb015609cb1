package kit

import (
	"net/url"
	"strings"
	"testing"
	"testing/quick"
)

// Any string, escaped into a path segment, comes back whole as one
// segment: never a second segment, a query or a fragment.
func TestPathEscapeKeepsOneSegment(t *testing.T) {
	prop := func(s string) bool {
		u, err := url.Parse("http://svc/products/" + url.PathEscape(s))
		if err != nil {
			return false
		}
		return u.RawQuery == "" && u.Fragment == "" && strings.TrimPrefix(u.Path, "/products/") == s
	}
	if err := quick.Check(prop, &quick.Config{MaxCount: 5000}); err != nil {
		t.Error(err)
	}
	for _, s := range []string{"DEMO-MUG?x=1", "../products/DEMO-MUG", "a\x00b", "%2F", "#frag"} {
		if !prop(s) {
			t.Errorf("%q does not survive escaping", s)
		}
	}
}

func TestIdentifierGrammar(t *testing.T) {
	for s, want := range map[string]bool{"DEMO-MUG": true, "SKU-0001": true, "DEMO-MUG?x=1": false, "../x": false, "a": false, "demo-mug": false} {
		if ValidSKU(s) != want {
			t.Errorf("ValidSKU(%q) = %v", s, !want)
		}
	}
	for s, want := range map[string]bool{NewID(): true, "o-1": true, "o/1": false, "": false, strings.Repeat("a", 65): false} {
		if ValidID(s) != want {
			t.Errorf("ValidID(%q) = %v", s, !want)
		}
	}
}
