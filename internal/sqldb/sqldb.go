// Package sqldb opens the SQL database a component stores its state in,
// chosen by DSN: SQLite (modernc.org/sqlite, no cgo) by default, PostgreSQL
// (pgx) for a postgres:// DSN. It applies each component's embedded
// migrations once, and rewrites PostgreSQL-style $N placeholders for SQLite,
// so components write one dialect of SQL for both.
//
// DSNs:
//
//	""                          an in-memory SQLite database (tests)
//	path/to/file.db             a SQLite file (created with its directory)
//	sqlite:path/to/file.db      the same, explicitly
//	postgres://user@host/db     PostgreSQL (postgresql:// too)
package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
	_ "modernc.org/sqlite"             // the "sqlite" database/sql driver
)

// Dialect names the SQL engine behind a DB.
type Dialect string

// The dialects.
const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// DB is a *sql.DB that knows its dialect. Its query methods take
// PostgreSQL-style placeholders ($1, $2, ...) in both dialects.
type DB struct {
	*sql.DB
	Dialect Dialect
	DSN     string

	stmts atomic.Int64 // statements sent through DB's and Tx's methods, BEGIN and COMMIT included
}

// Statements counts the statements this DB has sent through its query
// methods and its transactions' (BEGIN and COMMIT included): each is at
// least one round trip to the server, so benchmarks divide it by the work
// done to find round trips per operation.
func (db *DB) Statements() int64 { return db.stmts.Load() }

var memSeq atomic.Int64

// Open opens the database named by dsn and checks that it answers.
func Open(ctx context.Context, dsn string) (*DB, error) {
	d, driverDSN, err := parse(dsn)
	if err != nil {
		return nil, err
	}
	driver := "sqlite"
	if d == Postgres {
		driver = "pgx"
	}
	sdb, err := sql.Open(driver, driverDSN)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", redact(dsn), err)
	}
	if d == SQLite {
		// One writer at a time is SQLite's model; immediate transactions
		// (see parse) make writers queue on busy_timeout instead of failing
		// with SQLITE_BUSY on upgrade. Readers run concurrently under WAL.
		sdb.SetMaxOpenConns(8)
		sdb.SetConnMaxIdleTime(time.Minute)
	} else {
		sdb.SetMaxOpenConns(20)
		sdb.SetMaxIdleConns(20)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := sdb.PingContext(pctx); err != nil {
		_ = sdb.Close()
		return nil, fmt.Errorf("connect to %s: %w", redact(dsn), err)
	}
	return &DB{DB: sdb, Dialect: d, DSN: dsn}, nil
}

func parse(dsn string) (Dialect, string, error) {
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		return Postgres, dsn, nil
	case dsn == "", dsn == ":memory:", dsn == "sqlite::memory:":
		// A private in-memory database shared by this DB's connections.
		name := fmt.Sprintf("file:flotilla-mem-%d-%d?mode=memory&cache=shared", os.Getpid(), memSeq.Add(1))
		return SQLite, name + "&" + sqlitePragmas, nil
	}
	path := strings.TrimPrefix(dsn, "sqlite:")
	path = strings.TrimPrefix(path, "//")
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	if path == "" {
		return "", "", fmt.Errorf("database %q: empty SQLite path", dsn)
	}
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return "", "", fmt.Errorf("database %q: is a directory; want a file such as %s", dsn, filepath.Join(path, "flotilla.db"))
	}
	if dir := filepath.Dir(path); dir != "." {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", "", fmt.Errorf("database %q: %w", dsn, err)
		}
	}
	return SQLite, "file:" + path + "?" + sqlitePragmas, nil
}

const sqlitePragmas = "_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)&_txlock=immediate"

func redact(dsn string) string {
	if i := strings.Index(dsn, "://"); i >= 0 {
		if j := strings.Index(dsn[i+3:], "@"); j >= 0 {
			if k := strings.Index(dsn[i+3:i+3+j], ":"); k >= 0 {
				return dsn[:i+3+k] + ":***" + dsn[i+3+j:]
			}
		}
	}
	return dsn
}

