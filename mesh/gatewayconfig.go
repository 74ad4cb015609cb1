package mesh

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// GatewayConfig configures the edge gateway. It is decoded strictly from
// YAML (or JSON) by ParseGatewayConfig, and encodes to JSON under the same
// names (durations as "30s"):
//
//	listen: 127.0.0.1:8480
//	jwt:
//	  jwks_url: http://127.0.0.1:8101/.well-known/jwks.json
//	  issuer: shop-user-service        # optional
//	  audience: shop                   # optional
//	rate_limit: {requests_per_second: 50, burst: 100}   # every route's default
//	routes:
//	  - path: /api/orders/**
//	    service: order-service
//	    rewrite: /orders               # optional: replaces the matched prefix
//	  - path: /api/products/**         # reads: anyone
//	    service: product-service
//	    methods: [GET, HEAD]
//	    public: true                   # no token needed
//	    rate_limit: {requests_per_second: 200, burst: 400}
//	  - path: /api/products/**         # every other method: a token
//	    service: product-service
//
// A request goes to the most specific route that matches both its path
// and its method: the longest path first, then, on the same path, a route
// that lists the method over one that lists none (as Kong's `methods` and
// Istio's VirtualService method matches). A route whose methods do not
// include the request's is no match at all, so the request falls through
// to a shorter path's route. When routes match the path but none takes the
// method, the answer is 405 with Allow naming the methods they take.
type GatewayConfig struct {
	// Listen is the gateway's address (used by Gateway.Listen).
	Listen string `yaml:"listen" json:"listen"`
	// JWT configures token validation; without jwks_url every route must
	// be public.
	JWT JWTConfig `yaml:"jwt" json:"jwt"`
	// RateLimit is the default limit per client and route; zero rate means
	// unlimited.
	RateLimit RateLimit `yaml:"rate_limit" json:"rate_limit"`
	// PassLaneHeaders lets clients' X-Canary and X-Flotilla-Version
	// through to the mesh (testers reaching a canary from outside); by
	// default the gateway strips them.
	PassLaneHeaders bool `yaml:"pass_lane_headers" json:"pass_lane_headers"`
	// Timeout bounds a request through the gateway (default 30s).
	Timeout Duration `yaml:"timeout" json:"timeout"`
	// MaxBody is the largest request body in bytes the gateway forwards
	// (default 1 MiB); a larger one, announced or streamed, is answered
	// 413 and never reaches a service.
	MaxBody int64        `yaml:"max_body" json:"max_body"`
	Routes  []RouteEntry `yaml:"routes" json:"routes"`
}

// JWTConfig configures bearer-token validation (RS256 and EdDSA).
type JWTConfig struct {
	JWKSURL  string `yaml:"jwks_url" json:"jwks_url"`
	Issuer   string `yaml:"issuer" json:"issuer"`
	Audience string `yaml:"audience" json:"audience"`
	// Leeway tolerates clock skew on exp/nbf/iat (default 30s).
	Leeway Duration `yaml:"leeway" json:"leeway"`
	// CacheTTL is how long fetched keys are trusted before a refetch
	// (default 10m); an unknown kid refetches at once, at most every
	// RefetchInterval (default 10s).
	CacheTTL        Duration `yaml:"cache_ttl" json:"cache_ttl"`
	RefetchInterval Duration `yaml:"refetch_interval" json:"refetch_interval"`
}

// RateLimit is a token bucket: RequestsPerSecond refill, Burst capacity
// (default: RequestsPerSecond rounded up, at least 1).
type RateLimit struct {
	RequestsPerSecond float64 `yaml:"requests_per_second" json:"requests_per_second"`
	Burst             int     `yaml:"burst" json:"burst"`
}

