package kit

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/flotilla-ci/flotilla/tracing"
)

// Config is a service's configuration. Mains fill it from flags and the
// environment with Load; tests build it directly.
type Config struct {
	Service     string            // e.g. "order-service"
	Addr        string            // listen address; "127.0.0.1:0" picks a port
	DatabaseURL string            // DATABASE_URL: SQLite path or postgres:// DSN
	BusURL      string            // BUS_URL: nats://host:port
	BusStream   string            // BUS_STREAM: JetStream stream (default FLOTILLA_EVENTS)
	RegistryURL string            // REGISTRY_URL: the schema registry; empty encodes with id 0
	Deps        map[string]string // <DEP>_URL per synchronous dependency, by short name ("user")
	OTEL        map[string]string // OTEL_* variables, passed to tracing
	Drain       time.Duration     // DRAIN_TIMEOUT: SIGTERM waits this long for in-flight requests
	// CallTimeout bounds each call to another service (CALL_TIMEOUT,
	// default 10s); one that outlasts it answers 504 upstream_timeout.
	CallTimeout time.Duration
	Faults      Faults     // FAULTS
	LogLevel    slog.Level // LOG_LEVEL
	// DBMaxConns caps the service's database connections (DB_MAX_CONNS);
	// 0 means 8 on PostgreSQL (ten services share one server's
	// max_connections) and sqldb's default on SQLite.
	DBMaxConns int
	// Identity is the directory of the service's SVID and bundle
	// (FLOTILLA_IDENTITY_DIR): when set, its listener speaks mutual TLS
	// only (MTLS strict) or beside plaintext (permissive), letting in
	// the Peers (FLOTILLA_PEERS, SPIFFE IDs; empty: any of the trust
	// domain), and its calls to dependencies are made over mutual TLS to
	// MeshID (FLOTILLA_MESH_ID).
	Identity string
	MTLS     string
	Peers    []string
	MeshID   string

	// Logger defaults to JSON on stderr at LogLevel; the App stamps its
	// records with the trace_id and span_id of their context.
	Logger *slog.Logger
	// Tracing traces the service; nil sets it up from OTEL (the
	// standard OTEL_* variables: no OTEL_EXPORTER_OTLP_ENDPOINT, no
	// tracing), and the App shuts it down on Close. A provider given here
	// (tests: one recorder for several services) is the caller's to shut
	// down.
	Tracing *tracing.Provider
	// Crash is called at an armed crash point; it must not return. The
	// default exits the process with status 70.
	Crash func(point string)
	// FaultDraw returns a number in [0, 1) for each request the
	// http.error_rate fault may fail (the request fails when it is below
	// the rate). It must be safe for concurrent use; the default is
	// math/rand/v2's Float64. Tests set a seeded source.
	FaultDraw func() float64
}

// DefaultConfig returns the defaults for a service.
func DefaultConfig(service string) Config {
	return Config{Service: service, Addr: "127.0.0.1:0", Drain: 10 * time.Second, CallTimeout: 10 * time.Second, Deps: map[string]string{}, OTEL: map[string]string{}}
}

// Validate reports every problem at once.
func (c Config) Validate(deps []string) error {
	var errs []error
	if c.Service == "" {
		errs = append(errs, errors.New("service name is empty"))
	}
	if c.BusURL == "" {
		errs = append(errs, errors.New("BUS_URL is not set: want nats://host:port"))
	}
	for _, d := range deps {
		u := c.Deps[d]
		if u == "" {
			errs = append(errs, fmt.Errorf("%s is not set: want the base URL of %s-service", depEnv(d), d))
			continue
		}
		if p, err := url.Parse(u); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			errs = append(errs, fmt.Errorf("%s=%q: want http://host:port", depEnv(d), u))
		}
	}
	if c.Drain < 0 {
		errs = append(errs, errors.New("DRAIN_TIMEOUT is negative"))
	}
	return errors.Join(errs...)
}

func depEnv(dep string) string { return strings.ToUpper(dep) + "_URL" }

