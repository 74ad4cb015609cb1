package dataplane

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/flotilla-ci/flotilla/mesh"
)

// Snapshot is the data plane's whole configuration at one version: what
// xDS calls a snapshot. The control plane sets Version, higher for every
// change; the data plane applies a snapshot whole or refuses it whole.
type Snapshot struct {
	// Version numbers the configuration; 1 or more. A data plane refuses
	// a version below the one it acknowledged, and the same version with
	// another content.
	Version  uint64    `json:"version"`
	Services []Service `json:"services"`
	Authz    Authz     `json:"authz"`
	// Gateway is the edge gateway (nil: none). Its Listen is its address;
	// port 0 picks a free one, which the data plane keeps from then on.
	Gateway *mesh.GatewayConfig `json:"gateway,omitempty"`
	// Faults are the faults the mesh injects (chaos experiments); each
	// ends at its Until even when nobody removes it.
	Faults []mesh.Fault `json:"faults,omitempty"`
}

// Service is one service: its stable address and its subsets.
type Service struct {
	Name string `json:"name"`
	// Addr is the stable address callers use, host:port. Port 0 picks a
	// free port once; the data plane answers with the one it took and
	// keeps it. A service cannot move: an address other than the one it
	// listens on is refused (remove the service in one snapshot and add
	// it in the next).
	Addr    string   `json:"addr"`
	Subsets []Subset `json:"subsets,omitempty"`
	// Weights share the traffic between the subsets, by name; a subset
	// not named gets 0. With subsets, at least one weight is positive;
	// they add up to at most 10000.
	Weights map[string]int `json:"weights,omitempty"`
}

// Subset is one version of a service.
type Subset struct {
	Name string `json:"name"`
	// Canary marks the subset X-Canary: true reaches (at most one).
	Canary    bool     `json:"canary,omitempty"`
	Endpoints []string `json:"endpoints"` // host:port
}

// Authz is the mesh's authorization from the graph.
type Authz struct {
	Mode    mesh.AuthzMode      `json:"mode,omitempty"`    // default warn
	Unknown mesh.UnknownCallers `json:"unknown,omitempty"` // default allow
	// Policy is each service's depends_on: whom it may call. Without a
	// policy every call is allowed.
	Policy map[string][]string `json:"policy,omitempty"`
}

// Service returns the named service, or nil.
func (s *Snapshot) Service(name string) *Service {
	for i := range s.Services {
		if s.Services[i].Name == name {
			return &s.Services[i]
		}
	}
	return nil
}

// Clone returns a deep copy.
func (s *Snapshot) Clone() *Snapshot {
	out := &Snapshot{Version: s.Version, Authz: Authz{Mode: s.Authz.Mode, Unknown: s.Authz.Unknown}}
	out.Services = copyOf(s.Services)[:0]
	for _, svc := range s.Services {
		out.Services = append(out.Services, svc.clone())
	}
	if s.Authz.Policy != nil {
		out.Authz.Policy = make(map[string][]string, len(s.Authz.Policy))
		for k, v := range s.Authz.Policy {
			out.Authz.Policy[k] = copyOf(v)
		}
	}
	if s.Gateway != nil {
		g := *s.Gateway
		g.Routes = copyOf(s.Gateway.Routes)[:0]
		for _, r := range s.Gateway.Routes {
			r.Methods = copyOf(r.Methods)
			if r.RateLimit != nil {
				rl := *r.RateLimit
				r.RateLimit = &rl
			}
			g.Routes = append(g.Routes, r)
		}
		out.Gateway = &g
	}
	out.Faults = copyOf(s.Faults)
	return out
}

func (svc Service) clone() Service {
	out := Service{Name: svc.Name, Addr: svc.Addr, Subsets: copyOf(svc.Subsets)[:0]}
	for _, sub := range svc.Subsets {
		sub.Endpoints = copyOf(sub.Endpoints)
		out.Subsets = append(out.Subsets, sub)
	}
	if svc.Weights != nil {
		out.Weights = make(map[string]int, len(svc.Weights))
		for k, v := range svc.Weights {
			out.Weights[k] = v
		}
	}
	return out
}

