package ui_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzPages: whatever path and query a browser sends, the dashboard
// answers a page or a 404 (or a 400/405), never a 500 or a panic; and no
// GET changes anything (the API behind it is never asked).
func FuzzPages(f *testing.F) {
	for _, s := range []string{
		"/ui/", "/ui/releases?service=cart-service&result=failed&who=al", "/ui/releases/7", "/ui/releases/-1",
		"/ui/releases/99999999999999999999", "/ui/services/%00", "/ui/schemas?subject=x&a=1&b=2",
		"/ui/contracts?pacticipant=a&version=1&environment=local", "/ui/contracts/pacts/a/b/c", "/ui/canaries", "/ui/traces",
		"/ui/releases?result=%ff", "/ui/services/order-service",
	} {
		f.Add(s)
	}
	fx := newFixture(f)
	h := fx.dash.Handler()
	f.Fuzz(func(t *testing.T, target string) {
		u, err := url.Parse(target)
		if err != nil || !strings.HasPrefix(u.Path, "/ui/") || u.Path == "/ui/events" {
			return
		}
		// The parsed target is set on the request directly: httptest reads
		// its argument as a request line, which a space in the query breaks.
		req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1/ui/", nil)
		req.URL.Path, req.URL.RawPath, req.URL.RawQuery = u.Path, u.RawPath, u.RawQuery
		req.RequestURI = u.RequestURI()
		req.RemoteAddr = "127.0.0.1:1"
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("GET %s: %d\n%s", target, rec.Code, rec.Body.String())
		}
		if n := fx.reached.Load(); n != 0 {
			t.Fatalf("GET %s reached the API", target)
		}
	})
}
