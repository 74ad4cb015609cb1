package sqlstore

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/flotilla-ci/flotilla/broker"
	"github.com/flotilla-ci/flotilla/internal/sqldb"
)

// pub is a pact publication: a consumer version's pact with a provider.
type pub struct {
	consumerVersion int64
	consumer        int64
	provider        int64
	pactVersion     int64
	sha             string
	createdAt       int64
}

const pubColumns = `pp.consumer_version_id, pp.consumer_id, pp.provider_id, pv.id, pv.sha, pp.created_at`

func scanPubs(ctx context.Context, q querier, query string, args ...any) ([]pub, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var out []pub
	for rows.Next() {
		var p pub
		if err := rows.Scan(&p.consumerVersion, &p.consumer, &p.provider, &p.pactVersion, &p.sha, &p.createdAt); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

func int64s(ctx context.Context, q querier, query string, args ...any) ([]int64, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var out []int64
	for rows.Next() {
		var id *int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		if id != nil {
			out = append(out, *id)
		}
	}
	return out, rows.Err()
}

// in returns "$n,$n+1,..." for the ids and the args to append. The list
// is padded (repeating the last id) to a power of two, so a query sees a
// handful of distinct texts and PostgreSQL's prepared-statement cache
// (pgx caches per connection) serves it instead of parsing and planning
// each new length again. ids must not be empty.
func in(first int, ids []int64) (string, []any) {
	n := 1
	for n < len(ids) {
		n *= 2
	}
	ph := make([]string, n)
	args := make([]any, n)
	for i := range n {
		ph[i] = fmt.Sprintf("$%d", first+i)
		args[i] = ids[min(i, len(ids)-1)]
	}
	return strings.Join(ph, ","), args
}

type matrixRun struct {
	ctx    context.Context
	db     *sqldb.DB
	q      broker.MatrixQuery
	envID  int64
	target map[int64][]int64 // provider or consumer id -> its target version ids
}

type rowKey struct{ cv, pv, pact int64 }

type rawRow struct {
	rowKey
	consumer, provider int64
	sha                string
	pactAt             int64
}

// Matrix implements broker.Store.
func (s *Store) Matrix(ctx context.Context, q broker.MatrixQuery) (broker.MatrixResult, error) {
	var res broker.MatrixResult
	m := &matrixRun{ctx: ctx, db: s.db, q: q, target: map[int64][]int64{}}
	if env := q.Target.Environment; env != "" {
		if err := s.db.QueryRowContext(ctx, `SELECT id FROM broker_environments WHERE name = $1`, env).Scan(&m.envID); err != nil {
			if sqldb.IsNoRows(err) {
				return res, notFound("environment %s", env)
			}
			return res, err
		}
	}
	selected := map[int64][]int64{}
	var order []int64
	for _, sel := range q.Selectors {
		pid, err := pacticipantID(ctx, s.db, sel.Pacticipant)
		if err != nil {
			return res, err
		}
		vs, err := m.resolve(pid, sel)
		if err != nil {
			return res, err
		}
		if len(vs) == 0 {
			res.Unresolved = append(res.Unresolved, sel)
			continue
		}
		if _, ok := selected[pid]; !ok {
			order = append(order, pid)
		}
		selected[pid] = appendUnique(selected[pid], vs...)
	}
	var raws []rawRow
	seen := map[rowKey]bool{}
	add := func(p pub, pv int64) {
		k := rowKey{cv: p.consumerVersion, pv: pv, pact: p.pactVersion}
		if seen[k] {
			return
		}
		seen[k] = true
		raws = append(raws, rawRow{rowKey: k, consumer: p.consumer, provider: p.provider, sha: p.sha, pactAt: p.createdAt})
	}
	everything := q.Target.IsZero()
	for _, pid := range order {
		vs := selected[pid]
		// As a consumer: the pacts these versions published.
		ph, args := in(1, vs)
		pubs, err := scanPubs(ctx, s.db, `SELECT `+pubColumns+` FROM broker_pact_publications pp
			JOIN broker_pact_versions pv ON pv.id = pp.pact_version_id WHERE pp.consumer_version_id IN (`+ph+`)`, args...)
		if err != nil {
			return res, err
		}
		for _, p := range pubs {
			var provVersions []int64
			switch other, ok := selected[p.provider]; {
			case ok:
				provVersions = other
			case everything && len(order) > 1:
				continue // only rows between the selected pacticipants
			case everything:
				provVersions, err = m.verifiers(p.pactVersion, nil)
				if err != nil {
					return res, err
				}
			default:
				if provVersions, err = m.targetVersions(p.provider); err != nil {
					return res, err
				}
			}
			if len(provVersions) == 0 {
				add(p, 0)
			}
			for _, pv := range provVersions {
				add(p, pv)
			}
		}
		// As a provider: the pacts of its consumers in the target.
		var consumerPubs []pub
		if everything {
			if len(order) > 1 {
				continue
			}
			consumerPubs, err = m.verifiedPubs(vs)
		} else {
			consumerPubs, err = m.targetConsumerPubs(pid)
		}
		if err != nil {
			return res, err
		}
		for _, p := range consumerPubs {
			if _, ok := selected[p.consumer]; ok {
				continue // answered from the consumer's side
			}
			for _, pv := range vs {
				add(p, pv)
			}
		}
	}
	rows, err := m.materialise(raws)
	if err != nil {
		return res, err
	}
	for i := range rows {
		rows[i].Ignored = ignored(q.Ignore, rows[i])
	}
	res.Rows = rows
	return res, nil
}

func appendUnique(to []int64, ids ...int64) []int64 {
	for _, id := range ids {
		found := false
		for _, x := range to {
			if x == id {
				found = true
				break
			}
		}
		if !found {
			to = append(to, id)
		}
	}
	return to
}

func ignored(ign []broker.Selector, r broker.MatrixRow) bool {
	for _, s := range ign {
		if s.Pacticipant == r.Consumer && (s.Version == "" || s.Version == r.ConsumerVersion.Number) {
			return true
		}
		if s.Pacticipant == r.Provider && (s.Version == "" || (r.ProviderVersion != nil && s.Version == r.ProviderVersion.Number)) {
			return true
		}
	}
	return false
}

// resolve returns the versions of a pacticipant a selector picks.
func (m *matrixRun) resolve(pid int64, sel broker.Selector) ([]int64, error) {
	ctx, db := m.ctx, m.db
	switch {
	case sel.Version != "":
		return int64s(ctx, db, `SELECT id FROM broker_versions WHERE pacticipant_id = $1 AND number = $2`, pid, sel.Version)
	case sel.Environment != "":
		return int64s(ctx, db, `SELECT d.version_id FROM broker_deployments d JOIN broker_environments e ON e.id = d.environment_id
			WHERE e.name = $1 AND d.pacticipant_id = $2 AND d.active = 1`, sel.Environment, pid)
	case sel.Branch != "":
		return int64s(ctx, db, `SELECT MAX(version_id) FROM broker_branch_versions WHERE pacticipant_id = $1 AND branch = $2`, pid, sel.Branch)
	case sel.MainBranch:
		return int64s(ctx, db, `SELECT MAX(bv.version_id) FROM broker_branch_versions bv JOIN broker_pacticipants p ON p.id = bv.pacticipant_id
			WHERE bv.pacticipant_id = $1 AND bv.branch = p.main_branch`, pid)
	case sel.Tag != "" && sel.Latest:
		return int64s(ctx, db, `SELECT MAX(version_id) FROM broker_tags WHERE pacticipant_id = $1 AND name = $2`, pid, sel.Tag)
	case sel.Tag != "":
		return int64s(ctx, db, `SELECT version_id FROM broker_tags WHERE pacticipant_id = $1 AND name = $2`, pid, sel.Tag)
	case sel.Latest:
		return int64s(ctx, db, `SELECT MAX(id) FROM broker_versions WHERE pacticipant_id = $1`, pid)
	default:
		return int64s(ctx, db, `SELECT id FROM broker_versions WHERE pacticipant_id = $1`, pid)
	}
}

// targetVersions returns the versions of a pacticipant in the target.
func (m *matrixRun) targetVersions(pid int64) ([]int64, error) {
	if vs, ok := m.target[pid]; ok {
		return vs, nil
	}
	ctx, db, t := m.ctx, m.db, m.q.Target
	var (
		vs  []int64
		err error
	)
	switch {
	case t.Environment != "":
		vs, err = int64s(ctx, db, `SELECT version_id FROM broker_deployments WHERE environment_id = $1 AND pacticipant_id = $2 AND active = 1`, m.envID, pid)
	case t.Tag != "":
		vs, err = int64s(ctx, db, `SELECT MAX(version_id) FROM broker_tags WHERE pacticipant_id = $1 AND name = $2`, pid, t.Tag)
	case t.MainBranch:
		vs, err = int64s(ctx, db, `SELECT MAX(bv.version_id) FROM broker_branch_versions bv JOIN broker_pacticipants p ON p.id = bv.pacticipant_id
			WHERE bv.pacticipant_id = $1 AND bv.branch = p.main_branch`, pid)
	default:
		vs, err = int64s(ctx, db, `SELECT MAX(id) FROM broker_versions WHERE pacticipant_id = $1`, pid)
	}
	if err != nil {
		return nil, err
	}
	m.target[pid] = vs
	return vs, nil
}

// targetConsumerPubs returns the pacts with the provider published by the
// target versions of its consumers.
func (m *matrixRun) targetConsumerPubs(provider int64) ([]pub, error) {
	ctx, db, t := m.ctx, m.db, m.q.Target
	base := `SELECT ` + pubColumns + ` FROM broker_pact_publications pp JOIN broker_pact_versions pv ON pv.id = pp.pact_version_id WHERE pp.provider_id = $1 AND pp.consumer_version_id IN `
	consumers := `(SELECT DISTINCT consumer_id FROM broker_pact_publications WHERE provider_id = $1)`
	switch {
	case t.Environment != "":
		return scanPubs(ctx, db, base+`(SELECT version_id FROM broker_deployments WHERE environment_id = $2 AND active = 1 AND pacticipant_id IN `+consumers+`)`, provider, m.envID)
	case t.Tag != "":
		return scanPubs(ctx, db, base+`(SELECT MAX(version_id) FROM broker_tags WHERE name = $2 AND pacticipant_id IN `+consumers+` GROUP BY pacticipant_id)`, provider, t.Tag)
	case t.MainBranch:
		return scanPubs(ctx, db, base+`(SELECT MAX(bv.version_id) FROM broker_branch_versions bv JOIN broker_pacticipants p ON p.id = bv.pacticipant_id
			WHERE bv.branch = p.main_branch AND bv.pacticipant_id IN `+consumers+` GROUP BY bv.pacticipant_id)`, provider)
	default:
		return scanPubs(ctx, db, base+`(SELECT MAX(id) FROM broker_versions WHERE pacticipant_id IN `+consumers+` GROUP BY pacticipant_id)`, provider)
	}
}

// verifiers returns the provider versions that verified a pact version:
// every one for latestby=cvpv, the latest for cvp.
func (m *matrixRun) verifiers(pactVersion int64, _ []int64) ([]int64, error) {
	if m.q.LatestBy == "cvp" {
		return int64s(m.ctx, m.db, `SELECT provider_version_id FROM broker_verifications WHERE pact_version_id = $1 ORDER BY id DESC LIMIT 1`, pactVersion)
	}
	return int64s(m.ctx, m.db, `SELECT DISTINCT provider_version_id FROM broker_verifications WHERE pact_version_id = $1`, pactVersion)
}

// verifiedPubs returns, for the pacts these provider versions verified,
// the latest consumer version that published each.
func (m *matrixRun) verifiedPubs(providerVersions []int64) ([]pub, error) {
	ph, args := in(1, providerVersions)
	return scanPubs(m.ctx, m.db, `SELECT `+pubColumns+` FROM broker_pact_publications pp JOIN broker_pact_versions pv ON pv.id = pp.pact_version_id
		WHERE pp.id IN (SELECT MAX(p2.id) FROM broker_pact_publications p2 WHERE p2.pact_version_id IN
			(SELECT DISTINCT pact_version_id FROM broker_verifications WHERE provider_version_id IN (`+ph+`)) GROUP BY p2.pact_version_id)`, args...)
}

// materialise loads the versions and latest verification of every row in
// a few batched queries.
func (m *matrixRun) materialise(raws []rawRow) ([]broker.MatrixRow, error) {
	if len(raws) == 0 {
		return nil, nil
	}
	var versionIDs, pactIDs, provIDs []int64
	for _, r := range raws {
		versionIDs = appendUnique(versionIDs, r.cv)
		if r.pv != 0 {
			versionIDs = appendUnique(versionIDs, r.pv)
			provIDs = appendUnique(provIDs, r.pv)
		}
		pactIDs = appendUnique(pactIDs, r.pact)
	}
	versions, err := loadVersions(m.ctx, m.db, versionIDs)
	if err != nil {
		return nil, err
	}
	type pair struct{ pact, pv int64 }
	verifs := map[pair]*broker.Verification{}
	if len(provIDs) > 0 {
		ph1, a1 := in(1, pactIDs)
		ph2, a2 := in(1+len(a1), provIDs)
		rows, err := m.db.QueryContext(m.ctx, `SELECT id, pact_version_id, provider_version_id, success, created_at FROM broker_verifications
			WHERE id IN (SELECT MAX(id) FROM broker_verifications WHERE pact_version_id IN (`+ph1+`) AND provider_version_id IN (`+ph2+`)
			GROUP BY pact_version_id, provider_version_id)`, append(a1, a2...)...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var (
				v           broker.Verification
				pact, pv    int64
				success     int
				createdAtMS int64
			)
			if err := rows.Scan(&v.ID, &pact, &pv, &success, &createdAtMS); err != nil {
				_ = rows.Close()
				return nil, err
			}
			v.Success, v.VerifiedAt = success == 1, fromMS(createdAtMS)
			verifs[pair{pact, pv}] = &v
		}
		_ = rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	out := make([]broker.MatrixRow, 0, len(raws))
	for _, r := range raws {
		cv := versions[r.cv]
		row := broker.MatrixRow{
			Consumer: cv.Pacticipant, ConsumerVersion: cv,
			PactSHA: r.sha, PactCreatedAt: fromMS(r.pactAt),
		}
		if r.pv != 0 {
			pv := versions[r.pv]
			row.Provider, row.ProviderVersion = pv.Pacticipant, &pv
			if v := verifs[pair{r.pact, r.pv}]; v != nil {
				vv := *v
				vv.Consumer, vv.Provider, vv.PactSHA, vv.ProviderVersion = row.Consumer, row.Provider, r.sha, pv.Number
				row.Verification = &vv
			}
		} else {
			var name string
			_ = m.db.QueryRowContext(m.ctx, `SELECT name FROM broker_pacticipants WHERE id = $1`, r.provider).Scan(&name)
			row.Provider = name
		}
		out = append(out, row)
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Consumer != b.Consumer {
			return a.Consumer < b.Consumer
		}
		if a.Provider != b.Provider {
			return a.Provider < b.Provider
		}
		if !a.ConsumerVersion.CreatedAt.Equal(b.ConsumerVersion.CreatedAt) {
			return a.ConsumerVersion.CreatedAt.After(b.ConsumerVersion.CreatedAt)
		}
		return a.ConsumerVersion.Number < b.ConsumerVersion.Number
	})
	return out, nil
}

// loadVersions loads versions with their pacticipant names and branches.
func loadVersions(ctx context.Context, q querier, ids []int64) (map[int64]broker.Version, error) {
	out := make(map[int64]broker.Version, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	ph, args := in(1, ids)
	rows, err := q.QueryContext(ctx, `SELECT v.id, p.name, v.number, v.build_url, v.created_at FROM broker_versions v
		JOIN broker_pacticipants p ON p.id = v.pacticipant_id WHERE v.id IN (`+ph+`)`, args...)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var (
			id int64
			v  broker.Version
			ms int64
		)
		if err := rows.Scan(&id, &v.Pacticipant, &v.Number, &v.BuildURL, &ms); err != nil {
			_ = rows.Close()
			return nil, err
		}
		v.CreatedAt = fromMS(ms)
		out[id] = v
	}
	_ = rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows, err = q.QueryContext(ctx, `SELECT version_id, branch FROM broker_branch_versions WHERE version_id IN (`+ph+`) ORDER BY created_at, branch`, args...)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		var (
			id int64
			b  string
		)
		if err := rows.Scan(&id, &b); err != nil {
			return nil, err
		}
		v := out[id]
		v.Branches = append(v.Branches, b)
		out[id] = v
	}
	return out, rows.Err()
}
