// Package testenv gates the test suites that need a real external server
// (PostgreSQL, Redis, a NATS server, Prometheus, the Pact CLI, ...).
//
// Each server is named by one FLOTILLA_TEST_* variable. When the variable is
// unset the suite skips with one line naming it; when it is set, the server
// must be reachable, or the test fails: a set variable with an unreachable
// server is a broken environment, not a reason to skip. When CI=true every
// variable must be set, so CI can never skip a suite silently.
package testenv

import (
	"net"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The variables, one per external server.
const (
	Postgres   = "FLOTILLA_TEST_POSTGRES"   // a PostgreSQL DSN, postgres://...
	Redis      = "FLOTILLA_TEST_REDIS"      // a Redis URL, redis://...
	NATS       = "FLOTILLA_TEST_NATS"       // a NATS URL with JetStream, nats://...
	Pact       = "FLOTILLA_TEST_PACT"       // the pact CLI binary (@pact-foundation/pact-cli)
	Prometheus = "FLOTILLA_TEST_PROMETHEUS" // the prometheus binary (Debian package prometheus)
	Kube       = "FLOTILLA_TEST_KUBE"       // the directory of the test plane's binaries (testplane/build.sh)
	KafkaJS    = "FLOTILLA_TEST_KAFKAJS"    // a directory whose node_modules holds @kafkajs/confluent-schema-registry
	Chromium   = "FLOTILLA_TEST_CHROMIUM"   // the chromium binary the dashboard's browser tests drive (Debian package chromium)
	Jaeger     = "FLOTILLA_TEST_JAEGER"     // the jaeger v2 binary (built from tools/jaeger by .ci/run)
)

// All lists the variables some suite reads: what `make` (env-report) and
// the README announce. TestAllIsWhatTheCodeReads keeps it equal to what
// Readers finds in the module, so a variable joins it with the first suite
// that reads it.
var All = []string{Postgres, Redis, NATS, Pact, Prometheus, Kube, KafkaJS, Chromium, Jaeger}

// Lookup returns the variable's value. When it is unset the test is skipped
// with a line naming the variable, or fails when CI=true.
func Lookup(t testing.TB, name string) string {
	t.Helper()
	v := strings.TrimSpace(os.Getenv(name))
	if v != "" {
		return v
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not set, and CI=true: CI must run this suite against the real server", name)
	}
	t.Skipf("%s not set: skipping the suite that needs it", name)
	return ""
}

// Server returns the URL or DSN in the variable after checking that its
// host answers on TCP; an unreachable server fails the test.
func Server(t testing.TB, name string) string {
	t.Helper()
	v := Lookup(t, name)
	u, err := url.Parse(v)
	if err != nil || u.Host == "" {
		t.Fatalf("%s=%q: want a URL with a host (scheme://host:port/...)", name, v)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), defaultPort(u.Scheme))
	}
	c, err := net.DialTimeout("tcp", host, 3*time.Second)
	if err != nil {
		t.Fatalf("%s=%q is set but its server does not answer: %v", name, v, err)
	}
	_ = c.Close()
	return v
}

// Binary returns the executable named by the variable (a path, or a name
// looked up in PATH); a set variable naming nothing runnable fails the test.
func Binary(t testing.TB, name string) string {
	t.Helper()
	v := Lookup(t, name)
	p, err := exec.LookPath(v)
	if err != nil {
		t.Fatalf("%s=%q is set but is not an executable: %v", name, v, err)
	}
	return p
}

func defaultPort(scheme string) string {
	switch scheme {
	case "postgres", "postgresql":
		return "5432"
	case "redis", "rediss":
		return "6379"
	case "nats":
		return "4222"
	case "https":
		return "443"
	default:
		return "80"
	}
}
