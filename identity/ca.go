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
// still trusted (previous.pem), after a rotation. The three change
// together or not at all (a crash in the middle of a rotation leaves the
// old CA or the new one; see recover).
type CA struct {
	dir string
	td  spiffeid.TrustDomain
	now func() time.Time

	// crash, set by a test, stops a change after the step it names
	// (see commit).
	crash func(step string) bool

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
	if err := ca.recover(); err != nil {
		return nil, fmt.Errorf("certificate authority %s: %w", dir, err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, keyFile))
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
		return nil, fmt.Errorf("certificate authority %s: %w", filepath.Join(dir, keyFile), err)
	}
	rootPEM, err := os.ReadFile(filepath.Join(dir, rootFile))
	if err != nil {
		return nil, fmt.Errorf("certificate authority: %w", err)
	}
	roots, err := parseCerts(rootPEM)
	if err != nil || len(roots) != 1 {
		return nil, fmt.Errorf("certificate authority %s: want one certificate (%w)", filepath.Join(dir, rootFile), err)
	}
	ca.root = roots[0]
	if id, err := x509svid.IDFromCert(ca.root); err != nil || id.TrustDomain() != td {
		return nil, fmt.Errorf("certificate authority %s: its root is not of trust domain %s: remove %s to start a new CA (every workload gets a new certificate)", dir, td, dir)
	}
	if !publicKeysEqual(ca.key.Public(), ca.root.PublicKey) {
		return nil, fmt.Errorf("certificate authority %s: %s is not the key of %s (serial %x): restore both from one backup, or remove %s to start a new CA (every workload gets a new certificate)",
			dir, keyFile, rootFile, ca.root.SerialNumber, dir)
	}
	if b, err := os.ReadFile(filepath.Join(dir, previousFile)); err == nil {
		ca.previous, _ = parseCerts(b)
	}
	return ca, nil
}

// The CA's state is three files that change together: the root's key
// (key.pem), the root (root.pem) and the root it replaced (previous.pem).
const (
	keyFile      = "key.pem"
	rootFile     = "root.pem"
	previousFile = "previous.pem"
	// commitFile marks a staged change (the <name>.next files) as
	// complete: writing it is the one atomic step of a rotation.
	commitFile = "rotation.commit"
	nextSuffix = ".next"
)

// caFiles are the CA's files in the order a committed change renames
// them: the key last, so that until the end key.pem is the old root's
// key and root.pem is either root (recover finishes the renames).
var caFiles = []string{previousFile, rootFile, keyFile}

// recover finishes a change whose commit mark was written (renaming what
// is still staged over the current files) and discards one whose mark
// was not (a crash while staging: the old CA stands). A crash at any
// point of a rotation thus leaves the old CA or the new one, never the
// key of one root beside the certificate of another.
func (ca *CA) recover() error {
	commit := filepath.Join(ca.dir, commitFile)
	_, err := os.Stat(commit)
	switch {
	case err == nil:
		for _, f := range caFiles {
			staged := filepath.Join(ca.dir, f+nextSuffix)
			if err := os.Rename(staged, filepath.Join(ca.dir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("finish the interrupted rotation: %w", err)
			}
		}
		if err := syncDir(ca.dir); err != nil {
			return err
		}
		if err := os.Remove(commit); err != nil {
			return fmt.Errorf("finish the interrupted rotation: %w", err)
		}
		return syncDir(ca.dir)
	case !errors.Is(err, os.ErrNotExist):
		return err
	}
	for _, f := range caFiles {
		if err := os.Remove(filepath.Join(ca.dir, f+nextSuffix)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("discard the interrupted rotation: %w", err)
		}
	}
	return nil
}

// commit replaces the CA's files with files (name → content, a subset of
// caFiles) as one change: each staged as <name>.next, then the commit
// mark written, then each renamed over its file, then the mark removed.
// crash, when a test sets it, stops the change after the named step as
// a crash would.
func (ca *CA) commit(files map[string][]byte) error {
	for _, f := range caFiles {
		data, ok := files[f]
		if !ok {
			continue
		}
		mode := os.FileMode(0o644)
		if f == keyFile {
			mode = 0o600
		}
		if err := writeFile(filepath.Join(ca.dir, f+nextSuffix), data, mode); err != nil {
			return err
		}
		if ca.crashed("staged " + f) {
			return errCrash
		}
	}
	if err := writeFile(filepath.Join(ca.dir, commitFile), nil, 0o600); err != nil {
		return err
	}
	if err := syncDir(ca.dir); err != nil {
		return err
	}
	if ca.crashed("committed") {
		return errCrash
	}
	for _, f := range caFiles {
		if _, ok := files[f]; !ok {
			continue
		}
		if err := os.Rename(filepath.Join(ca.dir, f+nextSuffix), filepath.Join(ca.dir, f)); err != nil {
			return err
		}
		if ca.crashed("renamed " + f) {
			return errCrash
		}
	}
	if err := syncDir(ca.dir); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(ca.dir, commitFile)); err != nil {
		return err
	}
	return syncDir(ca.dir)
}

// errCrash is what commit returns where a test made it stop.
var errCrash = errors.New("simulated crash")

func (ca *CA) crashed(step string) bool { return ca.crash != nil && ca.crash(step) }

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer func() { _ = d.Close() }()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
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
	key, root, keyPEM, err := ca.makeRoot()
	if err != nil {
		return err
	}
	previous := []*x509.Certificate{old}
	if err := ca.commit(map[string][]byte{keyFile: keyPEM, rootFile: certsPEM([]*x509.Certificate{root}), previousFile: certsPEM(previous)}); err != nil {
		return fmt.Errorf("certificate authority: rotate: %w", err)
	}
	ca.key, ca.root, ca.previous = key, root, previous
	return nil
}

func (ca *CA) newRoot() error {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	key, root, keyPEM, err := ca.makeRoot()
	if err != nil {
		return err
	}
	if err := ca.commit(map[string][]byte{keyFile: keyPEM, rootFile: certsPEM([]*x509.Certificate{root})}); err != nil {
		return fmt.Errorf("certificate authority: %w", err)
	}
	ca.key, ca.root = key, root
	return nil
}

// makeRoot makes a new root key and self-signed certificate.
func (ca *CA) makeRoot() (crypto.Signer, *x509.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
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
		return nil, nil, nil, fmt.Errorf("certificate authority: root: %w", err)
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, err
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, nil, err
	}
	return key, root, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), nil
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
