package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/broker"
	"github.com/flotilla-ci/flotilla/broker/client"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// TestBrokerServe runs `flotilla broker serve` with a token and checks
// that writes need it, reads do not, and SIGTERM-style cancellation stops
// it cleanly.
func TestBrokerServe(t *testing.T) {
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"broker", "serve", "--addr", addr, "--db", filepath.Join(t.TempDir(), "b.db"), "--token", "rw-secret-1", "--read-token", "ro-secret-1"},
			strings.NewReader(""), &out, &errb)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			_ = c.Close()
			break
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("broker serve did not listen on %s: %s", addr, errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	url := "http://" + addr
	// A webhook, delivered by the serving process.
	hooked := make(chan string, 4)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		hooked <- string(b)
	}))
	defer hook.Close()
	c, err := client.New(url, client.WithToken("rw-secret-1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Send(context.Background(), "POST", "/webhooks", map[string]any{"events": []any{map[string]any{"name": "contract_published"}},
		"request": map[string]any{"method": "POST", "url": hook.URL, "body": "${pactbroker.consumerName} ${pactbroker.consumerVersionNumber} ${pactbroker.pactUrl}"}}, nil); err != nil {
		t.Fatal(err)
	}
	publish := []string{"publish", "testdata/broker/pacts", "--consumer-app-version", "o1", "--broker-url", url}
	code, _, errOut := runContract(t, publish...)
	if code != 2 || !strings.Contains(errOut, "401") {
		t.Errorf("publish without a token: exit %d, %s", code, errOut)
	}
	code, _, errOut = runContract(t, append(publish, "--broker-token", "ro-secret-1")...)
	if code != 2 || !strings.Contains(errOut, "403") {
		t.Errorf("publish with a read-only token: exit %d, %s", code, errOut)
	}
	code, stdout, errOut := runContract(t, append(publish, "--broker-token", "rw-secret-1")...)
	if code != 0 || !strings.Contains(stdout, "Pact published for order-service version o1") {
		t.Errorf("publish with the token: exit %d\n%s%s", code, stdout, errOut)
	}
	select {
	case got := <-hooked:
		if !strings.HasPrefix(got, "order-service o1 "+url+"/pacts/provider/payment-service/consumer/order-service/pact-version/") {
			t.Errorf("webhook body %q", got)
		}
	case <-time.After(10 * time.Second):
		t.Error("the webhook was not delivered")
	}
	code, stdout, _ = runContract(t, "can-i-deploy", "--pacticipant", "order-service", "--version", "o1", "--to-environment", "production", "--broker-url", url)
	if code != 1 || !strings.Contains(stdout, "deployable: no") || !strings.Contains(stdout, "a version of payment-service currently in production (no such version exists)") {
		t.Errorf("can-i-deploy before payment is deployed: exit %d\n%s", code, stdout)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("broker serve exited %d after cancellation: %s", code, errb.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("broker serve did not stop")
	}
	if !strings.Contains(out.String(), "flotilla broker listening on http://"+addr) {
		t.Errorf("serve output: %q", out.String())
	}
}

func TestBrokerServeBadFlags(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"broker", "serve", "--token", "short"}, "tokens[0]: a token must be at least 8 characters"},
		{[]string{"broker", "serve", "--user", "nopassword"}, "want NAME:PASSWORD"},
		{[]string{"broker", "serve", "--db", dir}, "is a directory"},
		{[]string{"broker", "serve", "--base-url", "not-a-url"}, "base_url"},
		{[]string{"broker", "serve", "--addr", "0.0.0.0:0"}, "not a loopback address, and no --token or --user"},
		{[]string{"broker", "serve", "--addr", ":0"}, "--insecure-open to serve it open anyway"},
		{[]string{"broker", "serve", "--max-body", "0"}, "--max-body 0: must be positive"},
	} {
		code, _, errOut := runCLI(t, tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, errOut, tc.want)
		}
	}
}

