// Package sqlstore keeps the contract broker's state in SQLite or
// PostgreSQL through internal/sqldb. The schema is designed for the matrix
// and pacts-for-verification queries: pacts are content-addressed pact
// versions that consumer versions publish, and every question is answered
// with index lookups on (pacticipant, branch|tag, version),
// (provider, consumer, consumer version) and (pact version, provider
// version), never by scanning verification results.
package sqlstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"embed"

	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"github.com/flotilla-ci/flotilla/broker"
	"github.com/flotilla-ci/flotilla/internal/sqldb"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is a broker.Store on SQL.
type Store struct {
	db *sqldb.DB
}

var _ broker.Store = (*Store)(nil)

// Open opens the database named by dsn (see sqldb.Open), applies the
// broker's migrations and seeds the test and production environments.
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

// New uses an open database (which may be shared with other components).
func New(ctx context.Context, db *sqldb.DB) (*Store, error) {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	if err := db.Migrate(ctx, "broker", sub); err != nil {
		return nil, err
	}
	s := &Store{db: db}
	for _, e := range []broker.Environment{
		{Name: "test", DisplayName: "Test"},
		{Name: "production", DisplayName: "Production", Production: true},
	} {
		if _, err := s.db.ExecContext(ctx, `INSERT INTO broker_environments (uuid, name, display_name, production, created_at)
			VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING`, newUUID(), e.Name, e.DisplayName, b2i(e.Production), nowMS()); err != nil {
			return nil, fmt.Errorf("seed environment %s: %w", e.Name, err)
		}
	}
	return s, nil
}

// DB is the underlying database, for benchmarks that seed in bulk.
func (s *Store) DB() *sqldb.DB { return s.db }

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func nowMS() int64 { return time.Now().UnixMilli() }

func fromMS(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func notFound(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), broker.ErrNotFound)
}

// ensurePacticipant returns the pacticipant's id, creating it.
func ensurePacticipant(ctx context.Context, q querier, name string) (int64, error) {
	if _, err := q.ExecContext(ctx, `INSERT INTO broker_pacticipants (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`, name, nowMS()); err != nil {
		return 0, fmt.Errorf("create pacticipant %s: %w", name, err)
	}
	return pacticipantID(ctx, q, name)
}

func pacticipantID(ctx context.Context, q querier, name string) (int64, error) {
	var id int64
	err := q.QueryRowContext(ctx, `SELECT id FROM broker_pacticipants WHERE name = $1`, name).Scan(&id)
	if sqldb.IsNoRows(err) {
		return 0, notFound("pacticipant %s", name)
	}
	return id, err
}

// ensureVersion returns the version's id, creating it.
func ensureVersion(ctx context.Context, q querier, pid int64, number, buildURL string) (int64, error) {
	if _, err := q.ExecContext(ctx, `INSERT INTO broker_versions (pacticipant_id, number, build_url, created_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (pacticipant_id, number) DO NOTHING`, pid, number, buildURL, nowMS()); err != nil {
		return 0, fmt.Errorf("create version %s: %w", number, err)
	}
	if buildURL != "" {
		if _, err := q.ExecContext(ctx, `UPDATE broker_versions SET build_url = $1 WHERE pacticipant_id = $2 AND number = $3`, buildURL, pid, number); err != nil {
			return 0, err
		}
	}
	var id int64
	err := q.QueryRowContext(ctx, `SELECT id FROM broker_versions WHERE pacticipant_id = $1 AND number = $2`, pid, number).Scan(&id)
	return id, err
}

func addBranch(ctx context.Context, q querier, pid, vid int64, branch string) error {
	if branch == "" {
		return nil
	}
	if _, err := q.ExecContext(ctx, `INSERT INTO broker_branch_versions (version_id, pacticipant_id, branch, created_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (version_id, branch) DO NOTHING`, vid, pid, branch, nowMS()); err != nil {
		return err
	}
	// As the Pact Broker's auto_detect_main_branch: the first of develop,
	// main or master a pacticipant publishes becomes its main branch.
	if branch == "develop" || branch == "main" || branch == "master" {
		_, err := q.ExecContext(ctx, `UPDATE broker_pacticipants SET main_branch = $1 WHERE id = $2 AND main_branch = ''`, branch, pid)
		return err
	}
	return nil
}

