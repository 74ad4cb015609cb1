package controlplane_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/broker"
	"github.com/flotilla-ci/flotilla/broker/client"
	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/identity"
)

// The contract gate on a running platform: a repository with a provider
// (greeter-service), a consumer (web-service) and the pact the consumer's
// tests wrote. `flotilla up` publishes the pact, runs the provider's own
// verification test against the broker, records both deployments, and
// the broker holds the truth. Then the provider changes a field the
// consumer reads: its deploy is refused by can-i-deploy, and what the
// user sees names the consumer and the interaction; the old version
// keeps serving.
//
// The repository is a small module beside flotilla (it imports
// flotilla's contract verifier through a replace directive), so the test
// changes its code without touching flotilla's. It builds two tiny
// services and the provider's verification test twice.
func TestPlatformContractGateRefusesABreakingProvider(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a provider and a consumer, and their verification test")
	}
	started := time.Now()
	root := contractRepo(t)
	cfg := platformConfig(filepath.Join(root, "flotilla.yaml"), filepath.Join(root, ".flotilla"))
	// Its service is no shop/kit service and speaks no TLS: permissive
	// mode lets it in and the mesh and the probes speak plaintext to it.
	cfg.MTLS = identity.Permissive
	cfg.Demo = false
	var events []deploy.Event
	cfg.Events = func(e deploy.Event) { events = append(events, e) }
	info, stop := runPlatform(t, cfg)
	t.Logf("up in %v", info.Took.Round(time.Millisecond))

	ctx := context.Background()
	api := apiClient(t, info)
	hist, err := api.History(ctx, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	source := map[string]string{}
	for _, r := range hist {
		source[r.Service] = r.Spec.Source
		if r.Result != deploy.Succeeded || strings.Contains(r.Reason, "failed") {
			t.Errorf("history after up: %+v; want a succeeded deploy, recorded", r)
		}
	}
	verifying := false
	for _, e := range events {
		if e.Service == "greeter-service" && e.Step == deploy.StepGate && strings.Contains(e.Msg, "verified: results published") {
			verifying = true
		}
	}
	if !verifying {
		t.Errorf("up's progress never said greeter-service was verified: %+v", events)
	}

	// The broker holds the truth: web's pact verified by greeter, both
	// deployed in local.
	bc, err := client.New(info.Broker)
	if err != nil {
		t.Fatal(err)
	}
	m, err := bc.Matrix(ctx, broker.MatrixQuery{Selectors: []broker.Selector{{Pacticipant: "web-service", Version: source["web-service"]}},
		Target: broker.Target{Environment: "local"}, LatestBy: "cvpv"})
	if err != nil {
		t.Fatal(err)
	}
	if d := m.Summary.Deployable; d == nil || !*d || len(m.Rows) != 1 || m.Rows[0].Provider.VersionNumber() != source["greeter-service"] ||
		m.Rows[0].VerificationResult == nil || !m.Rows[0].VerificationResult.Success {
		t.Errorf("the broker's matrix for web-service %s in local: %+v %+v; want greeter-service %s deployed there, verified", source["web-service"], m.Summary, m.Rows, source["greeter-service"])
	}

	// The provider breaks the pact: "greeting" becomes "message".
	write(t, root, "greeter/greeter.go", strings.Replace(greeterSource, `"greeting"`, `"message"`, 1))
	events = nil
	var failed string
	rep, err := api.Deploy(ctx, deploy.Request{Services: []string{"greeter-service"}, Who: "e2e"}, func(e deploy.Event) {
		if e.Service == "greeter-service" && e.Step == deploy.StepFailed {
			failed = e.Msg
		}
	})
	if !errors.Is(err, deploy.ErrReleaseFailed) {
		t.Fatalf("deploying a provider that breaks its consumer's pact = %v; want the release refused", err)
	}
	t.Logf("refused: %s", failed)
	for _, want := range []string{"gate can-i-deploy is closed", "fails the pact of web-service " + source["web-service"], `interaction "a greeting for Ada"`, "greeting"} {
		if !strings.Contains(err.Error(), want) || !strings.Contains(failed, want) {
			t.Errorf("the refusal says\n  error: %v\n  progress: %s\nwant both to say %q", err, failed, want)
		}
	}
	old := versionOf(hist, "greeter-service")
	if oc := rep.Outcomes[0]; oc.Result != deploy.Failed || oc.Version == old {
		t.Errorf("outcome %+v, want greeter's new version failed", oc)
	}
	st, err := api.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st.Services {
		if s.Service == "greeter-service" && s.Stable != old {
			t.Errorf("greeter-service serves %s after the refused deploy, want its old version %s", s.Stable, old)
		}
	}
	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if left := processesUnder(t, cfg.Data); len(left) > 0 {
		t.Fatalf("processes left running: %v", left)
	}
	t.Logf("the whole test took %v", time.Since(started).Round(time.Millisecond))
}

func versionOf(hist []deploy.Record, service string) string {
	for _, r := range hist {
		if r.Service == service {
			return r.Version
		}
	}
	return ""
}

