package broker_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flotilla-ci/flotilla/broker"
	"github.com/flotilla-ci/flotilla/broker/sqlstore"
)

func newBroker(t *testing.T, cfg broker.Config) (string, *sqlstore.Store) {
	t.Helper()
	return newBrokerOn(t, cfg, filepath.Join(t.TempDir(), "broker.db"))
}

func newBrokerOn(t *testing.T, cfg broker.Config, dsn string) (string, *sqlstore.Store) {
	t.Helper()
	store, err := sqlstore.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	srv, err := broker.New(cfg, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return hs.URL, store
}

type response struct {
	status int
	body   map[string]any
	raw    string
}

func call(t *testing.T, method, url, auth string, body any) response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		data, _ := json.Marshal(b)
		rd = bytes.NewReader(data)
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	data, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusNoContent && !strings.HasPrefix(ct, "application/hal+json") {
		t.Errorf("%s %s: Content-Type %q, want application/hal+json", method, url, ct)
	}
	r := response{status: resp.StatusCode, raw: string(data)}
	_ = json.Unmarshal(data, &r.body)
	return r
}

const helloPact = `{"consumer":{"name":"web"},"provider":{"name":"api"},"interactions":[
	{"description":"a greeting","request":{"method":"GET","path":"/hello"},"response":{"status":200,"body":{"greeting":"hi"}}}],
	"metadata":{"pactSpecification":{"version":"3.0.0"}}}`

