package broker_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/flotilla-ci/flotilla/broker"
	"github.com/flotilla-ci/flotilla/internal/sqldb/sqldbtest"
)

// TestRemovals: a mistaken publication can be cleaned up on both stores:
// a pact, a version, a pacticipant; what depends on them goes too, and
// only the write credential may remove. Names no store could give back
// (a NUL on PostgreSQL) are refused the same way by both.
func TestRemovals(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, dsn string) {
		cfg := broker.DefaultConfig()
		cfg.Tokens = []broker.Token{{Value: "write-token", Write: true}, {Value: "read-token"}}
		url, store := newBrokerOn(t, cfg, dsn)
		ctx := context.Background()
		w, ro := "Bearer write-token", "Bearer read-token"
		for _, v := range []string{"1", "2"} {
			content := strings.Replace(helloPact, `"hi"`, `"hi `+v+`"`, 1)
			if r := call(t, "POST", url+"/contracts/publish", w, publishBody("web", v, b64(content))); r.status != 200 {
				t.Fatalf("publish %s: %d %s", v, r.status, r.raw)
			}
		}
		p2, err := store.PactForConsumerVersion(ctx, "api", "web", "2")
		if err != nil {
			t.Fatal(err)
		}
		if r := call(t, "POST", url+"/pacts/provider/api/consumer/web/pact-version/"+p2.SHA+"/verification-results", w,
			map[string]any{"providerApplicationVersion": "a1", "success": true}); r.status != 201 {
			t.Fatalf("verification: %d %s", r.status, r.raw)
		}
		if r := call(t, "PUT", url+"/pacticipants/web/versions/2/tags/prod", w, map[string]any{}); r.status != 201 {
			t.Fatalf("tag: %d %s", r.status, r.raw)
		}

		// Edges of input, refused alike.
		for _, bad := range []string{"1\x002", "..", "a/b", strings.Repeat("v", 300)} {
			if r := call(t, "POST", url+"/contracts/publish", w, publishBody("web", bad, b64(helloPact))); r.status != 400 {
				t.Errorf("publish version %q: %d %s", bad, r.status, r.raw)
			}
		}

		// Only the write credential removes.
		if r := call(t, "DELETE", url+"/pacts/provider/api/consumer/web/version/2", ro, nil); r.status != http.StatusForbidden {
			t.Fatalf("delete with a read token: %d %s", r.status, r.raw)
		}
		// The pact of version 2 goes, with its verification.
		if r := call(t, "DELETE", url+"/pacts/provider/api/consumer/web/version/2", w, nil); r.status != http.StatusNoContent {
			t.Fatalf("delete pact: %d %s", r.status, r.raw)
		}
		if _, err := store.PactForConsumerVersion(ctx, "api", "web", "2"); !errors.Is(err, broker.ErrNotFound) {
			t.Fatalf("the pact of web 2 is still there: %v", err)
		}
		if _, err := store.Pact(ctx, "api", "web", p2.SHA); !errors.Is(err, broker.ErrNotFound) {
			t.Fatalf("the content only web 2 published is still there: %v", err)
		}
		if r := call(t, "DELETE", url+"/pacts/provider/api/consumer/web/version/2", w, nil); r.status != http.StatusNotFound {
			t.Fatalf("deleting it again: %d %s", r.status, r.raw)
		}
		// A version goes with its tags and pacts.
		if r := call(t, "DELETE", url+"/pacticipants/web/versions/2", w, nil); r.status != http.StatusNoContent {
			t.Fatalf("delete version: %d %s", r.status, r.raw)
		}
		if _, err := store.Version(ctx, "web", "2"); !errors.Is(err, broker.ErrNotFound) {
			t.Fatalf("web 2 is still there: %v", err)
		}
		if v, err := store.LatestVersion(ctx, "web"); err != nil || v.Number != "1" {
			t.Fatalf("web's latest version after deleting 2: %+v %v", v, err)
		}
		// The provider goes with every pact for it; the consumer stays.
		if r := call(t, "DELETE", url+"/pacticipants/api", w, nil); r.status != http.StatusNoContent {
			t.Fatalf("delete pacticipant: %d %s", r.status, r.raw)
		}
		if _, err := store.Pacticipant(ctx, "api"); !errors.Is(err, broker.ErrNotFound) {
			t.Fatalf("api is still there: %v", err)
		}
		if ps, err := store.LatestPacts(ctx, ""); err != nil || len(ps) != 0 {
			t.Fatalf("pacts for a deleted provider: %+v %v", ps, err)
		}
		if _, err := store.Version(ctx, "web", "1"); err != nil {
			t.Fatalf("web 1 went with its provider: %v", err)
		}
		if r := call(t, "DELETE", url+"/pacticipants/web", w, nil); r.status != http.StatusNoContent {
			t.Fatalf("delete web: %d %s", r.status, r.raw)
		}
		if ps, err := store.Pacticipants(ctx); err != nil || len(ps) != 0 {
			t.Fatalf("pacticipants left: %+v %v", ps, err)
		}
	})
}

// TestJSONOnly: a body that says it is not JSON is refused with 415.
func TestJSONOnly(t *testing.T) {
	url, _ := newBroker(t, broker.DefaultConfig())
	req, _ := http.NewRequest("POST", url+"/pacticipants", strings.NewReader(`{"name":"web"}`))
	req.Header.Set("Content-Type", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Fatalf("text/plain: %d, want 415", resp.StatusCode)
	}
	for _, ct := range []string{"application/json", "application/hal+json; charset=utf-8", ""} {
		req, _ := http.NewRequest("POST", url+"/pacticipants", strings.NewReader(`{"name":"web"}`))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Errorf("Content-Type %q: %d, want 201", ct, resp.StatusCode)
		}
	}
	// The curies' documentation resolves.
	resp, err = http.Get(url + "/doc/pacticipant-branch?context=index")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Errorf("/doc/pacticipant-branch: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}
