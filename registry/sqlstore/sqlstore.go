// Package sqlstore keeps the schema registry's state in SQLite or
// PostgreSQL through internal/sqldb.
//
// Writes to one subject are serialised: on PostgreSQL by a
// transaction-scoped advisory lock on the subject's hash, on SQLite by
// immediate (write-locking) transactions. Schema ids come from one table
// keyed by the SHA-256 of the normalised schema, so a schema registered
// concurrently under two subjects still gets one id.
package sqlstore

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"embed"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"

	"github.com/flotilla-ci/flotilla/internal/sqldb"
	"github.com/flotilla-ci/flotilla/registry"
	"github.com/flotilla-ci/flotilla/schema"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is a registry.Store on a SQL database.
type Store struct {
	db *sqldb.DB
}

var _ registry.Store = (*Store)(nil)

// New migrates db and returns a store on it. The caller closes db.
func New(ctx context.Context, db *sqldb.DB) (*Store, error) {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	if err := db.Migrate(ctx, "registry", sub); err != nil {
		return nil, err
	}
	return &Store{db: db}, nil
}

// identity returns the key a schema is known by (the SHA-256 of its
// normalised form, with its references when it has any) and its references
// as stored.
func identity(s registry.Parsed, refs []registry.Reference) (hash, refsJSON string) {
	norm := s.Normalized()
	if t := s.SchemaType(); t != registry.Avro {
		norm = t + "\x00" + norm // the same text as another type is another schema
	}
	if len(refs) == 0 {
		h := sha256.Sum256([]byte(norm))
		return hex.EncodeToString(h[:]), "[]"
	}
	b, _ := json.Marshal(refs)
	h := sha256.Sum256(append([]byte(norm+"\x00"), b...))
	return hex.EncodeToString(h[:]), string(b)
}

func decodeRefs(text string) ([]registry.Reference, error) {
	var refs []registry.Reference
	if err := json.Unmarshal([]byte(text), &refs); err != nil {
		return nil, fmt.Errorf("stored references: %w", err)
	}
	if len(refs) == 0 {
		return nil, nil
	}
	return refs, nil
}

// lock takes the subject's write lock for the rest of the transaction.
func lock(ctx context.Context, tx *sqldb.Tx, subject string) error {
	if tx.Dialect() != sqldb.Postgres {
		return nil // the immediate transaction already holds SQLite's write lock
	}
	h := sha256.Sum256([]byte("flotilla-registry:" + subject))
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(binary.BigEndian.Uint64(h[:8]))); err != nil {
		return fmt.Errorf("lock subject %s: %w", subject, err)
	}
	return nil
}

