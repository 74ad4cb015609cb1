package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/flotilla-ci/flotilla/internal/sqldb"
	"github.com/flotilla-ci/flotilla/internal/sqldb/sqldbtest"
	"github.com/flotilla-ci/flotilla/registry"
	"github.com/flotilla-ci/flotilla/registry/sqlstore"
	"github.com/flotilla-ci/flotilla/schema"
)

func open(t *testing.T, dsn string) *sqlstore.Store {
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
	return st
}

func rec(fields ...string) *schema.Schema {
	text := `{"type":"record","name":"R","fields":[`
	for i, f := range fields {
		if i > 0 {
			text += ","
		}
		text += f
	}
	return schema.MustParse(text + "]}")
}

// accept is a check that lets everything in and records what it saw.
func accept(seen *[][]int) registry.CheckFunc {
	return func(prev []registry.SubjectVersion, _, _ schema.Mode) error {
		var vs []int
		for _, p := range prev {
			vs = append(vs, p.Version)
		}
		if seen != nil {
			*seen = append(*seen, vs)
		}
		return nil
	}
}

func TestStore(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		st := open(t, dsn)
		a := rec(`{"name":"a","type":"int"}`)
		b := rec(`{"name":"a","type":"int"}`, `{"name":"b","type":"int","default":0}`)
		aSpaced := schema.MustParse(`{ "type" : "record", "name" : "R", "fields" : [ {"name":"a","type":{"type":"int"}} ] }`)

		var seen [][]int
		r1, err := st.Register(ctx, "orders-value", a, nil, accept(&seen))
		if err != nil {
			t.Fatal(err)
		}
		r2, err := st.Register(ctx, "orders-value", b, nil, accept(&seen))
		if err != nil {
			t.Fatal(err)
		}
		again, err := st.Register(ctx, "orders-value", aSpaced, nil, accept(&seen))
		if err != nil {
			t.Fatal(err)
		}
		other, err := st.Register(ctx, "payments-value", a, nil, accept(&seen))
		if err != nil {
			t.Fatal(err)
		}
		want := []registry.Registered{{ID: r1.ID, Version: 1, Created: true}, {ID: r2.ID, Version: 2, Created: true},
			{ID: r1.ID, Version: 1}, {ID: r1.ID, Version: 1, Created: true}}
		if diff := cmp.Diff(want, []registry.Registered{r1, r2, again, other}); diff != "" {
			t.Errorf("registrations (-want +got):\n%s", diff)
		}
		if r1.ID == r2.ID {
			t.Errorf("two schemas share id %d", r1.ID)
		}
		if diff := cmp.Diff([][]int{nil, {1}, nil}, seen); diff != "" {
			t.Errorf("check saw (-want +got):\n%s", diff)
		}

		// A failing check stores nothing.
		boom := errors.New("incompatible")
		if _, err := st.Register(ctx, "orders-value", rec(`{"name":"z","type":"int"}`), nil, func([]registry.SubjectVersion, schema.Mode, schema.Mode) error { return boom }); !errors.Is(err, boom) {
			t.Fatalf("failing check: %v", err)
		}
		if vs, _ := st.Versions(ctx, "orders-value", true); len(vs) != 2 {
			t.Errorf("after a failed check: %d versions", len(vs))
		}

		stored, err := st.SchemaByID(ctx, r1.ID)
		if err != nil || stored.Schema != a.String() || stored.SchemaType != registry.Avro {
			t.Errorf("SchemaByID = %+v, %v", stored, err)
		}
		if _, err := st.SchemaByID(ctx, 9999); !errors.Is(err, registry.ErrSchemaNotFound) {
			t.Errorf("unknown id: %v", err)
		}
		us, err := st.Usages(ctx, r1.ID, false)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]registry.SubjectVersion{{Subject: "orders-value", Version: 1, ID: r1.ID}, {Subject: "payments-value", Version: 1, ID: r1.ID}}, us); diff != "" {
			t.Errorf("usages (-want +got):\n%s", diff)
		}
		subs, _ := st.Subjects(ctx, false)
		if diff := cmp.Diff([]string{"orders-value", "payments-value"}, subs); diff != "" {
			t.Errorf("subjects (-want +got):\n%s", diff)
		}
		latest, err := st.Version(ctx, "orders-value", registry.Latest, false)
		if err != nil || latest.Version != 2 || latest.ID != r2.ID {
			t.Errorf("latest = %+v, %v", latest, err)
		}
		if _, err := st.Version(ctx, "orders-value", 7, false); !errors.Is(err, registry.ErrVersionNotFound) {
			t.Errorf("version 7: %v", err)
		}
		if _, err := st.Version(ctx, "nope", 1, false); !errors.Is(err, registry.ErrSubjectNotFound) {
			t.Errorf("unknown subject: %v", err)
		}
		found, err := st.Lookup(ctx, "orders-value", aSpaced, nil, false)
		if err != nil || found.Version != 1 {
			t.Errorf("lookup = %+v, %v", found, err)
		}
		if _, err := st.Lookup(ctx, "orders-value", rec(`{"name":"q","type":"int"}`), nil, false); !errors.Is(err, registry.ErrSchemaNotFound) {
			t.Errorf("lookup of unregistered: %v", err)
		}

		// Deletes: version, then subject, soft then hard.
		if err := st.DeleteVersion(ctx, "orders-value", 2, true); !errors.Is(err, registry.ErrVersionNotSoftDeleted) {
			t.Errorf("hard delete before soft: %v", err)
		}
		if err := st.DeleteVersion(ctx, "orders-value", 2, false); err != nil {
			t.Fatal(err)
		}
		if err := st.DeleteVersion(ctx, "orders-value", 2, false); !errors.Is(err, registry.ErrVersionSoftDeleted) {
			t.Errorf("second soft delete: %v", err)
		}
		if l, _ := st.Version(ctx, "orders-value", registry.Latest, false); l.Version != 1 {
			t.Errorf("latest after deleting 2 = %d", l.Version)
		}
		if stored, err := st.SchemaByID(ctx, r2.ID); err != nil || stored.Schema == "" {
			t.Errorf("id of a soft-deleted version no longer resolves: %v", err)
		}
		// Re-registering the deleted schema makes a new version.
		r3, err := st.Register(ctx, "orders-value", b, nil, accept(nil))
		if err != nil || r3.Version != 3 || r3.ID != r2.ID || !r3.Created {
			t.Errorf("re-register after delete = %+v, %v", r3, err)
		}
		if _, err := st.DeleteSubject(ctx, "orders-value", true); !errors.Is(err, registry.ErrSubjectNotSoftDeleted) {
			t.Errorf("hard subject delete before soft: %v", err)
		}
		vs, err := st.DeleteSubject(ctx, "orders-value", false)
		if err != nil || !cmp.Equal(vs, []int{1, 3}) {
			t.Errorf("soft delete = %v, %v", vs, err)
		}
		if _, err := st.DeleteSubject(ctx, "orders-value", false); !errors.Is(err, registry.ErrSubjectSoftDeleted) {
			t.Errorf("second soft delete: %v", err)
		}
		if subs, _ := st.Subjects(ctx, false); !cmp.Equal(subs, []string{"payments-value"}) {
			t.Errorf("live subjects = %v", subs)
		}
		if subs, _ := st.Subjects(ctx, true); !cmp.Equal(subs, []string{"orders-value", "payments-value"}) {
			t.Errorf("all subjects = %v", subs)
		}
		vs, err = st.DeleteSubject(ctx, "orders-value", true)
		if err != nil || !cmp.Equal(vs, []int{1, 2, 3}) {
			t.Errorf("hard delete = %v, %v", vs, err)
		}
		if _, err := st.Versions(ctx, "orders-value", true); !errors.Is(err, registry.ErrSubjectNotFound) {
			t.Errorf("after hard delete: %v", err)
		}

		// Levels.
		if _, err := st.Level(ctx, ""); !errors.Is(err, registry.ErrNoLevel) {
			t.Errorf("global level unset: %v", err)
		}
		if err := st.SetLevel(ctx, "", schema.Full); err != nil {
			t.Fatal(err)
		}
		if err := st.SetLevel(ctx, "payments-value", schema.None); err != nil {
			t.Fatal(err)
		}
		if err := st.SetLevel(ctx, "payments-value", schema.ForwardTransitive); err != nil {
			t.Fatal(err)
		}
		var levels []schema.Mode
		_, err = st.Register(ctx, "payments-value", b, nil, func(_ []registry.SubjectVersion, sl, gl schema.Mode) error {
			levels = []schema.Mode{sl, gl}
			return nil
		})
		if err != nil || !cmp.Equal(levels, []schema.Mode{schema.ForwardTransitive, schema.Full}) {
			t.Errorf("levels seen by check = %v, %v", levels, err)
		}
		if prev, err := st.DeleteLevel(ctx, "payments-value"); err != nil || prev != schema.ForwardTransitive {
			t.Errorf("DeleteLevel = %v, %v", prev, err)
		}
		if _, err := st.DeleteLevel(ctx, "payments-value"); !errors.Is(err, registry.ErrNoLevel) {
			t.Errorf("second DeleteLevel: %v", err)
		}

		// Modes.
		if _, err := st.Mode(ctx, ""); !errors.Is(err, registry.ErrNoMode) {
			t.Errorf("global mode unset: %v", err)
		}
		for _, m := range []string{"READONLY", "READWRITE"} {
			if err := st.SetMode(ctx, "payments-value", m); err != nil {
				t.Fatal(err)
			}
		}
		if m, err := st.Mode(ctx, "payments-value"); err != nil || m != "READWRITE" {
			t.Errorf("Mode = %q, %v", m, err)
		}
		if prev, err := st.DeleteMode(ctx, "payments-value"); err != nil || prev != "READWRITE" {
			t.Errorf("DeleteMode = %q, %v", prev, err)
		}
		if _, err := st.DeleteMode(ctx, "payments-value"); !errors.Is(err, registry.ErrNoMode) {
			t.Errorf("second DeleteMode: %v", err)
		}
	})
}

