package controlplane

import (
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

func TestTokensMiddleware(t *testing.T) {
	data := t.TempDir()
	toks, err := EnsureTokens(data)
	if err != nil {
		t.Fatal(err)
	}
	// A second start reads the same tokens.
	admin, err := ReadToken(TokenFile(data, RoleAdmin))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureTokens(data); err != nil {
		t.Fatal(err)
	}
	if again, _ := ReadToken(TokenFile(data, RoleAdmin)); again != admin {
		t.Fatal("the admin token changed on the second start")
	}
	read, _ := ReadToken(TokenFile(data, RoleRead))
	h := toks.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(actor(r.Context(), r.URL.Query().Get("who"))))
	}))
	for _, tc := range []struct {
		name, method, token, who string
		code                     int
		body                     string
	}{
		{"no token", "GET", "", "", 401, TokenFile(data, RoleAdmin)},
		{"forged", "GET", "flt_admin_nope", "", 401, "not one of this control plane's"},
		{"read-only reads", "GET", read, "", 200, "read-only token"},
		{"read-only writes", "POST", read, "", 403, TokenFile(data, RoleAdmin)},
		{"admin writes, as who it says", "POST", admin, "alice", 200, "alice via admin token"},
		{"admin, nobody said", "DELETE", admin, "", 200, "admin token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, "/api/deploys?who="+tc.who, nil)
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.code || !strings.Contains(rec.Body.String(), tc.body) {
				t.Errorf("%d %s, want %d with %q", rec.Code, rec.Body, tc.code, tc.body)
			}
		})
	}
	// A token file others can read is refused.
	if err := os.Chmod(TokenFile(data, RoleRead), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadToken(TokenFile(data, RoleRead)); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("a 0644 token file: %v, want refused", err)
	}
}
