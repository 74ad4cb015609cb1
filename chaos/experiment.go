// Package chaos runs chaos experiments against a running flotilla
// platform, in the shape Chaos Mesh and LitmusChaos users know: a
// steady-state hypothesis checked through the gateway, a load, faults
// each with a start and a duration (mesh delays and aborts, partitions,
// instance kills, a stalled or slowed bus), the hypothesis checked again,
// and a report with each fault's failed requests and its time to
// recover (MTTR). The faults are injected by the control plane
// (controlplane's chaos API) under a lease this package renews while it
// runs: when it stops (Ctrl-C, a timeout, a crash) every fault goes.
//
// The experiments under chaos/ in the repository are examples to copy.
package chaos

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/flotilla-ci/flotilla/controlplane"
	"github.com/flotilla-ci/flotilla/shop/load"
)

// Experiment is one experiment, as its YAML file says:
//
//	name: inventory slow
//	duration: 2m                 # the whole experiment at most; no fault may outlive it
//	hypothesis:
//	  probes: [/api/product/products?limit=1, /api/inventory/ready]
//	  max_error_rate: 1          # percent of probes that may fail
//	  max_p99: 2s
//	  window: 3s                 # the hypothesis holds when a whole window of probes meets it
//	  interval: 100ms
//	  recover_within: 60s        # after the last fault, how long it may take to hold again
//	  orders_final_within: 30s   # every order final (the shop's audit); 0: no audit
//	load: {rate: 20, flows: {browse: 2, checkout: 1}}
//	faults:
//	  - kind: delay              # delay, abort, partition, kill, bus-stall, bus-slow
//	    source: order-service    # optional: only calls from it
//	    destination: inventory-service
//	    delay: 500ms
//	    start: 5s
//	    duration: 20s
type Experiment struct {
	Name        string     `yaml:"name" json:"name"`
	Description string     `yaml:"description" json:"description,omitempty"`
	Duration    Duration   `yaml:"duration" json:"duration"`
	Hypothesis  Hypothesis `yaml:"hypothesis" json:"hypothesis"`
	Load        *Load      `yaml:"load" json:"load,omitempty"`
	Faults      []Fault    `yaml:"faults" json:"faults"`

	file string
	root *yaml.Node
}

// Hypothesis is the steady state: probes through the gateway and the
// bounds they must meet over a window, and the shop's audit.
type Hypothesis struct {
	Probes            []string `yaml:"probes" json:"probes"`
	MaxErrorRate      float64  `yaml:"max_error_rate" json:"max_error_rate"`
	MaxP99            Duration `yaml:"max_p99" json:"max_p99"`
	Window            Duration `yaml:"window" json:"window"`
	Interval          Duration `yaml:"interval" json:"interval"`
	RecoverWithin     Duration `yaml:"recover_within" json:"recover_within"`
	OrdersFinalWithin Duration `yaml:"orders_final_within" json:"orders_final_within"`
}

// Load is the load during the experiment: flotilla load's open loop
// through the gateway.
type Load struct {
	Rate  float64        `yaml:"rate" json:"rate"`
	Users int            `yaml:"users" json:"users,omitempty"`
	Flows map[string]int `yaml:"flows" json:"flows"`
}

// Fault is one fault: what, where, when and for how long.
type Fault struct {
	Name        string   `yaml:"name" json:"name,omitempty"`
	Kind        string   `yaml:"kind" json:"kind"`
	Source      string   `yaml:"source" json:"source,omitempty"`
	Destination string   `yaml:"destination" json:"destination,omitempty"`
	Service     string   `yaml:"service" json:"service,omitempty"`
	All         bool     `yaml:"all" json:"all,omitempty"`
	Delay       Duration `yaml:"delay" json:"delay,omitempty"`
	Jitter      Duration `yaml:"jitter" json:"jitter,omitempty"`
	Percent     float64  `yaml:"percent" json:"percent,omitempty"`
	Status      int      `yaml:"status" json:"status,omitempty"`
	Start       Duration `yaml:"start" json:"start"`
	Duration    Duration `yaml:"duration" json:"duration,omitempty"`
}

