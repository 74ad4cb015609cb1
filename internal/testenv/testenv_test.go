package testenv

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
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