// copyOf copies a slice, nil or empty as it was (JSON tells them apart).
func copyOf[T any](s []T) []T {
	if s == nil {
		return nil
	}
	return append(make([]T, 0, len(s)), s...)
}

// sameConfig reports whether a and b configure the same (the version
// aside).
func sameConfig(a, b *Snapshot) bool {
	x, y := *a, *b
	x.Version, y.Version = 0, 0
	bx, _ := json.Marshal(x)
	by, _ := json.Marshal(y)
	return bytes.Equal(bx, by)
}

// maxWeightTotal is the mesh's bound on a service's weights.
const maxWeightTotal = 10000

// Decode reads a snapshot from JSON strictly (unknown fields and trailing
// data are errors) and validates it. name labels errors (a file, "PUT
// /snapshot").
func Decode(name string, data []byte) (*Snapshot, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var s Snapshot
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("%s: %w", name, jsonError(data, dec.InputOffset(), err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %s: more than one JSON value", name, position(data, dec.InputOffset()))
	}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &s, nil
}

// jsonError places a decoding error at its line and column.
func jsonError(data []byte, at int64, err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		at = se.Offset
	case errors.As(err, &te):
		at = te.Offset
		if te.Field != "" {
			return fmt.Errorf("%s: field %s: want %s, not a JSON %s", position(data, at), te.Field, te.Type, te.Value)
		}
	case errors.Is(err, io.EOF):
		return errors.New("empty: want a JSON snapshot")
	}
	return fmt.Errorf("%s: %w", position(data, at), err)
}

