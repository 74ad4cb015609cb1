package canary_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/flotilla-ci/flotilla/canary"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// The State of a canary rolled back by its judges, as `flotilla canary
// status -o json` will show it and a store keeps it.
func TestStateJSONGolden(t *testing.T) {
	p := testPolicy()
	p.LaneFirst = true
	p.MaxP99 = 200e6
	p.Compare = canary.Compare{Baseline: true, Confidence: 0.98, MinEffect: 0.1}
	e := newEnv(t, p)
	e.metrics.set("v1", stats(1800, 2, map[int]int64{4: 1200, 5: 600}), nil)
	healthy := stats(200, 0, map[int]int64{4: 130, 5: 70})
	healthy.P99 = 24e6
	e.metrics.set("v2", healthy, nil)
	done := e.shift(context.Background())
	e.ticks(2) // the lane, then 10%
	e.clock.blockUntil(t, 1)
	bad := stats(200, 31, map[int]int64{4: 120, 5: 80})
	bad.P99 = 24e6
	e.metrics.set("v2", bad, nil)
	e.ticks(2)
	if err := wait(t, done); !errors.Is(err, canary.ErrRolledBack) {
		t.Fatalf("err %v", err)
	}
	st, _ := e.a.Status("svc")
	got, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	file := filepath.Join("testdata", "status.golden.json")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("status JSON (-want +got):\n%s", diff)
	}
	var back canary.State
	if err := json.Unmarshal(got, &back); err != nil {
		t.Fatal(err)
	}
	again, _ := json.MarshalIndent(back, "", "  ")
	if !bytes.Equal(append(again, '\n'), got) {
		t.Error("the state does not round-trip through JSON")
	}
}
