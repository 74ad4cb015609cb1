package controlplane

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/flotilla-ci/flotilla/graph"
	"github.com/flotilla-ci/flotilla/identity"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// IdentityDir is where a platform keeps its CA (ca/) and its workloads'
// SVIDs (workloads/<namespace>.<name>/), in the data directory.
func IdentityDir(data string) string { return filepath.Join(data, "identity") }

// platformIdentity is a platform's CA, its workloads' SVIDs and the
// identities of its own clients (probes, smoke checks).
type platformIdentity struct {
	w     *identity.Workloads
	mode  identity.Mode
	ns    string
	td    spiffeid.TrustDomain
	mesh  spiffeid.ID
	probe *identity.Source
	smoke *identity.Source
}

// openIdentity opens (or makes) the CA, issues the platform's own
// workloads their SVIDs, and renews every SVID in the background until
// ctx ends.
func (p *Platform) openIdentity(ctx context.Context, data string) (*platformIdentity, error) {
	td := p.cfg.TrustDomain
	if td == "" {
		td = identity.DefaultTrustDomain
	}
	ca, err := identity.OpenCA(filepath.Join(IdentityDir(data), "ca"), td, nil)
	if err != nil {
		return nil, err
	}
	pi := &platformIdentity{
		w:    &identity.Workloads{CA: ca, Dir: filepath.Join(IdentityDir(data), "workloads"), TTL: p.cfg.CertTTL, Logger: p.log.With("component", "identity")},
		mode: p.cfg.MTLS, ns: identity.DefaultNamespace, td: ca.TrustDomain(),
	}
	ids := map[string]spiffeid.ID{}
	for _, name := range []string{identity.Mesh, identity.Gateway, identity.Probe, identity.Smoke} {
		id, err := identity.WorkloadID(pi.td, identity.SystemNamespace, name)
		if err != nil {
			return nil, err
		}
		if _, err := pi.w.Ensure(id); err != nil {
			return nil, err
		}
		ids[name] = id
	}
	pi.mesh = ids[identity.Mesh]
	if pi.probe, err = identity.NewSource(pi.w.DirOf(ids[identity.Probe])); err != nil {
		return nil, err
	}
	if pi.smoke, err = identity.NewSource(pi.w.DirOf(ids[identity.Smoke])); err != nil {
		return nil, err
	}
	// Renewed when half their life has passed: look a few times per
	// half-life, at least once a minute.
	every := min(max(pi.w.TTL, time.Minute)/8, time.Minute)
	if pi.w.TTL == 0 {
		every = time.Minute
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		pi.w.Run(rctx, every)
	}()
	p.onClose("identity renewal", func(context.Context) error { cancel(); <-done; return nil })
	return pi, nil
}

// serviceID is a service's SPIFFE ID.
func (pi *platformIdentity) serviceID(service string) (spiffeid.ID, error) {
	return identity.WorkloadID(pi.td, pi.ns, service)
}

// env adds a service's identity to its environment: its SVID (issued now
// if it has none), the mode, who may connect (the mesh, the probes, the
// service itself, and the services the graph lets call it) and the mesh's
// ID.
func (pi *platformIdentity) env(m *graph.Manifest, next func(string) map[string]string) func(string) map[string]string {
	return func(service string) map[string]string {
		env := next(service)
		id, err := pi.serviceID(service)
		if err != nil {
			return env // refused by the instance's start: no identity dir
		}
		dir, err := pi.w.Ensure(id)
		if err != nil {
			return env
		}
		probe, _ := identity.WorkloadID(pi.td, identity.SystemNamespace, identity.Probe)
		// The mesh, the probes, itself (user-service reads its own
		// JWKS), and the services that may call it.
		peers := []string{pi.mesh.String(), probe.String(), id.String()}
		for _, s := range m.Services {
			for _, d := range s.DependsOn {
				if d == service {
					if cid, err := pi.serviceID(s.Name); err == nil {
						peers = append(peers, cid.String())
					}
				}
			}
		}
		env[identity.EnvDir] = dir
		env[identity.EnvMTLS] = string(pi.mode)
		env[identity.EnvPeers] = strings.Join(peers, ",")
		env[identity.EnvMeshID] = pi.mesh.String()
		return env
	}
}

