package identity

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Source is a process's own SVID and the bundle it trusts, read from an
// identity directory (svid.pem, bundle.pem) and read again when the files
// change: it implements go-spiffe's x509svid.Source and x509bundle.Source.
type Source struct {
	dir string

	checked atomic.Int64 // unix nanos of the last look at the files

	mu     sync.RWMutex
	svid   *x509svid.SVID
	bundle *x509bundle.Bundle
	stamp  [2]fileStamp
}

type fileStamp struct {
	mod  time.Time
	size int64
}

var (
	_ x509svid.Source   = (*Source)(nil)
	_ x509bundle.Source = (*Source)(nil)
)

// RecheckEvery is how often a Source looks at its files (when used).
const RecheckEvery = time.Second

// NewSource reads the identity in dir.
func NewSource(dir string) (*Source, error) {
	s := &Source{dir: dir}
	if err := s.load(); err != nil {
		return nil, err
	}
	s.checked.Store(time.Now().UnixNano())
	return s, nil
}

// Dir is the identity's directory.
func (s *Source) Dir() string { return s.dir }

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{fi.ModTime(), fi.Size()}, nil
}

func (s *Source) load() error {
	svidPath, bundlePath := filepath.Join(s.dir, SVIDFile), filepath.Join(s.dir, BundleFile)
	st0, err0 := stampOf(svidPath)
	st1, err1 := stampOf(bundlePath)
	if err := errors.Join(err0, err1); err != nil {
		return fmt.Errorf("identity %s: %w (the control plane writes it: is the platform up?)", s.dir, err)
	}
	b, err := os.ReadFile(svidPath)
	if err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	certs, err := parseCerts(b)
	if err != nil {
		return fmt.Errorf("identity %s: %w", svidPath, err)
	}
	key, err := parseKey(b)
	if err != nil {
		return fmt.Errorf("identity %s: %w", svidPath, err)
	}
	id, err := x509svid.IDFromCert(certs[0])
	if err != nil {
		return fmt.Errorf("identity %s: %w", svidPath, err)
	}
	svid := &x509svid.SVID{ID: id, Certificates: certs, PrivateKey: key}
	bundle, err := x509bundle.Load(id.TrustDomain(), bundlePath)
	if err != nil {
		return fmt.Errorf("identity %s: %w", bundlePath, err)
	}
	s.mu.Lock()
	s.svid, s.bundle, s.stamp = svid, bundle, [2]fileStamp{st0, st1}
	s.mu.Unlock()
	return nil
}

// refresh reloads the files when they changed, looking at most once per
// RecheckEvery. A file that cannot be read keeps what was loaded.
func (s *Source) refresh() {
	now := time.Now().UnixNano()
	last := s.checked.Load()
	if now-last < int64(RecheckEvery) || !s.checked.CompareAndSwap(last, now) {
		return
	}
	st0, err0 := stampOf(filepath.Join(s.dir, SVIDFile))
	st1, err1 := stampOf(filepath.Join(s.dir, BundleFile))
	if err0 != nil || err1 != nil {
		return
	}
	s.mu.RLock()
	same := s.stamp == [2]fileStamp{st0, st1}
	s.mu.RUnlock()
	if !same {
		_ = s.load()
	}
}

// Reload reads the files now (tests, and a process told to).
func (s *Source) Reload() error { return s.load() }

// GetX509SVID implements x509svid.Source.
func (s *Source) GetX509SVID() (*x509svid.SVID, error) {
	s.refresh()
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.svid, nil
}

// GetX509BundleForTrustDomain implements x509bundle.Source.
func (s *Source) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	s.refresh()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.bundle.TrustDomain() != td {
		return nil, fmt.Errorf("no bundle for trust domain %q", td)
	}
	return s.bundle, nil
}

// ID is the identity's SPIFFE ID.
func (s *Source) ID() spiffeid.ID {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.svid.ID
}

// TrustDomain is the identity's trust domain.
func (s *Source) TrustDomain() spiffeid.TrustDomain { return s.ID().TrustDomain() }

// Serial is the current SVID's serial number, in hex.
func (s *Source) Serial() string {
	s.refresh()
	s.mu.RLock()
	defer s.mu.RUnlock()
	return serialHex(s.svid.Certificates[0])
}