// RouteEntry is one public route.
type RouteEntry struct {
	// Path is a prefix, "/api/orders/**" or "/api/orders" (the same:
	// /api/orders and everything below it); "/" or "/**" matches all.
	// With Exact, it is the whole path instead, each segment literal or a
	// parameter in braces matching any one segment: "/api/orders/{id}".
	Path    string `yaml:"path" json:"path"`
	Service string `yaml:"service" json:"service"`
	// Rewrite replaces the matched prefix before forwarding ("" keeps the
	// path as is); for an Exact route it is the whole path, whose
	// parameters take the request's segments: "/orders/{id}".
	Rewrite string `yaml:"rewrite" json:"rewrite,omitempty"`
	// Exact matches Path as a whole, not as a prefix. An exact route wins
	// over any prefix route; among exact routes, the one with more
	// literal segments.
	Exact bool `yaml:"exact" json:"exact,omitempty"`
	// Public routes need no token.
	Public bool `yaml:"public" json:"public,omitempty"`
	// Claims the token must carry, with these values (role: admin); a
	// valid token without them is refused 403.
	Claims map[string]string `yaml:"claims" json:"claims,omitempty"`
	// Methods limits the route to these methods, upper case, out of GET,
	// HEAD, POST, PUT, PATCH, DELETE and OPTIONS (empty: every method).
	// Routes on the same path may each list methods as long as no method
	// is listed twice; one of them may list none and takes the rest.
	Methods   []string   `yaml:"methods" json:"methods,omitempty"`
	RateLimit *RateLimit `yaml:"rate_limit" json:"rate_limit,omitempty"`
	Timeout   Duration   `yaml:"timeout" json:"timeout,omitempty"`
}

// Duration is a time.Duration written as "30s" or "2m".
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a duration like 30s", n.Line)
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: duration %q: want a number with a unit, like 30s or 2m", n.Line, n.Value)
	}
	if v < 0 {
		return fmt.Errorf("line %d: duration %q must not be negative", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// MarshalJSON writes the duration as a string, "30s".
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a string like "30s" (as YAML does).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration %s: want a string like \"30s\"", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: want a number with a unit, like 30s or 2m", s)
	}
	if v < 0 {
		return fmt.Errorf("duration %q must not be negative", s)
	}
	*d = Duration(v)
	return nil
}

// DefaultMaxBody is the gateway's default request body limit.
const DefaultMaxBody = 1 << 20

// DefaultGatewayConfig returns a gateway with no routes on
// 127.0.0.1:8480 (clear of PostgreSQL, Redis and NATS's ports).
func DefaultGatewayConfig() GatewayConfig {
	return GatewayConfig{
		Listen:  "127.0.0.1:8480",
		Timeout: Duration(30 * time.Second),
		MaxBody: DefaultMaxBody,
		JWT: JWTConfig{
			Leeway:          Duration(30 * time.Second),
			CacheTTL:        Duration(10 * time.Minute),
			RefetchInterval: Duration(10 * time.Second),
		},
	}
}

// ParseGatewayConfig decodes a config over the defaults, strictly
// (unknown fields are errors), and validates it. name labels errors.
func ParseGatewayConfig(name string, data []byte) (GatewayConfig, error) {
	cfg := DefaultGatewayConfig()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return GatewayConfig{}, fmt.Errorf("%s: %w", name, err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return GatewayConfig{}, fmt.Errorf("%s: more than one YAML document", name)
	}
	if err := cfg.Validate(); err != nil {
		return GatewayConfig{}, fmt.Errorf("%s: %w", name, err)
	}
	return cfg, nil
}

// routeMethods are the methods a route may list, in the order Allow
// names them; a route's methods are a bit mask over this list.
var routeMethods = [...]string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

// methodIndex is m's place in routeMethods (its bit in a mask), -1 for a
// method no route may list (so only a route without methods takes it).
func methodIndex(m string) int {
	switch m {
	case "GET":
		return 0
	case "HEAD":
		return 1
	case "POST":
		return 2
	case "PUT":
		return 3
	case "PATCH":
		return 4
	case "DELETE":
		return 5
	case "OPTIONS":
		return 6
	}
	return -1
}

// methodList names the methods of a mask, in routeMethods' order.
func methodList(mask uint8, sep string) string {
	var b strings.Builder
	for i, m := range routeMethods {
		if mask&(1<<i) != 0 {
			if b.Len() > 0 {
				b.WriteString(sep)
			}
			b.WriteString(m)
		}
	}
	return b.String()
}