// servicesOfNamespace authorizes a server that is a service of the
// platform's namespace (the probes reach every service's instances).
func (pi *platformIdentity) servicesOfNamespace(id spiffeid.ID, _ [][]*x509.Certificate) error {
	if ns, _, ok := identity.ParseWorkload(id); ok && id.MemberOf(pi.td) && ns == pi.ns {
		return nil
	}
	return fmt.Errorf("%w: %s is no service of namespace %s", identity.ErrNotAllowed, id, pi.ns)
}

// probeTransport makes the readiness probes as flotilla-system/probe.
func (pi *platformIdentity) probeTransport() http.RoundTripper {
	d := &identity.Dialer{Config: identity.ClientConfig(pi.probe, pi.servicesOfNamespace), Fallback: pi.mode == identity.Permissive}
	d.Net.Timeout = time.Second
	return &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}
}

// smokeClient makes the smoke checks through the mesh as
// flotilla-system/smoke.
func (pi *platformIdentity) smokeClient() *http.Client {
	d := &identity.Dialer{Config: identity.ClientConfig(pi.smoke, identity.AllowIDs(pi.mesh))}
	d.Net.Timeout = 2 * time.Second
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 2}}
}

// IdentitiesResponse is the body of GET /api/identities and of
// POST /api/identities/rotate.
type IdentitiesResponse struct {
	TrustDomain string           `json:"trust_domain"`
	Mode        identity.Mode    `json:"mode"`
	Root        identity.Entry   `json:"root"`
	Identities  []identity.Entry `json:"identities"`
	// Rotated are the identities given a new SVID (rotate only).
	Rotated []identity.Entry `json:"rotated,omitempty"`
}

// RotateRequest is the body of POST /api/identities/rotate.
type RotateRequest struct {
	// CA makes a new root first (the old one stays trusted).
	CA bool `json:"ca,omitempty"`
}

func (pi *platformIdentity) response() (IdentitiesResponse, error) {
	es, err := pi.w.List()
	root := pi.w.CA.Root()
	return IdentitiesResponse{TrustDomain: pi.td.String(), Mode: pi.mode, Identities: es,
		Root: identity.Entry{ID: pi.td.ID().String(), Serial: fmt.Sprintf("%x", root.SerialNumber), NotBefore: root.NotBefore.UTC(), NotAfter: root.NotAfter.UTC(),
			Dir: filepath.Dir(pi.w.Dir) + "/ca"}}, err
}

// routes serves the identity API on mux.
func (pi *platformIdentity) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/identities", func(w http.ResponseWriter, r *http.Request) {
		resp, err := pi.response()
		if err != nil {
			writeError(w, http.StatusInternalServerError, err)
			return
		}
		writeJSON(w, http.StatusOK, resp)
	})
	mux.HandleFunc("POST /api/identities/rotate", func(w http.ResponseWriter, r *http.Request) {
		var req RotateRequest
		if r.ContentLength != 0 {
			dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&req); err != nil {
				writeError(w, http.StatusBadRequest, fmt.Errorf("rotate: %w (want {\"ca\": true|false})", err))
				return
			}
		}
		rotated, err := pi.w.Rotate(r.Context(), req.CA)
		if err != nil {
			writeError(w, http.StatusInternalServerError, fmt.Errorf("rotate: %w", err))
			return
		}
		resp, err := pi.response()
		resp.Rotated = rotated
		if err != nil {
			writeError(w, http.StatusInternalServerError, errors.Join(err))
			return
		}
		writeJSON(w, http.StatusOK, resp)
	})
}
