package identity

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// DefaultTTL is an SVID's lifetime (Istio's workload certificates live a
// day too); it is renewed when half of it has passed.
const DefaultTTL = 24 * time.Hour

// The files of an identity's directory.
const (
	SVIDFile   = "svid.pem"   // certificate, then its PKCS#8 key (0600)
	BundleFile = "bundle.pem" // the roots to trust
)

// The environment a platform gives a workload process: the directory of
// its SVID and bundle, its listener's mode (strict or permissive), the
// SPIFFE IDs allowed to connect to it (comma-separated), and the mesh's
// ID (the server its calls go to, and the one peer whose X-Flotilla-Peer
// header names the caller).
const (
	EnvDir    = "FLOTILLA_IDENTITY_DIR"
	EnvMTLS   = "FLOTILLA_MTLS"
	EnvPeers  = "FLOTILLA_PEERS"
	EnvMeshID = "FLOTILLA_MESH_ID"
)

// Workloads issues SVIDs into directories (Dir/<namespace>.<name>/), keeps
// them renewed and lists them.
type Workloads struct {
	CA  *CA
	Dir string
	// TTL is the SVIDs' lifetime (default DefaultTTL).
	TTL time.Duration
	// ReloadGrace is how long a CA rotation waits between giving every
	// workload the new bundle and issuing SVIDs from the new root, so no
	// process meets a certificate of a root it has not loaded yet
	// (default 2 s: Sources look at their files once a second).
	ReloadGrace time.Duration
	Logger      *slog.Logger

	mu  sync.Mutex
	ids map[string]spiffeid.ID // dir name → ID, of what this process issued or found
}

