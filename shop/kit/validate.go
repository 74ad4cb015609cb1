package kit

import (
	"net/http"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Identifiers have a grammar, checked at every boundary before they are
// used (in a query, in another service's URL, where they are also
// escaped: url.PathEscape for a path segment, url.QueryEscape for a query
// value).
var (
	// skuRE is a product's SKU: 3-32 characters of A-Z, 0-9 and '-'.
	skuRE = regexp.MustCompile(`^[A-Z0-9][A-Z0-9-]{2,31}$`)
	// idRE is an id the shop assigns (NewID's UUID form) or a test's
	// readable one: letters, digits, '-' and '_', at most 64.
	idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)
)

// ValidSKU reports whether s is a SKU of the catalog's grammar.
func ValidSKU(s string) bool { return skuRE.MatchString(s) }

// ValidID reports whether s is an id of the shop's grammar.
func ValidID(s string) bool { return idRE.MatchString(s) }

// CheckSKU is a 400 naming field unless s is a SKU.
func CheckSKU(field, s string) error {
	if !ValidSKU(s) {
		return BadRequest("%s %q: want 3-32 characters of A-Z, 0-9 and '-', starting with a letter or digit", field, s)
	}
	return nil
}

// CheckID is a 400 naming field unless s is an id.
func CheckID(field, s string) error {
	if !ValidID(s) {
		return BadRequest("%s %q: want at most 64 letters, digits, '-' and '_'", field, s)
	}
	return nil
}

// CleanText trims s and removes control characters (C0, DEL, C1), the
// Unicode line and paragraph separators and the bidirectional overrides,
// which no name or description needs and which forge lines in a mail
// header or a log, or reverse what a reader sees. Invalid UTF-8 is
// replaced.
func CleanText(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		switch {
		case unicode.IsControl(r), r == '\u2028', r == '\u2029',
			r >= '\u202A' && r <= '\u202E', r >= '\u2066' && r <= '\u2069':
			return -1
		}
		return r
	}, s))
}

// CheckName cleans a name (CleanText) and checks it: required, at most max
// characters, without '<' or '>' (a name is not markup). The error is a
// 400 naming field.
func CheckName(field, s string, max int) (string, error) {
	c := CleanText(s)
	switch {
	case c == "":
		return "", BadRequest("%s is required", field)
	case utf8.RuneCountInString(c) > max:
		return "", BadRequest("%s is over %d characters", field, max)
	case strings.ContainsAny(c, "<>"):
		return "", Errorf(http.StatusBadRequest, "bad_request", "%s may not contain '<' or '>'", field)
	}
	return c, nil
}
