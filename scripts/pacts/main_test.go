package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/flotilla-ci/flotilla/contract"
)

// consumer is one consumer test: a pact of web with provider, declaring
// GET /<path> for each path, which the "client" then calls.
type consumer struct {
	provider string
	paths    []string
}

// fakeTests stands in for `go test`: each consumer test runs for real
// (mock server, pact written through FLOTILLA_PACT_DIR=out), the tests of
// different packages in parallel.
func fakeTests(t *testing.T, packages ...[]consumer) func(context.Context, string) error {
	return func(_ context.Context, out string) error {
		t.Setenv(contract.EnvPactDir, out)
		var wg sync.WaitGroup
		for _, pkg := range packages {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for _, c := range pkg {
					p := contract.NewConsumerPact(contract.Config{Consumer: "web", Provider: c.provider})
					for _, path := range c.paths {
						p.AddInteraction().Given(path + " exists").UponReceiving("a request for " + path).
							WithRequest(contract.Req{Method: "GET", Path: "/" + path}).
							WillRespondWith(contract.Resp{Status: 200})
					}
					p.Run(t, func(base string) error {
						for _, path := range c.paths {
							resp, err := http.Get(base + "/" + path)
							if err != nil {
								return err
							}
							_ = resp.Body.Close()
						}
						return nil
					})
				}
			}()
		}
		wg.Wait()
		return nil
	}
}

func files(t *testing.T, dir string) map[string]string {
	t.Helper()
	got := map[string]string{}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		got[e.Name()] = string(b)
	}
	return got
}

func descriptions(t *testing.T, path string) []string {
	t.Helper()
	p, err := contract.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, in := range p.Interactions {
		out = append(out, in.Description)
	}
	return out
}

type result struct {
	err            error
	stdout, stderr string
}

func runWith(t *testing.T, root string, check bool, test func(context.Context, string) error) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), options{root: root, dir: "pacts", check: check, test: test, stdout: &stdout, stderr: &stderr})
	return result{err, stdout.String(), stderr.String()}
}

// A run that no longer exercises an interaction gives a pact without it,
// and a pact no test writes any more leaves pacts/.
func TestRegenerateKeepsOnlyWhatTheRunDeclared(t *testing.T) {
	root := t.TempDir()
	first := fakeTests(t,
		[]consumer{{"order", []string{"orders", "refunds"}}, {"stock", []string{"stock"}}},
		[]consumer{{"order", []string{"carts"}}}, // another package, the same pact
	)
	if r := runWith(t, root, false, first); r.err != nil {
		t.Fatal(r.err)
	}
	pacts := filepath.Join(root, "pacts")
	if diff := cmp.Diff([]string{"a request for carts", "a request for orders", "a request for refunds"}, descriptions(t, filepath.Join(pacts, "web-order.json"))); diff != "" {
		t.Fatalf("first run (-want +got):\n%s", diff)
	}

	// The consumer stopped asking for refunds and for stock.
	second := fakeTests(t, []consumer{{"order", []string{"orders"}}}, []consumer{{"order", []string{"carts"}}})
	r := runWith(t, root, false, second)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if diff := cmp.Diff([]string{"a request for carts", "a request for orders"}, descriptions(t, filepath.Join(pacts, "web-order.json"))); diff != "" {
		t.Errorf("after the second run (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(filepath.Join(pacts, "web-stock.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("web-stock.json, no longer written by any test, is still there (%v)", err)
	}
	for _, want := range []string{
		`pacts/web-order.json differs from what the consumer tests write:`,
		`- interaction "a request for refunds" (given "refunds exists"): no test declares it any more`,
		`pacts/web-stock.json: no consumer test writes it any more`,
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}

	// The same tests again, in whatever order the packages finish: no change.
	before := files(t, pacts)
	if r := runWith(t, root, false, second); r.err != nil || !strings.Contains(r.stdout, "pacts/ is up to date: 1 pact(s)") {
		t.Fatalf("rerun: %v\n%s", r.err, r.stdout)
	}
	if diff := cmp.Diff(before, files(t, pacts)); diff != "" {
		t.Errorf("a rerun changed pacts/ (-before +after):\n%s", diff)
	}
}

func TestCheckNamesTheFileAndTheCommand(t *testing.T) {
	root := t.TempDir()
	declared := fakeTests(t, []consumer{{"order", []string{"orders", "refunds"}}})
	if r := runWith(t, root, false, declared); r.err != nil {
		t.Fatal(r.err)
	}
	pacts := filepath.Join(root, "pacts")
	if r := runWith(t, root, true, declared); r.err != nil {
		t.Fatalf("check of current pacts: %v\n%s", r.err, r.stderr)
	}

	before := files(t, pacts)
	r := runWith(t, root, true, fakeTests(t, []consumer{{"order", []string{"orders", "carts"}}, {"stock", []string{"stock"}}}))
	if r.err == nil {
		t.Fatal("check of stale pacts passed")
	}
	if want := "pacts/ differs from what the consumer tests write (2 file(s) above): run `make pacts` and commit pacts/"; r.err.Error() != want {
		t.Errorf("error %q, want %q", r.err, want)
	}
	for _, want := range []string{
		`pacts/web-order.json differs from what the consumer tests write:`,
		`- interaction "a request for refunds" (given "refunds exists"): no test declares it any more`,
		`+ interaction "a request for carts" (given "carts exists"): declared by the tests, not in the file`,
		`pacts/web-stock.json: missing; the consumer tests write it`,
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("report lacks %q:\n%s", want, r.stderr)
		}
	}
	if diff := cmp.Diff(before, files(t, pacts)); diff != "" {
		t.Errorf("check changed pacts/ (-before +after):\n%s", diff)
	}
}

