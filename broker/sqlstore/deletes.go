package sqlstore

import (
	"context"
	"fmt"

	"github.com/flotilla-ci/flotilla/broker"
	"github.com/flotilla-ci/flotilla/internal/sqldb"
)

// The removals a team needs to clean up a mistaken publication: each runs
// in one transaction and removes what depends on what it removes
// (verifications of pact content no publication keeps, deployments of a
// removed version), so nothing dangles.

func versionID(ctx context.Context, q querier, pacticipant, number string) (pid, vid int64, err error) {
	err = q.QueryRowContext(ctx, `SELECT p.id, v.id FROM broker_versions v JOIN broker_pacticipants p ON p.id = v.pacticipant_id
		WHERE p.name = $1 AND v.number = $2`, pacticipant, number).Scan(&pid, &vid)
	if sqldb.IsNoRows(err) {
		return 0, 0, notFound("version %s of %s", number, pacticipant)
	}
	return pid, vid, err
}

func affected(res interface{ RowsAffected() (int64, error) }) int64 {
	n, _ := res.RowsAffected()
	return n
}

// dropOrphanPacts removes pact contents no publication refers to any
// more, with their verification results.
func dropOrphanPacts(ctx context.Context, q querier) error {
	orphan := `SELECT pv.id FROM broker_pact_versions pv WHERE NOT EXISTS (SELECT 1 FROM broker_pact_publications pp WHERE pp.pact_version_id = pv.id)`
	if _, err := q.ExecContext(ctx, `DELETE FROM broker_verifications WHERE pact_version_id IN (`+orphan+`)`); err != nil {
		return err
	}
	_, err := q.ExecContext(ctx, `DELETE FROM broker_pact_versions WHERE id IN (`+orphan+`)`)
	return err
}

// DeleteTag implements broker.Store.
func (s *Store) DeleteTag(ctx context.Context, pacticipant, version, tag string) error {
	return s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		_, vid, err := versionID(ctx, tx, pacticipant, version)
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM broker_tags WHERE version_id = $1 AND name = $2`, vid, tag)
		if err != nil {
			return err
		}
		if affected(res) == 0 {
			return notFound("tag %s of %s version %s", tag, pacticipant, version)
		}
		return nil
	})
}

// BranchVersions implements broker.Store.
func (s *Store) BranchVersions(ctx context.Context, pacticipant, branch string) ([]string, error) {
	out, err := strings1(ctx, s.db, `SELECT v.number FROM broker_branch_versions b JOIN broker_versions v ON v.id = b.version_id
		JOIN broker_pacticipants p ON p.id = b.pacticipant_id WHERE p.name = $1 AND b.branch = $2 ORDER BY v.id DESC`, pacticipant, branch)
	if err == nil && len(out) == 0 {
		return nil, notFound("branch %s of %s", branch, pacticipant)
	}
	return out, err
}

// DeleteBranch implements broker.Store.
func (s *Store) DeleteBranch(ctx context.Context, pacticipant, branch string) error {
	return s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		pid, err := pacticipantID(ctx, tx, pacticipant)
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM broker_branch_versions WHERE pacticipant_id = $1 AND branch = $2`, pid, branch)
		if err != nil {
			return err
		}
		if affected(res) == 0 {
			return notFound("branch %s of %s", branch, pacticipant)
		}
		return nil
	})
}

