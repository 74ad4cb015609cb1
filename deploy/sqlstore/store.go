// Package sqlstore keeps the deployment history in SQLite or PostgreSQL
// through internal/sqldb: releases, and one row per service per release
// with its version, result, reason, who, when and how long, and the spec it
// ran with (so a rollback can start it again).
package sqlstore

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/internal/sqldb"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is a deploy.Store on SQL.
type Store struct {
	db *sqldb.DB
}

var _ deploy.Store = (*Store)(nil)

// Open opens the database named by dsn (see sqldb.Open) and applies the
// history's migrations.
func Open(ctx context.Context, dsn string) (*Store, error) {
	db, err := sqldb.Open(ctx, dsn)
	if err != nil {
		return nil, err
	}
	s, err := New(ctx, db)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

// New uses an open database (shared with other components) and applies
// the history's migrations.
func New(ctx context.Context, db *sqldb.DB) (*Store, error) {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	if err := db.Migrate(ctx, "deploy", sub); err != nil {
		return nil, err
	}
	return &Store{db: db}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// StartRelease implements deploy.Store.
func (s *Store) StartRelease(ctx context.Context, who string, services []string, started time.Time) (int64, error) {
	var id int64
	err := s.db.QueryRowContext(ctx, `INSERT INTO deploy_releases (who, services, started_ns) VALUES ($1, $2, $3) RETURNING id`,
		who, strings.Join(services, ","), started.UnixNano()).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("start release: %w", err)
	}
	return id, nil
}

// Add implements deploy.Store.
func (s *Store) Add(ctx context.Context, r deploy.Record) (int64, error) {
	spec, err := json.Marshal(r.Spec)
	if err != nil {
		return 0, fmt.Errorf("record %s@%s: %w", r.Service, r.Version, err)
	}
	var id int64
	err = s.db.QueryRowContext(ctx, `INSERT INTO deploy_history
		(release_id, service, version, previous, action, result, reason, who, started_ns, duration_ns, spec)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id`,
		r.Release, r.Service, r.Version, r.Previous, r.Action, string(r.Result), r.Reason, r.Who,
		r.Started.UnixNano(), int64(r.Duration), string(spec)).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("record %s@%s: %w", r.Service, r.Version, err)
	}
	return id, nil
}

const columns = `id, release_id, service, version, previous, action, result, reason, who, started_ns, duration_ns, spec`

// List implements deploy.Store.
func (s *Store) List(ctx context.Context, service string, limit int) ([]deploy.Record, error) {
	if limit <= 0 {
		limit = 100
	}
	q := `SELECT ` + columns + ` FROM deploy_history ORDER BY id DESC LIMIT $1`
	args := []any{limit}
	if service != "" {
		q = `SELECT ` + columns + ` FROM deploy_history WHERE service = $2 ORDER BY id DESC LIMIT $1`
		args = append(args, service)
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list history: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var out []deploy.Record
	for rows.Next() {
		r, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("list history: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list history: %w", err)
	}
	return out, nil
}

// Current implements deploy.Store.
func (s *Store) Current(ctx context.Context, service string) (deploy.Record, error) {
	row := s.db.QueryRowContext(ctx, `SELECT `+columns+` FROM deploy_history
		WHERE service = $1 AND result = $2 ORDER BY id DESC LIMIT 1`, service, string(deploy.Succeeded))
	r, err := scan(row)
	if sqldb.IsNoRows(err) {
		return deploy.Record{}, fmt.Errorf("%s: %w", service, deploy.ErrNoHistory)
	}
	if err != nil {
		return deploy.Record{}, fmt.Errorf("current of %s: %w", service, err)
	}
	return r, nil
}

type scanner interface{ Scan(dest ...any) error }

func scan(sc scanner) (deploy.Record, error) {
	var r deploy.Record
	var result, spec string
	var started, dur int64
	if err := sc.Scan(&r.ID, &r.Release, &r.Service, &r.Version, &r.Previous, &r.Action, &result, &r.Reason, &r.Who, &started, &dur, &spec); err != nil {
		return r, err
	}
	r.Result = deploy.Result(result)
	r.Started = time.Unix(0, started).UTC()
	r.Duration = time.Duration(dur)
	if err := json.Unmarshal([]byte(spec), &r.Spec); err != nil {
		return r, fmt.Errorf("record %d: spec: %w", r.ID, err)
	}
	return r, nil
}
