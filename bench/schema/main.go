// Command schema benchmarks flotilla's event-schema machinery and prints
// its figures (recorded in bench/README.md):
//
//   - compat: a transitive compatibility check of a new schema against 100
//     earlier versions of a 50-field record (target: under 10 ms), with
//     hamba/avro's checker (a fresh one per check, as its cache is unsafe to
//     reuse) as the peer;
//   - byid: GET /schemas/ids/{id} at a fixed 5,000 requests/s from an
//     open-loop load generator on loopback, latency measured from each
//     request's scheduled send time (target: p99 under 2 ms);
//   - handler: the server's own cost for the same request, calling the
//     handler in-process (no network, no second process to schedule);
//   - subjects: registering 10,000 subjects, then the registry process's
//     resident memory;
//   - readers: schema check of the shop (repocheck.Check against HEAD, as
//     `flotilla schema check` runs it) with and without the consumers'
//     reader checks (target: within 10% of the check without them);
//   - jsoncompat: a transitive JSON Schema check of a 50-property object
//     against 100 earlier versions;
//   - protocompat: a transitive Protobuf check of a file with 50 messages
//     against 100 earlier versions (target: under 20 ms).
//
// The registry runs as a child process (this program re-executed with
// -child), on a SQLite file, so its memory is its own.
//
//	go run ./bench/schema [-only compat|handler|byid|subjects] [-rate 5000] [-duration 10s]
//
// On a machine shared with other work, `chrt -r 1` (as root) keeps that
// work from setting the tails.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hamba/avro/v2"

	"github.com/flotilla-ci/flotilla/graph"
	"github.com/flotilla-ci/flotilla/internal/sqldb"
	"github.com/flotilla-ci/flotilla/registry"
	"github.com/flotilla-ci/flotilla/registry/sqlstore"
	"github.com/flotilla-ci/flotilla/schema"
	"github.com/flotilla-ci/flotilla/schema/jsonschema"
	"github.com/flotilla-ci/flotilla/schema/protobuf"
	"github.com/flotilla-ci/flotilla/schema/repocheck"
)

func main() {
	child := flag.Bool("child", false, "run the registry server (internal)")
	addr := flag.String("addr", "", "child: address file to write the bound address to")
	db := flag.String("db", "", "child: database")
	only := flag.String("only", "", "run one benchmark: compat, handler, byid, subjects, readers, jsoncompat or protocompat")
	rate := flag.Int("rate", 5000, "byid: requests per second")
	duration := flag.Duration("duration", 10*time.Second, "byid: how long to send")
	subjects := flag.Int("subjects", 10000, "subjects: how many to register")
	flag.Parse()
	if *child {
		if err := serve(*addr, *db); err != nil {
			log.Fatal(err)
		}
		return
	}
	fmt.Printf("machine: %d cores, %s/%s, %s\n", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version())
	if *only == "" || *only == "compat" {
		benchCompat()
	}
	if *only == "" || *only == "readers" {
		if err := benchReaders(); err != nil {
			log.Fatal(err)
		}
	}
	if *only == "" || *only == "jsoncompat" {
		benchJSONCompat()
	}
	if *only == "" || *only == "protocompat" {
		benchProtoCompat()
	}
	if *only == "" || *only == "handler" {
		if err := benchHandler(); err != nil {
			log.Fatal(err)
		}
	}
	if *only == "" || *only == "byid" || *only == "subjects" {
		r, err := startChild()
		if err != nil {
			log.Fatal(err)
		}
		defer r.stop()
		if *only == "" || *only == "byid" {
			if err := benchByID(r, *rate, *duration); err != nil {
				log.Fatal(err)
			}
		}
		if *only == "" || *only == "subjects" {
			if err := benchSubjects(r, *subjects); err != nil {
				log.Fatal(err)
			}
		}
	}
}

// --- compat -----------------------------------------------------------------