func publishBody(consumer, version, content string) map[string]any {
	return map[string]any{
		"pacticipantName": consumer, "pacticipantVersionNumber": version, "branch": "main",
		"contracts": []any{map[string]any{"consumerName": consumer, "providerName": "api", "specification": "pact",
			"contentType": "application/json", "content": content}},
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestBadInputIsRefusedAndNothingStored(t *testing.T) {
	url, store := newBroker(t, broker.DefaultConfig())
	tests := []struct {
		name, method, path string
		body               any
		status             int
		want               string // in the response body
	}{
		{"consumer mismatch", "POST", "/contracts/publish", publishBody("mobile", "1", b64(helloPact)), 400, `"contracts[0].consumerName":["does not match the consumer name \"web\" in the pact content"]`},
		{"consumerName differs from pacticipantName", "POST", "/contracts/publish", func() any {
			b := publishBody("web", "1", b64(helloPact))
			b["pacticipantName"] = "other"
			return b
		}(), 400, `must match pacticipantName`},
		{"invalid base64", "POST", "/contracts/publish", publishBody("web", "1", "%%%not base64"), 400, `"contracts[0].content":["is not valid Base64"]`},
		{"pact is not JSON", "POST", "/contracts/publish", publishBody("web", "1", b64("<xml/>")), 400, `"contracts[0].content":["is not a pact: not a JSON object"]`},
		{"body is not JSON", "POST", "/contracts/publish", "{nope", 400, `"body":["must be a JSON object`},
		{"multi-line version", "POST", "/contracts/publish", publishBody("web", "1\n2", b64(helloPact)), 400, `"pacticipantVersionNumber":["cannot contain multiple lines"]`},
		{"NUL in a version", "POST", "/contracts/publish", publishBody("web", "1\x002", b64(helloPact)), 400, `"pacticipantVersionNumber":["cannot contain the control character U+0000"]`},
		{"version ..", "POST", "/contracts/publish", publishBody("web", "..", b64(helloPact)), 400, `cannot be fetched back by URL`},
		{"version with a slash", "POST", "/contracts/publish", publishBody("web", "a/b", b64(helloPact)), 400, `contains '/'`},
		{"a name of 5000 characters", "POST", "/contracts/publish", publishBody(strings.Repeat("w", 5000), "1", b64(helloPact)), 400, `"pacticipantName":["is 5000 bytes long: at most 255"]`},
		{"a pact whose status is a string", "POST", "/contracts/publish", publishBody("web", "1", b64(strings.Replace(helloPact, `"status":200`, `"status":"200"`, 1))), 400, `is not a valid pact: interactions[0] (\"a greeting\").response.status: must be an integer HTTP status`},
		{"pacticipant of 5000 characters", "POST", "/pacticipants", map[string]any{"name": strings.Repeat("p", 5000)}, 400, `at most 255`},
		{"tag with a NUL", "PUT", "/pacticipants/web/versions/1/tags/a%00b", map[string]any{}, 400, `U+0000`},
		{"environment named ..", "POST", "/environments", map[string]any{"name": ".."}, 400, `cannot be fetched back by URL`},
		{"unknown environment", "GET", "/matrix?q[][pacticipant]=web&q[][version]=1&latestby=cvpv&environment=mars", nil, 400, `Environment with name 'mars' does not exist`},
		{"unknown pacticipant in matrix", "GET", "/matrix?q[][pacticipant]=ghost&q[][version]=1&latestby=cvpv", nil, 400, `Pacticipant ghost not found`},
		{"malformed matrix: no selectors", "GET", "/matrix?latestby=cvpv", nil, 400, `Please provide 1 or more version selectors.`},
		{"malformed matrix: bad latestby", "GET", "/matrix?q[][pacticipant]=web&latestby=sideways", nil, 400, `Invalid latestby`},
		{"malformed matrix: version and latest", "GET", "/matrix?q[][pacticipant]=web&q[][version]=1&q[][latest]=true", nil, 400, `cannot be combined`},
		{"unknown version", "GET", "/pacticipants/web/versions/404", nil, 404, `Version 404 of web: not found`},
		{"record deployment of an unknown version", "POST", "/pacticipants/web/versions/404/deployed-versions/environment/production", map[string]any{}, 404, `not found`},
		{"verification without a version", "POST", "/pacts/provider/api/consumer/web/pact-version/abc/verification-results", map[string]any{"success": true}, 400, `"providerApplicationVersion":["can't be blank"]`},
		{"matchingBranch without providerVersionBranch", "POST", "/pacts/provider/api/for-verification", map[string]any{"consumerVersionSelectors": []any{map[string]any{"matchingBranch": true}}}, 400, `providerVersionBranch must be specified`},
		{"unknown selector", "POST", "/pacts/provider/api/for-verification", map[string]any{"consumerVersionSelectors": []any{map[string]any{"mainBrunch": true}}}, 400, `unknown selector key \"mainBrunch\"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := call(t, tc.method, url+tc.path, "", tc.body)
			if r.status != tc.status || !strings.Contains(r.raw, tc.want) {
				t.Errorf("%s %s: %d %s\nwant %d containing %s", tc.method, tc.path, r.status, r.raw, tc.status, tc.want)
			}
		})
	}
	ps, err := store.Pacticipants(context.Background())
	if err != nil || len(ps) != 0 {
		t.Errorf("refused requests stored pacticipants: %+v %v", ps, err)
	}
}

func TestConflictingRepublicationIs409(t *testing.T) {
	url, _ := newBroker(t, broker.DefaultConfig())
	if r := call(t, "POST", url+"/contracts/publish", "", publishBody("web", "1", b64(helloPact))); r.status != 200 {
		t.Fatalf("publish: %d %s", r.status, r.raw)
	}
	changed := strings.Replace(helloPact, `"hi"`, `"hello"`, 1)
	r := call(t, "POST", url+"/contracts/publish", "", publishBody("web", "1", b64(changed)))
	if r.status != 409 || r.body["errors"] == nil || r.body["notices"] == nil {
		t.Fatalf("republishing changed content: %d %s; want 409 with errors and notices", r.status, r.raw)
	}
	// The same content with other metadata is not a change.
	same := strings.Replace(helloPact, `"metadata":{`, `"metadata":{"pactRust":{"models":"1.0"},`, 1)
	if r := call(t, "POST", url+"/contracts/publish", "", publishBody("web", "1", b64(same))); r.status != 200 {
		t.Fatalf("republishing the same interactions: %d %s", r.status, r.raw)
	}
}

func TestPactsCarryInteractionIDs(t *testing.T) {
	url, _ := newBroker(t, broker.DefaultConfig())
	r := call(t, "POST", url+"/contracts/publish", "", publishBody("web", "1", b64(helloPact)))
	links := r.body["_links"].(map[string]any)["pb:contracts"].([]any)
	pactURL := links[0].(map[string]any)["href"].(string)
	if !strings.HasPrefix(pactURL, url+"/pacts/provider/api/consumer/web/pact-version/") {
		t.Fatalf("pact link %q is not absolute on %s", pactURL, url)
	}
	p := call(t, "GET", pactURL, "", nil)
	its := p.body["interactions"].([]any)
	// The Pact Broker's id of an interaction is the SHA-1 of its JSON with
	// keys sorted at every level (pacts/generate_interaction_sha.rb). For
	// helloPact's interaction, worked out apart from the code under test:
	//   printf '%s' '{"description":"a greeting","request":{"method":"GET","path":"/hello"},"response":{"body":{"greeting":"hi"},"status":200}}' | sha1sum
	const want = "5919ee993d7e3766b82e8fa5a15b7b0f075224fe"
	if got := its[0].(map[string]any)["_id"]; got != want {
		t.Errorf("_id = %v, want %s", got, want)
	}
	if p.body["_links"].(map[string]any)["pb:publish-verification-results"] == nil {
		t.Errorf("pact lacks pb:publish-verification-results: %s", p.raw)
	}
}

func TestAuth(t *testing.T) {
	cfg := broker.DefaultConfig()
	cfg.Tokens = []broker.Token{{Value: "rw-token-123", Write: true}, {Value: "ro-token-123"}}
	cfg.Users = []broker.User{{Name: "ci", Password: "s3cret", Write: true}}
	url, store := newBroker(t, cfg)
	pub := publishBody("web", "1", b64(helloPact))
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("ci:s3cret"))
	tests := []struct {
		name, method, auth string
		status             int
	}{
		{"anonymous write", "POST", "", 401},
		{"wrong token", "POST", "Bearer nope-nope-nope", 401},
		{"read-only token writes", "POST", "Bearer ro-token-123", 403},
		{"wrong password", "POST", "Basic " + base64.StdEncoding.EncodeToString([]byte("ci:guess")), 401},
		{"anonymous read", "GET", "", 200},
		{"read-only token reads", "GET", "Bearer ro-token-123", 200},
		{"read-write token writes", "POST", "Bearer rw-token-123", 200},
		{"basic user writes", "POST", basic, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path, body := "/contracts/publish", any(pub)
			if tc.method == "GET" {
				path, body = "/", nil
			}
			if r := call(t, tc.method, url+path, tc.auth, body); r.status != tc.status {
				t.Errorf("%d %s, want %d", r.status, r.raw, tc.status)
			}
		})
		if tc.status != 200 {
			if ps, _ := store.Pacticipants(context.Background()); len(ps) != 0 {
				t.Fatalf("%s: a refused write stored %+v", tc.name, ps)
			}
		}
	}
	cfg.AnonymousRead = false
	url, _ = newBroker(t, cfg)
	if r := call(t, "GET", url+"/", "", nil); r.status != 401 {
		t.Errorf("anonymous read with anonymous reads off: %d", r.status)
	}
}

func TestConfigValidate(t *testing.T) {
	cfg := broker.DefaultConfig()
	cfg.BaseURL = "ftp://x"
	cfg.Tokens = []broker.Token{{Value: "short"}}
	cfg.Users = []broker.User{{Name: "a:b"}}
	err := cfg.Validate()
	for _, want := range []string{"base_url", "tokens[0]", "users[0]"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to name %s", err, want)
		}
	}
	if err := broker.DefaultConfig().Validate(); err != nil {
		t.Errorf("DefaultConfig().Validate() = %v", err)
	}
}

func TestLegacyPutPact(t *testing.T) {
	url, store := newBroker(t, broker.DefaultConfig())
	r := call(t, "PUT", url+"/pacts/provider/api/consumer/web/version/1.0.0", "", helloPact)
	if r.status != 201 || r.body["_links"] == nil {
		t.Fatalf("PUT pact: %d %s", r.status, r.raw)
	}
	if r := call(t, "PUT", url+"/pacts/provider/api/consumer/web/version/1.0.1", "", helloPact); r.status != 200 {
		t.Errorf("PUT the same content for another version: %d, want 200", r.status)
	}
	if r := call(t, "PUT", url+"/pacts/provider/api/consumer/mobile/version/1", "", helloPact); r.status != 400 || !strings.Contains(r.raw, "does not match the consumer name") {
		t.Errorf("PUT a pact under another consumer: %d %s", r.status, r.raw)
	}
	if _, err := store.Version(context.Background(), "mobile", "1"); err == nil {
		t.Errorf("a refused PUT created a version")
	}
}

func TestConcurrentHTTPPublishes(t *testing.T) {
	url, store := newBroker(t, broker.DefaultConfig())
	body := publishBody("web", "1", b64(helloPact))
	done := make(chan int, 10)
	for i := 0; i < 10; i++ {
		go func() {
			data, _ := json.Marshal(body)
			resp, err := http.Post(url+"/contracts/publish", "application/json", bytes.NewReader(data))
			if err != nil {
				done <- 0
				return
			}
			_ = resp.Body.Close()
			done <- resp.StatusCode
		}()
	}
	for i := 0; i < 10; i++ {
		if code := <-done; code != 200 {
			t.Errorf("concurrent publish: status %d", code)
		}
	}
	ps, _ := store.LatestPacts(context.Background(), "api")
	if len(ps) != 1 {
		t.Errorf("%d latest pacts, want 1", len(ps))
	}
	var n int
	if err := store.DB().QueryRowContext(context.Background(), "SELECT COUNT(*) FROM broker_pact_publications").Scan(&n); err != nil || n != 1 {
		t.Errorf("%d publications (%v), want 1", n, err)
	}
}

// Mounted under a prefix (as in the control plane), links carry it.
func TestLinksUnderAPrefix(t *testing.T) {
	store, err := sqlstore.Open(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = store.Close() }()
	for _, tc := range []struct {
		name   string
		cfg    func(*broker.Config, string)
		header string
	}{
		{"base url", func(c *broker.Config, u string) { c.BaseURL = u + "/broker" }, ""},
		{"forwarded prefix", func(*broker.Config, string) {}, "/broker"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mux := http.NewServeMux()
			hs := httptest.NewServer(mux)
			defer hs.Close()
			cfg := broker.DefaultConfig()
			tc.cfg(&cfg, hs.URL)
			srv, err := broker.New(cfg, store, nil)
			if err != nil {
				t.Fatal(err)
			}
			mux.Handle("/broker/", http.StripPrefix("/broker", srv))
			req, _ := http.NewRequest("GET", hs.URL+"/broker/", nil)
			if tc.header != "" {
				req.Header.Set("X-Forwarded-Prefix", tc.header)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = resp.Body.Close() }()
			var idx struct {
				Links map[string]json.RawMessage `json:"_links"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&idx)
			var l struct{ Href string }
			_ = json.Unmarshal(idx.Links["pb:publish-contracts"], &l)
			if l.Href != hs.URL+"/broker/contracts/publish" {
				t.Errorf("pb:publish-contracts = %q, want it under /broker", l.Href)
			}
		})
	}
}

// The shape the pact verifier depends on (ref: pact.md 2.3 B and 2.5).
func TestPactsForVerificationShape(t *testing.T) {
	url, _ := newBroker(t, broker.DefaultConfig())
	if r := call(t, "POST", url+"/contracts/publish", "", publishBody("web", "1", b64(helloPact))); r.status != 200 {
		t.Fatal(r.raw)
	}
	link := call(t, "GET", url+"/pacts/provider/api/for-verification", "", nil)
	self := link.body["_links"].(map[string]any)["self"].(map[string]any)["href"].(string)
	for _, pending := range []bool{false, true} {
		r := call(t, "POST", self, "", map[string]any{"consumerVersionSelectors": []any{map[string]any{"mainBranch": true}},
			"providerVersionBranch": "main", "includePendingStatus": pending})
		pacts := r.body["_embedded"].(map[string]any)["pacts"].([]any)
		if r.status != 200 || len(pacts) != 1 {
			t.Fatalf("for-verification: %d %s", r.status, r.raw)
		}
		p := pacts[0].(map[string]any)
		props := p["verificationProperties"].(map[string]any)
		if _, ok := props["notices"].([]any); !ok {
			t.Errorf("verificationProperties without a notices list breaks the Rust verifier: %s", r.raw)
		}
		if _, ok := props["pending"]; ok != pending {
			t.Errorf("includePendingStatus=%v: pending present = %v", pending, ok)
		}
		if p["shortDescription"] != "latest from main branch" {
			t.Errorf("shortDescription = %v", p["shortDescription"])
		}
		pactURL := p["_links"].(map[string]any)["self"].(map[string]any)["href"].(string)
		if !strings.Contains(pactURL, "/metadata/") {
			t.Errorf("pact URL %s carries no metadata", pactURL)
		}
		doc := call(t, "GET", pactURL, "", nil)
		results := doc.body["_links"].(map[string]any)["pb:publish-verification-results"].(map[string]any)["href"].(string)
		if results != pactURL+"/verification-results" {
			t.Errorf("results link %s does not carry the metadata back", results)
		}
		if r := call(t, "POST", results, "", map[string]any{"providerApplicationVersion": "a1", "success": true}); r.status != 201 {
			t.Errorf("publishing results: %d %s", r.status, r.raw)
		}
	}
}
