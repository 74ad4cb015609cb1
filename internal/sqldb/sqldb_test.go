package sqldb_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/flotilla-ci/flotilla/internal/sqldb"
	"github.com/flotilla-ci/flotilla/internal/sqldb/sqldbtest"
)

func TestMigrateAndConcurrentWrites(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db := sqldbtest.Open(t, dsn)
		migrations := os.DirFS("testdata/migrations")
		for i := 0; i < 2; i++ { // the second run must be a no-op
			if err := db.Migrate(ctx, "test", migrations); err != nil {
				t.Fatal(err)
			}
		}
		var n int
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE component = $1`, "test").Scan(&n); err != nil || n != 2 {
			t.Fatalf("schema_migrations rows = %d, %v; want 2", n, err)
		}
		// Many writers racing to insert the same name: exactly one wins, the
		// others see a unique violation; and counters all land.
		var wg sync.WaitGroup
		var mu sync.Mutex
		won, dup := 0, 0
		for i := 0; i < 16; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := db.InTx(ctx, func(tx *sqldb.Tx) error {
					if _, err := tx.ExecContext(ctx, `INSERT INTO counters (n) VALUES ($1)`, 1); err != nil {
						return err
					}
					_, err := tx.ExecContext(ctx, `INSERT INTO things (name) VALUES ($1)`, "same")
					return err
				})
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					won++
				case sqldb.IsUniqueViolation(err):
					dup++
				default:
					t.Errorf("insert: %v", err)
				}
			}()
		}
		wg.Wait()
		if won != 1 || dup != 15 {
			t.Fatalf("won=%d dup=%d, want 1 and 15", won, dup)
		}
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM counters`).Scan(&n); err != nil || n != 1 {
			t.Fatalf("counters = %d, %v; want 1 (rolled back with their failed insert)", n, err)
		}
		err := db.QueryRowContext(ctx, `SELECT name FROM things WHERE name = $1`, "absent").Scan(new(string))
		if !sqldb.IsNoRows(err) {
			t.Fatalf("want no rows, got %v", err)
		}
	})
}

func TestOpenRejectsDirectory(t *testing.T) {
	dir := t.TempDir()
	_, err := sqldb.Open(context.Background(), dir)
	if err == nil {
		t.Fatal("opening a directory as a database succeeded")
	}
	if _, err := sqldb.Open(context.Background(), filepath.Join(dir, "a", "b.db")); err != nil {
		t.Fatalf("open a new file in a new dir: %v", err)
	}
}

func TestMigrationNames(t *testing.T) {
	db := sqldbtest.Open(t, "")
	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, "init.sql"), []byte("SELECT 1"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := db.Migrate(context.Background(), "bad", os.DirFS(bad))
	if err == nil || errors.Is(err, context.Canceled) {
		t.Fatalf("a migration without a version number was accepted: %v", err)
	}
}

func TestAfterCommitAndStatements(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db := sqldbtest.Open(t, dsn)
		if _, err := db.ExecContext(ctx, `CREATE TABLE marks (n INTEGER NOT NULL)`); err != nil {
			t.Fatal(err)
		}
		before := db.Statements()
		ran := 0
		err := db.InTx(ctx, func(tx *sqldb.Tx) error {
			tx.AfterCommit(func() { ran++ })
			_, err := tx.ExecContext(ctx, `INSERT INTO marks (n) VALUES ($1)`, 1)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if ran != 1 {
			t.Fatalf("after a commit the hook ran %d times, want 1", ran)
		}
		if got := db.Statements() - before; got != 3 {
			t.Fatalf("a transaction of one insert counted %d statements, want 3 (BEGIN, INSERT, COMMIT)", got)
		}
		rollback := errors.New("rollback")
		err = db.InTx(ctx, func(tx *sqldb.Tx) error {
			tx.AfterCommit(func() { ran++ })
			return rollback
		})
		if !errors.Is(err, rollback) || ran != 1 {
			t.Fatalf("rolled back: err %v, hook ran %d times in all; want the error and 1", err, ran)
		}
	})
}
