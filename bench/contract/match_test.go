// Package contract benchmarks flotilla's contract matching and verification:
// `go test -bench . ./bench/contract` for matching one large body, and
// `go run ./bench/contract/verify` for verification side by side with the
// real pact verifier.
package contract

import (
	"encoding/json"
	"fmt"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/contract"
)

// body200 builds a response body of 200 leaf fields (20 items of 10
// fields) and 50 matching rules over it, the expected and an actual body.
func body200() (contract.Response, contract.HTTPResponse) {
	items := func(shift int) []any {
		var out []any
		for i := range 20 {
			out = append(out, map[string]any{
				"id": 1000 + i + shift, "sku": fmt.Sprintf("SKU-%04d", i+shift), "name": fmt.Sprintf("item %d", i),
				"price": 9.5 + float64(i+shift), "qty": i + 1 + shift, "active": i%2 == 0, "created": "2026-11-26T10:00:00Z",
				"tags": fmt.Sprintf("t%d", i), "currency": "EUR", "note": nil,
			})
		}
		return out
	}
	exp, _ := json.Marshal(map[string]any{"items": items(0)})
	act, _ := json.Marshal(map[string]any{"items": items(3)})
	rules := contract.Rules{}
	rules.Add("body", "$.items", contract.Matcher{"match": "type", "min": 1})
	kinds := []contract.Matcher{
		{"match": "integer"}, {"match": "regex", "regex": `SKU-\d{4}`}, {"match": "type"}, {"match": "decimal"},
		{"match": "integer"}, {"match": "boolean"}, {"match": "timestamp", "format": "yyyy-MM-dd'T'HH:mm:ssX"},
		{"match": "regex", "regex": `t\d+`}, {"match": "equality"}, {"match": "null"},
	}
	fields := []string{"id", "sku", "name", "price", "qty", "active", "created", "tags", "currency", "note"}
	// 10 wildcard rules plus 39 rules on specific items: 50 in all.
	for i, f := range fields {
		rules.Add("body", "$.items[*]."+f, kinds[i])
	}
	for n := 0; n < 39; n++ {
		i, f := n%20, (n+n/20)%10
		rules.Add("body", fmt.Sprintf("$.items[%d].%s", i, fields[f]), kinds[f])
	}
	return contract.Response{Status: 200, Body: contract.Body{Present: true, ContentType: "application/json", Content: exp}, Rules: rules},
		contract.HTTPResponse{Status: 200, Headers: http.Header{"Content-Type": {"application/json"}}, Body: act}
}

func BenchmarkMatch200Fields50Rules(b *testing.B) {
	exp, act := body200()
	if mm := contract.MatchResponse(exp, act); len(mm) != 0 {
		b.Fatalf("the bench bodies should match: %v", mm)
	}
	b.ReportAllocs()
	start := cpuTime()
	n := 0
	for b.Loop() {
		_ = contract.MatchResponse(exp, act)
		n++
	}
	// CPU time per match (this process, GC included): on a shared,
	// loaded machine the wall-clock ns/op also counts time spent waiting
	// for a core.
	b.ReportMetric(float64(cpuTime()-start)/float64(n), "cpu-ns/op")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestBodyShape(t *testing.T) {
	exp, act := body200()
	n := 0
	for _, c := range exp.Rules {
		n += len(c)
	}
	if n != 50 {
		t.Fatalf("%d rules, want 50", n)
	}
	var v struct{ Items []map[string]any }
	if err := json.Unmarshal(act.Body, &v); err != nil || len(v.Items)*len(v.Items[0]) != 200 {
		t.Fatalf("body has %d fields", len(v.Items)*len(v.Items[0]))
	}
	// a broken body is caught: the bench measures real matching
	act.Body = []byte(`{"items":[{"id":"x"}]}`)
	if mm := contract.MatchResponse(exp, act); len(mm) == 0 {
		t.Fatal("a broken body matched")
	}
}
