package controlplane

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// The control plane's API is not open to any local process: every request
// carries a bearer token. `flotilla up` makes two in the data directory,
// readable by its user only: an admin token (everything) and a read-only
// one (GET and HEAD: status, history, canaries, metrics, identities).
// The history records who acted from the credential: a release's Who is
// the name the client gives followed by "via <token>".

// The tokens' roles.
const (
	RoleAdmin = "admin"
	RoleRead  = "read-only"
	// RoleIngest may only export spans (POST /v1/traces): the token the
	// platform gives its services and data plane in
	// OTEL_EXPORTER_OTLP_HEADERS.
	RoleIngest = "otlp-ingest"
)

// TokenDir is where the API's tokens are, in the data directory.
func TokenDir(data string) string { return filepath.Join(data, "tokens") }

// TokenFile is the file of a role's token: tokens/admin.token or
// tokens/read.token.
func TokenFile(data, role string) string {
	if role == RoleRead {
		return filepath.Join(TokenDir(data), "read.token")
	}
	if role == RoleIngest {
		return filepath.Join(TokenDir(data), "otlp.token")
	}
	return filepath.Join(TokenDir(data), "admin.token")
}

// Tokens are the credentials the API accepts.
type Tokens struct {
	data  string
	creds []credential
}

type credential struct {
	role string
	hash [32]byte
}

// EnsureTokens reads the API's tokens in data, making them (mode 0600, in
// a 0700 directory) when they do not exist.
func EnsureTokens(data string) (*Tokens, error) {
	if err := os.MkdirAll(TokenDir(data), 0o700); err != nil {
		return nil, fmt.Errorf("api tokens: %w", err)
	}
	if err := os.Chmod(TokenDir(data), 0o700); err != nil {
		return nil, fmt.Errorf("api tokens: %w", err)
	}
	t := &Tokens{data: data}
	for _, role := range []string{RoleAdmin, RoleRead, RoleIngest} {
		path := TokenFile(data, role)
		tok, err := ReadToken(path)
		if errors.Is(err, os.ErrNotExist) {
			var b [32]byte
			_, _ = rand.Read(b[:])
			tok = "flt_" + strings.SplitN(role, "-", 2)[0] + "_" + base64.RawURLEncoding.EncodeToString(b[:])
			if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
				return nil, fmt.Errorf("api tokens: %w", err)
			}
		} else if err != nil {
			return nil, err
		}
		t.creds = append(t.creds, credential{role: role, hash: sha256.Sum256([]byte(tok))})
	}
	return t, nil
}

// ReadToken reads a token file; one readable by others than its owner is
// refused.
func ReadToken(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("api token %s: mode %v lets others read it: chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("api token %s: empty", path)
	}
	return tok, nil
}

type credKey struct{}

// CredentialFrom is the role of the token a request carried ("" when the
// API is served without tokens, as a test serves it).
func CredentialFrom(ctx context.Context) string {
	r, _ := ctx.Value(credKey{}).(string)
	return r
}

// actor is who acted: the name the client gave, and the credential it
// proved ("e2e via admin token"; the credential alone when it gave none).
func actor(ctx context.Context, claimed string) string {
	role := CredentialFrom(ctx)
	switch {
	case role == "":
		return claimed
	case claimed == "":
		return role + " token"
	}
	return claimed + " via " + role + " token"
}

// Middleware refuses a request without a valid token (401) and a write
// with the read-only one (403), each saying where the tokens are. GET
// /metrics from a loopback address stays open, for a Prometheus on the
// machine; every other request, and every write, needs a token.
func (t *Tokens) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == "/metrics" && r.Header.Get("Authorization") == "" && loopback(r.RemoteAddr) {
			next.ServeHTTP(w, r)
			return
		}
		auth := r.Header.Get("Authorization")
		tok, ok := strings.CutPrefix(auth, "Bearer ")
		if !ok || tok == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="flotilla"`)
			writeError(w, http.StatusUnauthorized, fmt.Errorf("the control plane's API needs a token (Authorization: Bearer ...): 'flotilla up' wrote an admin token to %s and a read-only one to %s; the CLI reads them from the data directory (or FLOTILLA_TOKEN_FILE, FLOTILLA_TOKEN)", TokenFile(t.data, RoleAdmin), TokenFile(t.data, RoleRead)))
			return
		}
		h := sha256.Sum256([]byte(strings.TrimSpace(tok)))
		role := ""
		for _, c := range t.creds {
			if subtle.ConstantTimeCompare(h[:], c.hash[:]) == 1 {
				role = c.role
			}
		}
		if role == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="flotilla", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, fmt.Errorf("this token is not one of this control plane's: use the one in %s (or %s to read only)", TokenFile(t.data, RoleAdmin), TokenFile(t.data, RoleRead)))
			return
		}
		if role == RoleIngest && (r.Method != http.MethodPost || r.URL.Path != TracesPath) {
			writeError(w, http.StatusForbidden, fmt.Errorf("%s %s: this token only exports spans (POST %s): use the one in %s", r.Method, r.URL.Path, TracesPath, TokenFile(t.data, RoleRead)))
			return
		}
		if role == RoleRead && r.Method != http.MethodGet && r.Method != http.MethodHead {
			writeError(w, http.StatusForbidden, fmt.Errorf("%s %s needs the admin token (%s): this one is read-only", r.Method, r.URL.Path, TokenFile(t.data, RoleAdmin)))
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), credKey{}, role)))
	})
}

func loopback(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