// Entry is one identity's current SVID.
type Entry struct {
	ID        string    `json:"id"`
	Serial    string    `json:"serial"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	Dir       string    `json:"dir"`
}

func (w *Workloads) ttl() time.Duration {
	if w.TTL > 0 {
		return w.TTL
	}
	return DefaultTTL
}

func (w *Workloads) log() *slog.Logger {
	if w.Logger != nil {
		return w.Logger
	}
	return slog.Default()
}

// DirOf is the directory of id's files.
func (w *Workloads) DirOf(id spiffeid.ID) string {
	if ns, sa, ok := ParseWorkload(id); ok {
		return WorkloadDir(w.Dir, ns, sa)
	}
	return filepath.Join(w.Dir, strings.ReplaceAll(strings.TrimPrefix(id.Path(), "/"), "/", "."))
}

// WorkloadDir is the directory of the files of namespace ns's workload
// name under a Workloads' root.
func WorkloadDir(root, ns, name string) string { return filepath.Join(root, ns+"."+name) }

// Ensure makes sure id has a current SVID from this CA (issuing one when
// it has none, when its SVID is past half its life or from another root)
// and returns its directory.
func (w *Workloads) Ensure(id spiffeid.ID) (string, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	dir := w.DirOf(id)
	if w.ids == nil {
		w.ids = map[string]spiffeid.ID{}
	}
	w.ids[filepath.Base(dir)] = id
	if e, ok := w.current(dir); ok && !w.due(e) {
		return dir, nil
	}
	_, err := w.issueLocked(id)
	return dir, err
}

// due: past half its life, or not signed by the current root.
func (w *Workloads) due(c *x509.Certificate) bool {
	now := w.CA.now()
	half := c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) / 2)
	if !now.Before(half) {
		return true
	}
	return c.CheckSignatureFrom(w.CA.Root()) != nil
}

// current reads the SVID certificate in dir.
func (w *Workloads) current(dir string) (*x509.Certificate, bool) {
	b, err := os.ReadFile(filepath.Join(dir, SVIDFile))
	if err != nil {
		return nil, false
	}
	certs, err := parseCerts(b)
	if err != nil {
		return nil, false
	}
	return certs[0], true
}

// Issue gives id a new SVID now.
func (w *Workloads) Issue(id spiffeid.ID) (Entry, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.issueLocked(id)
}

func (w *Workloads) issueLocked(id spiffeid.ID) (Entry, error) {
	dir := w.DirOf(id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Entry{}, fmt.Errorf("identity %s: %w", id, err)
	}
	svid, err := w.CA.Issue(id, w.ttl())
	if err != nil {
		return Entry{}, err
	}
	certs, key, err := svid.MarshalRaw()
	if err != nil {
		return Entry{}, err
	}
	_ = certs
	data := certsPEM(svid.Certificates)
	data = append(data, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key})...)
	// The bundle first: the new SVID may be of a root the old bundle
	// lacks.
	if err := w.writeBundle(dir); err != nil {
		return Entry{}, err
	}
	if err := writeFile(filepath.Join(dir, SVIDFile), data, 0o600); err != nil {
		return Entry{}, fmt.Errorf("identity %s: %w", id, err)
	}
	if w.ids == nil {
		w.ids = map[string]spiffeid.ID{}
	}
	w.ids[filepath.Base(dir)] = id
	c := svid.Certificates[0]
	w.log().Info("identity issued", "id", id.String(), "serial", serialHex(c), "not_after", c.NotAfter.UTC())
	return entryOf(dir, c), nil
}

func (w *Workloads) writeBundle(dir string) error {
	b, err := w.CA.Bundle().Marshal()
	if err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, BundleFile), b, 0o644)
}

func entryOf(dir string, c *x509.Certificate) Entry {
	id, _ := x509svid.IDFromCert(c)
	return Entry{ID: id.String(), Serial: serialHex(c), NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(), Dir: dir}
}

func serialHex(c *x509.Certificate) string { return fmt.Sprintf("%x", c.SerialNumber) }

// List returns every identity with an SVID in Dir, sorted by ID.
func (w *Workloads) List() ([]Entry, error) {
	des, err := os.ReadDir(w.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, de := range des {
		if !de.IsDir() {
			continue
		}
		dir := filepath.Join(w.Dir, de.Name())
		if c, ok := w.current(dir); ok {
			out = append(out, entryOf(dir, c))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// known returns every identity with a directory, from what was issued and
// what the files say.
func (w *Workloads) known() []spiffeid.ID {
	es, _ := w.List()
	seen := map[string]bool{}
	var out []spiffeid.ID
	for _, e := range es {
		if id, err := spiffeid.FromString(e.ID); err == nil && !seen[e.ID] {
			seen[e.ID] = true
			out = append(out, id)
		}
	}
	for _, id := range w.ids {
		if !seen[id.String()] {
			seen[id.String()] = true
			out = append(out, id)
		}
	}
	return out
}

// RenewDue renews the SVIDs past half their life, and returns them.
func (w *Workloads) RenewDue() ([]Entry, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []Entry
	var errs []error
	for _, id := range w.known() {
		if c, ok := w.current(w.DirOf(id)); ok && !w.due(c) {
			continue
		}
		e, err := w.issueLocked(id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, e)
	}
	return out, errors.Join(errs...)
}

// Rotate gives every identity a new SVID now (`flotilla certs rotate`).
// With newRoot, the CA makes a new root first: every workload is given the
// bundle with both roots, ReloadGrace passes, then the SVIDs are issued
// from the new root.
func (w *Workloads) Rotate(ctx context.Context, newRoot bool) ([]Entry, error) {
	if newRoot {
		if err := w.CA.Rotate(); err != nil {
			return nil, err
		}
		w.mu.Lock()
		var errs []error
		for _, id := range w.known() {
			errs = append(errs, w.writeBundle(w.DirOf(id)))
		}
		w.mu.Unlock()
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		grace := w.ReloadGrace
		if grace == 0 {
			grace = 2 * time.Second
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(grace):
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []Entry
	var errs []error
	for _, id := range w.known() {
		e, err := w.issueLocked(id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, errors.Join(errs...)
}

// Run renews what is due every interval until ctx ends.
func (w *Workloads) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := w.RenewDue(); err != nil {
			w.log().ErrorContext(ctx, "identity renewal failed", "err", err)
		}
	}
}