// Load reads the configuration of service from flags (args) and the
// environment (getenv), flags winning. deps are the short names of its
// synchronous dependencies; each is read from <DEP>_URL or -<dep>-url.
func Load(service string, deps []string, args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	c := DefaultConfig(service)
	env := func(k, def string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return def
	}
	fs := flag.NewFlagSet(service, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Addr, "addr", env("ADDR", ":"+env("PORT", "8080")), "listen address (ADDR, or :PORT)")
	fs.StringVar(&c.DatabaseURL, "database-url", env("DATABASE_URL", "data/"+service+".db"), "SQLite path or postgres:// DSN (DATABASE_URL)")
	fs.StringVar(&c.BusURL, "bus-url", getenv("BUS_URL"), "event bus, nats://host:port (BUS_URL)")
	fs.StringVar(&c.BusStream, "bus-stream", getenv("BUS_STREAM"), "JetStream stream name (BUS_STREAM)")
	fs.StringVar(&c.RegistryURL, "registry-url", getenv("REGISTRY_URL"), "schema registry base URL (REGISTRY_URL)")
	drain := fs.String("drain-timeout", env("DRAIN_TIMEOUT", "10s"), "how long SIGTERM waits for in-flight requests (DRAIN_TIMEOUT)")
	callTimeout := fs.String("call-timeout", env("CALL_TIMEOUT", "10s"), "how long a call to another service may take (CALL_TIMEOUT)")
	faults := fs.String("faults", getenv("FAULTS"), "fault flags, e.g. payment.failure_rate=0.2,crash=outbox.after_publish@3 (FAULTS)")
	level := fs.String("log-level", env("LOG_LEVEL", "info"), "debug, info, warn or error (LOG_LEVEL)")
	maxConns := fs.String("db-max-conns", env("DB_MAX_CONNS", "0"), "database connection cap; 0 = default (DB_MAX_CONNS)")
	depVals := map[string]*string{}
	for _, d := range deps {
		depVals[d] = fs.String(d+"-url", getenv(depEnv(d)), "base URL of "+d+"-service ("+depEnv(d)+")")
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var err error
	if c.Drain, err = time.ParseDuration(*drain); err != nil {
		return c, fmt.Errorf("DRAIN_TIMEOUT %q: want a duration such as 10s", *drain)
	}
	if c.CallTimeout, err = time.ParseDuration(*callTimeout); err != nil || c.CallTimeout <= 0 {
		return c, fmt.Errorf("CALL_TIMEOUT %q: want a positive duration such as 10s", *callTimeout)
	}
	if c.Faults, err = ParseFaults(*faults); err != nil {
		return c, fmt.Errorf("FAULTS: %w", err)
	}
	if c.DBMaxConns, err = strconv.Atoi(*maxConns); err != nil || c.DBMaxConns < 0 {
		return c, fmt.Errorf("DB_MAX_CONNS %q: want a connection count such as 8", *maxConns)
	}
	if err := c.LogLevel.UnmarshalText([]byte(*level)); err != nil {
		return c, fmt.Errorf("LOG_LEVEL %q: want debug, info, warn or error", *level)
	}
	c.Identity, c.MTLS, c.MeshID = getenv(EnvIdentityDir), getenv(EnvMTLS), getenv(EnvMeshID)
	for p := range strings.SplitSeq(getenv(EnvPeers), ",") {
		if p = strings.TrimSpace(p); p != "" {
			c.Peers = append(c.Peers, p)
		}
	}
	for d, v := range depVals {
		c.Deps[d] = strings.TrimRight(*v, "/")
	}
	for _, kv := range os.Environ() {
		if k, _, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "OTEL_") {
			c.OTEL[k] = getenv(k)
		}
	}
	return c, c.Validate(deps)
}

// Faults are the named switches that make a service misbehave on purpose,
// like the OpenTelemetry demo's feature flags. FAULTS is a comma-separated
// list of name=value:
//
//	http.error_rate=0.3        a 500 on this fraction of requests to every route but the
//	                           health and readiness probes (a bad version made on purpose)
//	http.latency=150ms         every route but the probes waits this long before answering
//	payment.failure_rate=0.2   payment declines this fraction of charges
//	payment.latency=300ms      payment waits this long before answering a charge
//	inventory.slow=50ms        inventory waits this long before each reservation
//	bus.publish_stall=2s       the outbox relay waits this long before each publish
//	bus.duplicate=true         the relay publishes every event twice (consumers must not care)
//	crash=POINT[@N]            exit the process the Nth time (default 1st) POINT is reached;
//	                           repeatable. Points: see CrashPoints.
type Faults struct {
	HTTPErrorRate      float64
	HTTPLatency        time.Duration
	PaymentFailureRate float64
	PaymentLatency     time.Duration
	InventorySlow      time.Duration
	PublishStall       time.Duration
	Duplicate          bool
	Crash              map[string]int // point -> the hit that crashes
}