// UpdateEnvironment implements broker.Store.
func (s *Store) UpdateEnvironment(ctx context.Context, e broker.Environment) (broker.Environment, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE broker_environments SET name = $1, display_name = $2, production = $3 WHERE uuid = $4`,
		e.Name, e.DisplayName, b2i(e.Production), e.UUID)
	if sqldb.IsUniqueViolation(err) {
		return e, fmt.Errorf("%w: an environment named %s already exists", broker.ErrConflict, e.Name)
	}
	if err != nil {
		return e, err
	}
	if affected(res) == 0 {
		return e, notFound("environment %s", e.UUID)
	}
	return s.Environment(ctx, e.UUID)
}

// DeleteEnvironment implements broker.Store.
func (s *Store) DeleteEnvironment(ctx context.Context, uuid string) error {
	return s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		var id int64
		err := tx.QueryRowContext(ctx, `SELECT id FROM broker_environments WHERE uuid = $1`, uuid).Scan(&id)
		if sqldb.IsNoRows(err) {
			return notFound("environment %s", uuid)
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM broker_deployments WHERE environment_id = $1`, id); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM broker_environments WHERE id = $1`, id)
		return err
	})
}

// deleteVersions removes versions (by a condition on broker_versions v)
// and everything recorded about them.
func deleteVersions(ctx context.Context, q querier, cond string, args ...any) error {
	ids := `SELECT v.id FROM broker_versions v WHERE ` + cond
	for _, stmt := range []string{
		`DELETE FROM broker_verifications WHERE provider_version_id IN (` + ids + `)`,
		`DELETE FROM broker_pact_publications WHERE consumer_version_id IN (` + ids + `)`,
		`DELETE FROM broker_deployments WHERE version_id IN (` + ids + `)`,
		`DELETE FROM broker_tags WHERE version_id IN (` + ids + `)`,
		`DELETE FROM broker_branch_versions WHERE version_id IN (` + ids + `)`,
	} {
		if _, err := q.ExecContext(ctx, stmt, args...); err != nil {
			return err
		}
	}
	if _, err := q.ExecContext(ctx, `DELETE FROM broker_versions WHERE id IN (`+ids+`)`, args...); err != nil {
		return err
	}
	return dropOrphanPacts(ctx, q)
}

// DeleteVersion implements broker.Store.
func (s *Store) DeleteVersion(ctx context.Context, pacticipant, number string) error {
	return s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		_, vid, err := versionID(ctx, tx, pacticipant, number)
		if err != nil {
			return err
		}
		return deleteVersions(ctx, tx, `v.id = $1`, vid)
	})
}

// DeletePacticipant implements broker.Store.
func (s *Store) DeletePacticipant(ctx context.Context, name string) error {
	return s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		pid, err := pacticipantID(ctx, tx, name)
		if err != nil {
			return err
		}
		if err := deleteVersions(ctx, tx, `v.pacticipant_id = $1`, pid); err != nil {
			return err
		}
		// Its pacts as a provider: other consumers' publications for it.
		if _, err := tx.ExecContext(ctx, `DELETE FROM broker_pact_publications WHERE provider_id = $1`, pid); err != nil {
			return err
		}
		if err := dropOrphanPacts(ctx, tx); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM broker_pacticipants WHERE id = $1`, pid)
		return err
	})
}

// DeletePactPublication implements broker.Store.
func (s *Store) DeletePactPublication(ctx context.Context, provider, consumer, version string) error {
	return s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		_, vid, err := versionID(ctx, tx, consumer, version)
		if err != nil {
			return err
		}
		prid, err := pacticipantID(ctx, tx, provider)
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM broker_pact_publications WHERE consumer_version_id = $1 AND provider_id = $2`, vid, prid)
		if err != nil {
			return err
		}
		if affected(res) == 0 {
			return notFound("pact between %s version %s and %s", consumer, version, provider)
		}
		return dropOrphanPacts(ctx, tx)
	})
}

// BranchPacts implements broker.Store.
func (s *Store) BranchPacts(ctx context.Context, provider, consumer, branch string, latest bool) ([]broker.Pact, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+pactColumns+`, v.number FROM broker_pact_publications pp
		JOIN broker_pact_versions pv ON pv.id = pp.pact_version_id
		JOIN broker_versions v ON v.id = pp.consumer_version_id
		JOIN broker_pacticipants c ON c.id = pv.consumer_id JOIN broker_pacticipants pr ON pr.id = pv.provider_id
		JOIN broker_branch_versions b ON b.version_id = v.id
		WHERE pr.name = $1 AND ($2 = '' OR c.name = $2) AND b.branch = (CASE WHEN $3 = '' THEN c.main_branch ELSE $3 END) AND b.branch <> ''
		ORDER BY c.name, v.id DESC`, provider, consumer, branch)
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
		if latest && len(out) > 0 && out[len(out)-1].Consumer == p.Consumer {
			continue
		}
		p.Content, p.CreatedAt = []byte(content), fromMS(ms)
		out = append(out, p)
	}
	return out, rows.Err()
}
