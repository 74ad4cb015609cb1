package broker

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxNameLength bounds pacticipant names, version numbers, branches, tags
// and environment names.
const MaxNameLength = 255

// checkName is the one validation of a name or number a client sends,
// whichever store keeps it: what it accepts every store stores and every
// route can fetch back. kind "version" (and "pacticipant") may not
// contain '/', which no client escapes the same way; branches and tags
// may (feat/x), as they travel escaped.
func checkName(kind, s string) ValidationErrors {
	bad := func(why string) ValidationErrors { return ValidationErrors{kind: {why}} }
	switch {
	case strings.TrimSpace(s) == "":
		return bad("can't be blank")
	case len(s) > MaxNameLength:
		return bad(fmt.Sprintf("is %d bytes long: at most %d", len(s), MaxNameLength))
	case !utf8.ValidString(s):
		return bad("is not valid UTF-8")
	case s == "." || s == "..":
		return bad(fmt.Sprintf("%q cannot be fetched back by URL: choose another", s))
	case strings.ContainsAny(s, "\r\n"):
		return bad("cannot contain multiple lines")
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return bad(fmt.Sprintf("cannot contain the control character %U", r))
		}
	}
	if (kind == "version" || kind == "pacticipant" || strings.HasSuffix(kind, "Name") || strings.HasSuffix(kind, "VersionNumber") || kind == "providerApplicationVersion") && strings.Contains(s, "/") {
		return bad(fmt.Sprintf("%q contains '/': a %s cannot be fetched back by URL with it", s, kind))
	}
	return nil
}
