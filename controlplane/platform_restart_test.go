package controlplane_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/flotilla-ci/flotilla/controlplane"
	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/internal/supervise"
)

// The data plane outlives the control plane: with the control plane gone
// (what a kill -9 of `flotilla up` leaves: Detach stops it without
// stopping anything it started), requests through the gateway keep being
// served, without one failing; a deploy is refused, since nobody answers
// the API; the next platform on the data directory adopts the data plane,
// the bus and the service as they run, and a deploy then works, with the
// history of the first control plane kept.
func TestPlatformServesWhileTheControlPlaneIsDown(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the shop's user-service")
	}
	manifest, src := shopManifest(t, nil)
	data := t.TempDir()
	cfg := platformConfig(manifest, data)
	cfg.Services = []string{"user-service"}
	cfg.Demo = false
	// A fixed gateway address, as users have (7400 by default): where
	// the traffic goes across both control planes.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.GatewayAddr = l.Addr().String()
	_ = l.Close()
	t.Cleanup(func() {
		// Whatever a failed run left behind.
		for _, name := range []string{"bus", "dataplane"} {
			dir := controlplane.ProcessDir(data)
			if name == "dataplane" {
				dir = filepath.Join(data, "dataplane")
			}
			if st, err := supervise.ReadState(dir, name); err == nil {
				if ok, _ := st.Running(); ok {
					_ = syscall.Kill(-st.PID, syscall.SIGKILL)
				}
			}
		}
		for _, pr := range processesUnder(t, data) {
			if pid, err := strconv.Atoi(strings.Fields(pr)[0]); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})

	p1, info1, cancel1, done1 := startPlatform(t, cfg)
	defer cancel1()
	dp1 := processStatus(t, p1, "dataplane")

	// Steady traffic through the gateway to the service, 100 requests/s.
	targeter := vegeta.NewStaticTargeter(
		vegeta.Target{Method: "GET", URL: info1.Gateway + "/api/user/.well-known/jwks.json"},
		vegeta.Target{Method: "GET", URL: info1.Gateway + "/api/user/ready"},
	)
	attacker := vegeta.NewAttacker(vegeta.Timeout(30*time.Second), vegeta.KeepAlive(true))
	var (
		mu       sync.Mutex
		metrics  vegeta.Metrics
		failures []string
		phase    = "before"
		byPhase  = map[string]int{}
	)
	stopAttack := make(chan struct{})
	attackDone := make(chan struct{})
	go func() {
		defer close(attackDone)
		results := attacker.Attack(targeter, vegeta.Rate{Freq: 100, Per: time.Second}, time.Hour, "restart")
		for {
			select {
			case <-stopAttack:
				attacker.Stop()
				for r := range results {
					record(&mu, &metrics, r, &failures, &phase, byPhase)
				}
				return
			case r, ok := <-results:
				if !ok {
					return
				}
				record(&mu, &metrics, r, &failures, &phase, byPhase)
			}
		}
	}()
	setPhase := func(p string) {
		mu.Lock()
		phase = p
		mu.Unlock()
	}
	waitRequests := func(n int) { // in the current phase
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for {
			mu.Lock()
			got := byPhase[phase]
			mu.Unlock()
			if got >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d requests answered in 2 minutes, want %d", got, n)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitRequests(100)

	// The control plane goes away without stopping anything.
	setPhase("control plane down")
	if err := p1.Detach(); err != nil {
		t.Fatal(err)
	}
	cancel1()
	if err := <-done1; err != nil {
		t.Fatalf("Run after Detach: %v", err)
	}
	if !supervise.Alive(dp1.PID) {
		t.Fatal("the data plane died with the control plane")
	}
	ctx := context.Background()
	if _, err := apiClient(t, info1).Deploy(ctx, deploy.Request{Services: []string{"user-service"}, Who: "e2e"}, nil); err == nil {
		t.Fatal("a deploy with the control plane down was accepted")
	} else {
		t.Logf("a deploy with the control plane down: %v", err)
	}
	waitRequests(200)

	// The next control plane adopts what runs.
	setPhase("control plane back")
	p2, info2, cancel2, done2 := startPlatform(t, cfg)
	defer cancel2()
	if dp2 := processStatus(t, p2, "dataplane"); dp2.PID != dp1.PID || !dp2.Adopted {
		t.Fatalf("the data plane %d was not adopted: %+v", dp1.PID, dp2)
	}
	if info2.Gateway != info1.Gateway {
		t.Fatalf("the gateway moved from %s to %s", info1.Gateway, info2.Gateway)
	}
	waitRequests(100)

	// A deploy works again: user-service with a changed environment.
	setPhase("deploy")
	if err := os.WriteFile(manifest, withDeployEnv(t, src, "LOG_LEVEL", "warn"), 0o644); err != nil {
		t.Fatal(err)
	}
	client := apiClient(t, info2)
	rep, err := client.Deploy(ctx, deploy.Request{Services: []string{"user-service"}, Who: "e2e"}, nil)
	if err != nil {
		t.Fatalf("deploy after the control plane came back: %v\n%v", err, upOutcomes(rep))
	}
	waitRequests(100)
	close(stopAttack)
	<-attackDone

	mu.Lock()
	defer mu.Unlock()
	metrics.Close()
	t.Logf("%d requests, by phase %v, p99 %v, max %v", metrics.Requests, byPhase, metrics.Latencies.P99, metrics.Latencies.Max)
	if len(failures) > 0 {
		t.Errorf("%d of %d requests failed: %v", len(failures), metrics.Requests, failures[:min(len(failures), 10)])
	}
	recs, err := client.History(ctx, "user-service", 0)
	if err != nil {
		t.Fatal(err)
	}
	var who []string
	for _, r := range recs {
		who = append(who, r.Who)
	}
	if len(recs) < 2 || recs[0].Who != "e2e via admin token" || recs[len(recs)-1].Who != "flotilla up" {
		t.Errorf("user-service's history after the restart: %v; want the first control plane's release and the new deploy", who)
	}

	cancel2()
	if err := <-done2; err != nil {
		t.Fatalf("stop: %v", err)
	}
	if supervise.Alive(dp1.PID) {
		t.Errorf("the data plane (pid %d) runs on after the platform stopped", dp1.PID)
	}
}

// record adds one result to the attack's figures.
func record(mu *sync.Mutex, m *vegeta.Metrics, r *vegeta.Result, failures *[]string, phase *string, byPhase map[string]int) {
	mu.Lock()
	defer mu.Unlock()
	m.Add(r)
	byPhase[*phase]++
	if r.Code != 200 {
		*failures = append(*failures, *phase+": "+r.Method+" "+r.URL+": "+strconv.Itoa(int(r.Code))+" "+r.Error)
	}
}

// processStatus is one of the platform's processes, by name.
func processStatus(t *testing.T, p *controlplane.Platform, name string) supervise.Status {
	t.Helper()
	for _, st := range p.Processes() {
		if st.Name == name {
			return st
		}
	}
	t.Fatalf("the platform has no %s process: %+v", name, p.Processes())
	return supervise.Status{}
}