// Register implements registry.Store.
func (s *Store) Register(ctx context.Context, subject string, sc registry.Parsed, refs []registry.Reference, check registry.CheckFunc) (registry.Registered, error) {
	hash, refsJSON := identity(sc, refs)
	var out registry.Registered
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		out = registry.Registered{}
		if err := lock(ctx, tx, subject); err != nil {
			return err
		}
		err := tx.QueryRowContext(ctx, `SELECT v.version, v.schema_id FROM registry_versions v
			JOIN registry_schemas s ON s.id = v.schema_id
			WHERE v.subject = $1 AND s.hash = $2 AND v.deleted = 0 ORDER BY v.version LIMIT 1`,
			subject, hash).Scan(&out.Version, &out.ID)
		if err == nil {
			return nil
		}
		if !sqldb.IsNoRows(err) {
			return fmt.Errorf("look up %s: %w", subject, err)
		}
		prev, err := versions(ctx, tx, subject, false)
		if err != nil {
			return err
		}
		subjLevel, err := level(ctx, tx, subject)
		if err != nil {
			return err
		}
		globalLevel, err := level(ctx, tx, "")
		if err != nil {
			return err
		}
		if err := check(prev, subjLevel, globalLevel); err != nil {
			return err
		}
		// Look first, so ids stay dense: an insert that loses to a
		// conflict still consumes a sequence value on PostgreSQL.
		err = tx.QueryRowContext(ctx, `SELECT id FROM registry_schemas WHERE hash = $1`, hash).Scan(&out.ID)
		if sqldb.IsNoRows(err) {
			res, ierr := tx.ExecContext(ctx, `INSERT INTO registry_schemas (hash, normalized, schema, refs, schema_type) VALUES ($1, $2, $3, $4, $5)
				ON CONFLICT (hash) DO NOTHING`, hash, sc.Normalized(), sc.String(), refsJSON, sc.SchemaType())
			if ierr != nil {
				return fmt.Errorf("store schema: %w", ierr)
			}
			err = tx.QueryRowContext(ctx, `SELECT id FROM registry_schemas WHERE hash = $1`, hash).Scan(&out.ID)
			if n, _ := res.RowsAffected(); err == nil && n == 1 {
				for _, r := range refs {
					if _, err := tx.ExecContext(ctx, `INSERT INTO registry_references (schema_id, name, subject, version) VALUES ($1, $2, $3, $4)`,
						out.ID, r.Name, r.Subject, r.Version); err != nil {
						return fmt.Errorf("store reference %s: %w", r.Name, err)
					}
				}
			}
		}
		if err != nil {
			return fmt.Errorf("store schema: %w", err)
		}
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) + 1 FROM registry_versions WHERE subject = $1`,
			subject).Scan(&out.Version); err != nil {
			return fmt.Errorf("next version of %s: %w", subject, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO registry_versions (subject, version, schema_id) VALUES ($1, $2, $3)`,
			subject, out.Version, out.ID); err != nil {
			return fmt.Errorf("store version %d of %s: %w", out.Version, subject, err)
		}
		out.Created = true
		return nil
	})
	return out, err
}

