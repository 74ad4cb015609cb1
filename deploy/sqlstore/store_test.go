package sqlstore_test

import (
	"context"
	"testing"

	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/deploy/deploytest"
	"github.com/flotilla-ci/flotilla/deploy/sqlstore"
	"github.com/flotilla-ci/flotilla/internal/sqldb/sqldbtest"
)

func TestConformance(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, dsn string) {
		n := 0
		deploytest.RunStore(t, func(t *testing.T) deploy.Store {
			// Each subtest its own database: a fresh file, or a fresh
			// schema for PostgreSQL.
			n++
			d := dsn
			if n > 1 {
				if len(dsn) > 8 && dsn[:8] == "postgres" {
					d = sqldbtest.Postgres(t)
				} else {
					d = sqldbtest.SQLite(t)
				}
			}
			s, err := sqlstore.Open(context.Background(), d)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			return s
		})
	})
}

func TestReopenKeepsHistory(t *testing.T) {
	ctx := context.Background()
	dsn := sqldbtest.SQLite(t)
	s, err := sqlstore.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Add(ctx, deploy.Record{Service: "a", Version: "v1", Result: deploy.Succeeded}); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	s, err = sqlstore.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	cur, err := s.Current(ctx, "a")
	if err != nil || cur.Version != "v1" {
		t.Errorf("Current after reopening = %+v, %v; want v1", cur, err)
	}
}
