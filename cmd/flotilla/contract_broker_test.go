package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/flotilla-ci/flotilla/broker"
	"github.com/flotilla-ci/flotilla/broker/client"
	"github.com/flotilla-ci/flotilla/broker/sqlstore"
	"github.com/flotilla-ci/flotilla/internal/sqldb/sqldbtest"
	"github.com/flotilla-ci/flotilla/internal/testenv"
)

// runContract runs `flotilla contract ARGS...` in-process. The contract
// command group is registered by contract.go; until it is, the broker
// subcommands are mounted under a "contract" parent here.
func runContract(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	a := &app{stdin: strings.NewReader(""), stdout: &out, stderr: &errb}
	root := a.rootCmd()
	if c, _, err := root.Find([]string{"contract", args[0]}); err != nil || c.Name() != args[0] {
		parent := &cobra.Command{Use: "contract"}
		parent.AddCommand(a.contractBrokerCmds()...)
		root.AddCommand(parent)
	}
	root.SetArgs(append([]string{"contract"}, args...))
	root.SetOut(&out)
	root.SetErr(&errb)
	err := root.ExecuteContext(context.Background())
	code = 0
	if err != nil {
		var ex *exitError
		code = 2
		if errors.As(err, &ex) {
			code = ex.code
		}
		fmt.Fprintln(&errb, "flotilla:", err)
	}
	return code, out.String(), errb.String()
}

// startBroker serves a broker on a loopback port over a fresh SQLite file.
func startBroker(t *testing.T, cfg broker.Config) string {
	t.Helper()
	return startBrokerOn(t, cfg, filepath.Join(t.TempDir(), "broker.db"))
}

// startBrokerOn serves a broker over the database named by dsn.
func startBrokerOn(t *testing.T, cfg broker.Config, dsn string) string {
	t.Helper()
	store, err := sqlstore.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	srv, err := broker.New(cfg, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return hs.URL
}

// paymentProvider is the payment service's API in three versions: v1 as
// order-service's pact expects; v2 changes the charge response format
// (the scenario's "Payment Service v2.0 updates API format"); v3 adds the
// new fields while keeping the ones consumers rely on.
func paymentProvider(t *testing.T, version int) (host, port string) {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /_pact/state", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("POST /payments", func(w http.ResponseWriter, r *http.Request) {
		var body any
		switch version {
		case 2:
			body = map[string]any{"id": "p-9", "state": "CAPTURED", "amount": map[string]any{"value": 1299, "currency": "EUR"}}
		case 3:
			body = map[string]any{"paymentId": "p-9", "status": "captured", "amount": 1299, "currency": "EUR", "capturedAt": "2026-11-26T10:00:00Z"}
		default:
			body = map[string]any{"paymentId": "p-9", "status": "captured", "amount": 1299}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(body)
	})
	mux.HandleFunc("GET /payments/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"paymentId": r.PathValue("id"), "status": "captured", "amount": 1299})
	})
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	h, p, _ := net.SplitHostPort(strings.TrimPrefix(hs.URL, "http://"))
	return h, p
}

// pact runs the real pact CLI and returns its exit code and output.
func pact(t *testing.T, args ...string) (int, string) {
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

func verifyPayment(t *testing.T, brokerURL string, version int, providerVersion string) (int, string) {
	t.Helper()
	host, port := paymentProvider(t, version)
	return pact(t, "verifier", "--broker-url", brokerURL, "--provider-name", "payment-service",
		"--hostname", host, "--port", port, "--state-change-url", "http://"+host+":"+port+"/_pact/state",
		"--consumer-version-selectors", `{"mainBranch":true}`, "--consumer-version-selectors", `{"deployedOrReleased":true}`,
		"--publish", "--provider-version", providerVersion, "--provider-branch", "main", "--retries", "0")
}

// TestIncident reproduces the scenario's outage and shows the broker
// stopping it: payment-service v2 changes its response format, its
// failing verification is published, and can-i-deploy (flotilla's and the
// real Pact CLI's) refuses to ship it to production, naming the broken
// order-service → payment-service interaction; a compatible v3 ships.
func TestIncident(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs the real pact verifier")
	}
	testenv.Binary(t, testenv.Pact)
	sqldbtest.Each(t, func(t *testing.T, dsn string) { incident(t, startBrokerOn(t, broker.DefaultConfig(), dsn)) })
}