// querier is what *sqldb.DB and *sqldb.Tx share.
// Import implements registry.Store.
func (s *Store) Import(ctx context.Context, subject string, sc registry.Parsed, refs []registry.Reference, id, version int) (registry.Registered, error) {
	hash, refsJSON := identity(sc, refs)
	var out registry.Registered
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		out = registry.Registered{}
		if err := lock(ctx, tx, subject); err != nil {
			return err
		}
		if tx.Dialect() == sqldb.Postgres {
			// Ids are global: serialise imports that choose them.
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(7304581263)`); err != nil {
				return err
			}
		}
		var existing int
		err := tx.QueryRowContext(ctx, `SELECT id FROM registry_schemas WHERE hash = $1`, hash).Scan(&existing)
		if err != nil && !sqldb.IsNoRows(err) {
			return fmt.Errorf("import: %w", err)
		}
		switch {
		case id > 0 && existing != 0 && existing != id:
			return fmt.Errorf("schema is registered with id %d, not %d: %w", existing, id, registry.ErrConflict)
		case id > 0 && existing == 0:
			var other string
			err := tx.QueryRowContext(ctx, `SELECT hash FROM registry_schemas WHERE id = $1`, id).Scan(&other)
			if err == nil {
				return fmt.Errorf("id %d %w", id, registry.ErrConflict)
			}
			if !sqldb.IsNoRows(err) {
				return fmt.Errorf("import: %w", err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO registry_schemas (id, hash, normalized, schema, refs, schema_type) VALUES ($1, $2, $3, $4, $5, $6)`,
				id, hash, sc.Normalized(), sc.String(), refsJSON, sc.SchemaType()); err != nil {
				return fmt.Errorf("import schema %d: %w", id, err)
			}
			if tx.Dialect() == sqldb.Postgres {
				if _, err := tx.ExecContext(ctx, `SELECT setval(pg_get_serial_sequence('registry_schemas', 'id'), (SELECT MAX(id) FROM registry_schemas))`); err != nil {
					return fmt.Errorf("import: move the id sequence: %w", err)
				}
			}
			existing = id
			for _, r := range refs {
				if _, err := tx.ExecContext(ctx, `INSERT INTO registry_references (schema_id, name, subject, version) VALUES ($1, $2, $3, $4)`,
					id, r.Name, r.Subject, r.Version); err != nil {
					return fmt.Errorf("store reference %s: %w", r.Name, err)
				}
			}
		case existing == 0:
			if _, err := tx.ExecContext(ctx, `INSERT INTO registry_schemas (hash, normalized, schema, refs, schema_type) VALUES ($1, $2, $3, $4, $5)`,
				hash, sc.Normalized(), sc.String(), refsJSON, sc.SchemaType()); err != nil {
				return fmt.Errorf("import schema: %w", err)
			}
			if err := tx.QueryRowContext(ctx, `SELECT id FROM registry_schemas WHERE hash = $1`, hash).Scan(&existing); err != nil {
				return fmt.Errorf("import schema: %w", err)
			}
			for _, r := range refs {
				if _, err := tx.ExecContext(ctx, `INSERT INTO registry_references (schema_id, name, subject, version) VALUES ($1, $2, $3, $4)`,
					existing, r.Name, r.Subject, r.Version); err != nil {
					return fmt.Errorf("store reference %s: %w", r.Name, err)
				}
			}
		}
		out.ID = existing
		vs, err := versions(ctx, tx, subject, true)
		if err != nil {
			return err
		}
		for _, v := range vs {
			if version > 0 && v.Version == version {
				if v.ID != out.ID {
					return fmt.Errorf("version %d of %s %w", version, subject, registry.ErrConflict)
				}
				out.Version = v.Version
				return nil
			}
			if version == 0 && v.ID == out.ID && !v.Deleted {
				out.Version = v.Version
				return nil
			}
		}
		out.Version = version
		if version == 0 {
			out.Version = 1
			if len(vs) > 0 {
				out.Version = vs[len(vs)-1].Version + 1
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO registry_versions (subject, version, schema_id) VALUES ($1, $2, $3)`,
			subject, out.Version, out.ID); err != nil {
			return fmt.Errorf("import version %d of %s: %w", out.Version, subject, err)
		}
		out.Created = true
		return nil
	})
	return out, err
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func flag(deleted bool) int {
	if deleted {
		return 1
	}
	return 0
}

func versions(ctx context.Context, q querier, subject string, deleted bool) ([]registry.SubjectVersion, error) {
	rows, err := q.QueryContext(ctx, `SELECT v.version, v.schema_id, s.schema, s.refs, v.deleted, s.schema_type FROM registry_versions v
		JOIN registry_schemas s ON s.id = v.schema_id
		WHERE v.subject = $1 AND v.deleted <= $2 ORDER BY v.version`, subject, flag(deleted))
	if err != nil {
		return nil, fmt.Errorf("versions of %s: %w", subject, err)
	}
	defer func() { _ = rows.Close() }()
	var out []registry.SubjectVersion
	for rows.Next() {
		v := registry.SubjectVersion{Subject: subject}
		var del int
		var refs string
		if err := rows.Scan(&v.Version, &v.ID, &v.Schema, &refs, &del, &v.SchemaType); err != nil {
			return nil, fmt.Errorf("versions of %s: %w", subject, err)
		}
		if v.References, err = decodeRefs(refs); err != nil {
			return nil, err
		}
		v.Deleted = del != 0
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("versions of %s: %w", subject, err)
	}
	return out, nil
}

func level(ctx context.Context, q querier, subject string) (schema.Mode, error) {
	var l string
	err := q.QueryRowContext(ctx, `SELECT level FROM registry_levels WHERE subject = $1`, subject).Scan(&l)
	if sqldb.IsNoRows(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("compatibility level: %w", err)
	}
	return schema.Mode(l), nil
}

// SchemaByID implements registry.Store.
func (s *Store) SchemaByID(ctx context.Context, id int) (registry.Stored, error) {
	var out registry.Stored
	var refs string
	err := s.db.QueryRowContext(ctx, `SELECT schema, refs, schema_type FROM registry_schemas WHERE id = $1`, id).Scan(&out.Schema, &refs, &out.SchemaType)
	if sqldb.IsNoRows(err) {
		return out, registry.ErrSchemaNotFound
	}
	if err != nil {
		return out, fmt.Errorf("schema %d: %w", id, err)
	}
	out.References, err = decodeRefs(refs)
	return out, err
}

// MaxID implements registry.Store.
func (s *Store) MaxID(ctx context.Context) (int, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(id), 0) FROM registry_schemas`).Scan(&n); err != nil {
		return 0, fmt.Errorf("largest schema id: %w", err)
	}
	return n, nil
}

