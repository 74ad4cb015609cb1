package mesh

import (
	"fmt"
	"net/http"
	"sort"

	"github.com/flotilla-ci/flotilla/graph"
)

// AuthzMode says what the mesh does with a call the graph does not allow.
type AuthzMode string

// The modes.
const (
	AuthzOff     AuthzMode = "off"     // no check
	AuthzWarn    AuthzMode = "warn"    // let it through, count and log it
	AuthzEnforce AuthzMode = "enforce" // refuse it with 403, count it
)

// UnknownCallers says how a call without CallerHeader, or from a name
// that is not a service of the graph, is treated.
type UnknownCallers string

// The choices for unknown callers.
const (
	UnknownAllow UnknownCallers = "allow"
	UnknownDeny  UnknownCallers = "deny"
)

// AuthzConfig configures authorization from the graph.
type AuthzConfig struct {
	Mode    AuthzMode      // default warn
	Unknown UnknownCallers // default allow
	// Policy is the graph's allowed calls; nil allows every call (and
	// labels metrics with the caller's header as given).
	Policy *Policy
}

func (c AuthzConfig) validate() error {
	switch c.Mode {
	case AuthzOff, AuthzWarn, AuthzEnforce, "":
	default:
		return fmt.Errorf("authz mode %q: want off, warn or enforce", c.Mode)
	}
	switch c.Unknown {
	case UnknownAllow, UnknownDeny, "":
	default:
		return fmt.Errorf("authz unknown %q: want allow or deny", c.Unknown)
	}
	return nil
}

// Policy is who may call whom: a service may call what it depends_on.
// It is immutable.
type Policy struct {
	allowed map[string]map[string]bool
}

// NewPolicy builds a policy from each service's dependencies. Every key
// is a known caller, even with no dependencies.
func NewPolicy(dependsOn map[string][]string) *Policy {
	p := &Policy{allowed: make(map[string]map[string]bool, len(dependsOn))}
	for svc, deps := range dependsOn {
		set := make(map[string]bool, len(deps))
		for _, d := range deps {
			set[d] = true
		}
		p.allowed[svc] = set
	}
	return p
}

// PolicyFromManifest builds the policy of a manifest's depends_on edges.
func PolicyFromManifest(m *graph.Manifest) *Policy {
	deps := make(map[string][]string, len(m.Services))
	for _, s := range m.Services {
		deps[s.Name] = s.DependsOn
	}
	return NewPolicy(deps)
}

// Allows reports whether caller may call service. GatewayCaller and
// SmokeCaller may call every service.
func (p *Policy) Allows(caller, service string) bool {
	if caller == GatewayCaller || caller == SmokeCaller {
		return true
	}
	return p.allowed[caller][service]
}

// Known reports whether the caller is a service of the policy (or the
// gateway, or the smoke checks).
func (p *Policy) Known(caller string) bool {
	if caller == GatewayCaller || caller == SmokeCaller {
		return true
	}
	_, ok := p.allowed[caller]
	return ok
}

// Callers returns the known callers, sorted.
func (p *Policy) Callers() []string {
	out := make([]string, 0, len(p.allowed))
	for c := range p.allowed {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}

// SetPolicy replaces the authorization policy (when the graph changes);
// nil allows every call.
func (m *Mesh) SetPolicy(p *Policy) { m.policy.Store(p) }

// SetAuthz replaces the whole authorization: mode, unknown callers (empty
// means the default, as in Config) and policy. An invalid one is refused
// and the previous one stays.
func (m *Mesh) SetAuthz(c AuthzConfig) error {
	if err := c.validate(); err != nil {
		return err
	}
	d := DefaultConfig().Authz
	if c.Mode == "" {
		c.Mode = d.Mode
	}
	if c.Unknown == "" {
		c.Unknown = d.Unknown
	}
	m.policy.Store(c.Policy)
	m.authz.Store(&AuthzConfig{Mode: c.Mode, Unknown: c.Unknown})
	return nil
}

// UnknownCaller is the source label of calls without a known caller.
const UnknownCaller = "unknown"

// authorize returns the caller's metrics label and whether the call may
// go on, counting (and in warn mode logging once per edge) what the
// policy refuses.
func (m *Mesh) authorize(r *http.Request, dst string) (string, bool) {
	caller := ""
	switch {
	case m.tls != nil:
		// Only a certificate names the caller (the listener, or the
		// gateway in process, set PeerHeader).
		if v := r.Header[PeerHeader]; len(v) > 0 {
			caller = m.tls.callerOf(v[0])
		}
	default:
		if v := r.Header[CallerHeader]; len(v) > 0 {
			caller = v[0]
		}
	}
	p := m.policy.Load()
	az := m.authz.Load()
	mode := az.Mode
	if p == nil {
		if caller == "" {
			caller = UnknownCaller
		}
		return m.metrics.sourceLabel(caller), true
	}
	src := caller
	var allowed bool
	if !p.Known(caller) {
		src = UnknownCaller
		allowed = az.Unknown == UnknownAllow
	} else {
		allowed = p.Allows(caller, dst)
	}
	if allowed || mode == AuthzOff {
		return src, true
	}
	m.metrics.denied(src, dst, string(mode)).inc()
	// Log each refused edge once: the counter has the rate.
	if _, seen := m.warned.LoadOrStore(src+"\x00"+dst, true); !seen {
		m.log.WarnContext(r.Context(), "mesh call not declared in the graph", "source", src, "caller_header", caller, "destination", dst, "mode", string(mode))
	}
	return src, mode == AuthzWarn
}
