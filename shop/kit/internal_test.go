package kit

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// The mux's own 404 and 405 are problems like every other error, and the
// 405 keeps its Allow header.
func TestMuxAnswersProblems(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /things/{id}", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) })
	h := problemMux(mux)
	for _, tc := range []struct {
		method, path string
		status       int
		code, allow  string
	}{
		{"GET", "/nothing", 404, "not_found", ""},
		{"DELETE", "/things/1", 405, "method_not_allowed", "GET, HEAD"},
		{"GET", "/things/1", 200, "", ""},
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(tc.method, tc.path, nil))
		if w.Code != tc.status {
			t.Errorf("%s %s → %d, want %d", tc.method, tc.path, w.Code, tc.status)
			continue
		}
		if tc.code == "" {
			continue
		}
		var p Problem
		if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || p.Code != tc.code || p.Status != tc.status || w.Header().Get("Content-Type") != ProblemContentType {
			t.Errorf("%s %s → %s %s", tc.method, tc.path, w.Header().Get("Content-Type"), w.Body)
		}
		if w.Header().Get("Allow") != tc.allow {
			t.Errorf("%s %s: Allow %q, want %q", tc.method, tc.path, w.Header().Get("Allow"), tc.allow)
		}
	}
}

// An internal endpoint runs only for the services it names, as the mesh
// passes the caller; a user's token or another service gets 403, and the
// handler sees the service acting for the user named in OnBehalfOfHeader.
func TestInternal(t *testing.T) {
	var seen *Claims
	h := Handle(Internal(func(w http.ResponseWriter, r *http.Request) error {
		seen = ClaimsFrom(r.Context())
		return nil
	}, "order-service"))
	for _, tc := range []struct {
		caller string
		status int
	}{
		{"order-service", 200},
		{"", 403},
		{"flotilla-gateway", 403},
		{"cart-service", 403},
	} {
		seen = nil
		r := httptest.NewRequest("POST", "/reservations", nil)
		r.Header.Set("Authorization", "Bearer a-customer-token")
		r.Header.Set(OnBehalfOfHeader, "u-42")
		if tc.caller != "" {
			r.Header.Set(VerifiedCallerHeader, tc.caller)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tc.status {
			t.Errorf("caller %q → %d %s, want %d", tc.caller, w.Code, w.Body, tc.status)
		}
		if tc.status == 200 && (seen == nil || seen.Role != RoleService || seen.Service != "order-service" || seen.UserID() != "u-42" || !seen.MayActFor("u-7")) {
			t.Errorf("caller %q: claims %+v", tc.caller, seen)
		}
		if tc.status == 403 && (seen != nil || parseCode(w.Body.Bytes()) != "internal_endpoint") {
			t.Errorf("caller %q: ran with %+v, answered %s", tc.caller, seen, w.Body)
		}
	}
}

// parseCode is the code of a problem body (test helper).
func parseCode(b []byte) string {
	e, _ := ParseProblem(0, b)
	return e.Code
}

func TestCleanText(t *testing.T) {
	for in, want := range map[string]string{
		"  Ada Lovelace ":             "Ada Lovelace",
		"Ada\r\nBcc: x@y":             "AdaBcc: x@y",
		"nul\x00byte\x7f":             "nulbyte",
		"rtl\u202Eoverride\u2028line": "rtloverrideline",
		"bad \xff utf8":               "bad \uFFFD utf8",
	} {
		if got := CleanText(in); got != want {
			t.Errorf("CleanText(%q) = %q, want %q", in, got, want)
		}
	}
	if _, err := CheckName("name", "<script>", 100); err == nil {
		t.Error("CheckName accepted markup")
	}
	if _, err := CheckName("name", "\r\n\x00", 100); err == nil {
		t.Error("CheckName accepted a name of control characters only")
	}
}
