package controlplane_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/chaos"
	"github.com/flotilla-ci/flotilla/deploy/local"
	"github.com/flotilla-ci/flotilla/shop/audit"
)

// The game day: the shop's ten services up, and the three experiments
// kept under chaos/ run one after the other under load through the
// gateway (payment killed mid-checkout; 500 ms on every call to
// inventory for 20 s; order and payment partitioned for 10 s). Each must
// hold its hypothesis again after its fault, with no order lost or stuck
// (the shop's audit), and leave no fault behind. The MTTR of each is
// logged (bench/README.md records them).
func TestPlatformGameDay(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the shop's ten services, then three chaos experiments under load")
	}
	manifest, _ := shopManifest(t, nil)
	data := t.TempDir()
	info, _ := runPlatform(t, platformConfig(manifest, data))
	client := apiClient(t, info)
	files, err := filepath.Glob("../chaos/*.yaml")
	if err != nil || len(files) != 3 {
		t.Fatalf("the game day's experiments under chaos/: %v, %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			e, err := chaos.Parse(f, raw)
			if err != nil {
				t.Fatal(err)
			}
			var progress bytes.Buffer
			r := &chaos.Runner{API: client, Gateway: info.Gateway, Progress: &progress,
				Audit: func(ctx context.Context, timeout time.Duration) (*audit.Report, error) {
					return audit.RunDir(ctx, filepath.Join(local.DirIn(data), "data"), audit.Config{Timeout: timeout})
				}}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			rep, err := r.Run(ctx, e)
			var out bytes.Buffer
			if rep != nil {
				rep.Write(&out)
			}
			t.Logf("\n%s%s", progress.String(), out.String())
			if err != nil {
				t.Fatal(err)
			}
			if !rep.SteadyBefore || !rep.Held {
				t.Fatalf("the hypothesis did not hold again: %v", rep.Problems)
			}
			if rep.Audit == nil || rep.Audit.Stuck > 0 || !rep.Audit.OK() || rep.Audit.Orders == 0 {
				t.Errorf("audit %v: want orders placed, none stuck, every invariant held", rep.Audit)
			}
			for _, fr := range rep.Faults {
				t.Logf("MTTR %s: %v (%d requests failed during it, %d after)", fr.Name, fr.MTTR.Round(time.Millisecond), fr.FailedDuring, fr.FailedAfter)
			}
			l, err := client.Faults(context.Background())
			if err != nil || l.Experiment != nil || len(l.Faults) != 0 {
				t.Errorf("after the experiment: %+v, %v; want no experiment and no fault", l, err)
			}
		})
	}
}
