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
	Open   = "open"   // flows start on a schedule whatever the answers take: a fixed request rate (or flow rate)
)

// Config is a load run. In YAML (flotilla load --config):
//
//	targets:
//	  gateway: http://127.0.0.1:7400        # every service through the edge gateway (/api/<service>/...), or per service:
//	  # user: ..., product: ..., cart: ..., order: ..., shipping: ..., search: ...
//	mode: open                               # or closed
//	rate: 100                                # requests per second offered (open), or:
//	# flow_rate: 50                          # flows started per second (open)
//	users: 20                                # virtual users (closed, default 10); accounts (open, default from the rate)
//	duration: 5m                             # and/or
//	requests: 30000
//	flows: {browse: 5, search: 2, add_to_cart: 2, checkout: 1, track: 1}
//	think: 0s                                # a virtual user's pause between flows (closed)
//	timeout: 10s                             # per request
//	max_in_flight: 1000                      # open: flows running at once before new ones are skipped (and counted)
//
// Unknown keys are errors; Validate reports every problem at once.
//
// An open loop takes one of two rates. RequestRate (rate: in YAML,
// --rate) is requests per second, as vegeta's -rate and wrk2's -R are:
// flows start at RequestRate divided by the mix's requests per flow
// (RequestsPerFlow to begin with, then what the finished flows actually
// sent), so the requests offered stay at RequestRate. Rate (flow_rate:,
// --flow-rate) starts that many flows per second instead, whatever they
// send.
type Config struct {
	Targets     Targets        `yaml:"targets" json:"targets"`
	Mode        string         `yaml:"mode" json:"mode"`
	RequestRate float64        `yaml:"rate" json:"rate"`          // open: requests per second offered
	Rate        float64        `yaml:"flow_rate" json:"flowRate"` // open: flows started per second, instead of RequestRate
	Users       int            `yaml:"users" json:"users"`
	Duration    Duration       `yaml:"duration" json:"duration"`
	Requests    int            `yaml:"requests" json:"requests"`
	Flows       map[string]int `yaml:"flows" json:"flows"`
	Think       Duration       `yaml:"think" json:"think"`
	Timeout     Duration       `yaml:"timeout" json:"timeout"`
	MaxInFlight int            `yaml:"max_in_flight" json:"maxInFlight"`
	Seed        uint64         `yaml:"seed" json:"seed"`
	// Observe, when set, is told of every request as it ends (a chaos
	// experiment counts the failures during and after each fault); it
	// must be quick and safe for concurrent use.
	Observe func(Observation) `yaml:"-" json:"-"`
}

// Observation is one request of a run, as it ended.
type Observation struct {
	At      time.Time     // when it was sent (its flow's intended start, for the first)
	Route   string        // "POST /orders"
	Status  int           // 0: no answer
	Latency time.Duration //
	Failed  bool
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

// The rates an open loop takes, requests or flows per second.
const minRate, maxRate = 0.01, 100000

// cartItems is the most products a checkout puts in the cart (one to
// cartItems, evenly) before it places the order.
const cartItems = 3

// flowRequests is how many requests flow sends on average when every
// answer is a success: browse lists a page and reads a product; search
// and add_to_cart send one; checkout adds one to cartItems products and
// places the order (and empties the cart when the order is cancelled,
// which is not counted); track lists the account's orders until it has a
// confirmed one, then reads it and, with a shipping target, its shipment.
// Accounts are registered afresh by each run, so without checkout in the
// mix there is never an order to track.
func (c Config) flowRequests(flow string) float64 {
	switch flow {
	case Browse:
		return 2
	case Checkout:
		return float64(1+cartItems)/2 + 1
	case Track:
		if c.Flows[Checkout] > 0 && c.Targets.URL("shipping") != "" {
			return 2
		}
		return 1
	default: // search, add_to_cart
		return 1
	}
}

// RequestsPerFlow is the requests a flow of c's mix sends on average,
// from the flows' weights and what each sends (1 when no flow has a
// weight). An open loop at RequestRate starts flows at RequestRate
// divided by this until its own flows have finished and shown their
// count.
func (c Config) RequestsPerFlow() float64 {
	var weights, requests float64
	for _, name := range FlowNames {
		if w := c.Flows[name]; w > 0 {
			weights += float64(w)
			requests += float64(w) * c.flowRequests(name)
		}
	}
	if weights == 0 {
		return 1
	}
	return requests / weights
}

// FlowRate is the flows an open loop starts per second to begin with:
// Rate, or RequestRate divided by RequestsPerFlow.
func (c Config) FlowRate() float64 {
	if c.Rate > 0 {
		return c.Rate
	}
	return c.RequestRate / c.RequestsPerFlow()
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
		if c.RequestRate != 0 || c.Rate != 0 {
			bad("rate/flow_rate: a closed loop has no rate (its users start a flow when the last ended); set mode: open for a fixed rate")
		}
	case Open:
		switch {
		case c.RequestRate != 0 && c.Rate != 0:
			bad("rate %v and flow_rate %v: set one; rate is requests per second, flow_rate flows per second", c.RequestRate, c.Rate)
		case c.Rate != 0:
			if !(c.Rate >= minRate && c.Rate <= maxRate) {
				bad("flow_rate: %v; want flows per second from %v to %v", c.Rate, minRate, maxRate)
			}
		case !(c.RequestRate >= minRate && c.RequestRate <= maxRate):
			bad("rate: %v; an open loop needs rate, requests per second from %v to %v, or flow_rate, flows per second", c.RequestRate, minRate, maxRate)
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
