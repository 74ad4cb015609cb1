package testenv

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDefaultPort(t *testing.T) {
	for scheme, want := range map[string]string{"postgres": "5432", "redis": "6379", "nats": "4222", "http": "80"} {
		if got := defaultPort(scheme); got != want {
			t.Errorf("defaultPort(%q) = %q, want %q", scheme, got, want)
		}
	}
}

func TestLookupSkipsWhenUnset(t *testing.T) {
	t.Setenv("CI", "")
	t.Setenv("FLOTILLA_TEST_NOTHING", "")
	ran := false
	t.Run("inner", func(t *testing.T) {
		Lookup(t, "FLOTILLA_TEST_NOTHING")
		ran = true
	})
	if ran {
		t.Fatal("Lookup returned for an unset variable; want a skip")
	}
}

// A failing helper fails the test that calls it, so the helpers' failures
// are checked in a child process: this test binary, run again with
// childMode set, runs TestChild alone and the parent reads its verdict.
const (
	childMode = "FLOTILLA_TESTENV_CHILD" // lookup, server or binary
	childVar  = "FLOTILLA_TEST_HARNESS"  // the variable the child's helper reads
)

// TestChild is the child's body; on its own it does nothing.
func TestChild(t *testing.T) {
	var got string
	switch os.Getenv(childMode) {
	case "":
		t.Skip("run by the other tests of this file in a child process")
	case "lookup":
		got = Lookup(t, childVar)
	case "server":
		got = Server(t, childVar)
	case "binary":
		got = Binary(t, childVar)
	default:
		t.Fatalf("unknown %s", childMode)
	}
	t.Logf("returned %q", got)
}

// runChild runs TestChild with only the given variables of ours set (CI
// and every FLOTILLA_TEST_* of the parent are removed), and returns its
// verdict (PASS, FAIL or SKIP) and output.
func runChild(t *testing.T, mode string, env ...string) (verdict, out string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestChild$", "-test.v", "-test.count=1")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CI=") && !strings.HasPrefix(kv, "FLOTILLA_TEST") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, childMode+"="+mode)
	cmd.Env = append(cmd.Env, env...)
	b, err := cmd.CombinedOutput()
	out = string(b)
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("run the child: %v", err)
	}
	for _, v := range []string{"FAIL", "SKIP", "PASS"} {
		if strings.Contains(out, "--- "+v+": TestChild") {
			verdict = v
		}
	}
	if (verdict == "FAIL") != (err != nil) {
		t.Fatalf("child verdict %q but exit %v:\n%s", verdict, err, out)
	}
	return verdict, out
}

func TestHelpersInAChildProcess(t *testing.T) {
	// A port nothing listens on: bound, then released.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	_ = l.Close()
	// And one something listens on.
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = up.Close() })
	go func() {
		for {
			c, err := up.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		name, mode string
		env        []string
		verdict    string
		want       string // in the child's output
	}{
		{"unset skips, naming the variable", "lookup", nil,
			"SKIP", childVar + " not set: skipping"},
		{"unset under CI=true fails, naming the variable", "lookup", []string{"CI=true"},
			"FAIL", childVar + " is not set, and CI=true"},
		{"blank under CI=true fails", "lookup", []string{"CI=true", childVar + "=  "},
			"FAIL", childVar + " is not set, and CI=true"},
		{"only CI=true turns a skip into a failure", "lookup", []string{"CI=1"},
			"SKIP", childVar + " not set"},
		{"set under CI=true returns the value", "lookup", []string{"CI=true", childVar + "=x"},
			"PASS", `returned "x"`},
		{"a server unset under CI=true fails", "server", []string{"CI=true"},
			"FAIL", childVar + " is not set, and CI=true"},
		{"a set server that does not answer fails, not skips", "server", []string{childVar + "=postgres://" + closed + "/db"},
			"FAIL", childVar + `="postgres://` + closed + `/db" is set but its server does not answer`},
		{"a set server that does not answer fails under CI=true too", "server", []string{"CI=true", childVar + "=nats://" + closed},
			"FAIL", "is set but its server does not answer"},
		{"a set value that is not a URL fails", "server", []string{childVar + "=" + closed},
			"FAIL", childVar + `="` + closed + `": want a URL with a host`},
		{"a server that answers passes", "server", []string{childVar + "=redis://" + up.Addr().String() + "/0"},
			"PASS", `returned "redis://` + up.Addr().String() + `/0"`},
		{"a binary that is not there fails", "binary", []string{childVar + "=/nonexistent/pact"},
			"FAIL", childVar + `="/nonexistent/pact" is set but is not an executable`},
		{"a binary unset under CI=true fails", "binary", []string{"CI=true"},
			"FAIL", childVar + " is not set, and CI=true"},
		{"a binary that is there passes", "binary", []string{childVar + "=" + exe},
			"PASS", "returned"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			verdict, out := runChild(t, tt.mode, tt.env...)
			if verdict != tt.verdict || !strings.Contains(out, tt.want) {
				t.Errorf("child %s with %q: %s, want %s with a line containing %q; output:\n%s",
					tt.mode, tt.env, verdict, tt.verdict, tt.want, out)
			}
		})
	}
}

// The announced list (All, what `make` and the README name) is exactly the
// variables some package reads.
func TestAllIsWhatTheCodeReads(t *testing.T) {
	root, err := ModuleRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	readers, err := Readers(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range All {
		if len(readers[v]) == 0 {
			t.Errorf("%s is in testenv.All but no package reads it: take it out until a suite does", v)
		}
	}
	for v, dirs := range readers {
		if !slices.Contains(All, v) {
			t.Errorf("%s is read by %s but is not in testenv.All: add it, so make and the README announce it", v, strings.Join(dirs, ", "))
		}
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	named := map[string]bool{}
	for _, v := range regexp.MustCompile(`FLOTILLA_TEST_[A-Z0-9_]+`).FindAllString(string(readme), -1) {
		named[v] = true
		if !slices.Contains(All, v) {
			t.Errorf("README.md names %s, which no suite reads", v)
		}
	}
	for _, v := range All {
		if !named[v] {
			t.Errorf("README.md does not name %s, which suites read", v)
		}
	}
}

func TestReadersFindsConstantsAndLiterals(t *testing.T) {
	root := t.TempDir()
	write := func(name, src string) {
		t.Helper()
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	src, err := os.ReadFile("testenv.go")
	if err != nil {
		t.Fatal(err)
	}
	write("go.mod", "module github.com/flotilla-ci/flotilla\n")
	write("internal/testenv/testenv.go", string(src))
	write("a/a_test.go", `package a
import te "github.com/flotilla-ci/flotilla/internal/testenv"
var _ = te.Redis
var _ = te.All
`)
	write("b/b.go", `package b
import "os"
var _ = os.Getenv("FLOTILLA_TEST_POSTGRES") + "FLOTILLA_TEST_POSTGRES is not set"
`)
	write("c/c_test.go", `package c
import "github.com/flotilla-ci/flotilla/internal/testenv"
var _, _ = testenv.Redis, testenv.NATS
`)
	write("d/testdata/x.go", `package x
var _ = "FLOTILLA_TEST_JAEGER"
`)
	write("tools/go.mod", "module tools\n")
	write("tools/t.go", `package t
var _ = "FLOTILLA_TEST_PROMETHEUS"
`)
	got, err := Readers(root)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{Redis: {"a", "c"}, Postgres: {"b"}, NATS: {"c"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Readers (-want +got):\n%s", diff)
	}
}