// version returns version k of a 50-field record: 40 fields of every kind
// that never change, and 10 optional fields whose defaults change with k.
func version(k int) string {
	var f []string
	kinds := []string{`"int"`, `"long"`, `"string"`, `"double"`, `"boolean"`, `"bytes"`,
		`{"type":"array","items":"string"}`, `{"type":"map","values":"long"}`, `["null","string"]`}
	for i := 0; i < 36; i++ {
		f = append(f, fmt.Sprintf(`{"name":"f%d","type":%s}`, i, kinds[i%len(kinds)]))
	}
	f = append(f, `{"name":"status","type":{"type":"enum","name":"Status","symbols":["NEW","PAID","SHIPPED","CANCELLED"],"default":"NEW"}}`)
	f = append(f, `{"name":"address","type":{"type":"record","name":"Address","fields":[{"name":"street","type":"string"},{"name":"city","type":"string"},{"name":"zip","type":"string"}]}}`)
	f = append(f, `{"name":"billing","type":["null","Address"],"default":null}`)
	f = append(f, `{"name":"checksum","type":{"type":"fixed","name":"Sha256","size":32}}`)
	for i := 0; i < 10; i++ {
		f = append(f, fmt.Sprintf(`{"name":"opt%d","type":"long","default":%d}`, i, k*10+i))
	}
	return fmt.Sprintf(`{"type":"record","name":"OrderCreated","namespace":"shop.order","fields":[%s]}`, strings.Join(f, ","))
}

func benchCompat() {
	var prev []schema.Version
	var hprev []avro.Schema
	for k := 1; k <= 100; k++ {
		s := schema.MustParse(version(k))
		prev = append(prev, schema.Version{Version: k, Schema: s})
		hprev = append(hprev, s.Avro())
	}
	cand := schema.MustParse(version(101))
	if n := len(cand.Avro().(*avro.RecordSchema).Fields()); n != 50 {
		log.Fatalf("record has %d fields", n)
	}
	for _, mode := range []schema.Mode{schema.BackwardTransitive, schema.FullTransitive} {
		times := measure(200, func() {
			if p := mode.Check(cand, prev); len(p) != 0 {
				log.Fatalf("unexpected problems: %v", p)
			}
		})
		fmt.Printf("compat %-19s new vs 100 versions of a 50-field record: median %s, p99 %s, max %s\n",
			mode, times[len(times)/2].Round(time.Microsecond), times[len(times)*99/100].Round(time.Microsecond), times[len(times)-1].Round(time.Microsecond))
	}
	ours := measure(200, func() { schema.BackwardTransitive.Check(cand, prev) })
	peer := measure(200, func() {
		for _, h := range hprev {
			if err := avro.NewSchemaCompatibility().Compatible(cand.Avro(), h); err != nil {
				log.Fatal(err)
			}
		}
	})
	om, pm := ours[len(ours)/2], peer[len(peer)/2]
	fmt.Printf("compat peer: hamba/avro (fresh checker per pair, first problem only) median %s; flotilla/hamba = %.2f\n",
		pm.Round(time.Microsecond), float64(om)/float64(pm))
}

func measure(n int, fn func()) []time.Duration {
	fn() // warm up
	out := make([]time.Duration, n)
	for i := range out {
		t := time.Now()
		fn()
		out[i] = time.Since(t)
	}
	slices.Sort(out)
	return out
}

// --- handler -------------------------------------------------------------------

// benchHandler measures the server's own cost for GET /schemas/ids/{id},
// calling the handler directly: no network, no scheduling of a second
// process.
func benchHandler() error {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, "")
	if err != nil {
		return err
	}
	defer func() { _ = db.Close() }()
	st, err := sqlstore.New(ctx, db)
	if err != nil {
		return err
	}
	srv, err := registry.New(st, registry.DefaultConfig(), nil)
	if err != nil {
		return err
	}
	for i := 0; i < 200; i++ {
		b, _ := json.Marshal(map[string]string{"schema": version(i + 1000)})
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, fmt.Sprintf("/subjects/h-%d-value/versions", i), bytes.NewReader(b)))
		if rec.Code != 200 {
			return fmt.Errorf("register: %d %s", rec.Code, rec.Body)
		}
	}
	reqs := make([]*http.Request, 200)
	for i := range reqs {
		reqs[i] = httptest.NewRequest(http.MethodGet, fmt.Sprintf("/schemas/ids/%d", i+1), nil)
	}
	const n = 200000
	start := time.Now()
	for i := 0; i < n; i++ {
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, reqs[i%len(reqs)])
		if rec.Code != 200 {
			return fmt.Errorf("get: %d", rec.Code)
		}
	}
	per := time.Since(start) / n
	fmt.Printf("handler GET /schemas/ids/{id} in-process (no network): %s per request, %.0f requests/s on one goroutine\n", per, float64(time.Second)/float64(per))
	return nil
}

