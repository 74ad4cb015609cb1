package identity

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Defaults: Istio's trust domain and namespace, and the namespace of the
// platform's own workloads.
const (
	DefaultTrustDomain = "cluster.local"
	DefaultNamespace   = "default"
	SystemNamespace    = "flotilla-system"
)

// The platform's own workloads (service accounts of SystemNamespace).
const (
	Mesh    = "mesh"    // the data plane's listeners and its calls to instances
	Gateway = "gateway" // the edge gateway's calls into the mesh
	Probe   = "probe"   // the control plane's readiness probes of instances
	Smoke   = "smoke"   // the orchestrator's smoke checks through the mesh
)

// WorkloadID is spiffe://<td>/ns/<ns>/sa/<name>, Istio's form.
func WorkloadID(td spiffeid.TrustDomain, ns, name string) (spiffeid.ID, error) {
	return spiffeid.FromSegments(td, "ns", ns, "sa", name)
}

// ParseWorkload returns the namespace and service account of an ID of
// Istio's form; ok is false for any other path.
func ParseWorkload(id spiffeid.ID) (ns, name string, ok bool) {
	parts := strings.Split(strings.TrimPrefix(id.Path(), "/"), "/")
	if len(parts) != 4 || parts[0] != "ns" || parts[2] != "sa" {
		return "", "", false
	}
	return parts[1], parts[3], true
}

// CA is the platform's certificate authority: a root key and certificate
// in its directory (key.pem mode 0600, root.pem), and the root it replaced,
// still trusted (previous.pem), after a rotation.
type CA struct {
	dir string
	td  spiffeid.TrustDomain
	now func() time.Time

	mu       sync.Mutex
	key      crypto.Signer
	root     *x509.Certificate
	previous []*x509.Certificate
}

// RootTTL is the lifetime of a root the CA makes (Istio's self-signed
// root lives ten years too).
const RootTTL = 10 * 365 * 24 * time.Hour

// OpenCA opens the CA in dir, making its key and root on first use.
func OpenCA(dir string, trustDomain string, now func() time.Time) (*CA, error) {
	td, err := spiffeid.TrustDomainFromString(trustDomain)
	if err != nil {
		return nil, fmt.Errorf("trust domain %q: %w", trustDomain, err)
	}
	if now == nil {
		now = time.Now
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("certificate authority: %w", err)
	}
	ca := &CA{dir: dir, td: td, now: now}
	keyPEM, err := os.ReadFile(filepath.Join(dir, "key.pem"))
	if errors.Is(err, os.ErrNotExist) {
		if err := ca.newRoot(); err != nil {
			return nil, err
		}
		return ca, nil
	}
	if err != nil {
		return nil, fmt.Errorf("certificate authority: %w", err)
	}
	if ca.key, err = parseKey(keyPEM); err != nil {
		return nil, fmt.Errorf("certificate authority %s: %w", filepath.Join(dir, "key.pem"), err)
	}
	rootPEM, err := os.ReadFile(filepath.Join(dir, "root.pem"))
	if err != nil {
		return nil, fmt.Errorf("certificate authority: %w", err)
	}
	roots, err := parseCerts(rootPEM)
	if err != nil || len(roots) != 1 {
		return nil, fmt.Errorf("certificate authority %s: want one certificate (%w)", filepath.Join(dir, "root.pem"), err)
	}
	ca.root = roots[0]
	if id, err := x509svid.IDFromCert(ca.root); err != nil || id.TrustDomain() != td {
		return nil, fmt.Errorf("certificate authority %s: its root is not of trust domain %s: remove %s to start a new CA (every workload gets a new certificate)", dir, td, dir)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "previous.pem")); err == nil {
		ca.previous, _ = parseCerts(b)
	}
	return ca, nil
}

// TrustDomain is the CA's trust domain.
func (ca *CA) TrustDomain() spiffeid.TrustDomain { return ca.td }

// Bundle is the roots to trust: the current one and the one it replaced.
func (ca *CA) Bundle() *x509bundle.Bundle {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	return x509bundle.FromX509Authorities(ca.td, append([]*x509.Certificate{ca.root}, ca.previous...))
}

// Root is the current root certificate.
func (ca *CA) Root() *x509.Certificate {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	return ca.root
}

// Rotate makes a new root; the old one stays trusted (previous.pem) until
// the next rotation, so SVIDs it signed keep verifying until they are
// renewed.
func (ca *CA) Rotate() error {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	old := ca.root
	if err := ca.newRootLocked(); err != nil {
		return err
	}
	ca.previous = []*x509.Certificate{old}
	return writeFile(filepath.Join(ca.dir, "previous.pem"), certsPEM(ca.previous), 0o644)
}

func (ca *CA) newRoot() error {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	return ca.newRootLocked()
}

func (ca *CA) newRootLocked() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := ca.now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"flotilla"}, CommonName: "flotilla root CA " + now.UTC().Format("2006-01-02T15:04:05Z")},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(RootTTL),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		URIs:                  []*url.URL{ca.td.ID().URL()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return fmt.Errorf("certificate authority: root: %w", err)
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	// The key first: a root without its key would be useless.
	if err := writeFile(filepath.Join(ca.dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return fmt.Errorf("certificate authority: %w", err)
	}
	if err := writeFile(filepath.Join(ca.dir, "root.pem"), certsPEM([]*x509.Certificate{root}), 0o644); err != nil {
		return fmt.Errorf("certificate authority: %w", err)
	}
	ca.key, ca.root = key, root
	return nil
}

// Issue signs a new X.509-SVID for id, valid for ttl (backdated a minute
// for clocks a little behind).
func (ca *CA) Issue(id spiffeid.ID, ttl time.Duration) (*x509svid.SVID, error) {
	if !id.MemberOf(ca.td) {
		return nil, fmt.Errorf("issue %s: not of trust domain %s", id, ca.td)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	now := ca.now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{Organization: []string{"flotilla"}},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(ttl),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{id.URL()},
	}
	if tmpl.NotAfter.After(ca.root.NotAfter) {
		tmpl.NotAfter = ca.root.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.root, key.Public(), ca.key)
	if err != nil {
		return nil, fmt.Errorf("issue %s: %w", id, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &x509svid.SVID{ID: id, Certificates: []*x509.Certificate{cert}, PrivateKey: key}, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return n
}

func certsPEM(certs []*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

func parseCerts(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no certificate")
	}
	return out, nil
}

func parseKey(b []byte) (crypto.Signer, error) {
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil, errors.New("no PRIVATE KEY block")
		}
		if blk.Type != "PRIVATE KEY" {
			continue
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, err
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, errors.New("the key cannot sign")
		}
		return s, nil
	}
}

// writeFile replaces path atomically (a temporary file renamed over it),
// so a reader sees the old content or the new, never half of it.
func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if err := tmp.Chmod(mode); err != nil {
		_ = tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
