package migrate_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/flotilla-ci/flotilla/internal/sqldb"
	"github.com/flotilla-ci/flotilla/internal/sqldb/sqldbtest"
	"github.com/flotilla-ci/flotilla/registry"
	"github.com/flotilla-ci/flotilla/registry/migrate"
	"github.com/flotilla-ci/flotilla/registry/sqlstore"
)

func newRegistry(t *testing.T, dsn string) *sr.Client {
	t.Helper()
	ctx := context.Background()
	db, err := sqldb.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	st, err := sqlstore.New(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := registry.New(st, registry.DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	cl, err := sr.NewClient(sr.URLs(ts.URL))
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

const (
	money   = `{"type":"record","name":"Money","namespace":"shop.common","fields":[{"name":"cents","type":"long"}]}`
	orderV1 = `{"type":"record","name":"OrderCreated","fields":[{"name":"id","type":"string"},{"name":"total","type":"shop.common.Money"}]}`
	orderV2 = `{"type":"record","name":"OrderCreated","fields":[{"name":"id","type":"string"},{"name":"total","type":"shop.common.Money"},{"name":"note","type":"string","default":""}]}`
	user    = `{"type":"record","name":"UserRegistered","fields":[{"name":"id","type":"string"}]}`
	scratch = `{"type":"record","name":"Scratch","fields":[]}`
)

func TestCopy(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		src := newRegistry(t, sqldbtest.SQLite(t))
		ref := []sr.SchemaReference{{Name: "shop.common.Money", Subject: "shop.common.Money-value", Version: 1}}
		mustCreate := func(subject, text string, refs []sr.SchemaReference) sr.SubjectSchema {
			t.Helper()
			ss, err := src.CreateSchema(ctx, subject, sr.Schema{Schema: text, References: refs})
			if err != nil {
				t.Fatalf("create %s: %v", subject, err)
			}
			return ss
		}
		mustCreate("scratch-value", scratch, nil) // id 1, deleted below: ids in the source have a gap
		mustCreate("shop.common.Money-value", money, nil)
		mustCreate("OrderCreated-value", orderV1, ref)
		mustCreate("UserRegistered-value", user, nil)
		mustCreate("OrderCreated-value", orderV2, ref)
		mustCreate("audit-value", user, nil) // the same schema under a second subject: one id
		if _, err := src.DeleteSubject(ctx, "scratch-value", sr.SoftDelete); err != nil {
			t.Fatal(err)
		}
		if res := src.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatFullTransitive}, "OrderCreated-value"); res[0].Err != nil {
			t.Fatal(res[0].Err)
		}

		dst := newRegistry(t, dsn)
		rep, err := migrate.Copy(ctx, src, dst, migrate.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(migrate.Report{Subjects: 4, Versions: 5, Schemas: 4, Levels: 2}, rep); diff != "" {
			t.Errorf("report (-want +got):\n%s", diff)
		}
		type row struct {
			Subject     string
			Version, ID int
			Schema      string
			Refs        int
		}
		dump := func(cl *sr.Client) []row {
			t.Helper()
			all, err := cl.AllSchemas(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var out []row
			for _, s := range all {
				out = append(out, row{s.Subject, s.Version, s.ID, s.Schema.Schema, len(s.References)})
			}
			return out
		}
		if diff := cmp.Diff(dump(src), dump(dst)); diff != "" {
			t.Errorf("target differs from source (-src +dst):\n%s", diff)
		}
		if got := dst.Compatibility(ctx, "OrderCreated-value"); got[0].Err != nil || got[0].Level != sr.CompatFullTransitive {
			t.Errorf("level of OrderCreated-value = %+v", got[0])
		}
		if got := dst.Mode(ctx); got[0].Err != nil || got[0].Mode != sr.ModeReadWrite {
			t.Errorf("target mode after the copy = %+v", got[0])
		}
		// New ids on the target continue after the copied ones.
		id, err := dst.RegisterSchema(ctx, "new-value", sr.Schema{Schema: `{"type":"record","name":"New","fields":[]}`}, -1, -1)
		if err != nil || id != 6 {
			t.Errorf("next id on the target = %d, %v; want 6", id, err)
		}
		// The copied FULL_TRANSITIVE level is enforced on the target.
		bad := strings.Replace(orderV2, `,{"name":"note","type":"string","default":""}`, `,{"name":"note","type":"string"}`, 1)
		if _, err := dst.RegisterSchema(ctx, "OrderCreated-value", sr.Schema{Schema: bad, References: ref}, -1, -1); err == nil {
			t.Error("the target accepted a schema its copied level forbids")
		}
	})
}

func TestCopyStopsAtAConflict(t *testing.T) {
	ctx := context.Background()
	src := newRegistry(t, sqldbtest.SQLite(t))
	dst := newRegistry(t, sqldbtest.SQLite(t))
	if _, err := src.CreateSchema(ctx, "user-value", sr.Schema{Schema: user}); err != nil {
		t.Fatal(err)
	}
	if _, err := dst.CreateSchema(ctx, "local-value", sr.Schema{Schema: scratch}); err != nil { // takes id 1
		t.Fatal(err)
	}
	_, err := migrate.Copy(ctx, src, dst, migrate.Options{})
	if err == nil || !strings.Contains(err.Error(), "import user-value version 1 (id 1)") || !strings.Contains(err.Error(), "id 1 already holds another schema") {
		t.Errorf("Copy = %v", err)
	}
	if got := dst.Mode(ctx); got[0].Mode != sr.ModeReadWrite {
		t.Errorf("target left in mode %v", got[0].Mode)
	}
}