func TestContractBrokerCommandsBadInput(t *testing.T) {
	url := startBroker(t, broker.DefaultConfig())
	dir := t.TempDir()
	notPact := filepath.Join(dir, "notes.json")
	_ = os.WriteFile(notPact, []byte(`{"hello": "world"}`), 0o644)
	broken := filepath.Join(dir, "broken.json")
	_ = os.WriteFile(broken, []byte("{\n  \"consumer\": {,\n}"), 0o644)
	badRelease := filepath.Join(dir, "release.yaml")
	_ = os.WriteFile(badRelease, []byte("servces:\n  a: 1\n"), 0o644)
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"publish", notPact, "--consumer-app-version", "1", "--broker-url", url}, 2, "notes.json: not a pact file: consumer.name and provider.name are required"},
		{[]string{"publish", broken, "--consumer-app-version", "1", "--broker-url", url}, 2, "broken.json:2:17: not a pact file: invalid character ','"},
		{[]string{"publish", "testdata/broker/pacts", "--broker-url", url}, 2, "--consumer-app-version is required"},
		{[]string{"publish", "testdata/broker/pacts", "--consumer-app-version", "1"}, 2, "--broker-url is required"},
		{[]string{"can-i-deploy", "--pacticipant", "a", "--to-environment", "production", "--broker-url", url}, 2, "give one --version for each --pacticipant"},
		{[]string{"can-i-deploy", "--pacticipant", "a", "--version", "1", "--broker-url", url}, 2, "--to-environment"},
		{[]string{"can-i-deploy", "--release", badRelease, "--to-environment", "production", "--broker-url", url}, 2, "field servces not found"},
		{[]string{"can-i-deploy", "--pacticipant", "ghost", "--version", "1", "--to-environment", "production", "--broker-url", url}, 2, "Pacticipant ghost not found"},
		{[]string{"can-i-deploy", "--pacticipant", "a", "--version", "1", "--to-environment", "production", "-o", "yaml", "--broker-url", url}, 2, "want text or json"},
		{[]string{"record-deployment", "--pacticipant", "order-service", "--version", "9", "--environment", "production", "--broker-url", url}, 2, "version 9 of order-service is not in the broker"},
		{[]string{"version", "no/such/path"}, 2, `path "no/such/path" has no files`},
		{[]string{"can-i-deploy", "--service", "nope-service", "--to-environment", "production", "--broker-url", url}, 2, "--service nope-service: no such service in"},
		{[]string{"can-i-deploy", "--service", "order-service", "--pacticipant", "a", "--version", "1", "--to-environment", "production", "--broker-url", url}, 2, "use one of --release, --service, or --pacticipant/--version"},
	}
	for _, tc := range tests {
		code, _, errOut := runContract(t, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args, code, errOut, tc.code, tc.want)
		}
	}
	// --service asks about the version the service's source has here.
	code, v, errOut := runContract(t, "version", "--service", "order-service")
	v = strings.TrimSpace(v)
	if code != 0 || len(v) != 12 {
		t.Fatalf("contract version --service order-service: %d %q %s", code, v, errOut)
	}
	if code, out, errOut := runContract(t, "publish", "testdata/broker/pacts", "--consumer-app-version", v, "--broker-url", url); code != 0 {
		t.Fatalf("publish: %d %s %s", code, out, errOut)
	}
	code, out, _ := runContract(t, "can-i-deploy", "--service", "order-service", "--to-environment", "production", "--broker-url", url)
	if code != 1 || !strings.Contains(out, "order-service  "+v) {
		t.Errorf("can-i-deploy --service order-service: exit %d, want a row for version %s\n%s", code, v, out)
	}
	// Record a deployment to an environment that does not exist.
	if code, out, errOut := runContract(t, "publish", "testdata/broker/pacts", "--consumer-app-version", "o1", "--broker-url", url); code != 0 {
		t.Fatalf("publish: %d %s %s", code, out, errOut)
	}
	code, _, errOut = runContract(t, "record-deployment", "--pacticipant", "order-service", "--version", "o1", "--environment", "mars", "--broker-url", url)
	if code != 2 || !strings.Contains(errOut, "environment mars does not exist in the broker (it has: test, production)") {
		t.Errorf("record-deployment to mars: exit %d, %s", code, errOut)
	}
}

// TestBrokerServeDefaults: on loopback the broker is open and webhooks may
// call anywhere (flotilla up's local default); elsewhere it needs
// credentials or --insecure-open, and webhooks call only listed hosts.
func TestBrokerServeDefaults(t *testing.T) {
	for _, tc := range []struct {
		bs    brokerServe
		err   bool
		hooks []string
	}{
		{bs: brokerServe{addr: "127.0.0.1:7292"}},
		{bs: brokerServe{addr: "[::1]:7292"}},
		{bs: brokerServe{addr: "localhost:7292"}},
		{bs: brokerServe{addr: "0.0.0.0:7292"}, err: true},
		{bs: brokerServe{addr: "10.1.2.3:7292", tokens: []string{"secret-token"}}, hooks: []string{"localhost", "127.0.0.1", "::1"}},
		{bs: brokerServe{addr: "10.1.2.3:7292", insecureOpen: true, webhookHosts: []string{"ci.example.com"}}, hooks: []string{"ci.example.com"}},
		{bs: brokerServe{addr: ":7292", insecureOpen: true, maxBody: 64 << 20}, hooks: []string{"localhost", "127.0.0.1", "::1"}},
	} {
		cfg, err := tc.bs.config()
		if (err != nil) != tc.err {
			t.Errorf("%s: err %v, want error %v", tc.bs.addr, err, tc.err)
			continue
		}
		if err == nil && strings.Join(cfg.WebhookHosts, ",") != strings.Join(tc.hooks, ",") {
			t.Errorf("%s: webhook hosts %v, want %v", tc.bs.addr, cfg.WebhookHosts, tc.hooks)
		}
		if tc.bs.maxBody != 0 && cfg.MaxBodyBytes != tc.bs.maxBody {
			t.Errorf("%s: max body %d, want %d", tc.bs.addr, cfg.MaxBodyBytes, tc.bs.maxBody)
		}
	}
}
