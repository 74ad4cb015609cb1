package sqldb

import (
	"context"
	"fmt"
	"hash/fnv"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

// Migrate applies the component's migrations that this database has not yet
// seen, each in its own transaction, and records them in schema_migrations.
//
// Files in fsys (read from its root; use fs.Sub for a subfolder) are named
// NNN_description.sql, with dialect-specific variants
// NNN_description.sqlite.sql and NNN_description.postgres.sql that replace
// the plain file for their dialect. Several components may share one
// database: versions are counted per component. Concurrent Migrate calls
// on PostgreSQL serialize on an advisory lock.
func (db *DB) Migrate(ctx context.Context, component string, fsys fs.FS) error {
	steps, err := readMigrations(fsys, db.Dialect)
	if err != nil {
		return fmt.Errorf("migrations of %s: %w", component, err)
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		component TEXT NOT NULL,
		version INTEGER NOT NULL,
		name TEXT NOT NULL,
		PRIMARY KEY (component, version))`); err != nil {
		if !IsUniqueViolation(err) { // two processes creating it at once on PostgreSQL
			return fmt.Errorf("create schema_migrations: %w", err)
		}
	}
	for _, s := range steps {
		err := db.InTx(ctx, func(tx *Tx) error {
			if db.Dialect == Postgres {
				h := fnv.New64a()
				_, _ = h.Write([]byte("flotilla-migrate:" + component))
				if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(h.Sum64()>>1)); err != nil {
					return err
				}
			}
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE component = $1 AND version = $2`, component, s.version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if _, err := tx.ExecContext(ctx, s.sql); err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (component, version, name) VALUES ($1, $2, $3)`, component, s.version, s.name)
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate %s: %w", component, err)
		}
	}
	return nil
}

type migration struct {
	version int
	name    string
	sql     string
}

func readMigrations(fsys fs.FS, d Dialect) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, err
	}
	byVersion := map[int]migration{}
	specific := map[int]bool{}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".sql") {
			continue
		}
		base := strings.TrimSuffix(name, ".sql")
		dialect := ""
		if ext := path.Ext(base); ext == ".sqlite" || ext == ".postgres" {
			dialect = strings.TrimPrefix(ext, ".")
			base = strings.TrimSuffix(base, ext)
		}
		if dialect != "" && Dialect(dialect) != d {
			continue
		}
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("%s: want a name like 001_create_things.sql", name)
		}
		if dialect == "" && specific[v] {
			continue
		}
		if prev, dup := byVersion[v]; dup && (dialect == "") == !specific[v] {
			return nil, fmt.Errorf("%s and %s share version %d", prev.name, name, v)
		}
		body, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		byVersion[v] = migration{version: v, name: name, sql: string(body)}
		if dialect != "" {
			specific[v] = true
		}
	}
	out := make([]migration, 0, len(byVersion))
	for _, m := range byVersion {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	return out, nil
}