func addTag(ctx context.Context, q querier, pid, vid int64, tag string) error {
	if tag == "" {
		return nil
	}
	_, err := q.ExecContext(ctx, `INSERT INTO broker_tags (version_id, pacticipant_id, name, created_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (version_id, name) DO NOTHING`, vid, pid, tag, nowMS())
	return err
}

// Publish implements broker.Store.
func (s *Store) Publish(ctx context.Context, p broker.Publication, allowModification bool) (broker.PublishResult, error) {
	var res broker.PublishResult
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		res = broker.PublishResult{}
		pid, err := ensurePacticipant(ctx, tx, p.Pacticipant)
		if err != nil {
			return err
		}
		vid, err := ensureVersion(ctx, tx, pid, p.Version, p.BuildURL)
		if err != nil {
			return err
		}
		if err := addBranch(ctx, tx, pid, vid, p.Branch); err != nil {
			return err
		}
		for _, t := range p.Tags {
			if err := addTag(ctx, tx, pid, vid, t); err != nil {
				return err
			}
		}
		for _, c := range p.Contracts {
			pc, err := publishContract(ctx, tx, pid, vid, c, allowModification)
			if err != nil {
				return err
			}
			res.Contracts = append(res.Contracts, pc)
			vars := map[string]string{"consumerName": c.Consumer, "providerName": c.Provider, "consumerVersionNumber": p.Version,
				"consumerVersionBranch": p.Branch, "consumerVersionTags": strings.Join(p.Tags, ", "), "buildUrl": p.BuildURL,
				"pactPath": pactPath(c.Consumer, c.Provider, pc.SHA)}
			events := []string{broker.EventContractPublished}
			if pc.NewContent || pc.Changed {
				events = append(events, broker.EventContractContentChanged)
			}
			if pc.NewContent {
				events = append(events, broker.EventContractRequiringVerificationPublished)
			}
			for _, e := range events {
				if err := enqueue(ctx, tx, e, c.Consumer, c.Provider, vars); err != nil {
					return err
				}
			}
		}
		res.Version, err = loadVersion(ctx, tx, vid)
		return err
	})
	return res, err
}