// Usages implements registry.Store.
func (s *Store) Usages(ctx context.Context, id int, deleted bool) ([]registry.SubjectVersion, error) {
	if _, err := s.SchemaByID(ctx, id); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT subject, version, deleted FROM registry_versions
		WHERE schema_id = $1 AND deleted <= $2 ORDER BY subject, version`, id, flag(deleted))
	if err != nil {
		return nil, fmt.Errorf("usages of schema %d: %w", id, err)
	}
	defer func() { _ = rows.Close() }()
	out := []registry.SubjectVersion{}
	for rows.Next() {
		v := registry.SubjectVersion{ID: id}
		var del int
		if err := rows.Scan(&v.Subject, &v.Version, &del); err != nil {
			return nil, fmt.Errorf("usages of schema %d: %w", id, err)
		}
		v.Deleted = del != 0
		out = append(out, v)
	}
	return out, rows.Err()
}

// Lookup implements registry.Store.
func (s *Store) Lookup(ctx context.Context, subject string, sc registry.Parsed, refs []registry.Reference, deleted bool) (registry.SubjectVersion, error) {
	v := registry.SubjectVersion{Subject: subject, References: refs}
	var del int
	hash, _ := identity(sc, refs)
	err := s.db.QueryRowContext(ctx, `SELECT v.version, v.schema_id, s.schema, v.deleted, s.schema_type FROM registry_versions v
		JOIN registry_schemas s ON s.id = v.schema_id
		WHERE v.subject = $1 AND s.hash = $2 AND v.deleted <= $3 ORDER BY v.deleted, v.version LIMIT 1`,
		subject, hash, flag(deleted)).Scan(&v.Version, &v.ID, &v.Schema, &del, &v.SchemaType)
	if sqldb.IsNoRows(err) {
		if _, err := s.Version(ctx, subject, registry.Latest, deleted); err != nil {
			return v, registry.ErrSubjectNotFound
		}
		return v, registry.ErrSchemaNotFound
	}
	if err != nil {
		return v, fmt.Errorf("look up in %s: %w", subject, err)
	}
	v.Deleted = del != 0
	return v, nil
}

// ReferencedBy implements registry.Store.
func (s *Store) ReferencedBy(ctx context.Context, subject string, version int) ([]int, error) {
	return referencedBy(ctx, s.db, subject, version)
}

func referencedBy(ctx context.Context, q querier, subject string, version int) ([]int, error) {
	rows, err := q.QueryContext(ctx, `SELECT DISTINCT r.schema_id FROM registry_references r
		JOIN registry_versions v ON v.schema_id = r.schema_id
		WHERE r.subject = $1 AND r.version = $2 ORDER BY r.schema_id`, subject, version)
	if err != nil {
		return nil, fmt.Errorf("references to %s version %d: %w", subject, version, err)
	}
	defer func() { _ = rows.Close() }()
	ids := []int{}
	for rows.Next() {
		var id int
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// Subjects implements registry.Store.
func (s *Store) Subjects(ctx context.Context, deleted bool) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT DISTINCT subject FROM registry_versions WHERE deleted <= $1 ORDER BY subject`, flag(deleted))
	if err != nil {
		return nil, fmt.Errorf("subjects: %w", err)
	}
	defer func() { _ = rows.Close() }()
	out := []string{}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, fmt.Errorf("subjects: %w", err)
		}
		out = append(out, name)
	}
	return out, rows.Err()
}