func position(data []byte, off int64) string {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	line, col := 1, 1
	for _, c := range data[:off] {
		if c == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return "line " + strconv.Itoa(line) + " column " + strconv.Itoa(col)
}

// Validate reports every problem at once, naming the service, subset or
// field.
func (s *Snapshot) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if s.Version == 0 {
		bad("version: want 1 or more")
	}
	addrs := map[string]string{} // concrete address → who listens there
	listen := func(who, addr string) {
		host, port, err := splitAddr(addr)
		if err != nil {
			bad("%s: addr %q: %v", who, addr, err)
			return
		}
		if port == 0 {
			return
		}
		k := net.JoinHostPort(host, strconv.Itoa(port))
		if other, dup := addrs[k]; dup {
			bad("%s: addr %s is %s's too", who, addr, other)
		}
		addrs[k] = who
	}
	names := map[string]bool{}
	for i, svc := range s.Services {
		who := fmt.Sprintf("services[%d] (%s)", i, svc.Name)
		if err := checkName(svc.Name); err != nil {
			bad("services[%d]: name: %v", i, err)
		} else if names[svc.Name] {
			bad("%s: listed twice", who)
		}
		names[svc.Name] = true
		listen(who, svc.Addr)
	}
	if s.Gateway != nil {
		if s.Gateway.Listen == "" {
			bad("gateway: listen: want host:port (port 0 picks a free one)")
		} else {
			listen("gateway", s.Gateway.Listen)
		}
		if err := s.Gateway.Validate(); err != nil {
			bad("gateway: %w", err)
		}
		for i, r := range s.Gateway.Routes {
			if !names[r.Service] {
				bad("gateway: routes[%d] (%s): service %q is not among the snapshot's services", i, r.Path, r.Service)
			}
		}
	}
	for i, svc := range s.Services {
		who := fmt.Sprintf("services[%d] (%s)", i, svc.Name)
		subs := map[string]bool{}
		canary := ""
		for j, sub := range svc.Subsets {
			where := fmt.Sprintf("%s: subsets[%d] (%s)", who, j, sub.Name)
			if err := checkName(sub.Name); err != nil {
				bad("%s: name: %v", where, err)
			} else if subs[sub.Name] {
				bad("%s: listed twice", where)
			}
			subs[sub.Name] = true
			if sub.Canary {
				if canary != "" {
					bad("%s: canary, and so is %s: at most one subset is the canary", where, canary)
				}
				canary = sub.Name
			}
			eps := map[string]bool{}
			for _, ep := range sub.Endpoints {
				host, port, err := splitAddr(ep)
				switch {
				case err != nil:
					bad("%s: endpoint %q: %v", where, ep, err)
				case port == 0:
					bad("%s: endpoint %q: port 0 is not an instance's address", where, ep)
				case eps[ep]:
					bad("%s: endpoint %s listed twice", where, ep)
				case addrs[net.JoinHostPort(host, strconv.Itoa(port))] != "":
					bad("%s: endpoint %s is the data plane's own address for %s (a loop): give the instance's address", where, ep, addrs[net.JoinHostPort(host, strconv.Itoa(port))])
				}
				eps[ep] = true
			}
		}
		total := 0
		ws := make([]string, 0, len(svc.Weights))
		for n := range svc.Weights {
			ws = append(ws, n)
		}
		sort.Strings(ws)
		for _, n := range ws {
			w := svc.Weights[n]
			if !subs[n] {
				bad("%s: weights: %s is not one of its subsets", who, n)
			}
			if w < 0 {
				bad("%s: weights: %s is %d: must not be negative", who, n, w)
			}
			total += w
		}
		switch {
		case total > maxWeightTotal:
			bad("%s: weights add up to %d: at most %d", who, total, maxWeightTotal)
		case len(svc.Subsets) > 0 && total <= 0:
			bad("%s: every weight is 0: at least one subset must carry traffic", who)
		}
	}
	errs = append(errs, validateFaults(s.Faults, names))
	switch s.Authz.Mode {
	case "", mesh.AuthzOff, mesh.AuthzWarn, mesh.AuthzEnforce:
	default:
		bad("authz: mode %q: want off, warn or enforce", s.Authz.Mode)
	}
	switch s.Authz.Unknown {
	case "", mesh.UnknownAllow, mesh.UnknownDeny:
	default:
		bad("authz: unknown %q: want allow or deny", s.Authz.Unknown)
	}
	for svc, deps := range s.Authz.Policy {
		if err := checkName(svc); err != nil {
			bad("authz: policy: %v", err)
		}
		for _, d := range deps {
			if err := checkName(d); err != nil {
				bad("authz: policy: %s: %v", svc, err)
			}
		}
	}
	return errors.Join(errs...)
}

// splitAddr checks a host:port address.
func splitAddr(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, errors.New("want host:port")
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("port %q: want 0 to 65535", p)
	}
	return host, port, nil
}

// checkName allows what the mesh names services and subsets with:
// letters, digits, '-', '_', '.', at most 128.
func checkName(name string) error {
	if name == "" {
		return errors.New("empty")
	}
	if len(name) > 128 {
		return fmt.Errorf("%.20q...: at most 128 characters", name)
	}
	for _, c := range name {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
		if !ok {
			return fmt.Errorf("%q: use letters, digits, '-', '_' and '.'", name)
		}
	}
	return nil
}

// SnapshotFile is the file in the state directory that holds the last
// acknowledged snapshot.
const SnapshotFile = "snapshot.json"

// save writes the snapshot atomically: a temporary file in the same
// directory, synced, renamed over the old one, and the directory synced.
func save(dir string, s *Snapshot) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, SnapshotFile+".*.tmp")
	if err != nil {
		return fmt.Errorf("save snapshot: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(append(data, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, SnapshotFile))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("save snapshot in %s: %w", dir, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// load reads the snapshot saved in dir: nil when there is none.
func load(dir string) (*Snapshot, error) {
	path := filepath.Join(dir, SnapshotFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load snapshot: %w", err)
	}
	return Decode(path, data)
}

// String is a one-line summary for logs.
func (s *Snapshot) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "version %d: %d services", s.Version, len(s.Services))
	if s.Gateway != nil {
		fmt.Fprintf(&b, ", gateway on %s", s.Gateway.Listen)
	}
	return b.String()
}