// Validate reports every problem at once, naming the route.
func (c GatewayConfig) Validate() error {
	var errs []error
	if c.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			errs = append(errs, fmt.Errorf("listen %q: want host:port", c.Listen))
		}
	}
	if c.JWT.JWKSURL != "" {
		u, err := url.Parse(c.JWT.JWKSURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("jwt.jwks_url %q: want an http(s) URL", c.JWT.JWKSURL))
		}
	}
	errs = append(errs, c.RateLimit.validate("rate_limit"))
	// Which route takes each path and method; "" stands for a route
	// without methods.
	type pathMethod struct{ prefix, method string }
	seen := map[pathMethod]int{}
	if c.MaxBody < 0 {
		errs = append(errs, fmt.Errorf("max_body %d: want a size in bytes (0 for the default, 1 MiB)", c.MaxBody))
	}
	for i, r := range c.Routes {
		where := fmt.Sprintf("routes[%d] (%s)", i, r.Path)
		if len(r.Claims) > 0 && r.Public {
			errs = append(errs, fmt.Errorf("%s: claims need a token, but the route is public", where))
		}
		var p string
		var err error
		if r.Exact {
			p, err = exactKey(r.Path, r.Rewrite)
		} else {
			p, err = routePrefix(r.Path)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
		}
		if len(r.Methods) == 0 && err == nil {
			if j, dup := seen[pathMethod{p, ""}]; dup {
				errs = append(errs, fmt.Errorf("%s: same path as routes[%d], and neither lists methods (give one of them methods, or merge them)", where, j))
			} else {
				seen[pathMethod{p, ""}] = i
			}
		}
		listed := map[string]bool{}
		for _, m := range r.Methods {
			switch {
			case methodIndex(m) < 0 && methodIndex(strings.ToUpper(m)) >= 0:
				errs = append(errs, fmt.Errorf("%s: method %q: write methods in upper case (%s)", where, m, strings.ToUpper(m)))
			case methodIndex(m) < 0:
				errs = append(errs, fmt.Errorf("%s: method %q: want one of %s", where, m, strings.Join(routeMethods[:], ", ")))
			case listed[m]:
				errs = append(errs, fmt.Errorf("%s: method %s listed twice", where, m))
			case err == nil:
				if j, dup := seen[pathMethod{p, m}]; dup {
					errs = append(errs, fmt.Errorf("%s: method %s: same path as routes[%d], which lists %s too (a path and method go to one route)", where, m, j, m))
				} else {
					seen[pathMethod{p, m}] = i
				}
			}
			listed[m] = true
		}
		if err := checkName("service", r.Service); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
		}
		if r.Rewrite != "" && !r.Exact {
			if _, err := routePrefix(r.Rewrite); err != nil || strings.Contains(r.Rewrite, "*") {
				errs = append(errs, fmt.Errorf("%s: rewrite %q: want a path like /orders", where, r.Rewrite))
			}
		}
		if !r.Public && c.JWT.JWKSURL == "" {
			errs = append(errs, fmt.Errorf("%s: needs a token but jwt.jwks_url is not set (set it, or mark the route public: true)", where))
		}
		if r.RateLimit != nil {
			errs = append(errs, r.RateLimit.validate(where+": rate_limit"))
		}
	}
	return errors.Join(errs...)
}

func (r RateLimit) validate(where string) error {
	if r.RequestsPerSecond < 0 || r.RequestsPerSecond > 1e9 || r.RequestsPerSecond != r.RequestsPerSecond {
		return fmt.Errorf("%s: requests_per_second %v: want 0 (unlimited) up to 1e9", where, r.RequestsPerSecond)
	}
	if r.Burst < 0 || r.Burst > 1e9 {
		return fmt.Errorf("%s: burst %d: want 0 (default) up to 1e9", where, r.Burst)
	}
	return nil
}