var placeholder = regexp.MustCompile(`\$(\d+)`)

// Rebind rewrites $N placeholders into the dialect's form.
func (db *DB) Rebind(query string) string {
	if db.Dialect == Postgres {
		return query
	}
	return placeholder.ReplaceAllString(query, "?$1")
}

// ExecContext runs a statement written with $N placeholders.
func (db *DB) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	db.stmts.Add(1)
	return db.DB.ExecContext(ctx, db.Rebind(query), args...)
}

// QueryContext runs a query written with $N placeholders.
func (db *DB) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	db.stmts.Add(1)
	return db.DB.QueryContext(ctx, db.Rebind(query), args...)
}

// QueryRowContext runs a one-row query written with $N placeholders.
func (db *DB) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	db.stmts.Add(1)
	return db.DB.QueryRowContext(ctx, db.Rebind(query), args...)
}

// Tx is a transaction whose methods take $N placeholders.
type Tx struct {
	*sql.Tx
	db          *DB
	afterCommit []func()
}

// AfterCommit has fn run once the transaction has committed (not if it
// rolls back or is retried): to wake what reads the rows it wrote.
func (tx *Tx) AfterCommit(fn func()) { tx.afterCommit = append(tx.afterCommit, fn) }

// ExecContext runs a statement written with $N placeholders.
func (tx *Tx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	tx.db.stmts.Add(1)
	return tx.Tx.ExecContext(ctx, tx.db.Rebind(query), args...)
}

// QueryContext runs a query written with $N placeholders.
func (tx *Tx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	tx.db.stmts.Add(1)
	return tx.Tx.QueryContext(ctx, tx.db.Rebind(query), args...)
}

// QueryRowContext runs a one-row query written with $N placeholders.
func (tx *Tx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	tx.db.stmts.Add(1)
	return tx.Tx.QueryRowContext(ctx, tx.db.Rebind(query), args...)
}

// Dialect is the dialect of the transaction's database.
func (tx *Tx) Dialect() Dialect { return tx.db.Dialect }

// InTx runs fn in a transaction and commits it when fn returns nil. On
// PostgreSQL, a serialization failure or deadlock is retried a few times,
// so callers may use SERIALIZABLE-style reasoning with row locks.
func (db *DB) InTx(ctx context.Context, fn func(tx *Tx) error) error {
	const attempts = 5
	var err error
	for i := 0; i < attempts; i++ {
		err = db.inTx(ctx, fn)
		if err == nil || !retryable(err) {
			return err
		}
		time.Sleep(time.Duration(i+1) * 5 * time.Millisecond)
	}
	return err
}

func (db *DB) inTx(ctx context.Context, fn func(tx *Tx) error) (err error) {
	db.stmts.Add(1)
	stx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	tx := &Tx{Tx: stx, db: db}
	defer func() {
		if p := recover(); p != nil {
			_ = stx.Rollback()
			panic(p)
		}
		if err != nil {
			_ = stx.Rollback()
		}
	}()
	if err = fn(tx); err != nil {
		return err
	}
	db.stmts.Add(1)
	if err = stx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	for _, f := range tx.afterCommit {
		f()
	}
	return nil
}

func retryable(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "SQLSTATE 40001") || strings.Contains(msg, "SQLSTATE 40P01") ||
		strings.Contains(msg, "database is locked") || strings.Contains(msg, "SQLITE_BUSY")
}

// IsUniqueViolation reports whether err is a unique-constraint violation in
// either dialect, for callers that race to insert the same key.
func IsUniqueViolation(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "SQLSTATE 23505") || strings.Contains(msg, "UNIQUE constraint failed")
}

// ErrNoRows is sql.ErrNoRows, re-exported so callers need not import
// database/sql just to compare.
var ErrNoRows = sql.ErrNoRows

// IsNoRows reports whether err is (or wraps) sql.ErrNoRows.
func IsNoRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }
