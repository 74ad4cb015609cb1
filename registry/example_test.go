package registry_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/flotilla-ci/flotilla/internal/sqldb"
	"github.com/flotilla-ci/flotilla/registry"
	"github.com/flotilla-ci/flotilla/registry/sqlstore"
)

func Example() {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, "") // in-memory SQLite; a postgres:// DSN in production
	if err != nil {
		panic(err)
	}
	defer func() { _ = db.Close() }()
	store, err := sqlstore.New(ctx, db)
	if err != nil {
		panic(err)
	}
	srv, err := registry.New(store, registry.DefaultConfig(), nil)
	if err != nil {
		panic(err)
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()

	post := func(path, body string) {
		resp, err := http.Post(ts.URL+path, registry.ContentType, strings.NewReader(body))
		if err != nil {
			panic(err)
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		fmt.Println(resp.StatusCode, string(b))
	}
	post("/subjects/OrderCreated-value/versions",
		`{"schema":"{\"type\":\"record\",\"name\":\"OrderCreated\",\"fields\":[{\"name\":\"total\",\"type\":\"long\"}]}"}`)
	// Narrowing long to int breaks consumers still reading old events.
	post("/compatibility/subjects/OrderCreated-value/versions/latest",
		`{"schema":"{\"type\":\"record\",\"name\":\"OrderCreated\",\"fields\":[{\"name\":\"total\",\"type\":\"int\"}]}"}`)
	// Output:
	// 200 {"id":1,"version":1}
	// 200 {"is_compatible":false}
}