func TestCheckReportsAHandEditedFile(t *testing.T) {
	root := t.TempDir()
	declared := fakeTests(t, []consumer{{"order", []string{"orders"}}})
	if r := runWith(t, root, false, declared); r.err != nil {
		t.Fatal(r.err)
	}
	path := filepath.Join(root, "pacts", "web-order.json")
	b, _ := os.ReadFile(path)
	if err := os.WriteFile(path, bytes.Replace(b, []byte(`"status": 200`), []byte(`"status": 201`), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runWith(t, root, true, declared)
	if r.err == nil || !strings.Contains(r.stderr, `~ interaction "a request for orders" (given "orders exists"): declared differently`) {
		t.Fatalf("check of an edited pact: %v\n%s", r.err, r.stderr)
	}
	// Only the layout differs: the first differing line is named.
	if err := os.WriteFile(path, bytes.Replace(b, []byte("  "), []byte("\t"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	r = runWith(t, root, true, declared)
	if r.err == nil || !strings.Contains(r.stderr, "  line 2: the file has") {
		t.Fatalf("check of a re-indented pact: %v\n%s", r.err, r.stderr)
	}
}

func TestFailingTestsLeavePactsAlone(t *testing.T) {
	root := t.TempDir()
	if r := runWith(t, root, false, fakeTests(t, []consumer{{"order", []string{"orders"}}})); r.err != nil {
		t.Fatal(r.err)
	}
	pacts := filepath.Join(root, "pacts")
	before := files(t, pacts)
	for name, test := range map[string]func(context.Context, string) error{
		"tests fail": func(context.Context, string) error { return fmt.Errorf("exit status 1") },
		"no pact":    func(context.Context, string) error { return nil },
	} {
		for _, check := range []bool{false, true} {
			if r := runWith(t, root, check, test); r.err == nil || !strings.Contains(r.err.Error(), "pacts/ is left as it was") {
				t.Errorf("%s (check %v): %v", name, check, r.err)
			}
		}
	}
	if diff := cmp.Diff(before, files(t, pacts)); diff != "" {
		t.Errorf("pacts/ changed (-before +after):\n%s", diff)
	}
}
