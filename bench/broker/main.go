// Command broker benchmarks the contract broker at the scale of a large
// organisation and prints its figures (recorded in bench/README.md):
// 100 pacticipants, 10,000 versions, 2,000 pact versions (20,000 pact
// publications) and 200,000 verification results, seeded through the
// store's database in bulk; then, through the broker's HTTP handler on
// loopback,
//
//   - can-i-deploy: GET /matrix for a random version of a random service
//     to production, as `pact broker can-i-deploy` asks it (target: p99
//     under 50 ms);
//   - pacts-for-verification: POST /pacts/provider/P/for-verification with
//     {mainBranch} and {deployedOrReleased}, pending status and WIP pacts,
//     as the pact verifier asks it (target: p99 under 100 ms).
//
// It runs on SQLite (a temporary file) and, when FLOTILLA_TEST_POSTGRES is
// set, on PostgreSQL (a fresh schema, dropped afterwards).
//
//	go run ./bench/broker [-n 500] [-only sqlite|postgres]
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/flotilla-ci/flotilla/broker"
	"github.com/flotilla-ci/flotilla/broker/sqlstore"
	"github.com/flotilla-ci/flotilla/internal/sqldb"
)

const (
	nPacticipants = 100
	nVersions     = 100 // per pacticipant: 10,000
	nContents     = 10  // distinct pact contents per integration: 200 integrations x 10 = 2,000 pact versions
	deployedAt    = 90  // the version of each service deployed to production
)

// providers of consumer i: two integrations each, 200 in all.
func providers(i int) []int { return []int{(i + 1) % nPacticipants, (i + 7) % nPacticipants} }

func main() {
	n := flag.Int("n", 500, "requests per measurement")
	only := flag.String("only", "", "sqlite or postgres")
	file := flag.String("sqlite", "", "a SQLite file to use (seeded once, reused by later runs)")
	dsn := flag.String("postgres", "", "a PostgreSQL DSN to use (seeded once, reused by later runs)")
	flag.Parse()
	ctx := context.Background()
	if *file != "" {
		run(ctx, "sqlite", *file, *n)
		return
	}
	if *dsn != "" {
		run(ctx, "postgres", *dsn, *n)
		return
	}
	if *only == "" || *only == "sqlite" {
		dir, err := os.MkdirTemp("", "broker-bench")
		if err != nil {
			log.Fatal(err)
		}
		defer func() { _ = os.RemoveAll(dir) }()
		run(ctx, "sqlite", filepath.Join(dir, "broker.db"), *n)
	}
	if pg := os.Getenv("FLOTILLA_TEST_POSTGRES"); pg != "" && (*only == "" || *only == "postgres") {
		db, err := sqldb.Open(ctx, pg)
		if err != nil {
			log.Fatal(err)
		}
		schema := fmt.Sprintf("bench_broker_%d", time.Now().UnixNano())
		if _, err := db.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
			log.Fatal(err)
		}
		defer func() { _, _ = db.ExecContext(ctx, "DROP SCHEMA "+schema+" CASCADE"); _ = db.Close() }()
		sep := "?"
		if strings.Contains(pg, "?") {
			sep = "&"
		}
		run(ctx, "postgres", pg+sep+"search_path="+schema, *n)
	} else if *only == "postgres" {
		log.Fatal("FLOTILLA_TEST_POSTGRES is not set")
	}
}