func publishContract(ctx context.Context, tx *sqldb.Tx, consumerID, vid int64, c broker.Contract, allowModification bool) (broker.PublishedContract, error) {
	out := broker.PublishedContract{Consumer: c.Consumer, Provider: c.Provider, SHA: c.SHA}
	provID, err := ensurePacticipant(ctx, tx, c.Provider)
	if err != nil {
		return out, err
	}
	var (
		ppID       int64
		oldSHA     string
		oldContent string
	)
	err = tx.QueryRowContext(ctx, `SELECT pp.id, pv.sha, pv.content FROM broker_pact_publications pp
		JOIN broker_pact_versions pv ON pv.id = pp.pact_version_id
		WHERE pp.consumer_version_id = $1 AND pp.provider_id = $2`, vid, provID).Scan(&ppID, &oldSHA, &oldContent)
	if err != nil && !sqldb.IsNoRows(err) {
		return out, err
	}
	content, sha := c.Content, c.SHA
	if ppID != 0 && oldSHA != sha {
		switch {
		case c.Merge:
			content, sha, err = broker.MergePacts([]byte(oldContent), content)
			if err != nil {
				return out, err
			}
		case !allowModification:
			return out, fmt.Errorf("%w: a pact with different content has already been published for %s version %s and provider %s; publish it with a new consumer version number",
				broker.ErrConflict, c.Consumer, versionNumber(ctx, tx, vid), c.Provider)
		}
		out.Changed = oldSHA != sha
		out.SHA = sha
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO broker_pact_versions (consumer_id, provider_id, sha, content, created_at) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (consumer_id, provider_id, sha) DO NOTHING`, consumerID, provID, sha, string(content), nowMS())
	if err != nil {
		return out, fmt.Errorf("store pact %s: %w", sha, err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		out.NewContent = true
	}
	var pvID int64
	if err := tx.QueryRowContext(ctx, `SELECT id FROM broker_pact_versions WHERE consumer_id = $1 AND provider_id = $2 AND sha = $3`, consumerID, provID, sha).Scan(&pvID); err != nil {
		return out, err
	}
	if ppID != 0 {
		_, err = tx.ExecContext(ctx, `UPDATE broker_pact_publications SET pact_version_id = $1, created_at = $2 WHERE id = $3`, pvID, nowMS(), ppID)
		return out, err
	}
	res, err = tx.ExecContext(ctx, `INSERT INTO broker_pact_publications (consumer_version_id, consumer_id, provider_id, pact_version_id, created_at)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (consumer_version_id, provider_id) DO NOTHING`, vid, consumerID, provID, pvID, nowMS())
	if err != nil {
		return out, err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		// A concurrent publication of this consumer version won the race.
		var other int64
		if err := tx.QueryRowContext(ctx, `SELECT pact_version_id FROM broker_pact_publications WHERE consumer_version_id = $1 AND provider_id = $2`, vid, provID).Scan(&other); err != nil {
			return out, err
		}
		if other != pvID && !allowModification {
			return out, fmt.Errorf("%w: a pact with different content was published concurrently for %s version %s and provider %s",
				broker.ErrConflict, c.Consumer, versionNumber(ctx, tx, vid), c.Provider)
		}
		if other != pvID {
			_, err = tx.ExecContext(ctx, `UPDATE broker_pact_publications SET pact_version_id = $1 WHERE consumer_version_id = $2 AND provider_id = $3`, pvID, vid, provID)
		}
	}
	return out, err
}

func versionNumber(ctx context.Context, q querier, vid int64) string {
	var n string
	_ = q.QueryRowContext(ctx, `SELECT number FROM broker_versions WHERE id = $1`, vid).Scan(&n)
	return n
}

func loadVersion(ctx context.Context, q querier, vid int64) (broker.Version, error) {
	var (
		v  broker.Version
		ms int64
	)
	err := q.QueryRowContext(ctx, `SELECT p.name, v.number, v.build_url, v.created_at FROM broker_versions v
		JOIN broker_pacticipants p ON p.id = v.pacticipant_id WHERE v.id = $1`, vid).Scan(&v.Pacticipant, &v.Number, &v.BuildURL, &ms)
	if err != nil {
		if sqldb.IsNoRows(err) {
			return v, notFound("version %d", vid)
		}
		return v, err
	}
	v.CreatedAt = fromMS(ms)
	if v.Branches, err = strings1(ctx, q, `SELECT branch FROM broker_branch_versions WHERE version_id = $1 ORDER BY created_at, branch`, vid); err != nil {
		return v, err
	}
	if v.Tags, err = strings1(ctx, q, `SELECT name FROM broker_tags WHERE version_id = $1 ORDER BY created_at, name`, vid); err != nil {
		return v, err
	}
	return v, nil
}

func strings1(ctx context.Context, q querier, query string, args ...any) ([]string, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// Pacticipants implements broker.Store.
func (s *Store) Pacticipants(ctx context.Context) ([]broker.Pacticipant, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, main_branch, created_at FROM broker_pacticipants ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var out []broker.Pacticipant
	for rows.Next() {
		var (
			p  broker.Pacticipant
			ms int64
		)
		if err := rows.Scan(&p.Name, &p.MainBranch, &ms); err != nil {
			return nil, err
		}
		p.CreatedAt = fromMS(ms)
		out = append(out, p)
	}
	return out, rows.Err()
}

// Pacticipant implements broker.Store.
func (s *Store) Pacticipant(ctx context.Context, name string) (broker.Pacticipant, error) {
	var (
		p  broker.Pacticipant
		ms int64
	)
	err := s.db.QueryRowContext(ctx, `SELECT name, main_branch, created_at FROM broker_pacticipants WHERE name = $1`, name).Scan(&p.Name, &p.MainBranch, &ms)
	if sqldb.IsNoRows(err) {
		return p, notFound("pacticipant %s", name)
	}
	p.CreatedAt = fromMS(ms)
	return p, err
}

// SetMainBranch implements broker.Store.
func (s *Store) SetMainBranch(ctx context.Context, name, branch string) (broker.Pacticipant, error) {
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		if _, err := ensurePacticipant(ctx, tx, name); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `UPDATE broker_pacticipants SET main_branch = $1 WHERE name = $2`, branch, name)
		return err
	})
	if err != nil {
		return broker.Pacticipant{}, err
	}
	return s.Pacticipant(ctx, name)
}

// Version implements broker.Store.
func (s *Store) Version(ctx context.Context, pacticipant, number string) (broker.Version, error) {
	var vid int64
	err := s.db.QueryRowContext(ctx, `SELECT v.id FROM broker_versions v JOIN broker_pacticipants p ON p.id = v.pacticipant_id
		WHERE p.name = $1 AND v.number = $2`, pacticipant, number).Scan(&vid)
	if sqldb.IsNoRows(err) {
		return broker.Version{}, notFound("version %s of %s", number, pacticipant)
	}
	if err != nil {
		return broker.Version{}, err
	}
	return loadVersion(ctx, s.db, vid)
}

// LatestVersion implements broker.Store.
func (s *Store) LatestVersion(ctx context.Context, pacticipant string) (broker.Version, error) {
	var vid int64
	err := s.db.QueryRowContext(ctx, `SELECT v.id FROM broker_versions v JOIN broker_pacticipants p ON p.id = v.pacticipant_id
		WHERE p.name = $1 ORDER BY v.id DESC LIMIT 1`, pacticipant).Scan(&vid)
	if sqldb.IsNoRows(err) {
		return broker.Version{}, notFound("a version of %s", pacticipant)
	}
	if err != nil {
		return broker.Version{}, err
	}
	return loadVersion(ctx, s.db, vid)
}

// EnsureVersion implements broker.Store.
func (s *Store) EnsureVersion(ctx context.Context, pacticipant, number, branch, tag, buildURL string) (broker.Version, error) {
	var v broker.Version
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		pid, err := ensurePacticipant(ctx, tx, pacticipant)
		if err != nil {
			return err
		}
		vid, err := ensureVersion(ctx, tx, pid, number, buildURL)
		if err != nil {
			return err
		}
		if err := addBranch(ctx, tx, pid, vid, branch); err != nil {
			return err
		}
		if err := addTag(ctx, tx, pid, vid, tag); err != nil {
			return err
		}
		v, err = loadVersion(ctx, tx, vid)
		return err
	})
	return v, err
}

const pactColumns = `c.name, pr.name, pv.sha, pv.content, pv.created_at`

func scanPact(sc interface{ Scan(...any) error }) (broker.Pact, error) {
	var (
		p       broker.Pact
		content string
		ms      int64
	)
	err := sc.Scan(&p.Consumer, &p.Provider, &p.SHA, &content, &ms)
	p.Content = []byte(content)
	p.CreatedAt = fromMS(ms)
	return p, err
}

// Pact implements broker.Store.
func (s *Store) Pact(ctx context.Context, provider, consumer, sha string) (broker.Pact, error) {
	p, err := scanPact(s.db.QueryRowContext(ctx, `SELECT `+pactColumns+` FROM broker_pact_versions pv
		JOIN broker_pacticipants c ON c.id = pv.consumer_id JOIN broker_pacticipants pr ON pr.id = pv.provider_id
		WHERE pr.name = $1 AND c.name = $2 AND pv.sha = $3`, provider, consumer, sha))
	if sqldb.IsNoRows(err) {
		return p, notFound("pact version %s between %s and %s", sha, consumer, provider)
	}
	if err != nil {
		return p, err
	}
	_ = s.db.QueryRowContext(ctx, `SELECT v.number FROM broker_pact_publications pp JOIN broker_pact_versions pv ON pv.id = pp.pact_version_id
		JOIN broker_versions v ON v.id = pp.consumer_version_id
		JOIN broker_pacticipants pr ON pr.id = pv.provider_id JOIN broker_pacticipants c ON c.id = pv.consumer_id
		WHERE pr.name = $1 AND c.name = $2 AND pv.sha = $3 ORDER BY pp.consumer_version_id DESC LIMIT 1`, provider, consumer, sha).Scan(&p.ConsumerVersion)
	return p, nil
}

// PactForConsumerVersion implements broker.Store.
func (s *Store) PactForConsumerVersion(ctx context.Context, provider, consumer, version string) (broker.Pact, error) {
	p, err := scanPact(s.db.QueryRowContext(ctx, `SELECT `+pactColumns+` FROM broker_pact_publications pp
		JOIN broker_pact_versions pv ON pv.id = pp.pact_version_id
		JOIN broker_versions v ON v.id = pp.consumer_version_id
		JOIN broker_pacticipants c ON c.id = pv.consumer_id JOIN broker_pacticipants pr ON pr.id = pv.provider_id
		WHERE pr.name = $1 AND c.name = $2 AND v.number = $3`, provider, consumer, version))
	if sqldb.IsNoRows(err) {
		return p, notFound("pact between %s version %s and %s", consumer, version, provider)
	}
	p.ConsumerVersion = version
	return p, err
}

// LatestPacts implements broker.Store.
func (s *Store) LatestPacts(ctx context.Context, provider string) ([]broker.Pact, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+pactColumns+`, v.number FROM broker_pact_publications pp
		JOIN broker_pact_versions pv ON pv.id = pp.pact_version_id
		JOIN broker_versions v ON v.id = pp.consumer_version_id
		JOIN broker_pacticipants c ON c.id = pv.consumer_id JOIN broker_pacticipants pr ON pr.id = pv.provider_id
		WHERE pp.id IN (SELECT MAX(p2.id) FROM broker_pact_publications p2 JOIN broker_pacticipants pr2 ON pr2.id = p2.provider_id
			WHERE ($1 = '' OR pr2.name = $1) AND p2.consumer_version_id = (SELECT MAX(p3.consumer_version_id) FROM broker_pact_publications p3
				WHERE p3.provider_id = p2.provider_id AND p3.consumer_id = p2.consumer_id)
			GROUP BY p2.consumer_id, p2.provider_id)
		ORDER BY c.name, pr.name`, provider)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var out []broker.Pact
	for rows.Next() {
		var (
			p       broker.Pact
			content string
			ms      int64
		)
		if err := rows.Scan(&p.Consumer, &p.Provider, &p.SHA, &content, &ms, &p.ConsumerVersion); err != nil {
			return nil, err
		}
		p.Content, p.CreatedAt = []byte(content), fromMS(ms)
		out = append(out, p)
	}
	return out, rows.Err()
}

// AddVerification implements broker.Store.
func (s *Store) AddVerification(ctx context.Context, v broker.Verification) (broker.Verification, error) {
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		var pvID, provID int64
		err := tx.QueryRowContext(ctx, `SELECT pv.id, pv.provider_id FROM broker_pact_versions pv
			JOIN broker_pacticipants c ON c.id = pv.consumer_id JOIN broker_pacticipants pr ON pr.id = pv.provider_id
			WHERE pr.name = $1 AND c.name = $2 AND pv.sha = $3`, v.Provider, v.Consumer, v.PactSHA).Scan(&pvID, &provID)
		if sqldb.IsNoRows(err) {
			return notFound("pact version %s between %s and %s", v.PactSHA, v.Consumer, v.Provider)
		}
		if err != nil {
			return err
		}
		vid, err := ensureVersion(ctx, tx, provID, v.ProviderVersion, "")
		if err != nil {
			return err
		}
		now := nowMS()
		v.VerifiedAt = fromMS(now)
		if err := tx.QueryRowContext(ctx, `INSERT INTO broker_verifications (pact_version_id, provider_version_id, success, build_url, test_results, verified_by, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`, pvID, vid, b2i(v.Success), v.BuildURL, string(v.TestResults), string(v.VerifiedBy), now).Scan(&v.ID); err != nil {
			return err
		}
		path := pactPath(v.Consumer, v.Provider, v.PactSHA)
		vars := map[string]string{"consumerName": v.Consumer, "providerName": v.Provider, "providerVersionNumber": v.ProviderVersion,
			"pactPath": path, "verificationResultPath": fmt.Sprintf("%s/verification-results/%d", path, v.ID),
			"buildUrl": v.BuildURL, "success": strconv.FormatBool(v.Success)}
		if pv, err := loadVersion(ctx, tx, vid); err == nil {
			vars["providerVersionTags"] = strings.Join(pv.Tags, ", ")
			if len(pv.Branches) > 0 {
				vars["providerVersionBranch"] = pv.Branches[len(pv.Branches)-1]
			}
		}
		// The consumer version that last published this content.
		var cvid int64
		if err := tx.QueryRowContext(ctx, `SELECT MAX(consumer_version_id) FROM broker_pact_publications WHERE pact_version_id = $1`, pvID).Scan(&cvid); err == nil && cvid != 0 {
			if cv, err := loadVersion(ctx, tx, cvid); err == nil {
				vars["consumerVersionNumber"] = cv.Number
				vars["consumerVersionTags"] = strings.Join(cv.Tags, ", ")
				if len(cv.Branches) > 0 {
					vars["consumerVersionBranch"] = cv.Branches[len(cv.Branches)-1]
				}
			}
		}
		outcome := broker.EventProviderVerificationFailed
		if v.Success {
			outcome = broker.EventProviderVerificationSucceeded
		}
		for _, e := range []string{broker.EventProviderVerificationPublished, outcome} {
			if err := enqueue(ctx, tx, e, v.Consumer, v.Provider, vars); err != nil {
				return err
			}
		}
		return nil
	})
	return v, err
}

// Verification implements broker.Store.
func (s *Store) Verification(ctx context.Context, id int64) (broker.Verification, error) {
	var (
		v           broker.Verification
		success     int
		tr, vb      string
		verifiedAtM int64
	)
	err := s.db.QueryRowContext(ctx, `SELECT vr.id, c.name, pr.name, pv.sha, v.number, vr.success, vr.build_url, vr.test_results, vr.verified_by, vr.created_at
		FROM broker_verifications vr JOIN broker_pact_versions pv ON pv.id = vr.pact_version_id
		JOIN broker_versions v ON v.id = vr.provider_version_id
		JOIN broker_pacticipants c ON c.id = pv.consumer_id JOIN broker_pacticipants pr ON pr.id = pv.provider_id
		WHERE vr.id = $1`, id).Scan(&v.ID, &v.Consumer, &v.Provider, &v.PactSHA, &v.ProviderVersion, &success, &v.BuildURL, &tr, &vb, &verifiedAtM)
	if sqldb.IsNoRows(err) {
		return v, notFound("verification result %d", id)
	}
	v.Success = success == 1
	if tr != "" {
		v.TestResults = []byte(tr)
	}
	if vb != "" {
		v.VerifiedBy = []byte(vb)
	}
	v.VerifiedAt = fromMS(verifiedAtM)
	return v, err
}

const envColumns = `uuid, name, display_name, production, created_at`

func scanEnv(sc interface{ Scan(...any) error }) (broker.Environment, error) {
	var (
		e    broker.Environment
		prod int
		ms   int64
	)
	err := sc.Scan(&e.UUID, &e.Name, &e.DisplayName, &prod, &ms)
	e.Production, e.CreatedAt = prod == 1, fromMS(ms)
	return e, err
}

// Environments implements broker.Store.
func (s *Store) Environments(ctx context.Context) ([]broker.Environment, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+envColumns+` FROM broker_environments ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var out []broker.Environment
	for rows.Next() {
		e, err := scanEnv(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// Environment implements broker.Store.
func (s *Store) Environment(ctx context.Context, key string) (broker.Environment, error) {
	e, err := scanEnv(s.db.QueryRowContext(ctx, `SELECT `+envColumns+` FROM broker_environments WHERE uuid = $1 OR name = $1`, key))
	if sqldb.IsNoRows(err) {
		return e, notFound("environment %s", key)
	}
	return e, err
}

// CreateEnvironment implements broker.Store.
func (s *Store) CreateEnvironment(ctx context.Context, e broker.Environment) (broker.Environment, error) {
	if e.UUID == "" {
		e.UUID = newUUID()
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO broker_environments (uuid, name, display_name, production, created_at) VALUES ($1, $2, $3, $4, $5)`,
		e.UUID, e.Name, e.DisplayName, b2i(e.Production), nowMS())
	if sqldb.IsUniqueViolation(err) {
		return e, fmt.Errorf("%w: an environment named %s already exists", broker.ErrConflict, e.Name)
	}
	if err != nil {
		return e, err
	}
	return s.Environment(ctx, e.UUID)
}

// RecordDeployment implements broker.Store.
func (s *Store) RecordDeployment(ctx context.Context, pacticipant, version, envUUID, instance string, release bool) (broker.Deployment, error) {
	var id string
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		var vid, pid, eid int64
		err := tx.QueryRowContext(ctx, `SELECT v.id, p.id FROM broker_versions v JOIN broker_pacticipants p ON p.id = v.pacticipant_id
			WHERE p.name = $1 AND v.number = $2`, pacticipant, version).Scan(&vid, &pid)
		if sqldb.IsNoRows(err) {
			return notFound("version %s of %s", version, pacticipant)
		}
		if err != nil {
			return err
		}
		if err := tx.QueryRowContext(ctx, `SELECT id FROM broker_environments WHERE uuid = $1 OR name = $1`, envUUID).Scan(&eid); err != nil {
			if sqldb.IsNoRows(err) {
				return notFound("environment %s", envUUID)
			}
			return err
		}
		now := nowMS()
		if release {
			// Releasing the same version twice keeps one supported release.
			err := tx.QueryRowContext(ctx, `SELECT uuid FROM broker_deployments WHERE version_id = $1 AND environment_id = $2 AND is_release = 1 AND active = 1`, vid, eid).Scan(&id)
			if err == nil {
				return nil
			}
			if !sqldb.IsNoRows(err) {
				return err
			}
		} else {
			if _, err := tx.ExecContext(ctx, `UPDATE broker_deployments SET active = 0, ended_at = $1
				WHERE pacticipant_id = $2 AND environment_id = $3 AND is_release = 0 AND active = 1 AND application_instance = $4`, now, pid, eid, instance); err != nil {
				return err
			}
		}
		id = newUUID()
		_, err = tx.ExecContext(ctx, `INSERT INTO broker_deployments (uuid, version_id, pacticipant_id, environment_id, application_instance, is_release, active, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, 1, $7)`, id, vid, pid, eid, instance, b2i(release), now)
		return err
	})
	if err != nil {
		return broker.Deployment{}, err
	}
	return s.Deployment(ctx, id)
}

const deploymentQuery = `SELECT d.uuid, p.name, v.number, d.application_instance, d.is_release, d.active, d.created_at, d.ended_at,
	e.uuid, e.name, e.display_name, e.production, e.created_at
	FROM broker_deployments d JOIN broker_versions v ON v.id = d.version_id JOIN broker_pacticipants p ON p.id = d.pacticipant_id
	JOIN broker_environments e ON e.id = d.environment_id `

func scanDeployment(sc interface{ Scan(...any) error }) (broker.Deployment, error) {
	var (
		d                  broker.Deployment
		rel, act, prod     int
		created, ended, ec int64
	)
	err := sc.Scan(&d.UUID, &d.Pacticipant, &d.Version, &d.ApplicationInstance, &rel, &act, &created, &ended,
		&d.Environment.UUID, &d.Environment.Name, &d.Environment.DisplayName, &prod, &ec)
	d.Release, d.Current, d.Environment.Production = rel == 1, act == 1, prod == 1
	d.CreatedAt, d.EndedAt, d.Environment.CreatedAt = fromMS(created), fromMS(ended), fromMS(ec)
	return d, err
}

// Deployment implements broker.Store.
func (s *Store) Deployment(ctx context.Context, id string) (broker.Deployment, error) {
	d, err := scanDeployment(s.db.QueryRowContext(ctx, deploymentQuery+`WHERE d.uuid = $1`, id))
	if sqldb.IsNoRows(err) {
		return d, notFound("deployed or released version %s", id)
	}
	return d, err
}

// EndDeployment implements broker.Store.
func (s *Store) EndDeployment(ctx context.Context, id string) (broker.Deployment, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE broker_deployments SET active = 0, ended_at = $1 WHERE uuid = $2 AND active = 1`, nowMS(), id)
	if err != nil {
		return broker.Deployment{}, err
	}
	_, _ = res.RowsAffected()
	return s.Deployment(ctx, id)
}

// CurrentDeployments implements broker.Store.
func (s *Store) CurrentDeployments(ctx context.Context, env, pacticipant string) ([]broker.Deployment, error) {
	query := deploymentQuery + `WHERE (e.uuid = $1 OR e.name = $1) AND d.active = 1 AND ($2 = '' OR p.name = $2) ORDER BY d.id`
	rows, err := s.db.QueryContext(ctx, query, env, pacticipant)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var out []broker.Deployment
	for rows.Next() {
		d, err := scanDeployment(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}
