package broker_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/broker"
	"github.com/flotilla-ci/flotilla/internal/sqldb/sqldbtest"
	"github.com/flotilla-ci/flotilla/internal/testenv"
)

// pactCLI runs the real pact CLI.
func pactCLI(t *testing.T, args ...string) (int, string) {
	t.Helper()
	bin := testenv.Binary(t, testenv.Pact)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "PACT_DO_NOT_TRACK=true")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	t.Fatalf("pact %v: %v\n%s", args, err, out)
	return 0, ""
}

// helloProvider answers GET /hello as web's pacts expect, and nothing else.
func helloProvider(t *testing.T) (host, port string) {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /_pact/state", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"greeting":"hi"}`))
	})
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	host, port, _ = net.SplitHostPort(strings.TrimPrefix(hs.URL, "http://"))
	return host, port
}

func writePact(t *testing.T, dir, content string) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), dir)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "web-api.json"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestPactCLIInterop drives flotilla's broker with the real pact CLI:
// publish, create-environment, the verifier with selectors, pending, WIP,
// branch and publication, the legacy latest-pacts path, record-deployment
// and can-i-deploy, checking the outcomes in the broker.
func TestPactCLIInterop(t *testing.T) {
	if testing.Short() {
		t.Skip("interop: runs the real pact CLI")
	}
	testenv.Binary(t, testenv.Pact)
	sqldbtest.Each(t, pactCLIInterop)
}

