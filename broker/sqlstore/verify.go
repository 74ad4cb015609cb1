package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/flotilla-ci/flotilla/broker"
)

// match is a consumer version a selector picked, with its pact. The
// selection queries return ids only (so they stay small joins that plan
// and run fast); fill adds the names, numbers and SHAs in two batched
// lookups.
type match struct {
	cvID            int64
	pactVersion     int64
	via             string // the branch, tag or environment it was picked through
	consumerVersion string
	consumer        string
	sha             string
}

const matchSelect = `SELECT pp.consumer_version_id, pp.pact_version_id, `
const matchFrom = ` FROM broker_pact_publications pp `
const matchWhere = ` WHERE pp.provider_id = $1 AND ($2 = 0 OR pp.consumer_id = $2) `

// fill loads the consumer version numbers, consumer names and pact SHAs of
// matches (publications of the provider) in one query.
func (s *Store) fill(ctx context.Context, provID int64, ms []match) error {
	if len(ms) == 0 {
		return nil
	}
	var cvs []int64
	for _, m := range ms {
		cvs = appendUnique(cvs, m.cvID)
	}
	type info struct{ number, consumer, sha string }
	found := map[[2]int64]info{}
	ph, args := in(2, cvs)
	rows, err := s.db.QueryContext(ctx, `SELECT pp.consumer_version_id, pp.pact_version_id, v.number, c.name, pv.sha
		FROM broker_pact_publications pp
		JOIN broker_versions v ON v.id = pp.consumer_version_id
		JOIN broker_pacticipants c ON c.id = v.pacticipant_id
		JOIN broker_pact_versions pv ON pv.id = pp.pact_version_id
		WHERE pp.provider_id = $1 AND pp.consumer_version_id IN (`+ph+`)`, append([]any{provID}, args...)...)
	if err != nil {
		return err
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		var (
			cv, pv int64
			in     info
		)
		if err := rows.Scan(&cv, &pv, &in.number, &in.consumer, &in.sha); err != nil {
			return err
		}
		found[[2]int64{cv, pv}] = in
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for i := range ms {
		in := found[[2]int64{ms[i].cvID, ms[i].pactVersion}]
		ms[i].consumerVersion, ms[i].consumer, ms[i].sha = in.number, in.consumer, in.sha
	}
	return nil
}

// latestIn is a condition picking, per consumer, the latest version that
// has a pact with the provider and a row in a table of (version_id, ...)
// rows (branches or tags) meeting cond. It is driven by the provider's
// publications, so its cost does not grow with other pacticipants.
func latestIn(table, cond string) string {
	return ` AND pp.consumer_version_id IN (SELECT MAX(p2.consumer_version_id) FROM broker_pact_publications p2
		JOIN ` + table + ` t ON t.version_id = p2.consumer_version_id
		WHERE p2.provider_id = $1 AND ` + cond + ` GROUP BY p2.consumer_id)`
}

func (s *Store) matches(ctx context.Context, query string, args ...any) ([]match, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var out []match
	for rows.Next() {
		var m match
		if err := rows.Scan(&m.cvID, &m.pactVersion, &m.via); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// selectVersions returns the consumer versions (with their pacts with the
// provider) that one selector picks.
func (s *Store) selectVersions(ctx context.Context, provider int64, sel broker.ConsumerVersionSelector, q broker.ForVerificationQuery) ([]match, error) {
	latest := sel.Latest == nil || *sel.Latest
	head := matchSelect
	var consumer int64
	if sel.Consumer != "" {
		id, err := pacticipantID(ctx, s.db, sel.Consumer)
		if errors.Is(err, broker.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		consumer = id
	}
	switch {
	case sel.MainBranch:
		return s.matches(ctx, head+`(SELECT main_branch FROM broker_pacticipants WHERE id = pp.consumer_id)`+matchFrom+matchWhere+
			` AND pp.consumer_version_id IN (SELECT MAX(p2.consumer_version_id) FROM broker_pact_publications p2
				JOIN broker_pacticipants pc ON pc.id = p2.consumer_id
				JOIN broker_branch_versions t ON t.version_id = p2.consumer_version_id AND t.branch = pc.main_branch
				WHERE p2.provider_id = $1 GROUP BY p2.consumer_id)`, provider, consumer)
	case sel.AllBranches:
		return s.matches(ctx, head+`bv.branch`+matchFrom+` JOIN broker_branch_versions bv ON bv.version_id = pp.consumer_version_id `+matchWhere+`
			AND bv.version_id = (SELECT MAX(b2.version_id) FROM broker_branch_versions b2
				JOIN broker_pact_publications p2 ON p2.consumer_version_id = b2.version_id AND p2.provider_id = $1
				WHERE b2.pacticipant_id = bv.pacticipant_id AND b2.branch = bv.branch)`, provider, consumer)
	case sel.Branch != "" || sel.MatchingBranch:
		branch := sel.Branch
		if sel.MatchingBranch {
			branch = q.ProviderVersionBranch
		}
		var (
			ms  []match
			err error
		)
		if latest {
			ms, err = s.matches(ctx, head+`$3`+matchFrom+matchWhere+latestIn(`broker_branch_versions`, `t.branch = $3`), provider, consumer, branch)
		} else {
			ms, err = s.matches(ctx, head+`$3`+matchFrom+` JOIN broker_branch_versions bv ON bv.version_id = pp.consumer_version_id `+matchWhere+` AND bv.branch = $3`, provider, consumer, branch)
		}
		if err == nil && len(ms) == 0 && sel.FallbackBranch != "" {
			return s.matches(ctx, head+`$3`+matchFrom+matchWhere+latestIn(`broker_branch_versions`, `t.branch = $3`), provider, consumer, sel.FallbackBranch)
		}
		return ms, err
	case sel.Deployed || sel.Released || sel.DeployedOrReleased || sel.Environment != "":
		kinds := "0, 1"
		switch {
		case sel.Deployed && !sel.Released:
			kinds = "0"
		case sel.Released && !sel.Deployed:
			kinds = "1"
		}
		return s.matches(ctx, `SELECT DISTINCT pp.consumer_version_id, pp.pact_version_id, e.name`+matchFrom+`
			JOIN broker_deployments d ON d.version_id = pp.consumer_version_id AND d.active = 1
			JOIN broker_environments e ON e.id = d.environment_id`+matchWhere+`
			AND ($3 = '' OR e.name = $3) AND d.is_release IN (`+kinds+`)`, provider, consumer, sel.Environment)
	case sel.Tag != "":
		var (
			ms  []match
			err error
		)
		if sel.Latest != nil && *sel.Latest {
			ms, err = s.matches(ctx, head+`$3`+matchFrom+matchWhere+latestIn(`broker_tags`, `t.name = $3`), provider, consumer, sel.Tag)
		} else {
			ms, err = s.matches(ctx, head+`$3`+matchFrom+` JOIN broker_tags tg ON tg.version_id = pp.consumer_version_id `+matchWhere+` AND tg.name = $3`, provider, consumer, sel.Tag)
		}
		if err == nil && len(ms) == 0 && sel.FallbackTag != "" {
			return s.matches(ctx, head+`$3`+matchFrom+matchWhere+latestIn(`broker_tags`, `t.name = $3`), provider, consumer, sel.FallbackTag)
		}
		return ms, err
	default: // {latest: true} and {consumer: X}: the latest pact of each consumer
		return s.matches(ctx, head+`''`+matchFrom+matchWhere+` AND pp.consumer_version_id IN (SELECT MAX(p2.consumer_version_id)
			FROM broker_pact_publications p2 WHERE p2.provider_id = $1 GROUP BY p2.consumer_id)`, provider, consumer)
	}
}

// ForVerification implements broker.Store. It makes a fixed number of
// round trips whatever the data: one per selector, one for pending status,
// two for WIP pacts, and one to fill in names and SHAs.
func (s *Store) ForVerification(ctx context.Context, provider string, q broker.ForVerificationQuery) ([]broker.VerifiablePact, error) {
	provID, err := pacticipantID(ctx, s.db, provider)
	if err != nil {
		return nil, err
	}
	selectors := q.Selectors
	if len(selectors) == 0 {
		t := true
		selectors = []broker.ConsumerVersionSelector{{Latest: &t}}
	}
	type picked struct {
		sel broker.ConsumerVersionSelector
		m   match
	}
	var all []picked
	var order []int64 // pact versions in the order first selected
	selected := map[int64]int{}
	for _, sel := range selectors {
		ms, err := s.selectVersions(ctx, provID, sel, q)
		if err != nil {
			return nil, fmt.Errorf("select pacts for %s: %w", provider, err)
		}
		for _, m := range ms {
			if _, ok := selected[m.pactVersion]; !ok {
				selected[m.pactVersion] = len(order)
				order = append(order, m.pactVersion)
			}
			all = append(all, picked{sel, m})
		}
	}
	pending := map[int64]bool{}
	if q.IncludePendingStatus && len(order) > 0 {
		verified, err := s.verifiedOn(ctx, provID, order, q)
		if err != nil {
			return nil, err
		}
		for _, id := range order {
			pending[id] = !verified[id]
		}
	}
	var wip []match
	if !q.IncludeWIPPactsSince.IsZero() && (q.ProviderVersionBranch != "" || len(q.ProviderVersionTags) > 0) {
		if wip, err = s.wip(ctx, provID, provider, q, selected); err != nil {
			return nil, err
		}
	}
	ms := make([]match, 0, len(all)+len(wip))
	for _, p := range all {
		ms = append(ms, p.m)
	}
	ms = append(ms, wip...)
	if err := s.fill(ctx, provID, ms); err != nil {
		return nil, err
	}
	out := make([]broker.VerifiablePact, len(order))
	for i, p := range all {
		m, sel := ms[i], p.sel
		if m.sha == "" {
			continue // its publication was overwritten meanwhile
		}
		vp := &out[selected[m.pactVersion]]
		vp.Consumer, vp.Provider, vp.SHA, vp.Pending = m.consumer, provider, m.sha, pending[m.pactVersion]
		by := broker.SelectedBy{Selector: sel, ConsumerVersion: m.consumerVersion}
		switch {
		case sel.Deployed || sel.Released || sel.DeployedOrReleased || sel.Environment != "":
			by.Environment = m.via
		case sel.Tag != "":
			by.Tag = m.via
		default:
			by.Branch = m.via
		}
		vp.SelectedBy = append(vp.SelectedBy, by)
	}
	kept := out[:0]
	for _, vp := range out {
		if vp.SHA != "" {
			kept = append(kept, vp)
		}
	}
	out = kept
	wipIndex := map[int64]int{}
	for _, m := range ms[len(all):] {
		if m.sha == "" {
			continue
		}
		i, ok := wipIndex[m.pactVersion]
		if !ok {
			i = len(out)
			wipIndex[m.pactVersion] = i
			out = append(out, broker.VerifiablePact{Consumer: m.consumer, Provider: provider, SHA: m.sha, Pending: true, WIP: true})
		}
		out[i].SelectedBy = append(out[i].SelectedBy, broker.SelectedBy{ConsumerVersion: m.consumerVersion, Branch: m.via})
	}
	return out, nil
}

// verifiedOn returns which pact versions a provider version on the
// request's branch (or with one of its tags, or any version when neither
// is given) has verified successfully.
func (s *Store) verifiedOn(ctx context.Context, provID int64, pactIDs []int64, q broker.ForVerificationQuery) (map[int64]bool, error) {
	ph, args := in(2, pactIDs)
	args = append([]any{provID}, args...)
	n := len(args)
	// EXISTS stops at the first successful verification of each pact.
	var by string
	switch {
	case q.ProviderVersionBranch != "":
		by = fmt.Sprintf(`JOIN broker_branch_versions bv ON bv.version_id = vr.provider_version_id AND bv.pacticipant_id = $1 AND bv.branch = $%d`, n+1)
		args = append(args, q.ProviderVersionBranch)
	case len(q.ProviderVersionTags) > 0:
		var tp []string
		for i, t := range q.ProviderVersionTags {
			tp = append(tp, fmt.Sprintf("$%d", n+1+i))
			args = append(args, t)
		}
		by = `JOIN broker_tags tg ON tg.version_id = vr.provider_version_id AND tg.pacticipant_id = $1 AND tg.name IN (` + strings.Join(tp, ",") + `)`
	default:
		by = `JOIN broker_versions v ON v.id = vr.provider_version_id AND v.pacticipant_id = $1`
	}
	got, err := int64s(ctx, s.db, `SELECT pv.id FROM broker_pact_versions pv WHERE pv.id IN (`+ph+`)
		AND EXISTS (SELECT 1 FROM broker_verifications vr `+by+` WHERE vr.pact_version_id = pv.id AND vr.success = 1)`, args...)
	if err != nil {
		return nil, err
	}
	out := make(map[int64]bool, len(got))
	for _, id := range got {
		out[id] = true
	}
	return out, nil
}

// wip returns the work-in-progress pacts (unfilled): the latest pact of
// every consumer branch (and tag) that was published since the cut-off,
// was not selected explicitly, and that the provider's branch has not yet
// verified.
func (s *Store) wip(ctx context.Context, provID int64, provider string, q broker.ForVerificationQuery, selected map[int64]int) ([]match, error) {
	since := q.IncludeWIPPactsSince.UnixMilli()
	type cand struct {
		match
		createdAt int64
	}
	type key struct {
		consumer int64
		label    string
	}
	latest := map[key]cand{}
	var keys []key
	rows, err := s.db.QueryContext(ctx, `SELECT pp.consumer_version_id, pp.pact_version_id, 'branch', bv.branch, pp.consumer_id, pp.created_at
			FROM broker_pact_publications pp JOIN broker_branch_versions bv ON bv.version_id = pp.consumer_version_id WHERE pp.provider_id = $1
		UNION ALL SELECT pp.consumer_version_id, pp.pact_version_id, 'tag', tg.name, pp.consumer_id, pp.created_at
			FROM broker_pact_publications pp JOIN broker_tags tg ON tg.version_id = pp.consumer_version_id WHERE pp.provider_id = $1`, provID)
	if err != nil {
		return nil, fmt.Errorf("wip pacts for %s: %w", provider, err)
	}
	for rows.Next() {
		var (
			c        cand
			kind     string
			consumer int64
		)
		if err := rows.Scan(&c.cvID, &c.pactVersion, &kind, &c.via, &consumer, &c.createdAt); err != nil {
			_ = rows.Close()
			return nil, err
		}
		k := key{consumer, kind + ":" + c.via}
		prev, ok := latest[k]
		if !ok {
			keys = append(keys, k)
		}
		if !ok || c.cvID > prev.cvID {
			latest[k] = c
		}
	}
	_ = rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var cands []match
	var ids []int64
	for _, k := range keys {
		c := latest[k]
		if c.createdAt < since {
			continue
		}
		if _, ok := selected[c.pactVersion]; ok {
			continue
		}
		cands = append(cands, c.match)
		ids = appendUnique(ids, c.pactVersion)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	verified, err := s.verifiedOn(ctx, provID, ids, q)
	if err != nil {
		return nil, err
	}
	var out []match
	for _, m := range cands {
		if !verified[m.pactVersion] {
			out = append(out, m)
		}
	}
	return out, nil
}
