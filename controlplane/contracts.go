package controlplane

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/flotilla-ci/flotilla/broker"
	"github.com/flotilla-ci/flotilla/broker/client"
	"github.com/flotilla-ci/flotilla/deploy"
)

// Contracts is what the contract gate does before a release, so the broker
// answers can-i-deploy from data (the Pact workflow, run by the platform):
//
//  1. every service the release deploys is published under its source
//     version on Branch: a consumer with its pacts (the files its
//     consumer tests wrote to Pacts), any other service as a bare
//     version, so recording its deployment never fails;
//  2. every provider those pacts name, and every provider the release
//     deploys, is verified against the pacts that matter, the consumers
//     deployed in the environment and the ones on Branch (those being
//     released), and the results are published under the provider's
//     source version, unless the broker has results for every one of
//     those pacts already (a provider and pacts unchanged since the last
//     release verify nothing);
//  3. the gate then asks can-i-deploy for each service, wave by wave, as
//     the deployments are recorded.
//
// The verification is the provider's own: Verify runs its Go test
// (TestContractProvider, the same test CI runs) with the broker's
// variables, against the real service on SQLite with its provider
// states. A verification that cannot run (a test that does not build)
// publishes nothing: the gate then stays closed for the services that
// need it, naming why.
type Contracts struct {
	// Pacts is the directory of the pact files (pacts/ of the
	// repository). Required.
	Pacts string
	// BrokerURL is the broker's base URL, for the verifications.
	BrokerURL string
	// Branch is the branch versions are published on (the git branch;
	// default "local").
	Branch string
	// Source returns a service's source version, for providers the
	// release does not deploy (deploy.Versioner's Source).
	Source func(ctx context.Context, service string) (string, error)
	// Verify runs provider's verification against the broker, publishing
	// results for version. Default: GoTestVerifier.
	Verify func(ctx context.Context, req VerifyRequest) error
	// Parallel bounds the verifications run at once (default 2).
	Parallel int
}

// VerifyRequest asks for one provider version's verification.
type VerifyRequest struct {
	Provider, Version, Branch string
	// Broker is the broker's base URL; Selectors the consumer version
	// selectors of the pacts to verify.
	Broker    string
	Selectors []map[string]any
}

// GoTestVerifier returns a Verify that runs the provider's verification
// test, `go test ./<dir> -run ^TestContractProvider$ -count=1` in root,
// with the shop's broker variables (shop/shoptest/shoppact): dir is the
// first of the provider's manifest paths, found by dirOf.
func GoTestVerifier(root string, dirOf func(provider string) (string, error)) func(ctx context.Context, req VerifyRequest) error {
	return func(ctx context.Context, req VerifyRequest) error {
		dir, err := dirOf(req.Provider)
		if err != nil {
			return err
		}
		sel, err := json.Marshal(req.Selectors)
		if err != nil {
			return err
		}
		cmd := exec.CommandContext(ctx, "go", "test", "./"+filepath.ToSlash(dir), "-run", "^TestContractProvider$", "-count=1")
		cmd.Dir = root
		cmd.Env = append(os.Environ(),
			"FLOTILLA_BROKER_URL="+req.Broker,
			"FLOTILLA_BROKER_TOKEN=",
			"FLOTILLA_PROVIDER_VERSION="+req.Version,
			"FLOTILLA_PROVIDER_BRANCH="+req.Branch,
			"FLOTILLA_CONSUMER_VERSION_SELECTORS="+string(sel),
			"FLOTILLA_ENABLE_PENDING=false",
			"FLOTILLA_INCLUDE_WIP_PACTS_SINCE=",
			"FLOTILLA_PUBLISH_VERIFICATION_RESULTS=true",
		)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return &VerifyError{Provider: req.Provider, Err: err, Output: out.String()}
		}
		return nil
	}
}

// VerifyError is a verification run that failed: a provider that broke a
// pact (its results are published all the same), or a test that did not
// build or run.
type VerifyError struct {
	Provider string
	Err      error
	Output   string
}

func (e *VerifyError) Error() string {
	return fmt.Sprintf("the verification of %s failed (%v): %s", e.Provider, e.Err, tail(e.Output, 12))
}

