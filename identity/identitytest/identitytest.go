// Package identitytest makes certificate authorities and workload
// identities in a test's temporary directory: real CAs, real SVIDs, real
// files, as the platform makes them.
package identitytest

import (
	"crypto/tls"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/identity"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
)

// Env is a CA and the workloads it issued, in a temporary directory.
type Env struct {
	CA        *identity.CA
	Workloads *identity.Workloads
	Dir       string
}

// New makes a CA of trust domain cluster.local whose SVIDs live ttl
// (0: identity.DefaultTTL). now may be nil.
func New(t testing.TB, ttl time.Duration, now func() time.Time) *Env {
	t.Helper()
	dir := t.TempDir()
	ca, err := identity.OpenCA(filepath.Join(dir, "ca"), identity.DefaultTrustDomain, now)
	if err != nil {
		t.Fatal(err)
	}
	return &Env{CA: ca, Workloads: &identity.Workloads{CA: ca, Dir: filepath.Join(dir, "workloads"), TTL: ttl, ReloadGrace: 1500 * time.Millisecond}, Dir: dir}
}

// ID is spiffe://cluster.local/ns/<ns>/sa/<name>.
func ID(t testing.TB, ns, name string) spiffeid.ID {
	t.Helper()
	id, err := identity.WorkloadID(spiffeid.RequireTrustDomainFromString(identity.DefaultTrustDomain), ns, name)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// Service is the ID of a service of the default namespace.
func Service(t testing.TB, name string) spiffeid.ID { return ID(t, identity.DefaultNamespace, name) }

// System is the ID of a platform workload (identity.Mesh, ...).
func System(t testing.TB, name string) spiffeid.ID { return ID(t, identity.SystemNamespace, name) }

// Dir0 issues id an SVID (if it has none) and returns its directory.
func (e *Env) Dir0(t testing.TB, id spiffeid.ID) string {
	t.Helper()
	dir, err := e.Workloads.Ensure(id)
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// Source issues id an SVID and reads it.
func (e *Env) Source(t testing.TB, id spiffeid.ID) *identity.Source {
	t.Helper()
	src, err := identity.NewSource(e.Dir0(t, id))
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// Client is an HTTP client presenting src's SVID that accepts any server
// of the trust domain (http:// URLs: the handshake is done at dial).
func Client(src *identity.Source) *http.Client {
	return ClientAuthorizing(src, identity.AllowTrustDomain(src.TrustDomain()))
}

// ClientAuthorizing is Client with the server's authorizer.
func ClientAuthorizing(src *identity.Source, server tlsconfig.Authorizer) *http.Client {
	d := &identity.Dialer{Config: identity.ClientConfig(src, server)}
	d.Net.Timeout = 5 * time.Second
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext}}
}

// NoCertClient speaks TLS without a client certificate (and trusts any
// server).
func NoCertClient() *http.Client {
	d := &identity.Dialer{Config: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}} //nolint:gosec // the test's point
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext}}
}

// Expired is a Source of id whose SVID, from this CA, expired an hour ago.
func (e *Env) Expired(t testing.TB, id spiffeid.ID) *identity.Source {
	t.Helper()
	past := func() time.Time { return time.Now().Add(-3 * time.Hour) }
	ca, err := identity.OpenCA(filepath.Join(e.Dir, "ca"), identity.DefaultTrustDomain, past)
	if err != nil {
		t.Fatal(err)
	}
	w := &identity.Workloads{CA: ca, Dir: filepath.Join(e.Dir, "expired"), TTL: 2 * time.Hour}
	if _, err := w.Issue(id); err != nil {
		t.Fatal(err)
	}
	src, err := identity.NewSource(w.DirOf(id))
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// Impostor presents src's SVID and trusts any server: a process that has
// a certificate (from another CA, expired, ...) and wants in.
func Impostor(src *identity.Source) *http.Client {
	cfg := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, //nolint:gosec // the test's point
		GetClientCertificate: tlsconfig.GetClientCertificate(src)}
	d := &identity.Dialer{Config: cfg}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext}}
}
