package registry_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/flotilla-ci/flotilla/internal/sqldb"
	"github.com/flotilla-ci/flotilla/registry"
	"github.com/flotilla-ci/flotilla/registry/sqlstore"
)

// FuzzRequests throws arbitrary paths and bodies at the server: whatever
// comes in, the answer is never a 5xx.
func FuzzRequests(f *testing.F) {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, "")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = db.Close() })
	st, err := sqlstore.New(ctx, db)
	if err != nil {
		f.Fatal(err)
	}
	srv, err := registry.New(st, registry.DefaultConfig(), nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add("POST", "/subjects/a-value/versions", body(v1))
	f.Add("POST", "/subjects/a-value/versions", body(v3))
	f.Add("POST", "/compatibility/subjects/a-value/versions/latest?verbose=true", body(v2))
	f.Add("POST", "/subjects/a-value", `{"schema":"\"int\""}`)
	f.Add("PUT", "/config/a-value", `{"compatibility":"FULL"}`)
	f.Add("GET", "/subjects/a-value/versions/-1", "")
	f.Add("DELETE", "/subjects/a-value/versions/1?permanent=true", "")
	f.Add("GET", "/schemas/ids/1/versions?deleted=true", "")
	f.Fuzz(func(t *testing.T, method, path, payload string) {
		switch method {
		case "GET", "POST", "PUT", "DELETE":
		default:
			return
		}
		if !strings.HasPrefix(path, "/") {
			return
		}
		req, err := http.NewRequest(method, "http://registry"+path, strings.NewReader(payload))
		if err != nil {
			return
		}
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s %q: %d %s", method, path, payload, rec.Code, rec.Body)
		}
	})
}