// Versions implements registry.Store.
func (s *Store) Versions(ctx context.Context, subject string, deleted bool) ([]registry.SubjectVersion, error) {
	vs, err := versions(ctx, s.db, subject, deleted)
	if err != nil {
		return nil, err
	}
	if len(vs) == 0 {
		return nil, registry.ErrSubjectNotFound
	}
	return vs, nil
}

// Version implements registry.Store.
func (s *Store) Version(ctx context.Context, subject string, version int, deleted bool) (registry.SubjectVersion, error) {
	vs, err := versions(ctx, s.db, subject, true)
	if err != nil {
		return registry.SubjectVersion{}, err
	}
	live := 0
	for _, v := range vs {
		if !v.Deleted {
			live++
		}
	}
	if len(vs) == 0 || (live == 0 && !deleted) {
		return registry.SubjectVersion{}, registry.ErrSubjectNotFound
	}
	if version == registry.Latest {
		for i := len(vs) - 1; i >= 0; i-- {
			if !vs[i].Deleted || deleted {
				return vs[i], nil
			}
		}
		return registry.SubjectVersion{}, registry.ErrVersionNotFound
	}
	for _, v := range vs {
		if v.Version == version && (!v.Deleted || deleted) {
			return v, nil
		}
	}
	return registry.SubjectVersion{}, registry.ErrVersionNotFound
}

// DeleteSubject implements registry.Store.
func (s *Store) DeleteSubject(ctx context.Context, subject string, permanent bool) ([]int, error) {
	var out []int
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		out = nil
		if err := lock(ctx, tx, subject); err != nil {
			return err
		}
		vs, err := versions(ctx, tx, subject, true)
		if err != nil {
			return err
		}
		if len(vs) == 0 {
			return registry.ErrSubjectNotFound
		}
		live := 0
		for _, v := range vs {
			if !v.Deleted {
				live++
			}
			ids, err := referencedBy(ctx, tx, subject, v.Version)
			if err != nil {
				return err
			}
			if len(ids) > 0 {
				return fmt.Errorf("%s version %d is referenced by schema %d: %w", subject, v.Version, ids[0], registry.ErrReferenceExists)
			}
		}
		if permanent {
			if live > 0 {
				return registry.ErrSubjectNotSoftDeleted
			}
			for _, v := range vs {
				out = append(out, v.Version)
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM registry_versions WHERE subject = $1`, subject); err != nil {
				return fmt.Errorf("delete %s: %w", subject, err)
			}
			ids := make([]int, 0, len(vs))
			for _, v := range vs {
				ids = append(ids, v.ID)
			}
			if err := purgeOrphans(ctx, tx, ids); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM registry_levels WHERE subject = $1`, subject); err != nil {
				return fmt.Errorf("delete %s: %w", subject, err)
			}
			return nil
		}
		if live == 0 {
			return registry.ErrSubjectSoftDeleted
		}
		for _, v := range vs {
			if !v.Deleted {
				out = append(out, v.Version)
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE registry_versions SET deleted = 1 WHERE subject = $1`, subject); err != nil {
			return fmt.Errorf("delete %s: %w", subject, err)
		}
		return nil
	})
	return out, err
}

// DeleteVersion implements registry.Store.
func (s *Store) DeleteVersion(ctx context.Context, subject string, version int, permanent bool) error {
	return s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		if err := lock(ctx, tx, subject); err != nil {
			return err
		}
		vs, err := versions(ctx, tx, subject, true)
		if err != nil {
			return err
		}
		if len(vs) == 0 {
			return registry.ErrSubjectNotFound
		}
		var found *registry.SubjectVersion
		for i := range vs {
			if vs[i].Version == version {
				found = &vs[i]
			}
		}
		if found == nil {
			return registry.ErrVersionNotFound
		}
		ids, err := referencedBy(ctx, tx, subject, version)
		if err != nil {
			return err
		}
		if len(ids) > 0 {
			return fmt.Errorf("%s version %d is referenced by schema %d: %w", subject, version, ids[0], registry.ErrReferenceExists)
		}
		if permanent {
			if !found.Deleted {
				return registry.ErrVersionNotSoftDeleted
			}
			_, err = tx.ExecContext(ctx, `DELETE FROM registry_versions WHERE subject = $1 AND version = $2`, subject, version)
			if err == nil {
				err = purgeOrphans(ctx, tx, []int{found.ID})
			}
		} else {
			if found.Deleted {
				return registry.ErrVersionSoftDeleted
			}
			_, err = tx.ExecContext(ctx, `UPDATE registry_versions SET deleted = 1 WHERE subject = $1 AND version = $2`, subject, version)
		}
		if err != nil {
			return fmt.Errorf("delete version %d of %s: %w", version, subject, err)
		}
		return nil
	})
}

// Level implements registry.Store.
func (s *Store) Level(ctx context.Context, subject string) (schema.Mode, error) {
	l, err := level(ctx, s.db, subject)
	if err == nil && l == "" {
		return "", registry.ErrNoLevel
	}
	return l, err
}

// SetLevel implements registry.Store.
func (s *Store) SetLevel(ctx context.Context, subject string, m schema.Mode) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO registry_levels (subject, level) VALUES ($1, $2)
		ON CONFLICT (subject) DO UPDATE SET level = excluded.level`, subject, string(m))
	if err != nil {
		return fmt.Errorf("set compatibility level: %w", err)
	}
	return nil
}

// DeleteLevel implements registry.Store.
func (s *Store) DeleteLevel(ctx context.Context, subject string) (schema.Mode, error) {
	var prev schema.Mode
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		l, err := level(ctx, tx, subject)
		if err != nil {
			return err
		}
		if l == "" {
			return registry.ErrNoLevel
		}
		prev = l
		_, err = tx.ExecContext(ctx, `DELETE FROM registry_levels WHERE subject = $1`, subject)
		return err
	})
	return prev, err
}

