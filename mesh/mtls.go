package mesh

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"

	"github.com/flotilla-ci/flotilla/identity"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// PeerHeader carries the caller's verified SPIFFE ID to the service: the
// mesh's listener removes any value a client sent and sets it from the
// client's certificate (the edge gateway sets its own ID the same way). A
// service believes it only on a connection whose own peer certificate is
// the mesh's (shop/kit's Peer does that check).
const PeerHeader = "X-Flotilla-Peer"

// SmokeCaller is the caller name of the orchestrator's smoke checks; like
// GatewayCaller it may call every service.
const SmokeCaller = "flotilla-smoke"

// TLSConfig turns on mutual TLS for the mesh: on every service's listener
// (a caller must present an SVID of the trust domain, Mode permitting)
// and on every call to an instance (which must present the SVID of the
// service it is an instance of).
type TLSConfig struct {
	// Source is the mesh's own identity (identity.Mesh of the system
	// namespace on a platform).
	Source *identity.Source
	// Mode is identity.Strict (default) or identity.Permissive.
	Mode identity.Mode
	// Namespace is the services' namespace in their SPIFFE IDs (default
	// identity.DefaultNamespace).
	Namespace string
	// Gateway is the edge gateway's identity, which it names as the
	// caller of the requests it routes (and uses for its own calls);
	// default: the mesh's.
	Gateway *identity.Source
}

// meshTLS is the mesh's TLS state.
type meshTLS struct {
	cfg    TLSConfig
	td     spiffeid.TrustDomain
	server *tls.Config
	stats  sync.Map // service → *identity.Stats

	mu     sync.Mutex
	client map[string]*identity.Dialer // by destination service
}

func newMeshTLS(c TLSConfig) *meshTLS {
	if c.Mode == "" {
		c.Mode = identity.Strict
	}
	if c.Namespace == "" {
		c.Namespace = identity.DefaultNamespace
	}
	if c.Gateway == nil {
		c.Gateway = c.Source
	}
	td := c.Source.TrustDomain()
	return &meshTLS{cfg: c, td: td, server: identity.ServerConfig(c.Source, identity.AllowTrustDomain(td)),
		client: map[string]*identity.Dialer{}}
}

// statsOf is the listener counters of a service.
func (t *meshTLS) statsOf(service string) *identity.Stats {
	if s, ok := t.stats.Load(service); ok {
		return s.(*identity.Stats)
	}
	s, _ := t.stats.LoadOrStore(service, &identity.Stats{})
	return s.(*identity.Stats)
}

// dialer is the client side towards the instances of service: they must
// present the service's SVID.
func (t *meshTLS) dialer(service string) *identity.Dialer {
	t.mu.Lock()
	defer t.mu.Unlock()
	d := t.client[service]
	if d == nil {
		want, err := identity.WorkloadID(t.td, t.cfg.Namespace, service)
		authz := identity.AllowIDs(want)
		if err != nil {
			authz = identity.AllowIDs() // a name that is no SPIFFE path: nothing verifies
		}
		cfg := identity.ClientConfig(t.cfg.Source, authz)
		d = &identity.Dialer{Config: cfg, Fallback: t.cfg.Mode == identity.Permissive}
		d.Net.Timeout = dialTimeout
		d.Net.KeepAlive = keepAlive
		t.client[service] = d
	}
	return d
}

// callerOf names the caller of a verified ID: a service of the
// namespace by its name, the gateway and the smoke checks by their caller
// names, anything else "" (unknown).
func (t *meshTLS) callerOf(id string) string {
	sid, err := spiffeid.FromString(id)
	if err != nil || !sid.MemberOf(t.td) {
		return ""
	}
	ns, sa, ok := identity.ParseWorkload(sid)
	switch {
	case !ok:
		return ""
	case ns == t.cfg.Namespace:
		return sa
	case ns == identity.SystemNamespace && sa == identity.Gateway:
		return GatewayCaller
	case ns == identity.SystemNamespace && sa == identity.Smoke:
		return SmokeCaller
	}
	return ""
}

// gatewayPeer is the value of PeerHeader on the gateway's requests.
func (m *Mesh) gatewayPeer() []string {
	if m.tls == nil {
		return nil
	}
	return []string{m.tls.cfg.Gateway.ID().String()}
}

// GatewayClient returns an HTTP client that calls into the mesh's
// listeners with the gateway's identity (the gateway's JWKS fetch), or
// nil without mutual TLS.
func (m *Mesh) GatewayClient() *http.Client {
	if m.tls == nil {
		return nil
	}
	d := &identity.Dialer{Config: identity.ClientConfig(m.tls.cfg.Gateway, identity.AllowIDs(m.tls.cfg.Source.ID()))}
	d.Net.Timeout = dialTimeout
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 4}}
}

// peerValue is the PeerHeader value of a connection accepted by a
// listener: the verified ID, or nil (plaintext, permitted).
func peerValue(c net.Conn) []string {
	if id := identity.PeerOf(c); !id.IsZero() {
		return []string{id.String()}
	}
	return nil
}

// stdPeer wraps a net/http server's handler: PeerHeader comes from the
// connection (ConnContext), never from the client.
type connKey struct{}

func stdPeer(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		delete(r.Header, PeerHeader)
		if c, _ := r.Context().Value(connKey{}).(net.Conn); c != nil {
			if v := peerValue(c); v != nil {
				r.Header[PeerHeader] = v
			}
		}
		h.ServeHTTP(w, r)
	})
}

func stdConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// writeTLS writes the listeners' handshake and refusal counters.
func (m *Mesh) writeTLS(w *bufio.Writer) {
	if m.tls == nil {
		return
	}
	_, _ = w.WriteString("# HELP flotilla_mesh_mtls_handshakes_total Mutual TLS handshakes accepted by each service's listener.\n# TYPE flotilla_mesh_mtls_handshakes_total counter\n")
	_, _ = w.WriteString("# HELP flotilla_mesh_mtls_plaintext_accepted_total Plaintext connections accepted (permissive mode).\n# TYPE flotilla_mesh_mtls_plaintext_accepted_total counter\n")
	_, _ = w.WriteString("# HELP flotilla_mesh_mtls_refused_total Connections refused by each service's listener, by reason.\n# TYPE flotilla_mesh_mtls_refused_total counter\n")
	for _, s := range m.Services() {
		m.tls.statsOf(s).WritePrometheus(w, "flotilla_mesh_mtls", `destination="`+s+`"`)
	}
}

// TLSStats are the listener counters of a service (nil without mutual
// TLS).
func (m *Mesh) TLSStats(service string) *identity.Stats {
	if m.tls == nil {
		return nil
	}
	return m.tls.statsOf(service)
}

// logRefusal logs the first refusal of each reason on a service's
// listener (the counter has the rate).
func (m *Mesh) logRefusal(service string) func(string, net.Addr, error) {
	var seen sync.Map
	return func(reason string, remote net.Addr, err error) {
		if _, dup := seen.LoadOrStore(reason, true); dup {
			return
		}
		m.log.Warn("mesh refused a connection", "service", service, "reason", reason, "remote", remote.String(), "err", err)
	}
}