func (e *VerifyError) Unwrap() error { return e.Err }

// tail is the last n lines of s, on one line.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// pactFile is one pact of Contracts.Pacts.
type pactFile struct {
	path               string
	consumer, provider string
	content            []byte
}

// readPacts reads the pact files of dir; a file that is not a pact is an
// error naming it.
func readPacts(dir string) ([]pactFile, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil, nil // a repository without pacts: every service is published bare
	} else if err != nil {
		return nil, fmt.Errorf("pacts: %w", err)
	}
	var out []pactFile
	var errs []error
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var p struct {
			Consumer, Provider struct{ Name string }
		}
		if err := json.Unmarshal(b, &p); err != nil {
			errs = append(errs, fmt.Errorf("%s: not a pact: %w", f, err))
			continue
		}
		if p.Consumer.Name == "" || p.Provider.Name == "" {
			errs = append(errs, fmt.Errorf("%s: not a pact: it names no consumer.name or provider.name", f))
			continue
		}
		out = append(out, pactFile{path: f, consumer: p.Consumer.Name, provider: p.Provider.Name, content: b})
	}
	return out, errors.Join(errs...)
}

// prepared is what the last Prepare found, for Check's reasons.
type prepared struct {
	mu       sync.Mutex
	problems map[string]string // provider → why its verification has no results
	release  map[string]string // service → source version, of the release's services
}

func (p *prepared) released(service string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.release[service]
}

func (p *prepared) set(provider, problem string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.problems == nil {
		p.problems = map[string]string{}
	}
	p.problems[provider] = problem
}

func (p *prepared) of(provider string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.problems[provider]
}