// Duration is a time.Duration written "500ms", "10s".
type Duration time.Duration

// UnmarshalYAML reads "500ms", "10s".
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if n.Kind != yaml.ScalarNode || n.Decode(&s) != nil {
		return fmt.Errorf("line %d: want a duration such as 500ms or 10s", n.Line)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: duration %q: want a number with a unit, such as 500ms or 10s", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes "500ms".
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// D is the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// The defaults of a hypothesis.
func defaultHypothesis() Hypothesis {
	return Hypothesis{MaxErrorRate: 1, MaxP99: Duration(2 * time.Second), Window: Duration(3 * time.Second),
		Interval: Duration(100 * time.Millisecond), RecoverWithin: Duration(time.Minute), OrdersFinalWithin: Duration(30 * time.Second)}
}

// fieldErr rewrites yaml.v3's "field x not found in type chaos.Fault".
var fieldErr = regexp.MustCompile(`field (\S+) not found in type \S+`)

// Parse reads an experiment strictly (an unknown field, a wrong type and
// a bad value are errors naming the file, the line and the field) and
// checks it; it does not check it against the graph (see Check).
func Parse(file string, data []byte) (*Experiment, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("%s: %s", file, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if len(root.Content) == 0 {
		return nil, fmt.Errorf("%s: empty: want an experiment (name, hypothesis, faults)", file)
	}
	e := &Experiment{Hypothesis: defaultHypothesis()}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(e); err != nil && !errors.Is(err, io.EOF) {
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		msg = strings.TrimPrefix(msg, "unmarshal errors:\n")
		msg = fieldErr.ReplaceAllString(msg, `unknown field "$1"`)
		var lines []string
		for _, l := range strings.Split(msg, "\n") {
			if l = strings.TrimSpace(l); l != "" {
				lines = append(lines, file+": "+l)
			}
		}
		return nil, errors.New(strings.Join(lines, "\n"))
	}
	var more yaml.Node
	if err := dec.Decode(&more); err == nil {
		return nil, fmt.Errorf("%s: line %d: a second document: one experiment per file", file, more.Line)
	}
	e.file, e.root = file, root.Content[0]
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return e, nil
}

// line is the line of the node at path (mapping keys and sequence
// indices) in the file, or of the closest parent that exists.
func (e *Experiment) line(path ...any) int {
	n := e.root
	if n == nil {
		return 0
	}
	best := n.Line
	for _, p := range path {
		var next *yaml.Node
		switch k := p.(type) {
		case string:
			if n.Kind == yaml.MappingNode {
				for i := 0; i+1 < len(n.Content); i += 2 {
					if n.Content[i].Value == k {
						best = n.Content[i].Line
						next = n.Content[i+1]
					}
				}
			}
		case int:
			if n.Kind == yaml.SequenceNode && k < len(n.Content) {
				next = n.Content[k]
				best = next.Line
			}
		}
		if next == nil {
			return best
		}
		n = next
	}
	return best
}

// problems gathers validation errors, each with the file, line and field.
type problems struct {
	e    *Experiment
	errs []error
}

func (p *problems) add(path []any, format string, a ...any) {
	field := ""
	for _, x := range path {
		switch v := x.(type) {
		case string:
			if field != "" {
				field += "."
			}
			field += v
		case int:
			field += "[" + strconv.Itoa(v) + "]"
		}
	}
	msg := fmt.Sprintf(format, a...)
	p.errs = append(p.errs, fmt.Errorf("%s: line %d: %s: %s", p.e.file, p.e.line(path...), field, msg))
}

func at(path ...any) []any { return path }

// Kinds are the fault kinds an experiment may use.
var Kinds = []string{controlplane.FaultDelay, controlplane.FaultAbort, controlplane.FaultPartition, controlplane.FaultKill, controlplane.FaultBusStall, controlplane.FaultBusSlow}

// Validate checks the experiment on its own, reporting every problem.
func (e *Experiment) Validate() error {
	p := &problems{e: e}
	if strings.TrimSpace(e.Name) == "" {
		p.add(at("name"), "empty: name the experiment")
	}
	if e.Duration <= 0 {
		p.add(at("duration"), "want more than 0 (e.g. 2m): the whole experiment at most")
	}
	h := e.Hypothesis
	if len(h.Probes) == 0 {
		p.add(at("hypothesis", "probes"), "none: list gateway paths to probe, e.g. /api/product/products?limit=1")
	}
	for i, pr := range h.Probes {
		if !strings.HasPrefix(pr, "/") {
			p.add(at("hypothesis", "probes", i), "%q: want a path on the gateway, starting with /", pr)
		}
	}
	if h.MaxErrorRate < 0 || h.MaxErrorRate > 100 {
		p.add(at("hypothesis", "max_error_rate"), "%v: want a percentage from 0 to 100", h.MaxErrorRate)
	}
	if h.MaxP99 <= 0 {
		p.add(at("hypothesis", "max_p99"), "want more than 0")
	}
	if h.Window <= 0 {
		p.add(at("hypothesis", "window"), "want more than 0")
	}
	if h.Interval <= 0 || h.Interval > h.Window {
		p.add(at("hypothesis", "interval"), "want more than 0 and at most the window (%v)", h.Window.D())
	}
	if h.RecoverWithin <= 0 {
		p.add(at("hypothesis", "recover_within"), "want more than 0")
	}
	if h.OrdersFinalWithin < 0 {
		p.add(at("hypothesis", "orders_final_within"), "must not be negative (0: no audit)")
	}
	if l := e.Load; l != nil {
		if !(l.Rate > 0 && l.Rate <= 10000) {
			p.add(at("load", "rate"), "%v: want requests per second, more than 0 and at most 10000", l.Rate)
		}
		if l.Users < 0 {
			p.add(at("load", "users"), "must not be negative")
		}
		lc := e.LoadConfig("http://gateway.invalid")
		if err := lc.Validate(); err != nil {
			for _, m := range strings.Split(err.Error(), "\n") {
				p.add(at("load"), "%s", m)
			}
		}
	}
	if len(e.Faults) == 0 {
		p.add(at("faults"), "none: an experiment injects at least one fault")
	}
	for i, f := range e.Faults {
		e.validateFault(p, i, f)
	}
	return errors.Join(p.errs...)
}

func (e *Experiment) validateFault(p *problems, i int, f Fault) {
	f0 := func(k string) []any { return at("faults", i, k) }
	switch f.Kind {
	case controlplane.FaultDelay, controlplane.FaultAbort:
		if f.Destination == "" {
			p.add(f0("destination"), "empty: name the service whose calls the fault hits")
		}
		if f.Kind == controlplane.FaultDelay && f.Delay <= 0 {
			p.add(f0("delay"), "want more than 0 (e.g. 500ms)")
		}
		if f.Kind == controlplane.FaultAbort && f.Status != 0 && (f.Status < 200 || f.Status > 599) {
			p.add(f0("status"), "%d: want an HTTP status from 200 to 599", f.Status)
		}
	case controlplane.FaultPartition:
		if f.Source == "" || f.Destination == "" {
			p.add(f0("source"), "a partition is between two services: set source and destination")
		}
	case controlplane.FaultKill:
		if f.Service == "" {
			p.add(f0("service"), "empty: name the service whose instance to kill")
		}
	case controlplane.FaultBusStall:
	case controlplane.FaultBusSlow:
		if f.Delay <= 0 || f.Delay >= Duration(time.Second) {
			p.add(f0("delay"), "the bus's pause in every second: want more than 0 and less than 1s")
		}
	case "":
		p.add(f0("kind"), "empty: want one of %s", strings.Join(Kinds, ", "))
	default:
		p.add(f0("kind"), "%q: want one of %s", f.Kind, strings.Join(Kinds, ", "))
	}
	if f.Jitter < 0 {
		p.add(f0("jitter"), "must not be negative")
	}
	if f.Percent < 0 || f.Percent > 100 {
		p.add(f0("percent"), "%v: want more than 0 and at most 100", f.Percent)
	}
	if f.Start < 0 {
		p.add(f0("start"), "must not be negative")
	}
	switch {
	case f.Kind == controlplane.FaultKill:
		if f.Duration != 0 {
			p.add(f0("duration"), "a kill is instant: leave duration out (the recovery is measured from the kill)")
		}
	case f.Duration <= 0:
		p.add(f0("duration"), "want more than 0 (e.g. 10s): every fault ends")
	}
	if end := f.Start + f.Duration; e.Duration > 0 && end > e.Duration {
		p.add(f0("duration"), "the fault ends %v into the experiment, after its duration (%v): no fault may outlive the experiment", end.D(), e.Duration.D())
	}
}

// Check holds the experiment's faults against the graph (each service's
// depends_on): an unknown service or an edge the graph does not have is
// an error naming the line, before anything is injected.
func (e *Experiment) Check(dependsOn map[string][]string) error {
	p := &problems{e: e}
	names := make([]string, 0, len(dependsOn))
	for n := range dependsOn {
		names = append(names, n)
	}
	sort.Strings(names)
	known := func(path []any, s string) bool {
		if _, ok := dependsOn[s]; ok {
			return true
		}
		p.add(path, "unknown service %q (the graph has: %s)", s, strings.Join(names, ", "))
		return false
	}
	edge := func(a, b string) bool {
		for _, d := range dependsOn[a] {
			if d == b {
				return true
			}
		}
		return false
	}
	for i, f := range e.Faults {
		f0 := func(k string) []any { return at("faults", i, k) }
		srcOK := f.Source == "" || known(f0("source"), f.Source)
		dstOK := f.Destination == "" || known(f0("destination"), f.Destination)
		if f.Service != "" {
			known(f0("service"), f.Service)
		}
		if f.Source == "" || f.Destination == "" || !srcOK || !dstOK {
			continue
		}
		switch f.Kind {
		case controlplane.FaultPartition:
			if !edge(f.Source, f.Destination) && !edge(f.Destination, f.Source) {
				p.add(f0("destination"), "the graph has no edge between %s and %s: nothing to partition", f.Source, f.Destination)
			}
		default:
			if !edge(f.Source, f.Destination) {
				p.add(f0("destination"), "the graph has no edge %s -> %s (%s does not depend on %s)", f.Source, f.Destination, f.Source, f.Destination)
			}
		}
	}
	return errors.Join(p.errs...)
}

// LoadConfig is the experiment's load as flotilla load's configuration,
// through the gateway, for as long as the experiment may run.
func (e *Experiment) LoadConfig(gateway string) load.Config {
	c := load.DefaultConfig()
	c.Mode = load.Open
	c.Targets = load.Targets{Gateway: gateway}
	c.Users = 0
	if e.Load != nil {
		c.RequestRate = e.Load.Rate
		c.Users = e.Load.Users
		if len(e.Load.Flows) > 0 {
			c.Flows = e.Load.Flows
		}
	}
	c.Duration = load.Duration(e.Duration.D() + e.Hypothesis.RecoverWithin.D() + 2*e.Hypothesis.Window.D())
	return c
}

// FaultRequest is the control plane's request for fault i.
func (e *Experiment) FaultRequest(id string, i int) controlplane.FaultRequest {
	f := e.Faults[i]
	return controlplane.FaultRequest{Experiment: id, Name: f.Name, Kind: f.Kind, Source: f.Source, Destination: f.Destination,
		Service: f.Service, All: f.All, Delay: controlplane.Duration(f.Delay), Jitter: controlplane.Duration(f.Jitter),
		Percent: f.Percent, Status: f.Status, Duration: controlplane.Duration(f.Duration)}
}
