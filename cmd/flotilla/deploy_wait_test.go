package main

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/controlplane"
)

// A deploy while another runs is refused and names the running release;
// with --wait it waits for that release and then deploys.
func TestDeployWaitsForTheRunningRelease(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds and runs services")
	}
	// bravo never becomes ready: its deploy holds the release for the
	// readiness timeout, then fails.
	cp := newTestControlPlane(t, func(m string) string {
		return strings.Replace(m, "    depends_on: [alpha-service]\n    deploy: {package: ./cmd/svc}",
			"    depends_on: [alpha-service]\n    deploy: {package: ./cmd/svc, timeout: 4s, env: {MODE: never-ready}}", 1)
	})
	cli, ctx := cp.cli, context.Background()
	if code, out, errOut := cli("deploy", "alpha-service"); code != 0 {
		t.Fatalf("deploy alpha: exit %d\n%s%s", code, out, errOut)
	}

	slowDone := make(chan int, 1)
	go func() {
		code, _, _ := cli("deploy", "bravo-service")
		slowDone <- code
	}()
	// Wait until the slow release runs.
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := controlplane.NewClient(cp.srv.URL).Status(ctx)
		if err == nil && st.Running != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the bravo release never started: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Without --wait: refused, naming the release that runs.
	code, _, errOut := cli("deploy", "delta-service")
	if code != exitNoAnswer || !regexp.MustCompile(`another deploy is running: release 2 \(bravo-service\), started by \S+ at`).MatchString(errOut) {
		t.Errorf("deploy while another runs: exit %d, stderr %q; want %d (busy: no answer) naming release 2", code, errOut, exitNoAnswer)
	}
	// With --wait: it says what it waits for, then deploys.
	code, out, errOut := cli("deploy", "delta-service", "--wait", "1m")
	if code != 0 || !strings.Contains(errOut, "release 2 (bravo-service)") || !strings.Contains(errOut, "waiting up to 1m0s for it (--wait)") ||
		!strings.Contains(out, "delta-service") || !regexp.MustCompile(`release 3: 1 succeeded`).MatchString(out) {
		t.Errorf("deploy --wait: exit %d\n%s%s", code, out, errOut)
	}
	if code := <-slowDone; code != 1 {
		t.Errorf("the never-ready bravo deploy exited %d, want 1", code)
	}
	// A wait that runs out is refused like no wait, and says it waited.
	go func() {
		code, _, _ := cli("deploy", "bravo-service")
		slowDone <- code
	}()
	for {
		if st, err := controlplane.NewClient(cp.srv.URL).Status(ctx); err == nil && st.Running != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	code, _, errOut = cli("deploy", "delta-service", "--wait", "1s")
	if code != exitNoAnswer || !strings.Contains(errOut, "another deploy is running") || !strings.Contains(errOut, "waited 1s: --wait") {
		t.Errorf("deploy --wait 1s while a 4s release runs: exit %d, stderr %q", code, errOut)
	}
	<-slowDone
}