// Prepare implements deploy.Preparer: the release's publications and
// verifications (see Contracts). Without Contracts it does nothing.
func (g *CanIDeploy) Prepare(ctx context.Context, req deploy.PrepareRequest) error {
	c := g.Contracts
	if c == nil {
		return nil
	}
	g.state.mu.Lock()
	g.state.problems, g.state.release = nil, nil
	g.state.mu.Unlock()
	env := g.Environment
	if env == "" {
		env = req.Environment
	}
	branch := c.Branch
	if branch == "" {
		branch = "local"
	}
	progress := req.Progress
	if progress == nil {
		progress = func(string, string) {}
	}
	pacts, err := readPacts(c.Pacts)
	if err != nil {
		return err
	}
	source := map[string]string{} // service → source version, for the plan's
	deploying := map[string]bool{}
	for _, w := range req.Plan.Waves {
		for _, it := range w {
			source[it.Service] = it.Spec.Source
			if it.Action != deploy.ActionUnchanged {
				deploying[it.Service] = true
			}
		}
	}
	release := map[string]string{}
	for s := range deploying {
		release[s] = source[s]
	}
	g.state.mu.Lock()
	g.state.release = release
	g.state.mu.Unlock()
	versionOf := func(service string) (string, error) {
		if v := source[service]; v != "" {
			return v, nil
		}
		if c.Source == nil {
			return "", fmt.Errorf("no source version for %s", service)
		}
		v, err := c.Source(ctx, service)
		if err == nil {
			source[service] = v
		}
		return v, err
	}

	// 1. Publish what the release deploys.
	var names []string
	for s := range deploying {
		names = append(names, s)
	}
	sort.Strings(names)
	for _, s := range names {
		var contracts []broker.PublishContract
		for _, p := range pacts {
			if p.consumer == s {
				contracts = append(contracts, broker.PublishContract{ConsumerName: s, ProviderName: p.provider, Specification: "pact",
					ContentType: "application/json", Content: base64.StdEncoding.EncodeToString(p.content)})
			}
		}
		if len(contracts) == 0 {
			err := g.Broker.Send(ctx, http.MethodPut, "/pacticipants/"+url.PathEscape(s)+"/branches/"+url.PathEscape(branch)+"/versions/"+url.PathEscape(source[s]), map[string]any{}, nil)
			if err != nil {
				return fmt.Errorf("create version %s of %s in the broker: %w", source[s], s, err)
			}
			continue
		}
		if _, err := g.Broker.Publish(ctx, broker.PublishRequest{PacticipantName: s, PacticipantVersionNumber: source[s], Branch: branch, Contracts: contracts}); err != nil {
			return fmt.Errorf("publish the pacts of %s %s: %w", s, source[s], err)
		}
		progress(s, fmt.Sprintf("published %d pact(s) as %s", len(contracts), source[s]))
	}

	// 2. The providers to verify, with the consumers released now.
	released := map[string][]string{} // provider → consumers of this release with a pact with it
	for _, p := range pacts {
		if deploying[p.consumer] {
			released[p.provider] = append(released[p.provider], p.consumer)
		}
	}
	for _, p := range pacts {
		if deploying[p.provider] {
			if _, ok := released[p.provider]; !ok {
				released[p.provider] = nil
			}
		}
	}
	var providers []string
	for p := range released {
		providers = append(providers, p)
	}
	sort.Strings(providers)
	type job struct{ provider, version string }
	var jobs []job
	for _, p := range providers {
		v, err := versionOf(p)
		if err != nil {
			g.state.set(p, err.Error())
			continue
		}
		need, err := g.needsVerification(ctx, p, v, env, released[p], source)
		if err != nil {
			return err
		}
		if need {
			jobs = append(jobs, job{p, v})
		}
	}
	verify := c.Verify
	if verify == nil {
		return errors.New("contracts: no verifier")
	}
	par := c.Parallel
	if par <= 0 {
		par = 2
	}
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			progress(j.provider, fmt.Sprintf("verifying the pacts of its consumers against %s %s", j.provider, j.version))
			err := verify(ctx, VerifyRequest{Provider: j.provider, Version: j.version, Branch: branch, Broker: c.BrokerURL,
				Selectors: []map[string]any{{"deployedOrReleased": true, "environment": env}, {"branch": branch}}})
			// A failed run may still have published results (a broken
			// pact): the matrix decides. What published nothing is
			// named in the gate's reason.
			missing, merr := g.needsVerification(ctx, j.provider, j.version, env, released[j.provider], source)
			switch {
			case merr != nil:
				g.state.set(j.provider, merr.Error())
			case missing && err != nil:
				g.state.set(j.provider, err.Error())
			case missing:
				g.state.set(j.provider, fmt.Sprintf("the verification of %s %s published no results for some of its consumers' pacts", j.provider, j.version))
			}
			msg := "verified: results published"
			if err != nil {
				msg = "verified: some pacts failed, results published"
				if missing {
					msg = "the verification could not run: " + tail(err.Error(), 3)
				}
			}
			progress(j.provider, msg)
		})
	}
	wg.Wait()
	return ctx.Err()
}

// needsVerification reports whether provider's version lacks results for
// a pact that matters: of a consumer deployed in env, or of one of the
// release's consumers at its source version.
func (g *CanIDeploy) needsVerification(ctx context.Context, provider, version, env string, consumers []string, source map[string]string) (bool, error) {
	var v map[string]any
	err := g.Broker.Get(ctx, "/pacticipants/"+url.PathEscape(provider)+"/versions/"+url.PathEscape(version), &v)
	if client.IsNotFound(err) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("ask the broker about %s %s: %w", provider, version, err)
	}
	queries := []broker.MatrixQuery{{Selectors: []broker.Selector{{Pacticipant: provider, Version: version}}, Target: broker.Target{Environment: env}, LatestBy: "cvpv"}}
	for _, c := range consumers {
		queries = append(queries, broker.MatrixQuery{Selectors: []broker.Selector{{Pacticipant: c, Version: source[c]}, {Pacticipant: provider, Version: version}}, LatestBy: "cvpv"})
	}
	for i, q := range queries {
		m, err := g.Broker.Matrix(ctx, q)
		if err != nil {
			return false, fmt.Errorf("the broker's matrix for %s %s: %w", provider, version, err)
		}
		if i > 0 && len(m.Rows) == 0 {
			return true, nil
		}
		for _, r := range m.Rows {
			if r.Provider.Name == provider && r.VerificationResult == nil {
				return true, nil
			}
		}
	}
	return false, nil
}
