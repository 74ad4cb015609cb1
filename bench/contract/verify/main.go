// Command verify times `flotilla contract verify` against the real
// `pact verifier` on the same pact files and the same running provider,
// and prints both times and their ratio.
//
// Until the shop's providers exist, the provider is this program's own: a
// catalog service on loopback with a provider-state endpoint, verified
// against pacts from several consumers (written with the contract package).
//
//	go run ./bench/contract/verify [-consumers 5] [-interactions 40] [-runs 5]
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flotilla-ci/flotilla/contract"
)

func main() {
	consumers := flag.Int("consumers", 5, "consumers with a pact on the provider")
	interactions := flag.Int("interactions", 40, "interactions per pact")
	runs := flag.Int("runs", 5, "timed runs of each verifier")
	pactBin := flag.String("pact", os.Getenv("FLOTILLA_TEST_PACT"), "the pact CLI (default $FLOTILLA_TEST_PACT)")
	flag.Parse()
	if *pactBin == "" {
		log.Fatal("no pact CLI: set FLOTILLA_TEST_PACT or -pact")
	}
	tmp, err := os.MkdirTemp("", "contract-verify-bench")
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = os.RemoveAll(tmp) }()

	flot := filepath.Join(tmp, "flotilla")
	if out, err := exec.Command("go", "build", "-o", flot, "./cmd/flotilla").CombinedOutput(); err != nil {
		log.Fatalf("build flotilla (run from the repository root): %v\n%s", err, out)
	}
	pacts := filepath.Join(tmp, "pacts")
	for c := range *consumers {
		if err := writePact(pacts, fmt.Sprintf("consumer-%d", c), *interactions); err != nil {
			log.Fatal(err)
		}
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	prov := newCatalog()
	go func() { _ = http.Serve(ln, prov) }()
	base := "http://" + ln.Addr().String()
	host, port, _ := net.SplitHostPort(ln.Addr().String())

	flotilla := []string{flot, "contract", "verify", "--pact", pacts, "--provider-name", "catalog",
		"--provider-base-url", base, "--state-change-url", base + "/_pact/state"}
	pact := []string{*pactBin, "verifier", "-d", pacts, "--provider-name", "catalog", "--hostname", host, "--port", port,
		"--state-change-url", base + "/_pact/state", "--state-change-teardown", "--retries", "0", "--no-colour"}

	total := *consumers * *interactions
	fmt.Printf("verifying %d pacts, %d interactions in all, against one provider on loopback (%d runs each, interleaved)\n", *consumers, total, *runs)
	var ft, pt []time.Duration
	for i := range *runs + 1 {
		f, fout := timeIt(flotilla)
		p, pout := timeIt(pact)
		if i == 0 { // warm-up: page cache, first connections; check both verified everything
			if want := fmt.Sprintf("%d interactions, 0 failed", total); !strings.Contains(fout, want) {
				log.Fatalf("flotilla did not report %q:\n%s", want, fout)
			}
			if n := strings.Count(pout, "has status code 200 (OK)"); n != total {
				log.Fatalf("pact verifier checked %d interactions, want %d:\n%s", n, total, pout)
			}
			continue
		}
		ft, pt = append(ft, f), append(pt, p)
	}
	fm, pm := median(ft), median(pt)
	fmt.Printf("flotilla contract verify: median %v (runs %v)\n", fm.Round(time.Millisecond), round(ft))
	fmt.Printf("pact verifier:            median %v (runs %v)\n", pm.Round(time.Millisecond), round(pt))
	fmt.Printf("flotilla/pact = %.2f (target: <= 1.00)\n", float64(fm)/float64(pm))
}

func timeIt(args []string) (time.Duration, string) {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "PACT_DO_NOT_TRACK=true")
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	if err != nil {
		log.Fatalf("%s failed: %v\n%s", filepath.Base(args[0]), err, out)
	}
	return d, string(out)
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func round(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}

// writePact writes a consumer's pact with n interactions on the catalog.
func writePact(dir, consumer string, n int) error {
	p := &contract.Pact{Consumer: consumer, Provider: "catalog", Metadata: map[string]any{}}
	for i := range n {
		id := 100 + i
		rules := contract.Rules{}
		rules.Add("body", "$.id", contract.Matcher{"match": "integer"})
		rules.Add("body", "$.name", contract.Matcher{"match": "type"})
		rules.Add("body", "$.price", contract.Matcher{"match": "decimal"})
		rules.Add("body", "$.tags", contract.Matcher{"match": "type", "min": 1})
		rules.Add("body", "$.stock", contract.Matcher{"match": "integer"})
		rules.Add("body", "$.updated", contract.Matcher{"match": "timestamp", "format": "yyyy-MM-dd'T'HH:mm:ssX"})
		rules.Add("header", "Content-Type", contract.Matcher{"match": "regex", "regex": `application/json.*`})
		p.Interactions = append(p.Interactions, &contract.Interaction{
			Kind:        contract.HTTP,
			Description: fmt.Sprintf("%s asks for product %d", consumer, id),
			States:      []contract.ProviderState{{Name: "a product exists", Params: map[string]any{"id": id}}},
			Request:     contract.Request{Method: "GET", Path: "/products/" + strconv.Itoa(id), Headers: map[string][]string{"Accept": {"application/json"}}},
			Response: contract.Response{
				Status:  200,
				Headers: map[string][]string{"Content-Type": {"application/json"}},
				Body:    contract.JSONBody(map[string]any{"id": id, "name": "Lamp", "price": 19.5, "tags": []string{"home"}, "stock": 3, "updated": "2026-11-26T10:00:00Z"}),
				Rules:   rules,
			},
		})
	}
	_, err := contract.WriteMerged(dir, p, contract.V4)
	return err
}

// catalog is the provider: products set up through the state endpoint.
type catalog struct {
	mu       sync.Mutex
	products map[string]bool
	mux      *http.ServeMux
}

func newCatalog() *catalog {
	c := &catalog{products: map[string]bool{}, mux: http.NewServeMux()}
	c.mux.HandleFunc("POST /_pact/state", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			State  string         `json:"state"`
			Params map[string]any `json:"params"`
			Action string         `json:"action"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		c.products[fmt.Sprint(body.Params["id"])] = body.Action != "teardown"
		c.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}"))
	})
	c.mux.HandleFunc("GET /products/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		c.mu.Lock()
		ok := c.products[id]
		c.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		fmt.Fprintf(w, `{"id":%s,"name":"Desk lamp","price":24.75,"tags":["home","light"],"stock":12,"updated":"2026-11-25T08:30:00Z","sku":"L-%s"}`, id, id)
	})
	return c
}

func (c *catalog) ServeHTTP(w http.ResponseWriter, r *http.Request) { c.mux.ServeHTTP(w, r) }