func incident(t *testing.T, url string) {
	b := []string{"--broker-url", url}

	code, out, errOut := runContract(t, append([]string{"publish", "testdata/broker/pacts", "--consumer-app-version", "order-1", "--branch", "main"}, b...)...)
	if code != 0 || !strings.Contains(out, "Pact published for order-service version order-1 and provider payment-service") {
		t.Fatalf("publish: exit %d\n%s%s", code, out, errOut)
	}
	if code, out := verifyPayment(t, url, 1, "pay-1"); code != 0 {
		t.Fatalf("verifying payment v1 against order's pact: exit %d\n%s", code, out)
	}
	for _, pv := range [][2]string{{"order-service", "order-1"}, {"payment-service", "pay-1"}} {
		code, out, errOut := runContract(t, append([]string{"record-deployment", "--pacticipant", pv[0], "--version", pv[1], "--environment", "production"}, b...)...)
		if code != 0 {
			t.Fatalf("record-deployment %v: exit %d\n%s%s", pv, code, out, errOut)
		}
	}

	// Payment v2 changes the charge response: the verification fails and
	// its result is published.
	if code, out := verifyPayment(t, url, 2, "pay-2"); code == 0 || !strings.Contains(out, "a request to charge an order") {
		t.Fatalf("verifying payment v2: want a failure naming the charge interaction, got exit %d\n%s", code, out)
	}
	code, out, errOut = runContract(t, append([]string{"can-i-deploy", "--pacticipant", "payment-service", "--version", "pay-2", "--to-environment", "production"}, b...)...)
	t.Logf("flotilla contract can-i-deploy --pacticipant payment-service --version pay-2 --to-environment production:\n%s", out)
	if code != 1 {
		t.Fatalf("can-i-deploy payment v2: exit %d, want 1\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		`✗ order-service → payment-service: interaction "a request to charge an order" failed against payment-service pay-2`,
		"The verification for the pact between version order-1 of order-service and version pay-2 of payment-service failed",
		"deployable: no",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("can-i-deploy payment v2 output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, `"a request for a payment" failed`) {
		t.Errorf("can-i-deploy names an interaction that still passes:\n%s", out)
	}
	// -o json still exits non-zero, unlike the Pact CLI.
	code, out, _ = runContract(t, append([]string{"can-i-deploy", "--pacticipant", "payment-service", "--version", "pay-2", "--to-environment", "production", "-o", "json"}, b...)...)
	var js struct {
		Summary struct {
			Deployable *bool `json:"deployable"`
			Failed     int   `json:"failed"`
		} `json:"summary"`
		FailedInteractions []struct {
			Description   string `json:"description"`
			InteractionID string `json:"interactionId"`
		} `json:"failedInteractions"`
	}
	if err := json.Unmarshal([]byte(out), &js); err != nil || code != 1 || js.Summary.Deployable == nil || *js.Summary.Deployable ||
		js.Summary.Failed != 1 || len(js.FailedInteractions) != 1 || js.FailedInteractions[0].Description != "a request to charge an order" ||
		len(js.FailedInteractions[0].InteractionID) != 40 {
		t.Errorf("can-i-deploy -o json: exit %d, %v\n%s", code, err, out)
	}
	pc, pout := pact(t, "broker", "can-i-deploy", "-b", url, "--pacticipant", "payment-service", "--version", "pay-2", "--to-environment", "production", "--retries", "0")
	t.Logf("pact broker can-i-deploy (pay-2):\n%s", pout)
	if pc != 1 || !strings.Contains(pout, "Computer says no") {
		t.Errorf("pact broker can-i-deploy payment v2: exit %d, want 1 and 'Computer says no'\n%s", pc, pout)
	}

	// Payment v3 keeps what order-service relies on.
	if code, out := verifyPayment(t, url, 3, "pay-3"); code != 0 {
		t.Fatalf("verifying payment v3: exit %d\n%s", code, out)
	}
	code, out, errOut = runContract(t, append([]string{"can-i-deploy", "--pacticipant", "payment-service", "--version", "pay-3", "--to-environment", "production"}, b...)...)
	if code != 0 || !strings.Contains(out, "deployable: yes") {
		t.Errorf("can-i-deploy payment v3: exit %d, want 0\n%s%s", code, out, errOut)
	}
	pc, pout = pact(t, "broker", "can-i-deploy", "-b", url, "--pacticipant", "payment-service", "--version", "pay-3", "--to-environment", "production", "--retries", "0")
	if pc != 0 || !strings.Contains(pout, "Computer says yes") {
		t.Errorf("pact broker can-i-deploy payment v3: exit %d, want 0 and 'Computer says yes'\n%s", pc, pout)
	}

	// The multi-service form: order-1 with pay-2 shipped together fails,
	// with pay-3 passes.
	dir := t.TempDir()
	for name, ver := range map[string]string{"bad.yaml": "pay-2", "good.yaml": "pay-3"} {
		_ = os.WriteFile(filepath.Join(dir, name), []byte("services:\n  order-service: order-1\n  payment-service: "+ver+"\n"), 0o644)
	}
	if code, out, _ := runContract(t, append([]string{"can-i-deploy", "--release", filepath.Join(dir, "bad.yaml"), "--to-environment", "production"}, b...)...); code != 1 {
		t.Errorf("can-i-deploy --release with pay-2: exit %d, want 1\n%s", code, out)
	}
	if code, out, _ := runContract(t, append([]string{"can-i-deploy", "--release", filepath.Join(dir, "good.yaml"), "--to-environment", "production"}, b...)...); code != 0 {
		t.Errorf("can-i-deploy --release with pay-3: exit %d, want 0\n%s", code, out)
	}
}

// TestContractVerifyFromBroker verifies payment-service with flotilla's own
// verifier from the broker's pacts for verification and publishes the
// results, which can-i-deploy then reads, interaction ids included.
func TestContractVerifyFromBroker(t *testing.T) {
	url := startBroker(t, broker.DefaultConfig())
	b := []string{"--broker-url", url}
	if code, out, errOut := runContract(t, append([]string{"publish", "testdata/broker/pacts", "--consumer-app-version", "order-1", "--branch", "main"}, b...)...); code != 0 {
		t.Fatalf("publish: %d %s %s", code, out, errOut)
	}
	verify := func(version int, providerVersion string) (int, string, string) {
		host, port := paymentProvider(t, version)
		base := "http://" + host + ":" + port
		return runContract(t, "verify", "--broker-url", url, "--provider-name", "payment-service", "--provider-base-url", base,
			"--state-change-url", base+"/_pact/state", "--consumer-version-selectors", `{"mainBranch":true}`,
			"--consumer-version-selectors", `{"deployedOrReleased":true}`, "--enable-pending", "--include-wip-pacts-since", "2020-01-01",
			"--provider-version", providerVersion, "--provider-branch", "main", "--publish")
	}
	// Never verified yet: pending, so even a failure would not fail.
	if code, out, errOut := verify(1, "pay-1"); code != 0 {
		t.Fatalf("verify v1: exit %d\n%s%s", code, out, errOut)
	}
	for _, pv := range [][2]string{{"order-service", "order-1"}, {"payment-service", "pay-1"}} {
		if code, _, errOut := runContract(t, append([]string{"record-deployment", "--pacticipant", pv[0], "--version", pv[1], "--environment", "production"}, b...)...); code != 0 {
			t.Fatalf("record-deployment %v: %s", pv, errOut)
		}
	}
	// Verified on main since: no longer pending, so v2's failure fails.
	if code, out, errOut := verify(2, "pay-2"); code != 1 {
		t.Fatalf("verify v2: exit %d, want 1\n%s%s", code, out, errOut)
	}
	code, out, _ := runContract(t, append([]string{"can-i-deploy", "--pacticipant", "payment-service", "--version", "pay-2", "--to-environment", "production", "-o", "json"}, b...)...)
	var js struct {
		FailedInteractions []struct {
			Description   string `json:"description"`
			InteractionID string `json:"interactionId"`
		} `json:"failedInteractions"`
	}
	if err := json.Unmarshal([]byte(out), &js); err != nil || code != 1 || len(js.FailedInteractions) != 1 ||
		js.FailedInteractions[0].Description != "a request to charge an order" || len(js.FailedInteractions[0].InteractionID) != 40 {
		t.Fatalf("can-i-deploy pay-2 after flotilla's verification: exit %d %v\n%s", code, err, out)
	}
	if code, out, _ := runContract(t, append([]string{"can-i-deploy", "--pacticipant", "payment-service", "--version", "pay-1", "--to-environment", "production"}, b...)...); code != 0 {
		t.Fatalf("can-i-deploy pay-1: exit %d\n%s", code, out)
	}
	// can-i-merge: against the head of payment's main branch (pay-2, which
	// broke order's pact), order-1 cannot merge.
	if code, out, _ := runContract(t, append([]string{"can-i-deploy", "--pacticipant", "order-service", "--version", "order-1", "--to-main-branch"}, b...)...); code != 1 || !strings.Contains(out, "deployable: no") {
		t.Errorf("can-i-deploy --to-main-branch: exit %d\n%s", code, out)
	}
	// Undeploying payment leaves order with nothing verified in production.
	code, out, errOut := runContract(t, append([]string{"record-undeployment", "--pacticipant", "payment-service", "--environment", "production"}, b...)...)
	if code != 0 || !strings.Contains(out, "recorded undeployment of payment-service pay-1 from production") {
		t.Fatalf("record-undeployment: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, _ := runContract(t, append([]string{"can-i-deploy", "--pacticipant", "order-service", "--version", "order-1", "--to-environment", "production"}, b...)...); code != 1 || !strings.Contains(out, "deployable: no") {
		t.Errorf("can-i-deploy order after payment's undeployment: exit %d\n%s", code, out)
	}
	if code, _, errOut := runContract(t, append([]string{"record-undeployment", "--pacticipant", "payment-service", "--environment", "production"}, b...)...); code != 2 || !strings.Contains(errOut, "not currently deployed") {
		t.Errorf("undeploying twice: exit %d %s", code, errOut)
	}
	// Misuse is bad input.
	if code, _, errOut := runContract(t, "verify", "--broker-url", url, "--provider-base-url", "http://127.0.0.1:1", "--publish"); code != 2 || !strings.Contains(errOut, "--provider-name") {
		t.Errorf("verify --broker-url without a provider: exit %d %s", code, errOut)
	}
	if code, _, errOut := runContract(t, "verify", "--pact", "testdata/broker/pacts", "--provider-base-url", "http://127.0.0.1:1", "--publish"); code != 2 || !strings.Contains(errOut, "--publish needs --broker-url") {
		t.Errorf("verify --publish without a broker: exit %d %s", code, errOut)
	}
}

// TestCanIDeployRetriesWhileUnknown: the answer is unknown until the
// provider's verification lands; --retry-while-unknown waits for it.
func TestCanIDeployRetriesWhileUnknown(t *testing.T) {
	url := startBroker(t, broker.DefaultConfig())
	b := []string{"--broker-url", url}
	if code, _, errOut := runContract(t, append([]string{"publish", "testdata/broker/pacts", "--consumer-app-version", "order-1", "--branch", "main"}, b...)...); code != 0 {
		t.Fatal(errOut)
	}
	c, err := client.New(url)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.Send(ctx, "PUT", "/pacticipants/payment-service/versions/pay-1", map[string]any{}, nil); err != nil {
		t.Fatal(err)
	}
	for _, pv := range [][2]string{{"order-service", "order-1"}, {"payment-service", "pay-1"}} {
		if err := c.RecordDeployment(ctx, pv[0], pv[1], "production", "", false); err != nil {
			t.Fatal(err)
		}
	}
	ask := append([]string{"can-i-deploy", "--pacticipant", "order-service", "--version", "order-1", "--to-environment", "production"}, b...)
	if code, out, _ := runContract(t, ask...); code != 1 || !strings.Contains(out, "deployable: unknown") {
		t.Fatalf("before verification: exit %d\n%s", code, out)
	}
	var pact struct {
		Links struct {
			Publish client.Link `json:"pb:publish-verification-results"`
		} `json:"_links"`
	}
	if err := c.Get(ctx, "/pacts/provider/payment-service/consumer/order-service/version/order-1", &pact); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(400 * time.Millisecond)
		_ = c.Send(ctx, "POST", pact.Links.Publish.Href, map[string]any{"providerApplicationVersion": "pay-1", "success": true}, nil)
	}()
	code, out, errOut := runContract(t, append(ask, "--retry-while-unknown", "20", "--retry-interval", "100ms")...)
	if code != 0 || !strings.Contains(out, "deployable: yes") || !strings.Contains(errOut, "deployable is unknown") {
		t.Fatalf("with --retry-while-unknown: exit %d\n%s\n%s", code, out, errOut)
	}
}

func TestCanIDeployReportGolden(t *testing.T) {
	const matrix = `{"summary":{"deployable":false,"reason":"The verification for the pact between version order-1 of order-service and version pay-2 of payment-service failed","success":1,"failed":1,"unknown":1},
	"matrix":[
	 {"consumer":{"name":"order-service","version":{"number":"order-1"}},"provider":{"name":"payment-service","version":{"number":"pay-2"}},"verificationResult":{"success":false,"_links":{"self":{"href":"x"}}}},
	 {"consumer":{"name":"cart-service","version":{"number":"cart-7"}},"provider":{"name":"payment-service","version":{"number":"pay-2"}},"verificationResult":{"success":true}},
	 {"consumer":{"name":"shipping-service","version":{"number":"ship-3"}},"provider":{"name":"order-service","version":null},"verificationResult":null},
	 {"consumer":{"name":"admin-ui","version":{"number":"a1"}},"provider":{"name":"payment-service","version":{"number":"pay-2"}},"verificationResult":{"success":false},"ignored":true}]}`
	var m client.Matrix
	if err := json.Unmarshal([]byte(matrix), &m); err != nil {
		t.Fatal(err)
	}
	failures := []failedInteraction{{Consumer: "order-service", ConsumerVersion: "order-1", Provider: "payment-service", ProviderVersion: "pay-2",
		Description: "a request to charge an order", Mismatches: []client.Mismatch{
			{Attribute: "body", Identifier: "$.status", Description: "Expected 'CAPTURED' to match 'captured|declined'"},
			{Attribute: "status", Description: "expected 201 but was 200"},
		}}}
	var out bytes.Buffer
	printMatrix(&out, m, failures)
	golden(t, "broker/can-i-deploy-no.golden", out.String())

	var yes client.Matrix
	_ = json.Unmarshal([]byte(`{"summary":{"deployable":true,"reason":"All required verification results are published and successful"},"matrix":[]}`), &yes)
	out.Reset()
	printMatrix(&out, yes, nil)
	golden(t, "broker/can-i-deploy-yes.golden", out.String())
}

// TestContractVerifyWithReadOnlyToken: CI holds a read-only token. It
// fetches pacts for verification (a POST the broker lets read tokens
// make) and single pact URLs (--pact URL sends the token too); it cannot
// publish results.
func TestContractVerifyWithReadOnlyToken(t *testing.T) {
	cfg := broker.DefaultConfig()
	cfg.AnonymousRead = false
	cfg.Tokens = []broker.Token{{Value: "write-token-1", Write: true}, {Value: "read-token-1"}}
	url := startBroker(t, cfg)
	if code, out, errOut := runContract(t, "publish", "testdata/broker/pacts", "--consumer-app-version", "order-1", "--branch", "main", "--broker-url", url, "--broker-token", "write-token-1"); code != 0 {
		t.Fatalf("publish: %d %s %s", code, out, errOut)
	}
	host, port := paymentProvider(t, 1)
	base := "http://" + host + ":" + port
	args := []string{"verify", "--provider-name", "payment-service", "--provider-base-url", base, "--state-change-url", base + "/_pact/state"}
	code, out, errOut := runContract(t, append(args, "--broker-url", url, "--token", "read-token-1", "--consumer-version-selectors", `{"mainBranch":true}`)...)
	if code != 0 || !strings.Contains(out, "a request to charge an order") {
		t.Fatalf("verify through for-verification with a read-only token: exit %d\n%s%s", code, out, errOut)
	}
	pactURL := url + "/pacts/provider/payment-service/consumer/order-service/latest"
	if code, out, errOut := runContract(t, append(args, "--pact", pactURL, "--token", "read-token-1")...); code != 0 {
		t.Fatalf("verify --pact URL with a read-only token: exit %d\n%s%s", code, out, errOut)
	}
	t.Setenv("PACT_BROKER_TOKEN", "read-token-1")
	if code, out, errOut := runContract(t, append(args, "--pact", pactURL)...); code != 0 {
		t.Fatalf("verify --pact URL with PACT_BROKER_TOKEN: exit %d\n%s%s", code, out, errOut)
	}
	t.Setenv("PACT_BROKER_TOKEN", "")
	if code, _, errOut := runContract(t, append(args, "--pact", pactURL)...); code != 2 || !strings.Contains(errOut, "status 401: give the broker's credentials") {
		t.Fatalf("verify --pact URL without a token: exit %d %s", code, errOut)
	}
	code, _, errOut = runContract(t, append(args, "--broker-url", url, "--token", "read-token-1", "--consumer-version-selectors", `{"mainBranch":true}`,
		"--publish", "--provider-version", "pay-1")...)
	if code == 0 || code == 1 || !strings.Contains(errOut, "403: these credentials may only read") {
		t.Fatalf("publishing results with a read-only token: exit %d %s", code, errOut)
	}
}