func run(ctx context.Context, name, dsn string, n int) {
	store, err := sqlstore.Open(ctx, dsn)
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = store.Close() }()
	start := time.Now()
	var seeded int
	_ = store.DB().QueryRowContext(ctx, "SELECT COUNT(*) FROM broker_verifications").Scan(&seeded)
	if seeded == 0 {
		if err := seed(ctx, store.DB()); err != nil {
			log.Fatalf("seed %s: %v", name, err)
		}
		// A database that grew to this size has statistics; a bulk load
		// must gather them.
		if _, err := store.DB().ExecContext(ctx, "ANALYZE"); err != nil {
			log.Fatalf("analyze: %v", err)
		}
	}
	counts := map[string]int{}
	for _, t := range []string{"broker_pacticipants", "broker_versions", "broker_pact_versions", "broker_pact_publications", "broker_verifications", "broker_deployments"} {
		var c int
		_ = store.DB().QueryRowContext(ctx, "SELECT COUNT(*) FROM "+t).Scan(&c)
		counts[strings.TrimPrefix(t, "broker_")] = c
	}
	fmt.Printf("%s: seeded in %s: %d pacticipants, %d versions, %d pact versions, %d publications, %d verification results, %d deployments\n",
		name, time.Since(start).Round(time.Millisecond), counts["pacticipants"], counts["versions"], counts["pact_versions"],
		counts["pact_publications"], counts["verifications"], counts["deployments"])

	srv, err := broker.New(broker.DefaultConfig(), store, nil)
	if err != nil {
		log.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	get := func(url string) (int, []byte) {
		resp, err := http.Get(url)
		if err != nil {
			log.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	post := func(url, body string) (int, []byte) {
		resp, err := http.Post(url, "application/json", strings.NewReader(body))
		if err != nil {
			log.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	rows := 0
	canIDeploy := measure(n, func() {
		p, v := rng.IntN(nPacticipants), rng.IntN(nVersions)
		code, body := get(fmt.Sprintf("%s/matrix?q%%5B%%5D%%5Bpacticipant%%5D=svc-%02d&q%%5B%%5D%%5Bversion%%5D=%d.0.0&latestby=cvpv&environment=production", hs.URL, p, v))
		if code != 200 || !bytes.Contains(body, []byte(`"deployable"`)) {
			log.Fatalf("matrix: %d %s", code, body)
		}
		rows += bytes.Count(body, []byte(`"verificationResult"`))
	})
	pacts := 0
	forVerification := measure(n, func() {
		p := rng.IntN(nPacticipants)
		code, body := post(fmt.Sprintf("%s/pacts/provider/svc-%02d/for-verification", hs.URL, p),
			`{"consumerVersionSelectors":[{"mainBranch":true},{"deployedOrReleased":true}],"providerVersionBranch":"main","includePendingStatus":true,"includeWipPactsSince":"2020-01-01"}`)
		if code != 200 || !bytes.Contains(body, []byte(`"pacts"`)) {
			log.Fatalf("for-verification: %d %s", code, body)
		}
		pacts += bytes.Count(body, []byte(`"shortDescription"`))
	})
	fmt.Printf("%s: can-i-deploy (GET /matrix, to production)        %s  (%.1f rows per answer)  target p99 < 50ms: %s\n", name, canIDeploy, float64(rows)/float64(n), verdict(canIDeploy.p99, 50*time.Millisecond))
	fmt.Printf("%s: pacts-for-verification (mainBranch, deployed, WIP) %s  (%.1f pacts per answer)  target p99 < 100ms: %s\n", name, forVerification, float64(pacts)/float64(n), verdict(forVerification.p99, 100*time.Millisecond))
}

func verdict(got, limit time.Duration) string {
	if got < limit {
		return "met"
	}
	return "MISSED"
}

type latencies struct{ p50, p95, p99, max time.Duration }

func (l latencies) String() string {
	return fmt.Sprintf("p50 %6.2fms  p95 %6.2fms  p99 %6.2fms  max %6.2fms", ms(l.p50), ms(l.p95), ms(l.p99), ms(l.max))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func measure(n int, f func()) latencies {
	for i := 0; i < n/10; i++ { // warm up
		f()
	}
	ds := make([]time.Duration, n)
	for i := range ds {
		t := time.Now()
		f()
		ds[i] = time.Since(t)
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	at := func(q float64) time.Duration { return ds[min(len(ds)-1, int(q*float64(len(ds))))] }
	return latencies{at(0.50), at(0.95), at(0.99), ds[len(ds)-1]}
}

// batch inserts rows in multi-row INSERT statements inside a transaction.
type batch struct {
	ctx    context.Context
	tx     *sqldb.Tx
	prefix string
	cols   int
	rows   [][]any
}

func (b *batch) add(vals ...any) error {
	b.rows = append(b.rows, vals)
	if len(b.rows)*b.cols >= 900 {
		return b.flush()
	}
	return nil
}

func (b *batch) flush() error {
	if len(b.rows) == 0 {
		return nil
	}
	var sb strings.Builder
	sb.WriteString(b.prefix)
	var args []any
	for i, r := range b.rows {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteByte('(')
		for j, v := range r {
			if j > 0 {
				sb.WriteByte(',')
			}
			args = append(args, v)
			fmt.Fprintf(&sb, "$%d", len(args))
		}
		sb.WriteByte(')')
	}
	b.rows = b.rows[:0]
	if _, err := b.tx.ExecContext(b.ctx, sb.String(), args...); err != nil {
		return fmt.Errorf("%s...: %w", b.prefix[:40], err)
	}
	return nil
}

// seed writes the data set with explicit ids, in bulk.
func seed(ctx context.Context, db *sqldb.DB) error {
	base := time.Now().Add(-30 * 24 * time.Hour).UnixMilli()
	return db.InTx(ctx, func(tx *sqldb.Tx) error {
		nb := func(prefix string, cols int) *batch { return &batch{ctx: ctx, tx: tx, prefix: prefix, cols: cols} }
		pb := nb("INSERT INTO broker_pacticipants (id, name, main_branch, created_at) VALUES ", 4)
		for i := 0; i < nPacticipants; i++ {
			if err := pb.add(i+1, fmt.Sprintf("svc-%02d", i), "main", base); err != nil {
				return err
			}
		}
		if err := pb.flush(); err != nil {
			return err
		}
		vid := func(p, v int) int { return p*nVersions + v + 1 }
		vb := nb("INSERT INTO broker_versions (id, pacticipant_id, number, build_url, created_at) VALUES ", 5)
		bb := nb("INSERT INTO broker_branch_versions (version_id, pacticipant_id, branch, created_at) VALUES ", 4)
		tb := nb("INSERT INTO broker_tags (version_id, pacticipant_id, name, created_at) VALUES ", 4)
		for v := 0; v < nVersions; v++ { // interleaved by time, as real histories are
			for p := 0; p < nPacticipants; p++ {
				at := base + int64(v*nPacticipants+p)*1000
				if err := vb.add(vid(p, v), p+1, fmt.Sprintf("%d.0.0", v), "", at); err != nil {
					return err
				}
			}
		}
		if err := vb.flush(); err != nil {
			return err
		}
		for v := 0; v < nVersions; v++ {
			for p := 0; p < nPacticipants; p++ {
				at := base + int64(v*nPacticipants+p)*1000
				branch := "main"
				if v%5 == 4 {
					branch = fmt.Sprintf("feat-%d", v)
				}
				if err := bb.add(vid(p, v), p+1, branch, at); err != nil {
					return err
				}
				if v%10 == 0 {
					if err := tb.add(vid(p, v), p+1, "prod", at); err != nil {
						return err
					}
				}
			}
		}
		for _, b := range []*batch{bb, tb} {
			if err := b.flush(); err != nil {
				return err
			}
		}
		// Pact versions: integration k (consumer c, provider pr), content j.
		pvid := func(c, k, j int) int { return (c*2+k)*nContents + j + 1 }
		cb := nb("INSERT INTO broker_pact_versions (id, consumer_id, provider_id, sha, content, created_at) VALUES ", 6)
		for c := 0; c < nPacticipants; c++ {
			for k, pr := range providers(c) {
				for j := 0; j < nContents; j++ {
					content := fmt.Sprintf(`{"consumer":{"name":"svc-%02d"},"provider":{"name":"svc-%02d"},"interactions":[{"description":"request %d","request":{"method":"GET","path":"/things/%d"},"response":{"status":200,"body":{"id":%d,"name":"thing"}}}],"metadata":{"pactSpecification":{"version":"3.0.0"}}}`, c, pr, j, j, j)
					sha, err := broker.ContentSHA([]byte(content))
					if err != nil {
						return err
					}
					if err := cb.add(pvid(c, k, j), c+1, pr+1, sha, content, base); err != nil {
						return err
					}
				}
			}
		}
		if err := cb.flush(); err != nil {
			return err
		}
		ppb := nb("INSERT INTO broker_pact_publications (consumer_version_id, consumer_id, provider_id, pact_version_id, created_at) VALUES ", 5)
		for v := 0; v < nVersions; v++ {
			for c := 0; c < nPacticipants; c++ {
				for k, pr := range providers(c) {
					if err := ppb.add(vid(c, v), c+1, pr+1, pvid(c, k, v/nContents), base+int64(v*nPacticipants+c)*1000); err != nil {
						return err
					}
				}
			}
		}
		if err := ppb.flush(); err != nil {
			return err
		}
		// Every pact version verified by every version of its provider:
		// 2,000 x 100 = 200,000 results; one in twenty fails.
		vrb := nb("INSERT INTO broker_verifications (pact_version_id, provider_version_id, success, build_url, test_results, verified_by, created_at) VALUES ", 7)
		n := 0
		for c := 0; c < nPacticipants; c++ {
			for k, pr := range providers(c) {
				for j := 0; j < nContents; j++ {
					for v := 0; v < nVersions; v++ {
						n++
						ok := 1
						if n%20 == 0 {
							ok = 0
						}
						if err := vrb.add(pvid(c, k, j), vid(pr, v), ok, "", "[]", "", base+int64(v)*60000); err != nil {
							return err
						}
					}
				}
			}
		}
		if err := vrb.flush(); err != nil {
			return err
		}
		var prod, staging int64
		if err := tx.QueryRowContext(ctx, "SELECT id FROM broker_environments WHERE name = 'production'").Scan(&prod); err != nil {
			return err
		}
		if err := tx.QueryRowContext(ctx, "SELECT id FROM broker_environments WHERE name = 'test'").Scan(&staging); err != nil {
			return err
		}
		db := nb("INSERT INTO broker_deployments (uuid, version_id, pacticipant_id, environment_id, application_instance, is_release, active, created_at) VALUES ", 8)
		for p := 0; p < nPacticipants; p++ {
			for v := 80; v <= deployedAt; v++ { // a history of deployments, the last current
				active := 0
				if v == deployedAt {
					active = 1
				}
				if err := db.add(fmt.Sprintf("prod-%d-%d", p, v), vid(p, v), p+1, prod, "", 0, active, base); err != nil {
					return err
				}
				if err := db.add(fmt.Sprintf("test-%d-%d", p, v), vid(p, v+5), p+1, staging, "", 0, active, base); err != nil {
					return err
				}
			}
		}
		if err := db.flush(); err != nil {
			return err
		}
		if tx.Dialect() == sqldb.Postgres {
			for _, t := range []string{"broker_pacticipants", "broker_versions", "broker_pact_versions", "broker_pact_publications", "broker_verifications", "broker_deployments"} {
				if _, err := tx.ExecContext(ctx, "SELECT setval(pg_get_serial_sequence('"+t+"', 'id'), (SELECT MAX(id) FROM "+t+"))"); err != nil {
					return err
				}
			}
		}
		return nil
	})
}