// --- the registry child ------------------------------------------------------

func serve(addrFile, dsn string) error {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, dsn)
	if err != nil {
		return err
	}
	st, err := sqlstore.New(ctx, db)
	if err != nil {
		return err
	}
	srv, err := registry.New(st, registry.DefaultConfig(), nil)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	if err := os.WriteFile(addrFile, []byte(ln.Addr().String()), 0o644); err != nil {
		return err
	}
	return (&http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}).Serve(ln)
}

type child struct {
	cmd  *exec.Cmd
	base string
	dir  string
	hc   *http.Client
}

func startChild() (*child, error) {
	dir, err := os.MkdirTemp("", "flotilla-bench-schema")
	if err != nil {
		return nil, err
	}
	addrFile := filepath.Join(dir, "addr")
	cmd := exec.Command(os.Args[0], "-child", "-addr", addrFile, "-db", filepath.Join(dir, "registry.db"))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	for i := 0; i < 200; i++ {
		if b, err := os.ReadFile(addrFile); err == nil && len(b) > 0 {
			tr := &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 512}
			return &child{cmd: cmd, base: "http://" + string(b), dir: dir, hc: &http.Client{Transport: tr, Timeout: 10 * time.Second}}, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	return nil, errors.New("registry child did not start")
}

func (c *child) stop() {
	_ = c.cmd.Process.Kill()
	_ = c.cmd.Wait()
	_ = os.RemoveAll(c.dir)
}

func (c *child) register(subject, text string) (int, error) {
	b, _ := json.Marshal(map[string]string{"schema": text})
	resp, err := c.hc.Post(c.base+"/subjects/"+subject+"/versions", registry.ContentType, bytes.NewReader(b))
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	var out struct {
		ID int `json:"id"`
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("register %s: %d %s", subject, resp.StatusCode, body)
	}
	return out.ID, json.Unmarshal(body, &out)
}

// rss returns the child's resident set size in bytes.
func (c *child) rss() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			var kb int64
			if _, err := fmt.Sscanf(strings.TrimPrefix(line, "VmRSS:"), "%d", &kb); err != nil {
				return 0, err
			}
			return kb * 1024, nil
		}
	}
	return 0, errors.New("no VmRSS")
}

// --- byid ----------------------------------------------------------------------

func benchByID(c *child, rate int, d time.Duration) error {
	const ids = 200
	for i := 0; i < ids; i++ {
		if _, err := c.register(fmt.Sprintf("byid-%d-value", i), version(i+1000)); err != nil {
			return err
		}
	}
	// Warm up connections and the server's id cache.
	if _, _, _, err := load(c, rate, time.Second, ids); err != nil {
		return err
	}
	lat, lag, errs, err := load(c, rate, d, ids)
	if err != nil {
		return err
	}
	slices.Sort(lat)
	slices.Sort(lag)
	q := func(l []time.Duration, p float64) time.Duration {
		return l[int(float64(len(l)-1)*p)].Round(time.Microsecond)
	}
	fmt.Printf("byid GET /schemas/ids/{id} at %d req/s for %s (open loop, loopback): %d requests, %d errors, p50 %s, p90 %s, p99 %s, p99.9 %s, max %s\n",
		rate, d, len(lat), errs, q(lat, 0.50), q(lat, 0.90), q(lat, 0.99), q(lat, 0.999), lat[len(lat)-1].Round(time.Microsecond))
	fmt.Printf("byid sender lag (scheduled time to the request leaving the generator; the machine, not the registry): p50 %s, p99 %s\n",
		q(lag, 0.50), q(lag, 0.99))
	return nil
}

