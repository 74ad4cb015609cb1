package load

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Flow names.
const (
	Browse    = "browse"      // list a page of products, read one
	Search    = "search"      // a text query at search-service
	AddToCart = "add_to_cart" // put a product in the user's cart
	Checkout  = "checkout"    // fill the cart and place the order
	Track     = "track"       // read one of the user's orders and its shipment
)

// FlowNames are the flows, in the order reports list them.
var FlowNames = []string{Browse, Search, AddToCart, Checkout, Track}

// Modes.
const (
	Closed = "closed" // N virtual users, each starting its next flow when the last ended
	Open   = "open"   // flows start at a fixed rate whatever the answers take
)

// Config is a load run. In YAML (flotilla load --config):
//
//	targets:
//	  gateway: http://127.0.0.1:7400        # every service through the edge gateway (/api/<service>/...), or per service:
//	  # user: ..., product: ..., cart: ..., order: ..., shipping: ..., search: ...
//	mode: open                               # or closed
//	rate: 100                                # flows per second (open)
//	users: 20                                # virtual users (closed, default 10); accounts (open, default from the rate)
//	duration: 5m                             # and/or
//	requests: 30000
//	flows: {browse: 5, search: 2, add_to_cart: 2, checkout: 1, track: 1}
//	think: 0s                                # a virtual user's pause between flows (closed)
//	timeout: 10s                             # per request
//	max_in_flight: 1000                      # open: flows running at once before new ones are skipped (and counted)
//
// Unknown keys are errors; Validate reports every problem at once.
type Config struct {
	Targets     Targets        `yaml:"targets" json:"targets"`
	Mode        string         `yaml:"mode" json:"mode"`
	Rate        float64        `yaml:"rate" json:"rate"`
	Users       int            `yaml:"users" json:"users"`
	Duration    Duration       `yaml:"duration" json:"duration"`
	Requests    int            `yaml:"requests" json:"requests"`
	Flows       map[string]int `yaml:"flows" json:"flows"`
	Think       Duration       `yaml:"think" json:"think"`
	Timeout     Duration       `yaml:"timeout" json:"timeout"`
	MaxInFlight int            `yaml:"max_in_flight" json:"maxInFlight"`
	Seed        uint64         `yaml:"seed" json:"seed"`
}

// Targets are where the shop answers: a gateway for everything, or each
// service's base URL (a service's own URL wins over the gateway).
type Targets struct {
	Gateway  string `yaml:"gateway" json:"gateway,omitempty"`
	User     string `yaml:"user" json:"user,omitempty"`
	Product  string `yaml:"product" json:"product,omitempty"`
	Cart     string `yaml:"cart" json:"cart,omitempty"`
	Order    string `yaml:"order" json:"order,omitempty"`
	Shipping string `yaml:"shipping" json:"shipping,omitempty"`
	Search   string `yaml:"search" json:"search,omitempty"`
}

// URL is the base URL of service ("user", "product", ...), or "". Through
// the gateway a service is under /api/<service> (flotilla up's gateway:
// /api/product/products reaches product-service's /products).
func (t Targets) URL(service string) string {
	own := map[string]string{"user": t.User, "product": t.Product, "cart": t.Cart, "order": t.Order, "shipping": t.Shipping, "search": t.Search}[service]
	if own != "" {
		return strings.TrimRight(own, "/")
	}
	if t.Gateway == "" {
		return ""
	}
	return strings.TrimRight(t.Gateway, "/") + "/api/" + service
}

// Duration is a time.Duration written as "30s" in YAML.
type Duration time.Duration

// UnmarshalYAML reads "30s", "5m".
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: want a duration such as 30s", n.Line)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: duration %q: want a duration such as 30s", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration as "30s".
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// DefaultConfig is a closed loop of 10 users for 30s over every flow but
// search.
func DefaultConfig() Config {
	return Config{Mode: Closed, Users: 10, Duration: Duration(30 * time.Second), Timeout: Duration(10 * time.Second), MaxInFlight: 1000,
		Flows: map[string]int{Browse: 5, AddToCart: 2, Checkout: 1, Track: 1}}
}