func pactCLIInterop(t *testing.T, dsn string) {
	cfg := broker.DefaultConfig()
	cfg.Tokens = []broker.Token{{Value: "ci-write-token", Write: true}, {Value: "ci-read-token"}}
	url, store := newBrokerOn(t, cfg, dsn)
	ctx := context.Background()
	auth := []string{"-b", url, "-k", "ci-write-token"}
	must := func(what string, code int, out string, wantCode int, wants ...string) {
		t.Helper()
		if code != wantCode {
			t.Fatalf("%s: exit %d, want %d\n%s", what, code, wantCode, out)
		}
		for _, w := range wants {
			if !strings.Contains(out, w) {
				t.Fatalf("%s: output lacks %q\n%s", what, w, out)
			}
		}
	}

	// Writes without the token are refused.
	code, out := pactCLI(t, "broker", "publish", writePact(t, "v1", helloPact), "-b", url, "-a", "w1", "--branch", "main")
	if code == 0 {
		t.Fatalf("publish without a token succeeded:\n%s", out)
	}
	code, out = pactCLI(t, append([]string{"broker", "publish", writePact(t, "v1", helloPact), "-a", "w1", "--branch", "main"}, auth...)...)
	must("publish w1", code, out, 0, "Created web version w1 with branch main")

	code, out = pactCLI(t, append([]string{"broker", "create-environment", "--name", "staging", "--display-name", "Staging"}, auth...)...)
	must("create-environment", code, out, 0, "Created staging environment")
	if e, err := store.Environment(ctx, "staging"); err != nil || e.DisplayName != "Staging" {
		t.Fatalf("staging environment: %+v %v", e, err)
	}

	host, port := helloProvider(t)
	verify := func(providerVersion string, extra ...string) (int, string) {
		args := append([]string{"verifier", "--broker-url", url, "--token", "ci-write-token", "--provider-name", "api",
			"--hostname", host, "--port", port, "--state-change-url", "http://" + host + ":" + port + "/_pact/state",
			"--publish", "--provider-version", providerVersion, "--provider-branch", "main", "--retries", "0"}, extra...)
		return pactCLI(t, args...)
	}
	selectors := []string{"--consumer-version-selectors", `{"mainBranch":true}`, "--consumer-version-selectors", `{"deployedOrReleased":true}`,
		"--enable-pending", "--include-wip-pacts-since", "2020-01-01"}

	code, out = verify("a1", selectors...)
	must("verify a1", code, out, 0, "a greeting")
	v1, err := store.PactForConsumerVersion(ctx, "api", "web", "w1")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := broker.ParseMatrixQuery("q[][pacticipant]=api&q[][version]=a1&latestby=cvpv")
	res, err := store.Matrix(ctx, m)
	if err != nil || len(res.Rows) != 1 || res.Rows[0].Verification == nil || !res.Rows[0].Verification.Success || res.Rows[0].PactSHA != v1.SHA {
		t.Fatalf("a1's verification of w1 is not recorded as a success: %+v %v", res, err)
	}
	if v, err := store.Version(ctx, "api", "a1"); err != nil || len(v.Branches) != 1 || v.Branches[0] != "main" {
		t.Fatalf("--provider-branch did not put a1 on main: %+v %v", v, err)
	}

	// A feature-branch pact the provider does not satisfy: it is WIP and
	// pending, so verification fails without failing the build, and the
	// failure is published.
	feature := strings.Replace(helloPact, `"path":"/hello"`, `"path":"/goodbye"`, 1)
	code, out = pactCLI(t, append([]string{"broker", "publish", writePact(t, "v2", feature), "-a", "w2", "--branch", "feat-goodbye"}, auth...)...)
	must("publish w2", code, out, 0)
	code, out = verify("a2", selectors...)
	must("verify a2 (WIP)", code, out, 0, "work in progress", "pending")
	w2, _ := store.PactForConsumerVersion(ctx, "api", "web", "w2")
	m, _ = broker.ParseMatrixQuery("q[][pacticipant]=web&q[][version]=w2&latestby=cvpv")
	res, _ = store.Matrix(ctx, m)
	if len(res.Rows) != 1 || res.Rows[0].Verification == nil || res.Rows[0].Verification.Success || res.Rows[0].PactSHA != w2.SHA {
		t.Fatalf("the failed WIP verification of w2 is not recorded: %+v", res)
	}

	// Without selectors the verifier uses the legacy latest-pacts relation:
	// the latest pact is w2's, which a3 fails, and nothing is pending.
	code, out = verify("a3")
	must("verify a3 (latest pacts)", code, out, 1, "There were 1 pact failures")

	code, out = pactCLI(t, append([]string{"broker", "record-deployment", "--pacticipant", "web", "--version", "w1", "--environment", "staging"}, auth...)...)
	must("record-deployment web", code, out, 0, "Recorded deployment of web version w1 to staging")
	code, out = pactCLI(t, append([]string{"broker", "record-deployment", "--pacticipant", "api", "--version", "a2", "--environment", "staging"}, auth...)...)
	must("record-deployment api", code, out, 0)
	code, out = pactCLI(t, append([]string{"broker", "record-deployment", "--pacticipant", "api", "--version", "a2", "--environment", "mars"}, auth...)...)
	must("record-deployment to an unknown environment", code, out, 1, "mars")
	if ds, _ := store.CurrentDeployments(ctx, "staging", ""); len(ds) != 2 {
		t.Fatalf("staging has %d deployments, want 2", len(ds))
	}

	// a2 verified w1 (main) and failed w2 (feature): w1 may go to staging
	// with a2 there, w2 may not; api a3 failed w2 but w2 is not deployed.
	code, out = pactCLI(t, append([]string{"broker", "can-i-deploy", "--pacticipant", "web", "--version", "w1", "--to-environment", "staging", "--retries", "0"}, auth...)...)
	must("can-i-deploy web w1", code, out, 0, "Computer says yes")
	code, out = pactCLI(t, append([]string{"broker", "can-i-deploy", "--pacticipant", "web", "--version", "w2", "--to-environment", "staging", "--retries", "0"}, auth...)...)
	must("can-i-deploy web w2", code, out, 1, "Computer says no", "The verification for the pact between version w2 of web and version a2 of api failed")
	code, out = pactCLI(t, append([]string{"broker", "can-i-deploy", "--pacticipant", "api", "--version", "a1", "--to-environment", "staging", "--retries", "0"}, auth...)...)
	must("can-i-deploy api a1", code, out, 0, "Computer says yes")
	// Two pacticipants in one question, and --ignore.
	code, out = pactCLI(t, append([]string{"broker", "can-i-deploy", "--pacticipant", "web", "--version", "w2", "--pacticipant", "api", "--version", "a2",
		"--to-environment", "staging", "--retries", "0"}, auth...)...)
	must("can-i-deploy web w2 with api a2", code, out, 1, "The verification for the pact between version w2 of web and version a2 of api failed")
	code, out = pactCLI(t, append([]string{"broker", "can-i-deploy", "--pacticipant", "web", "--version", "w2", "--to-environment", "staging", "--ignore", "api", "--retries", "0"}, auth...)...)
	must("can-i-deploy web w2 ignoring api", code, out, 0, "Computer says yes")
	// The Pact CLI exits 0 with -o json whatever the answer: read the field.
	_, out = pactCLI(t, append([]string{"broker", "can-i-deploy", "--pacticipant", "web", "--version", "w2", "--to-environment", "staging", "-o", "json", "--retries", "0"}, auth...)...)
	var js struct {
		Summary struct {
			Deployable *bool `json:"deployable"`
			Failed     int   `json:"failed"`
		} `json:"summary"`
	}
	if i := strings.Index(out, "{"); i >= 0 {
		_ = json.Unmarshal([]byte(out[i:]), &js)
	}
	if js.Summary.Deployable == nil || *js.Summary.Deployable || js.Summary.Failed != 1 {
		t.Fatalf("can-i-deploy -o json: %s", out)
	}

	code, out = pactCLI(t, append([]string{"broker", "create-or-update-pacticipant", "--name", "billing", "--main-branch", "trunk"}, auth...)...)
	must("create-or-update-pacticipant", code, out, 0)
	if p, err := store.Pacticipant(ctx, "billing"); err != nil || p.MainBranch != "trunk" {
		t.Fatalf("billing after create-or-update-pacticipant: %+v %v", p, err)
	}
	code, out = pactCLI(t, append([]string{"broker", "list-latest-pact-versions"}, auth...)...)
	must("list-latest-pact-versions", code, out, 0, `"web"`, `"w2"`, `"api"`)
	code, out = pactCLI(t, append([]string{"broker", "list-pacticipants"}, auth...)...)
	must("list-pacticipants", code, out, 0, `"web"`, `"api"`)

	// The rest of the environment commands.
	code, out = pactCLI(t, append([]string{"broker", "record-undeployment", "--pacticipant", "api", "--environment", "staging"}, auth...)...)
	must("record-undeployment", code, out, 0, "Undeployed api from staging")
	if ds, _ := store.CurrentDeployments(ctx, "staging", ""); len(ds) != 1 || ds[0].Pacticipant != "web" {
		t.Fatalf("after undeploying api, staging has %+v", ds)
	}
	code, out = pactCLI(t, append([]string{"broker", "record-release", "--pacticipant", "web", "--version", "w1", "--environment", "production"}, auth...)...)
	must("record-release", code, out, 0, "Recorded release of web version w1 to production")
	if ds, _ := store.CurrentDeployments(ctx, "production", "web"); len(ds) != 1 || !ds[0].Release || ds[0].Version != "w1" {
		t.Fatalf("after record-release, production has %+v", ds)
	}
	code, out = pactCLI(t, append([]string{"broker", "record-support-ended", "--pacticipant", "web", "--version", "w1", "--environment", "production"}, auth...)...)
	must("record-support-ended", code, out, 0)
	if ds, _ := store.CurrentDeployments(ctx, "production", "web"); len(ds) != 0 {
		t.Fatalf("after record-support-ended, production has %+v", ds)
	}
	code, out = pactCLI(t, append([]string{"broker", "create-version-tag", "--pacticipant", "web", "--version", "w1", "--tag", "prod"}, auth...)...)
	must("create-version-tag", code, out, 0)
	code, out = pactCLI(t, append([]string{"broker", "create-or-update-version", "--pacticipant", "web", "--version", "w9", "--branch", "feat-x"}, auth...)...)
	must("create-or-update-version", code, out, 0)
	if v, err := store.Version(ctx, "web", "w1"); err != nil || len(v.Tags) != 1 || v.Tags[0] != "prod" {
		t.Fatalf("web w1 after create-version-tag: %+v %v", v, err)
	}
	if v, err := store.Version(ctx, "web", "w9"); err != nil || len(v.Branches) != 1 || v.Branches[0] != "feat-x" {
		t.Fatalf("web w9 after create-or-update-version: %+v %v", v, err)
	}

	// Webhooks made by the Pact CLI are delivered.
	rc := &receiver{}
	hook := httptest.NewServer(rc)
	defer hook.Close()
	code, out = pactCLI(t, append([]string{"broker", "create-webhook", hook.URL + "/build", "--request", "POST", "--header", "X-Event: ${pactbroker.eventName}",
		"--data", `{"pact":"${pactbroker.pactUrl}","version":"${pactbroker.consumerVersionNumber}"}`, "--consumer", "web", "--provider", "api",
		"--contract-published", "--description", "build api"}, auth...)...)
	must("create-webhook", code, out, 0, "build api")
	code, out = pactCLI(t, append([]string{"broker", "publish", writePact(t, "v10", helloPact), "-a", "w10", "--branch", "main"}, auth...)...)
	must("publish w10", code, out, 0)
	if err := (&broker.Deliverer{Queue: store, BaseURL: url}).DeliverDue(ctx); err != nil {
		t.Fatal(err)
	}
	if got := rc.got(); len(got) != 1 || !strings.Contains(got[0], `"version":"w10"`) || !strings.HasPrefix(got[0], "contract_published ") {
		t.Fatalf("webhook deliveries: %v", got)
	}

	// The everyday commands below exercise HTTP routes, not SQL the
	// stores differ in (TestRemovals covers that on both): one store
	// keeps CI time down.
	if strings.HasSuffix(t.Name(), "/sqlite") {
		brokerCommandsInterop(t, url, store, auth, must, rc)
	}
}