// CrashPoints are the named places a process can be made to exit.
var CrashPoints = []string{
	"outbox.after_commit",        // a state change and its outbox row committed; relay has not run
	"outbox.after_publish",       // relay published a batch, before marking it sent
	"consumer.after_effect",      // a consumer committed its side effect, before the ack
	"saga.between_compensations", // order: the reservation released, the refund not yet done
	"saga.after_charge",          // order: payment charged, saga state not yet advanced
	"inventory.after_reserve",    // inventory: reservation committed, response not yet sent
	"payment.after_capture",      // payment: capture committed, response not yet sent
}

// ParseFaults parses the FAULTS syntax above.
func ParseFaults(s string) (Faults, error) {
	f := Faults{Crash: map[string]int{}}
	s = strings.TrimSpace(s)
	if s == "" {
		return f, nil
	}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		k, v, ok := strings.Cut(item, "=")
		if !ok {
			return f, fmt.Errorf("%q: want name=value", item)
		}
		var err error
		switch k {
		case "payment.failure_rate", "http.error_rate":
			r, err := strconv.ParseFloat(v, 64)
			if err != nil || !(r >= 0 && r <= 1) {
				return f, fmt.Errorf("%s=%q: want a number from 0 to 1", k, v)
			}
			if k == "http.error_rate" {
				f.HTTPErrorRate = r
			} else {
				f.PaymentFailureRate = r
			}
		case "payment.latency", "inventory.slow", "bus.publish_stall", "http.latency":
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				return f, fmt.Errorf("%s=%q: want a duration such as 200ms", k, v)
			}
			switch k {
			case "payment.latency":
				f.PaymentLatency = d
			case "inventory.slow":
				f.InventorySlow = d
			case "http.latency":
				f.HTTPLatency = d
			default:
				f.PublishStall = d
			}
		case "bus.duplicate":
			if f.Duplicate, err = strconv.ParseBool(v); err != nil {
				return f, fmt.Errorf("%s=%q: want true or false", k, v)
			}
		case "crash":
			point, nth, hasN := strings.Cut(v, "@")
			n := 1
			if hasN {
				if n, err = strconv.Atoi(nth); err != nil || n < 1 {
					return f, fmt.Errorf("crash=%q: want POINT@N with N ≥ 1", v)
				}
			}
			if !knownPoint(point) {
				return f, fmt.Errorf("crash=%q: unknown crash point; known: %s", v, strings.Join(CrashPoints, ", "))
			}
			f.Crash[point] = n
		default:
			known := []string{"http.error_rate", "http.latency", "payment.failure_rate", "payment.latency", "inventory.slow", "bus.publish_stall", "bus.duplicate", "crash"}
			sort.Strings(known)
			return f, fmt.Errorf("unknown fault %q; known: %s", k, strings.Join(known, ", "))
		}
	}
	return f, nil
}

func knownPoint(p string) bool {
	for _, k := range CrashPoints {
		if k == p {
			return true
		}
	}
	return false
}

// String renders faults in the FAULTS syntax (for child processes).
func (f Faults) String() string {
	var parts []string
	if f.HTTPErrorRate > 0 {
		parts = append(parts, "http.error_rate="+strconv.FormatFloat(f.HTTPErrorRate, 'g', -1, 64))
	}
	if f.HTTPLatency > 0 {
		parts = append(parts, "http.latency="+f.HTTPLatency.String())
	}
	if f.PaymentFailureRate > 0 {
		parts = append(parts, "payment.failure_rate="+strconv.FormatFloat(f.PaymentFailureRate, 'g', -1, 64))
	}
	if f.PaymentLatency > 0 {
		parts = append(parts, "payment.latency="+f.PaymentLatency.String())
	}
	if f.InventorySlow > 0 {
		parts = append(parts, "inventory.slow="+f.InventorySlow.String())
	}
	if f.PublishStall > 0 {
		parts = append(parts, "bus.publish_stall="+f.PublishStall.String())
	}
	if f.Duplicate {
		parts = append(parts, "bus.duplicate=true")
	}
	points := make([]string, 0, len(f.Crash))
	for p := range f.Crash {
		points = append(points, p)
	}
	sort.Strings(points)
	for _, p := range points {
		parts = append(parts, fmt.Sprintf("crash=%s@%d", p, f.Crash[p]))
	}
	return strings.Join(parts, ",")
}

// Client returns a client for the dependency dep (its short name, "cart")
// of the service (its full name, "cart-service"), bounded by CallTimeout.
func (c Config) Client(service, dep string) *Client {
	cl := NewClient(service, c.Deps[dep])
	if c.CallTimeout > 0 {
		cl.HTTP.Timeout = c.CallTimeout
	}
	return cl
}