// ParseConfig decodes YAML strictly over DefaultConfig (unknown keys are
// errors) and validates it.
func ParseConfig(data []byte) (Config, error) {
	c := DefaultConfig()
	flows := c.Flows
	c.Flows = nil // flows given replace the defaults instead of merging with them
	c.Users = -1  // unset: 10 virtual users in a closed loop, accounts from the rate in an open one
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	// An empty document (io.EOF) is all defaults.
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return c, fmt.Errorf("load config: %w", err)
	}
	if c.Flows == nil {
		c.Flows = flows
	}
	if c.Users == -1 {
		c.Users = 10
		if c.Mode == Open {
			c.Users = 0
		}
	}
	return c, c.Validate()
}

// ParseFlows reads "browse=5,checkout=1" (flag syntax).
func ParseFlows(s string) (map[string]int, error) {
	out := map[string]int{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		k, v, ok := strings.Cut(item, "=")
		n, err := strconv.Atoi(v)
		if !ok || err != nil {
			return nil, fmt.Errorf("flows %q: want name=weight, e.g. browse=5,checkout=1", item)
		}
		out[strings.TrimSpace(k)] = n
	}
	return out, nil
}

// needs are the services each flow calls.
var needs = map[string][]string{
	Browse:    {"product"},
	Search:    {"search"},
	AddToCart: {"user", "product", "cart"},
	Checkout:  {"user", "product", "cart", "order"},
	Track:     {"user", "order"},
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch c.Mode {
	case Closed:
		if c.Users < 1 || c.Users > 10000 {
			bad("users: %d; a closed loop needs 1 to 10000 virtual users", c.Users)
		}
	case Open:
		if !(c.Rate > 0 && c.Rate <= 100000) {
			bad("rate: %v; an open loop needs a rate of flows per second above 0 (at most 100000)", c.Rate)
		}
		if c.Users < 0 || c.Users > 10000 {
			bad("users: %d; want 0 (default accounts) to 10000", c.Users)
		}
	default:
		bad("mode: %q; want closed or open", c.Mode)
	}
	if c.Duration < 0 || c.Requests < 0 {
		bad("duration and requests must not be negative")
	}
	if c.Duration == 0 && c.Requests == 0 {
		bad("set duration (e.g. 30s) or requests (e.g. 10000), or both")
	}
	if c.Think < 0 || c.Timeout <= 0 {
		bad("think must not be negative and timeout must be positive")
	}
	if c.MaxInFlight < 1 || c.MaxInFlight > 100000 {
		bad("max_in_flight: %d; want 1 to 100000", c.MaxInFlight)
	}
	total := 0
	names := make([]string, 0, len(c.Flows))
	for name := range c.Flows {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		w := c.Flows[name]
		if !slices.Contains(FlowNames, name) {
			bad("flows: unknown flow %q; known: %s", name, strings.Join(FlowNames, ", "))
			continue
		}
		if w < 0 || w > 1000000 {
			bad("flows: %s weight %d; want 0 to 1000000", name, w)
			continue
		}
		total += w
		if w == 0 {
			continue
		}
		for _, svc := range needs[name] {
			if c.Targets.URL(svc) == "" {
				bad("flows: %s needs targets.%s (or targets.gateway)", name, svc)
			}
		}
	}
	if total == 0 {
		bad("flows: no flow has a weight above 0")
	}
	for name, u := range map[string]string{"gateway": c.Targets.Gateway, "user": c.Targets.User, "product": c.Targets.Product, "cart": c.Targets.Cart,
		"order": c.Targets.Order, "shipping": c.Targets.Shipping, "search": c.Targets.Search} {
		if u == "" {
			continue
		}
		if p, err := url.Parse(u); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			bad("targets.%s %q: want http://host:port", name, u)
		}
	}
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	return errors.Join(errs...)
}