// Racing writers: every schema gets one id, versions are dense, and the
// check always sees every version committed before it (none is skipped).
func TestStoreConcurrentRegister(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		st := open(t, dsn)
		const writers, schemas = 8, 6
		var wg sync.WaitGroup
		var mu sync.Mutex
		ids := map[string]map[int]bool{}
		errs := make(chan error, writers*schemas*2)
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < schemas; i++ {
					sc := rec(fmt.Sprintf(`{"name":"f%d","type":"int","default":0}`, i))
					for _, sub := range []string{"a-value", "b-value"} {
						res, err := st.Register(ctx, sub, sc, nil, func(prev []registry.SubjectVersion, _, _ schema.Mode) error {
							for j, p := range prev {
								if p.Version != j+1 {
									return fmt.Errorf("check saw versions with a gap: %+v", prev)
								}
							}
							return nil
						})
						if err != nil {
							errs <- err
							return
						}
						mu.Lock()
						if ids[sc.Normalized()] == nil {
							ids[sc.Normalized()] = map[int]bool{}
						}
						ids[sc.Normalized()][res.ID] = true
						mu.Unlock()
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		for norm, set := range ids {
			if len(set) != 1 {
				t.Errorf("schema %s got ids %v", norm, set)
			}
		}
		for _, sub := range []string{"a-value", "b-value"} {
			vs, err := st.Versions(ctx, sub, true)
			if err != nil {
				t.Fatal(err)
			}
			if len(vs) != schemas {
				t.Errorf("%s has %d versions, want %d (one per schema)", sub, len(vs), schemas)
			}
		}
	})
}
