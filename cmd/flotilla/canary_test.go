package main

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/canary"
)

// A canary with no traffic is held (never promoted on "no data"); `canary
// status` shows it, `canary promote` lets the release finish, and the
// commands say no (exit 1) for a service without a canary in progress and
// refuse an unknown one (exit 2).
func TestCanaryCommandsAgainstControlPlane(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds and runs services")
	}
	cp := newTestControlPlane(t, func(m string) string {
		return strings.Replace(m, "  delta-service:\n    paths: [delta]\n    health: /ready\n    deploy: {package: ./cmd/svc}",
			"  delta-service:\n    paths: [delta]\n    health: /ready\n    deploy: {package: ./cmd/svc}\n"+
				"    canary: {steps: [50, 100], interval: 1s, threshold: 2, min_requests: 5, inconclusive_limit: 0, bake: 0s}", 1)
	})
	code, out, errOut := cp.cli("deploy", "delta-service")
	if code != 0 {
		t.Fatalf("first deploy: exit %d\n%s%s", code, out, errOut)
	}
	code, _, errOut = cp.cli("canary", "abort", "delta-service")
	if code != 1 || !strings.Contains(errOut, "no canary in progress") {
		t.Errorf("abort with no canary in progress: exit %d, stderr %q; want 1 and why", code, errOut)
	}
	code, _, errOut = cp.cli("canary", "status", "zulu-service")
	if code != 2 || !strings.Contains(errOut, `unknown service "zulu-service"`) {
		t.Errorf("status of an unknown service: exit %d, stderr %q; want 2", code, errOut)
	}
	code, _, errOut = cp.cli("canary", "status", "alpha-service")
	if code != 1 || !strings.Contains(errOut, "alpha-service has had no canary yet") {
		t.Errorf("status of a service never deployed: exit %d, stderr %q; want 1", code, errOut)
	}

	// A new version of delta, with no traffic at all.
	if err := os.WriteFile(cp.file, []byte(strings.Replace(mustRead(t, cp.file), "deploy: {package: ./cmd/svc}\n    canary:", "deploy: {package: ./cmd/svc, env: {REV: '2'}}\n    canary:", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	cp.load()
	type result struct {
		code     int
		out, err string
	}
	done := make(chan result, 1)
	go func() {
		code, out, errOut := cp.cli("deploy", "delta-service")
		done <- result{code, out, errOut}
	}()
	var st canary.State
	deadline := time.Now().Add(2 * time.Minute)
	for st.Phase != canary.PhaseHeld {
		if time.Now().After(deadline) {
			t.Fatalf("the canary was not held within 2 minutes: %+v", st)
		}
		time.Sleep(50 * time.Millisecond)
		code, out, _ := cp.cli("canary", "status", "delta-service", "-o", "json")
		if code == 0 {
			st = canary.State{}
			if err := json.Unmarshal([]byte(out), &st); err != nil {
				t.Fatalf("canary status -o json: %v\n%s", err, out)
			}
		}
	}
	code, out, _ = cp.cli("canary", "status")
	if code != 0 || !regexp.MustCompile(`delta-service@\S+ held at \d+%`).MatchString(out) || !strings.Contains(out, " hold: ") {
		t.Errorf("canary status: exit %d\n%s", code, out)
	}
	// flotilla status names the canary's phase beside its version.
	code, out, _ = cp.cli("status")
	if m := regexp.MustCompile(`delta-service\s+(\S+)\s+(\S+) held 50% \(1/2\)\s`).FindStringSubmatch(out); code != 0 || m == nil ||
		!strings.HasPrefix(st.Baseline, m[1]) || !strings.HasPrefix(st.Version, m[2]) {
		t.Errorf("status with a held canary: exit %d; want %s stable and %s held in the CANARY column\n%s", code, st.Baseline, st.Version, out)
	}
	code, out, errOut = cp.cli("canary", "promote", "delta-service", "--reason", "checked by hand")
	if code != 0 || !strings.Contains(out, "promoted") {
		t.Fatalf("promote: exit %d\n%s%s", code, out, errOut)
	}
	r := <-done
	if r.code != 0 || !strings.Contains(r.out, "done") {
		t.Fatalf("the held deploy after the promotion: exit %d\n%s%s", r.code, r.out, r.err)
	}
	code, out, _ = cp.cli("canary", "status", "delta-service")
	if code != 0 || !strings.Contains(out, "succeeded") || !strings.Contains(out, "promoted by ") || !strings.Contains(out, "checked by hand") {
		t.Errorf("canary status after the promotion: exit %d\n%s", code, out)
	}
}

// The metrics provider is picked by name: the mesh (no URL), or
// Prometheus with its URL; anything else is refused with what to write.
func TestMetricsProvider(t *testing.T) {
	for _, c := range []struct {
		name, url, want string // want: "" accepted, else a piece of the error
		provider        string
	}{
		{name: "mesh"},
		{name: "prometheus", url: "http://127.0.0.1:9090", provider: "prometheus at http://127.0.0.1:9090"},
		{name: "prometheus", want: "needs --prometheus-url"},
		{name: "prometheus", url: "127.0.0.1:9090", want: "want http://host:port"},
		{name: "mesh", url: "http://127.0.0.1:9090", want: "add --metrics-provider prometheus"},
		{name: "datadog", want: `--metrics-provider "datadog": want mesh`},
	} {
		mp, err := metricsProvider(c.name, c.url)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s %q: %v", c.name, c.url, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s %q: error %v; want one saying %q", c.name, c.url, err, c.want)
		case c.want == "" && c.provider != "" && (mp.Name != c.provider || mp.Metrics == nil || mp.Querier == nil):
			t.Errorf("%s %q: %+v; want %s with its metrics and querier", c.name, c.url, mp, c.provider)
		case c.want == "" && c.provider == "" && mp.Metrics != nil:
			t.Errorf("mesh: %+v; want the zero provider (the data plane's own figures)", mp)
		}
	}
}