// load sends GET /schemas/ids/{id} on a fixed schedule whatever the answers'
// speed (open loop) and returns each request's latency from its scheduled
// time, so a stall shows up in the figures instead of slowing the sender.
// Requests go over a pool of keep-alive connections speaking plain
// HTTP/1.1, to keep the generator's own cost low on a small machine.
func load(c *child, rate int, d time.Duration, ids int) (lat, lag []time.Duration, errs int, err error) {
	n := int(float64(rate) * d.Seconds())
	interval := time.Second / time.Duration(rate)
	lat = make([]time.Duration, n)
	lag = make([]time.Duration, n)
	type job struct {
		i   int
		due time.Time
	}
	jobs := make(chan job, n)
	host := strings.TrimPrefix(c.base, "http://")
	const conns = 64
	var failures atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < conns; w++ {
		conn, err := net.Dial("tcp", host)
		if err != nil {
			return nil, nil, 0, err
		}
		wg.Add(1)
		go func(conn net.Conn) {
			defer wg.Done()
			defer func() { _ = conn.Close() }()
			br := bufio.NewReader(conn)
			req := make([]byte, 0, 128)
			for j := range jobs {
				req = fmt.Appendf(req[:0], "GET /schemas/ids/%d HTTP/1.1\r\nHost: %s\r\n\r\n", 1+rand.IntN(ids), host)
				lag[j.i] = time.Since(j.due)
				_, err := conn.Write(req)
				var resp *http.Response
				if err == nil {
					resp, err = http.ReadResponse(br, nil)
				}
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
					if err == nil && resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				lat[j.i] = time.Since(j.due)
				if err != nil {
					failures.Add(1)
					return
				}
			}
		}(conn)
	}
	start := time.Now()
	for i := 0; i < n; i++ {
		due := start.Add(time.Duration(i) * interval)
		if w := time.Until(due); w > 0 {
			time.Sleep(w)
		}
		jobs <- job{i, due}
	}
	close(jobs)
	wg.Wait()
	return lat, lag, int(failures.Load()), nil
}

// --- subjects --------------------------------------------------------------------