// Mode implements registry.Store.
func (s *Store) Mode(ctx context.Context, subject string) (string, error) {
	var m string
	err := s.db.QueryRowContext(ctx, `SELECT mode FROM registry_modes WHERE subject = $1`, subject).Scan(&m)
	if sqldb.IsNoRows(err) {
		return "", registry.ErrNoMode
	}
	if err != nil {
		return "", fmt.Errorf("mode: %w", err)
	}
	return m, nil
}

// SetMode implements registry.Store.
func (s *Store) SetMode(ctx context.Context, subject, mode string) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO registry_modes (subject, mode) VALUES ($1, $2)
		ON CONFLICT (subject) DO UPDATE SET mode = excluded.mode`, subject, mode)
	if err != nil {
		return fmt.Errorf("set mode: %w", err)
	}
	return nil
}

// DeleteMode implements registry.Store.
func (s *Store) DeleteMode(ctx context.Context, subject string) (string, error) {
	var prev string
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		err := tx.QueryRowContext(ctx, `SELECT mode FROM registry_modes WHERE subject = $1`, subject).Scan(&prev)
		if sqldb.IsNoRows(err) {
			return registry.ErrNoMode
		}
		if err != nil {
			return fmt.Errorf("mode: %w", err)
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM registry_modes WHERE subject = $1`, subject)
		return err
	})
	return prev, err
}

// purgeOrphans removes the schemas of ids that no version (live or soft
// deleted) holds any more: a hard delete removes the schema id too, as
// Confluent documents ("a hard delete removes all metadata, including
// schema IDs"), so the id no longer resolves and registering the same
// schema again gets a new id (ids are never reused).
func purgeOrphans(ctx context.Context, tx *sqldb.Tx, ids []int) error {
	for _, id := range ids {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM registry_versions WHERE schema_id = $1`, id).Scan(&n); err != nil {
			return fmt.Errorf("versions of schema %d: %w", id, err)
		}
		if n > 0 {
			continue
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM registry_references WHERE schema_id = $1`, id); err != nil {
			return fmt.Errorf("delete references of schema %d: %w", id, err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM registry_schemas WHERE id = $1`, id); err != nil {
			return fmt.Errorf("delete schema %d: %w", id, err)
		}
	}
	return nil
}