// brokerCommandsInterop runs the rest of `pact broker`'s everyday
// commands against the broker pactCLIInterop filled, each with its
// expected outcome, and the verifier with a read-only token.
func brokerCommandsInterop(t *testing.T, url string, store broker.Store, auth []string, must func(string, int, string, int, ...string), rc *receiver) {
	ctx := context.Background()
	cli := func(args ...string) (int, string) {
		return pactCLI(t, append(append([]string{"broker"}, args...), auth...)...)
	}

	// test-webhook fires the webhook pactCLIInterop made at its receiver,
	// with the variables filled from the latest pact.
	hooks, err := store.Webhooks(ctx)
	if err != nil || len(hooks) != 1 {
		t.Fatalf("webhooks: %v %v", hooks, err)
	}
	code, out := cli("test-webhook", "--uuid", hooks[0].UUID)
	must("test-webhook", code, out, 0, `"success":true`, `"status":200`)
	if got := rc.got(); len(got) != 2 || !strings.Contains(got[1], `"version":"w10"`) || strings.Contains(got[1], "${pactbroker") {
		t.Fatalf("test-webhook deliveries: %v", got)
	}

	// get-pacts: by the consumers' main branch, by branch, latest.
	code, out = cli("get-pacts", "--provider", "api")
	must("get-pacts", code, out, 0, "Pact between web (w10) and api", "Pact between web (w1) and api")
	code, out = cli("get-pacts", "--provider", "api", "--latest")
	must("get-pacts --latest", code, out, 0, "Pact between web (w10) and api")
	if strings.Contains(out, "(w1)") {
		t.Fatalf("get-pacts --latest lists more than the latest:\n%s", out)
	}
	code, out = cli("get-pacts", "--provider", "api", "--consumer", "web", "--branch", "feat-goodbye")
	must("get-pacts --consumer --branch", code, out, 0, "Pact between web (w2) and api")

	// provider-states list: the states of the latest main-branch pacts.
	statePact := strings.Replace(helloPact, `"description":"a greeting"`, `"description":"a greeting","providerStates":[{"name":"a user exists","params":{"id":7}}]`, 1)
	code, out = cli("publish", writePact(t, "v11", statePact), "-a", "w11", "--branch", "main")
	must("publish w11", code, out, 0)
	code, out = cli("provider-states", "list", "--provider", "api")
	must("provider-states list", code, out, 0, "a user exists", "web", `{"id":7}`)

	// Environments: update and delete.
	code, out = cli("create-environment", "--name", "scratch")
	must("create-environment scratch", code, out, 0)
	env, err := store.Environment(ctx, "scratch")
	if err != nil {
		t.Fatal(err)
	}
	code, out = cli("update-environment", "--uuid", env.UUID, "--name", "scratch", "--display-name", "Scratch pad", "--production")
	must("update-environment", code, out, 0, "Updated scratch environment")
	if e, err := store.Environment(ctx, env.UUID); err != nil || e.DisplayName != "Scratch pad" || !e.Production {
		t.Fatalf("after update-environment: %+v %v", e, err)
	}
	code, out = cli("delete-environment", "--uuid", env.UUID)
	must("delete-environment", code, out, 0, "deleted successfully")
	if _, err := store.Environment(ctx, env.UUID); !errors.Is(err, broker.ErrNotFound) {
		t.Fatalf("scratch after delete-environment: %v", err)
	}

	// delete-version-tag and delete-branch.
	code, out = cli("delete-version-tag", "--pacticipant", "web", "--version", "w1", "--tag", "prod")
	must("delete-version-tag", code, out, 0, "Successfully deleted tag 'prod'")
	if v, err := store.Version(ctx, "web", "w1"); err != nil || len(v.Tags) != 0 {
		t.Fatalf("web w1 after delete-version-tag: %+v %v", v, err)
	}
	code, out = cli("delete-branch", "--pacticipant", "web", "--branch", "feat-x")
	must("delete-branch", code, out, 0, "Successfully deleted branch 'feat-x'")
	if v, err := store.Version(ctx, "web", "w9"); err != nil || len(v.Branches) != 0 {
		t.Fatalf("web w9 after delete-branch: %+v %v", v, err)
	}
	code, out = cli("delete-branch", "--pacticipant", "web", "--branch", "feat-x")
	must("delete-branch again", code, out, 0, "as it was not found") // the CLI reports it, exiting 0

	// A read-only token may ask for pacts to verify (a POST) and the real
	// verifier verifies with it; it may not publish.
	host, port := helloProvider(t)
	code, out = pactCLI(t, "verifier", "--broker-url", url, "--token", "ci-read-token", "--provider-name", "api",
		"--hostname", host, "--port", port, "--consumer-version-selectors", `{"branch":"main","latest":true}`, "--retries", "0")
	must("verify with a read-only token", code, out, 0, "a greeting")
	_, out = pactCLI(t, "broker", "create-version-tag", "--pacticipant", "web", "--version", "w1", "--tag", "x", "-b", url, "-k", "ci-read-token")
	if v, _ := store.Version(ctx, "web", "w1"); len(v.Tags) != 0 || !strings.Contains(out, "403") {
		t.Fatalf("a read-only token tagged a version (tags %v):\n%s", v.Tags, out)
	}
}