const greeterSource = `// Package greeter is the provider: GET /greeting/{name}.
package greeter

import (
	"encoding/json"
	"net/http"
)

// Handler serves the greeter.
func Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("GET /greeting/{name}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"greeting": "Hello, " + r.PathValue("name")})
	})
	return mux
}
`

// contractRepo writes the provider/consumer repository to a temp dir and
// returns it.
func contractRepo(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	flotilla, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	sum, err := os.ReadFile(filepath.Join(flotilla, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	// flotilla's requirements, so the module builds from the module cache
	// alone (no go mod tidy, which would look up its tests' modules).
	mod, err := os.ReadFile(filepath.Join(flotilla, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	var requires strings.Builder
	in := false
	for _, line := range strings.Split(string(mod), "\n") {
		switch {
		case strings.HasPrefix(line, "require ("):
			in = true
		case in && strings.TrimSpace(line) == ")":
			in = false
		case in && strings.TrimSpace(line) != "":
			requires.WriteString("require " + strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(line), "// indirect")) + "\n")
		case strings.HasPrefix(line, "require "):
			requires.WriteString(line + "\n")
		}
	}
	main := func(pkg string) string {
		return `// Command ` + pkg + ` serves on ADDR.
package main

import (
	"net/http"
	"os"

	"example.com/gateshop/` + pkg + `"
)

func main() {
	if err := http.ListenAndServe(os.Getenv("ADDR"), ` + pkg + `.Handler()); err != nil {
		os.Exit(1)
	}
}
`
	}
	files := map[string]string{
		"go.mod": "module example.com/gateshop\n\ngo 1.26.8\n\nrequire github.com/flotilla-ci/flotilla v0.0.0\n" + requires.String() +
			"\nreplace github.com/flotilla-ci/flotilla => " + flotilla + "\n",
		"go.sum": string(sum),
		"flotilla.yaml": `services:
  greeter-service:
    paths: [greeter, cmd/greeter]
    health: /ready
  web-service:
    paths: [web, cmd/web]
    health: /ready
    depends_on: [greeter-service]
`,
		"greeter/greeter.go":  greeterSource,
		"cmd/greeter/main.go": main("greeter"),
		"web/web.go": `// Package web is the consumer.
package web

import "net/http"

// Handler serves the web front.
func Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) })
	return mux
}
`,
		"cmd/web/main.go": main("web"),
		// What the consumer's tests wrote.
		"pacts/web-service-greeter-service.json": `{"consumer":{"name":"web-service"},"provider":{"name":"greeter-service"},
"interactions":[{"description":"a greeting for Ada","request":{"method":"GET","path":"/greeting/Ada"},
"response":{"status":200,"headers":{"Content-Type":"application/json"},"body":{"greeting":"Hello, Ada"}}}],
"metadata":{"pactSpecification":{"version":"3.0.0"}}}`,
		// The provider's verification, as the shop's: against the broker
		// the variables name, publishing the results.
		"greeter/contract_provider_test.go": `package greeter_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"testing"

	"example.com/gateshop/greeter"
	"github.com/flotilla-ci/flotilla/broker/client"
	"github.com/flotilla-ci/flotilla/contract"
)

func TestContractProvider(t *testing.T) {
	srv := httptest.NewServer(greeter.Handler())
	defer srv.Close()
	v := &contract.Verifier{Provider: "greeter-service", BaseURL: srv.URL, Sources: []contract.Source{contract.FileSource{Paths: []string{"../pacts"}}}}
	if u := os.Getenv("FLOTILLA_BROKER_URL"); u != "" {
		c, err := client.New(u)
		if err != nil {
			t.Fatal(err)
		}
		opts := client.VerificationOptions{Provider: "greeter-service", ProviderVersion: os.Getenv("FLOTILLA_PROVIDER_VERSION"), ProviderBranch: os.Getenv("FLOTILLA_PROVIDER_BRANCH")}
		if err := json.Unmarshal([]byte(os.Getenv("FLOTILLA_CONSUMER_VERSION_SELECTORS")), &opts.ConsumerVersionSelectors); err != nil {
			t.Fatal(err)
		}
		src, err := c.VerificationSource(opts)
		if err != nil {
			t.Fatal(err)
		}
		pub, err := c.ResultPublisher(opts)
		if err != nil {
			t.Fatal(err)
		}
		v.Sources, v.Publisher = []contract.Source{src}, pub
	}
	rep, err := v.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Errorf("the pacts fail: %+v", rep)
	}
}
`,
	}
	for name, body := range files {
		write(t, root, name, body)
	}
	vet := exec.Command("go", "vet", "./...")
	vet.Dir = root
	vet.Env = append(os.Environ(), "GOPROXY=off", "GOWORK=off")
	if out, err := vet.CombinedOutput(); err != nil {
		t.Fatalf("go vet in the test repository: %v\n%s", err, out)
	}
	return root
}

func write(t *testing.T, root, name, body string) {
	t.Helper()
	path := filepath.Join(root, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}
