package graph

import (
	"strings"
	"testing"
)

// A service's routes: each needs method, path and auth; a bad one is
// refused naming the file, line and field.
func TestRoutes(t *testing.T) {
	const head = "services:\n  a:\n    path: a\n    routes:\n"
	m, err := ParseYAML("flotilla.yaml", "", []byte(head+
		"      - {method: GET, path: \"/orders/{id}\", auth: user}\n"+
		"      - {method: POST, path: /orders, auth: admin}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Services[0].Routes; len(got) != 2 || got[0] != (Route{Method: "GET", Path: "/orders/{id}", Auth: RouteUser, Line: 5}) || got[1].Auth != RouteAdmin {
		t.Errorf("routes %+v", got)
	}
	for _, tc := range []struct{ route, want string }{
		{`{method: get, path: /x, auth: user}`, `flotilla.yaml:5: services.a.routes[0].method: "get": want one of GET`},
		{`{method: GET, path: x, auth: user}`, `must start with /`},
		{`{method: GET, path: "/x/{}", auth: user}`, `a parameter is a whole segment`},
		{`{method: GET, path: /x/../y, auth: user}`, `".." segment`},
		{`{method: GET, path: /x, auth: anyone}`, `want public (anyone), user (a signed-in user) or admin`},
		{`{method: GET, path: /x}`, `needs method, path and auth`},
		{`{method: GET, path: /x, auth: user, role: admin}`, `unknown field`},
	} {
		_, err := ParseYAML("flotilla.yaml", "", []byte(head+"      - "+tc.route+"\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "flotilla.yaml") {
			t.Errorf("%s: %v; want an error with %q", tc.route, err, tc.want)
		}
	}
	_, err = ParseYAML("flotilla.yaml", "", []byte(head+
		"      - {method: GET, path: \"/u/{id}\", auth: user}\n      - {method: GET, path: \"/u/{user}\", auth: admin}\n"))
	if err == nil || !strings.Contains(err.Error(), "same route as") {
		t.Errorf("the same route twice: %v", err)
	}
}