func benchSubjects(c *child, n int) error {
	before, err := c.rss()
	if err != nil {
		return err
	}
	start := time.Now()
	const workers = 4
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += workers {
				text := fmt.Sprintf(`{"type":"record","name":"Event%d","namespace":"shop.bench","fields":[{"name":"id","type":"string"},{"name":"at","type":"long"},{"name":"n%d","type":"int","default":0}]}`, i, i)
				if _, err := c.register(fmt.Sprintf("Event%d-value", i), text); err != nil {
					errc <- err
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return err
	}
	took := time.Since(start)
	// Touch them all once (the by-id cache fills too), then measure.
	for i := 1; i <= n; i += 97 {
		resp, err := c.hc.Get(fmt.Sprintf("%s/schemas/ids/%d", c.base, i))
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	after, err := c.rss()
	if err != nil {
		return err
	}
	resp, err := c.hc.Get(c.base + "/subjects")
	if err != nil {
		return err
	}
	var subs []string
	err = json.NewDecoder(resp.Body).Decode(&subs)
	_ = resp.Body.Close()
	if err != nil {
		return err
	}
	fmt.Printf("subjects: registered %d subjects in %s (%.0f/s, 4 clients, SQLite file); registry now lists %d subjects; resident memory %.1f MiB (%.1f MiB before)\n",
		n, took.Round(time.Millisecond), float64(n)/took.Seconds(), len(subs), float64(after)/(1<<20), float64(before)/(1<<20))
	return nil
}

// --- readers -------------------------------------------------------------------

// benchReaders times schema check of the shop (run from the repository's
// top) with and without the reader checks, interleaved so both see the
// same machine.
func benchReaders() error {
	m, _, err := graph.Load(graph.FileName)
	if err != nil {
		return fmt.Errorf("readers: run from the repository's top: %w", err)
	}
	ctx := context.Background()
	run := func(skip bool) func() {
		return func() {
			rep, err := repocheck.Check(ctx, m, repocheck.Options{Base: "HEAD", SkipReaders: skip})
			if err != nil || rep.Failed() {
				log.Fatalf("readers: %v (failed %v)", err, rep != nil && rep.Failed())
			}
		}
	}
	var with, without []time.Duration
	for i := 0; i < 10; i++ {
		if i%2 == 0 { // alternate which goes first: the machine's load drifts
			without = append(without, measure(3, run(true))...)
			with = append(with, measure(3, run(false))...)
		} else {
			with = append(with, measure(3, run(false))...)
			without = append(without, measure(3, run(true))...)
		}
	}
	slices.Sort(with)
	slices.Sort(without)
	rep, _ := repocheck.Check(ctx, m, repocheck.Options{Base: "HEAD"})
	fmt.Printf("readers: schema check of the shop (%d writer schemas, %d readers) against HEAD: median %s with reader checks, %s without; with/without = %.3f\n",
		len(rep.Results), len(rep.Readers), with[len(with)/2].Round(time.Microsecond), without[len(without)/2].Round(time.Microsecond),
		float64(with[len(with)/2])/float64(without[len(without)/2]))
	return nil
}

// --- jsoncompat ----------------------------------------------------------------

// jsonVersion is version k of a 50-property closed object: 45 fixed
// properties of every kind and 5 whose bounds grow with k.
func jsonVersion(k int) string {
	var p []string
	kinds := []string{`{"type":"string","maxLength":64}`, `{"type":"integer","minimum":0}`, `{"type":"number"}`, `{"type":"boolean"}`,
		`{"type":"array","items":{"type":"string"}}`, `{"type":"object","properties":{"a":{"type":"string"}}}`, `{"enum":["NEW","PAID","SHIPPED"]}`, `{"type":["string","null"]}`}
	for i := 0; i < 45; i++ {
		p = append(p, fmt.Sprintf(`"p%d":%s`, i, kinds[i%len(kinds)]))
	}
	for i := 0; i < 5; i++ {
		p = append(p, fmt.Sprintf(`"b%d":{"type":"integer","maximum":%d}`, i, 1000+k))
	}
	return fmt.Sprintf(`{"type":"object","properties":{%s},"required":["p0","p1"],"additionalProperties":false}`, strings.Join(p, ","))
}

func benchJSONCompat() {
	var prev []*jsonschema.Schema
	for k := 1; k <= 100; k++ {
		s, err := jsonschema.Parse(jsonVersion(k))
		if err != nil {
			log.Fatal(err)
		}
		prev = append(prev, s)
	}
	cand, err := jsonschema.Parse(jsonVersion(101))
	if err != nil {
		log.Fatal(err)
	}
	times := measure(100, func() {
		if p := jsonschema.Check(schema.BackwardTransitive, cand, prev); len(p) != 0 {
			log.Fatalf("unexpected problems: %v", p)
		}
	})
	fmt.Printf("jsoncompat BACKWARD_TRANSITIVE new vs 100 versions of a 50-property object: median %s, p99 %s\n",
		times[len(times)/2].Round(time.Microsecond), times[len(times)*99/100].Round(time.Microsecond))
}

// --- protocompat ---------------------------------------------------------------

// protoVersion is version k of a file with 50 messages of 8 fields each;
// version k adds field 9 to message k%50 (a compatible change).
func protoVersion(k int) string {
	var b strings.Builder
	b.WriteString("syntax = \"proto3\";\npackage shop;\nenum Status { NEW = 0; PAID = 1; SHIPPED = 2; }\n")
	for m := 0; m < 50; m++ {
		fmt.Fprintf(&b, "message M%d {\n  string id = 1;\n  int64 total = 2;\n  Status status = 3;\n  repeated string tags = 4;\n  map<string, int64> qty = 5;\n  bytes raw = 6;\n  oneof pay { string card = 7; string iban = 8; }\n", m)
		if m > 0 {
			fmt.Fprintf(&b, "  M%d prev = 10;\n", m-1)
		}
		if k > 0 && m <= k%50 {
			b.WriteString("  double extra = 9;\n")
		}
		b.WriteString("}\n")
	}
	return b.String()
}

func benchProtoCompat() {
	var prev []*protobuf.Schema
	for k := 1; k <= 100; k++ {
		s, err := protobuf.Parse(protoVersion(k%49), nil)
		if err != nil {
			log.Fatal(err)
		}
		prev = append(prev, s)
	}
	cand, err := protobuf.Parse(protoVersion(49), nil)
	if err != nil {
		log.Fatal(err)
	}
	for _, mode := range []schema.Mode{schema.BackwardTransitive, schema.FullTransitive} {
		times := measure(100, func() { protobuf.Check(mode, cand, prev) })
		fmt.Printf("protocompat %-19s a 50-message file vs 100 versions: median %s, p99 %s\n",
			mode, times[len(times)/2].Round(time.Microsecond), times[len(times)*99/100].Round(time.Microsecond))
	}
}