// routePrefix turns a route path into the prefix it matches: "/api/x/**"
// and "/api/x" give "/api/x"; "/" and "/**" give "".
func routePrefix(p string) (string, error) {
	if !strings.HasPrefix(p, "/") {
		return "", errors.New("path must start with /")
	}
	p = strings.TrimSuffix(p, "/**")
	p = strings.TrimSuffix(p, "/")
	for _, seg := range strings.Split(p, "/")[1:] {
		switch {
		case seg == "" && p != "":
			return "", errors.New("path has an empty segment (//)")
		case seg == "." || seg == "..":
			return "", errors.New("path has a . or .. segment")
		case strings.ContainsAny(seg, "*?[]{}"):
			return "", errors.New("only a trailing /** is supported as a wildcard")
		}
	}
	if strings.ContainsAny(p, " \t\r\n%#") {
		return "", errors.New("path has spaces, % or #")
	}
	return p, nil
}

// routeTable matches a request path to the longest route prefix, at a
// segment boundary. It is built once and read without locks.
type routeTable[T any] struct {
	prefixes []string // longest first
	values   []T
}

func newRouteTable[T any](prefixes []string, values []T) *routeTable[T] {
	idx := make([]int, len(prefixes))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return len(prefixes[idx[a]]) > len(prefixes[idx[b]]) })
	t := &routeTable[T]{}
	for _, i := range idx {
		t.prefixes = append(t.prefixes, prefixes[i])
		t.values = append(t.values, values[i])
	}
	return t
}

// match returns the value and prefix of the longest matching route.
func (t *routeTable[T]) match(path string) (T, string, bool) {
	if i := t.matchFrom(path, 0); i >= 0 {
		return t.values[i], t.prefixes[i], true
	}
	var zero T
	return zero, "", false
}

// matchFrom returns the index of the longest route prefix path matches
// among those from index i on (shorter than the ones before it), or -1.
// Calling it again from the result plus one walks every matching route,
// longest first.
func (t *routeTable[T]) matchFrom(path string, i int) int {
	for ; i < len(t.prefixes); i++ {
		if matchPrefix(path, t.prefixes[i]) {
			return i
		}
	}
	return -1
}

// exactKey checks an exact route's path template (and its rewrite's) and
// returns the path's shape, parameters' names dropped, under which two
// routes are the same.
func exactKey(path, rewrite string) (string, error) {
	segs, err := templateSegments(path)
	if err != nil {
		return "", err
	}
	if rewrite != "" {
		rsegs, err := templateSegments(rewrite)
		if err != nil {
			return "", fmt.Errorf("rewrite: %w", err)
		}
		for _, s := range rsegs {
			if s.param && !slices.ContainsFunc(segs, func(p tmplSeg) bool { return p.param && p.text == s.text }) {
				return "", fmt.Errorf("rewrite %q: parameter {%s} is not in the path", rewrite, s.text)
			}
		}
	}
	var b strings.Builder
	for _, s := range segs {
		b.WriteByte('/')
		if s.param {
			b.WriteString("{}")
		} else {
			b.WriteString(s.text)
		}
	}
	return "exact:" + b.String(), nil
}

// tmplSeg is one segment of a path template: literal text, or a
// parameter's name.
type tmplSeg struct {
	text  string
	param bool
}

func templateSegments(p string) ([]tmplSeg, error) {
	if !strings.HasPrefix(p, "/") {
		return nil, errors.New("path must start with /")
	}
	if p == "/" {
		return nil, nil
	}
	var out []tmplSeg
	for _, seg := range strings.Split(p[1:], "/") {
		switch {
		case seg == "":
			return nil, errors.New("path has an empty segment (//)")
		case seg == "." || seg == "..":
			return nil, errors.New("path has a . or .. segment")
		case strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") && len(seg) > 2 && !strings.ContainsAny(seg[1:len(seg)-1], "{}/*"):
			out = append(out, tmplSeg{text: seg[1 : len(seg)-1], param: true})
		case strings.ContainsAny(seg, "*?[]{}% \t\r\n#"):
			return nil, fmt.Errorf("segment %q: want literal text or a parameter like {id}", seg)
		default:
			out = append(out, tmplSeg{text: seg})
		}
	}
	return out, nil
}
