package kit

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/flotilla-ci/flotilla/identity"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// PeerHeader is the mesh's header naming the verified caller of a request
// it forwards (mesh.PeerHeader): believed only on a connection whose own
// certificate is the mesh's (see Peer).
const PeerHeader = "X-Flotilla-Peer"

// The environment a platform gives a service for its identity (package
// identity): the directory of its SVID and bundle, the mTLS mode of its
// listener, the SPIFFE IDs allowed to connect to it (comma-separated;
// empty: any of the trust domain), and the mesh's ID (the only server its
// calls to dependencies accept, and the only peer whose X-Flotilla-Peer
// it believes).
const (
	EnvIdentityDir = identity.EnvDir
	EnvMTLS        = identity.EnvMTLS
	EnvPeers       = identity.EnvPeers
	EnvMeshID      = identity.EnvMeshID
)

// dialers are the mutual TLS dialers of the services this process runs,
// by name: a call made under a service's context (WithService) dials
// with its identity.
var dialers sync.Map // service → *identity.Dialer

var plainDialer = &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}

// dialContext dials as the service of ctx: mutual TLS when it has an
// identity, plain TCP otherwise.
//
// A call made outside any service's context (a start-up call) dials as the
// process's service when it runs one only, as a service's process does.
func dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if d, ok := dialers.Load(ServiceFrom(ctx)); ok {
		return d.(*identity.Dialer).DialContext(ctx, network, addr)
	}
	if ServiceFrom(ctx) == "" {
		var only *identity.Dialer
		n := 0
		dialers.Range(func(_, v any) bool {
			only, n = v.(*identity.Dialer), n+1
			return n < 2
		})
		if n == 1 {
			return only.DialContext(ctx, network, addr)
		}
	}
	return plainDialer.DialContext(ctx, network, addr)
}

// newTransport is the transport of the kit's clients (Client, the JWKS
// fetch): it dials as the calling service (dialContext).
func newTransport() *http.Transport {
	return &http.Transport{DialContext: dialContext, MaxIdleConnsPerHost: 128, IdleConnTimeout: 90 * time.Second,
		ForceAttemptHTTP2: false}
}

// tlsState is an App's identity.
type tlsState struct {
	src   *identity.Source
	stats *identity.Stats
	mesh  spiffeid.ID
	mode  identity.Mode
}

// listenTLS wraps the App's listener with mutual TLS from its identity
// and registers its dialer.
func (a *App) listenTLS(ln net.Listener) (net.Listener, error) {
	cfg := a.Config
	src, err := identity.NewSource(cfg.Identity)
	if err != nil {
		return nil, err
	}
	mode := identity.Strict
	if cfg.MTLS != "" {
		if mode, err = identity.ParseMode(cfg.MTLS); err != nil {
			return nil, fmt.Errorf("%s: %w", EnvMTLS, err)
		}
	}
	st := &tlsState{src: src, stats: &identity.Stats{}, mode: mode}
	var seen sync.Map
	st.stats.OnRefuse = func(reason string, remote net.Addr, err error) {
		if _, dup := seen.LoadOrStore(reason, true); !dup {
			a.Log.Warn("refused a connection", "reason", reason, "remote", remote.String(), "err", err)
		}
	}
	allow := identity.AllowTrustDomain(src.TrustDomain())
	if len(cfg.Peers) > 0 {
		var ids []spiffeid.ID
		for _, p := range cfg.Peers {
			id, err := spiffeid.FromString(p)
			if err != nil {
				return nil, fmt.Errorf("%s: %q: %w", EnvPeers, p, err)
			}
			ids = append(ids, id)
		}
		allow = identity.AllowIDs(ids...)
	}
	server := identity.AllowTrustDomain(src.TrustDomain())
	if cfg.MeshID != "" {
		if st.mesh, err = spiffeid.FromString(cfg.MeshID); err != nil {
			return nil, fmt.Errorf("%s: %q: %w", EnvMeshID, cfg.MeshID, err)
		}
		server = identity.AllowIDs(st.mesh)
	}
	a.tls = st
	dialers.Store(cfg.Service, &identity.Dialer{Net: *plainDialer, Config: identity.ClientConfig(src, server)})
	return identity.Listen(ln, identity.ServerConfig(src, allow), mode, st.stats), nil
}

// TLSStats are the listener's handshake and refusal counters (nil without
// an identity).
func (a *App) TLSStats() *identity.Stats {
	if a.tls == nil {
		return nil
	}
	return a.tls.stats
}

// Identity is the service's SPIFFE ID ("" without one).
func (a *App) Identity() string {
	if a.tls == nil {
		return ""
	}
	return a.tls.src.ID().String()
}

type connKey struct{}

type connInfo struct {
	c    net.Conn
	mesh spiffeid.ID
}

func (a *App) connContext(ctx context.Context, c net.Conn) context.Context {
	ci := &connInfo{c: c}
	if a.tls != nil {
		ci.mesh = a.tls.mesh
	}
	return context.WithValue(ctx, connKey{}, ci)
}

// Peer is the verified SPIFFE ID of whoever made the request: for a
// request the mesh forwarded (the connection's certificate is the
// mesh's), the caller the mesh names in X-Flotilla-Peer, which it set from
// the caller's own certificate (the gateway's ID for a public request);
// for any other mutual TLS connection, that connection's certificate. ""
// when the service has no identity or the connection is plaintext
// (permissive mode): then nobody is known.
func Peer(r *http.Request) string {
	ci, _ := r.Context().Value(connKey{}).(*connInfo)
	if ci == nil {
		return ""
	}
	id := identity.PeerOf(ci.c)
	if id.IsZero() {
		return ""
	}
	if !ci.mesh.IsZero() && id == ci.mesh {
		return r.Header.Get(PeerHeader)
	}
	return id.String()
}

// PeerService is the service account name of Peer's ID when it is a
// workload of Istio's form (spiffe://td/ns/NS/sa/NAME): NAME and NS.
func PeerService(r *http.Request) (name, namespace string) {
	p := Peer(r)
	if p == "" {
		return "", ""
	}
	id, err := spiffeid.FromString(p)
	if err != nil {
		return "", ""
	}
	ns, sa, ok := identity.ParseWorkload(id)
	if !ok {
		return "", ""
	}
	return sa, ns
}

// metricsHandler serves GET /metrics/mtls: the listener's counters
// (a service may serve its own /metrics).
func (a *App) metricsHandler(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	if a.tls == nil {
		return
	}
	var b strings.Builder
	a.tls.stats.WritePrometheus(&b, "flotilla_service_mtls", `service="`+a.Config.Service+`"`)
	_, _ = w.Write([]byte(b.String()))
}
