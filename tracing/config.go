package tracing

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Config is what Setup needs. ParseEnv fills it from the standard OTEL_*
// variables; tests build it directly.
type Config struct {
	// ServiceName is the service.name resource attribute
	// (OTEL_SERVICE_NAME, else service.name in OTEL_RESOURCE_ATTRIBUTES).
	ServiceName string
	// ServiceVersion is service.version (OTEL_RESOURCE_ATTRIBUTES).
	ServiceVersion string
	// Attributes are the other resource attributes, in the order given.
	Attributes [][2]string
	// Endpoint is the full OTLP/HTTP traces URL (http://host:port/v1/traces).
	// Empty: no exporter, and Setup returns a no-op provider that costs
	// nothing (trace context still flows through it).
	Endpoint string
	// Headers are sent with every export (OTEL_EXPORTER_OTLP_HEADERS).
	Headers map[string]string
	// Timeout bounds one export (OTEL_EXPORTER_OTLP_TIMEOUT; default 10s).
	Timeout time.Duration
	// Sampler is one of the OTEL_TRACES_SAMPLER names; default
	// parentbased_always_on (every trace locally).
	Sampler string
	// Ratio is the sampler's argument for the traceidratio samplers, in
	// [0, 1] (OTEL_TRACES_SAMPLER_ARG; default 1).
	Ratio float64
	// Disabled turns tracing off (OTEL_SDK_DISABLED=true, or
	// OTEL_TRACES_EXPORTER=none).
	Disabled bool

	// QueueSize is how many ended spans wait for export before new ones
	// are dropped (and counted); default 4096.
	QueueSize int
	// BatchSize is the most spans one export carries; default 512.
	BatchSize int
	// Interval is the longest an ended span waits for a batch; default 1s.
	Interval time.Duration
}

// Samplers that ParseEnv accepts (the OpenTelemetry specification's
// names).
var Samplers = []string{"always_on", "always_off", "traceidratio",
	"parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio"}

// ParseEnv reads the standard OpenTelemetry variables from env (the
// OTEL_* subset of a process's environment):
//
//   - OTEL_SDK_DISABLED, OTEL_TRACES_EXPORTER (otlp or none)
//   - OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES (k=v,k2=v2; values may be
//     percent-encoded; service.version is the version that served a span)
//   - OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (used as is) or
//     OTEL_EXPORTER_OTLP_ENDPOINT (/v1/traces appended)
//   - OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL: only http/protobuf
//   - OTEL_EXPORTER_OTLP_(TRACES_)HEADERS, OTEL_EXPORTER_OTLP_(TRACES_)TIMEOUT (ms)
//   - OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG
//
// service is the name used when neither variable names one. A value that
// is set but cannot take effect is an error naming the variable: a sampler
// or protocol this package does not implement, a malformed URL or number.
func ParseEnv(env map[string]string, service string) (Config, error) {
	c := Config{ServiceName: service, Sampler: "parentbased_always_on", Ratio: 1}
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s=%q: %s", name, env[name], fmt.Sprintf(format, args...)))
	}
	if v := strings.TrimSpace(env["OTEL_SDK_DISABLED"]); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			bad("OTEL_SDK_DISABLED", "want true or false")
		}
		c.Disabled = b
	}
	switch v := strings.TrimSpace(env["OTEL_TRACES_EXPORTER"]); v {
	case "", "otlp":
	case "none":
		c.Disabled = true
	default:
		bad("OTEL_TRACES_EXPORTER", "want otlp or none")
	}
	if v := env["OTEL_RESOURCE_ATTRIBUTES"]; strings.TrimSpace(v) != "" {
		attrs, err := parsePairs(v)
		if err != nil {
			bad("OTEL_RESOURCE_ATTRIBUTES", "%v", err)
		}
		for _, kv := range attrs {
			switch kv[0] {
			case "service.name":
				c.ServiceName = kv[1]
			case "service.version":
				c.ServiceVersion = kv[1]
			default:
				c.Attributes = append(c.Attributes, kv)
			}
		}
	}
	if v := strings.TrimSpace(env["OTEL_SERVICE_NAME"]); v != "" {
		c.ServiceName = v
	}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if v := strings.TrimSpace(env[name]); v != "" {
			if v != "http/protobuf" {
				bad(name, "only http/protobuf is supported")
			}
			break
		}
	}
	if v := strings.TrimSpace(env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]); v != "" {
		if err := checkURL(v); err != nil {
			bad("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "%v", err)
		}
		c.Endpoint = v
	} else if v := strings.TrimSpace(env["OTEL_EXPORTER_OTLP_ENDPOINT"]); v != "" {
		if err := checkURL(v); err != nil {
			bad("OTEL_EXPORTER_OTLP_ENDPOINT", "%v", err)
		}
		c.Endpoint = strings.TrimRight(v, "/") + "/v1/traces"
	}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"} {
		if v := env[name]; strings.TrimSpace(v) != "" {
			pairs, err := parsePairs(v)
			if err != nil {
				bad(name, "%v", err)
			}
			c.Headers = map[string]string{}
			for _, kv := range pairs {
				c.Headers[kv[0]] = kv[1]
			}
			break
		}
	}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"} {
		if v := strings.TrimSpace(env[name]); v != "" {
			ms, err := strconv.Atoi(v)
			if err != nil || ms <= 0 {
				bad(name, "want a positive number of milliseconds")
			}
			c.Timeout = time.Duration(ms) * time.Millisecond
			break
		}
	}
	if v := strings.TrimSpace(env["OTEL_TRACES_SAMPLER"]); v != "" {
		ok := false
		for _, s := range Samplers {
			ok = ok || s == v
		}
		if !ok {
			bad("OTEL_TRACES_SAMPLER", "want one of %s", strings.Join(Samplers, ", "))
		}
		c.Sampler = v
	}
	if v := strings.TrimSpace(env["OTEL_TRACES_SAMPLER_ARG"]); v != "" {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || r < 0 || r > 1 {
			bad("OTEL_TRACES_SAMPLER_ARG", "want a ratio between 0 and 1")
		}
		c.Ratio = r
	}
	return c, errors.Join(errs...)
}

func checkURL(v string) error {
	u, err := url.Parse(v)
	if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return errors.New("want http://host:port or https://host:port")
	}
	return nil
}

// parsePairs reads the k=v,k2=v2 lists of OTEL_RESOURCE_ATTRIBUTES and
// OTEL_EXPORTER_OTLP_HEADERS (W3C Baggage octets; values percent-decoded).
func parsePairs(s string) ([][2]string, error) {
	var out [][2]string
	for i, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		k, v, ok := strings.Cut(item, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("item %d (%q): want key=value", i+1, item)
		}
		dv, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("item %d (%q): bad percent-encoding", i+1, item)
		}
		out = append(out, [2]string{k, dv})
	}
	return out, nil
}
