package identity_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/identity"
	"github.com/flotilla-ci/flotilla/identity/identitytest"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestCAKeepsItsKeyOwnerOnlyAndReopens(t *testing.T) {
	dir := t.TempDir()
	ca, err := identity.OpenCA(dir, "cluster.local", nil)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "key.pem"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key.pem: %v %v, want mode 0600", fi.Mode(), err)
	}
	again, err := identity.OpenCA(dir, "cluster.local", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Root().Equal(ca.Root()) {
		t.Error("reopened CA has another root")
	}
	if _, err := identity.OpenCA(dir, "example.org", nil); err == nil {
		t.Error("a CA of cluster.local opened as example.org")
	}
}

func TestSVIDIsIstioShapedAndShortLived(t *testing.T) {
	env := identitytest.New(t, time.Hour, nil)
	id := identitytest.Service(t, "order-service")
	if id.String() != "spiffe://cluster.local/ns/default/sa/order-service" {
		t.Fatalf("id %s", id)
	}
	src := env.Source(t, id)
	svid, _ := src.GetX509SVID()
	c := svid.Certificates[0]
	if len(c.URIs) != 1 || c.URIs[0].String() != id.String() {
		t.Errorf("URI SANs %v, want only %s", c.URIs, id)
	}
	if life := c.NotAfter.Sub(c.NotBefore); life > time.Hour+2*time.Minute {
		t.Errorf("lifetime %v, want the TTL", life)
	}
	if _, _, err := x509svid.Verify(svid.Certificates, env.CA.Bundle()); err != nil {
		t.Errorf("does not verify against the CA's bundle: %v", err)
	}
}

// Past half its life an SVID is renewed (and only then); a Source reads
// the new one without a restart.
func TestRenewalAtHalfLifeReachesTheSource(t *testing.T) {
	clk := &clock{t: time.Now()}
	env := identitytest.New(t, 2*time.Hour, clk.now)
	id := identitytest.Service(t, "cart-service")
	src := env.Source(t, id)
	first := src.Serial()
	if got, err := env.Workloads.RenewDue(); err != nil || len(got) != 0 {
		t.Fatalf("renewed %v %v before half-life, want nothing", got, err)
	}
	clk.add(61 * time.Minute)
	got, err := env.Workloads.RenewDue()
	if err != nil || len(got) != 1 || got[0].ID != id.String() {
		t.Fatalf("renewed %v %v past half-life, want cart-service", got, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for src.Serial() == first {
		if time.Now().After(deadline) {
			t.Fatal("the source still serves the old SVID")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if src.Serial() != got[0].Serial {
		t.Errorf("source serial %s, want %s", src.Serial(), got[0].Serial)
	}
}

// A rotation of the CA keeps the old root trusted: an SVID it signed
// still verifies against the new bundle, and the new SVIDs are of the
// new root.
func TestRotateCAKeepsTheOldRootTrusted(t *testing.T) {
	env := identitytest.New(t, 0, nil)
	env.Workloads.ReloadGrace = time.Millisecond
	id := identitytest.Service(t, "user-service")
	old := env.Source(t, id)
	oldSVID, _ := old.GetX509SVID()
	oldRoot := env.CA.Root()
	rotated, err := env.Workloads.Rotate(context.Background(), true)
	if err != nil || len(rotated) != 1 {
		t.Fatalf("rotate: %v %v", rotated, err)
	}
	if env.CA.Root().Equal(oldRoot) {
		t.Fatal("the root did not change")
	}
	if _, _, err := x509svid.Verify(oldSVID.Certificates, env.CA.Bundle()); err != nil {
		t.Errorf("an SVID of the old root no longer verifies: %v", err)
	}
	fresh, err := identity.NewSource(env.Workloads.DirOf(id))
	if err != nil {
		t.Fatal(err)
	}
	svid, _ := fresh.GetX509SVID()
	if err := svid.Certificates[0].CheckSignatureFrom(env.CA.Root()); err != nil {
		t.Errorf("the new SVID is not of the new root: %v", err)
	}
	es, _ := env.Workloads.List()
	if len(es) != 1 || es[0].Serial != rotated[0].Serial {
		t.Errorf("list %v, want the rotated SVID", es)
	}
}

func TestParseWorkload(t *testing.T) {
	for _, tc := range []struct {
		id       string
		ns, name string
		ok       bool
	}{
		{"spiffe://cluster.local/ns/default/sa/order-service", "default", "order-service", true},
		{"spiffe://cluster.local/ns/flotilla-system/sa/mesh", "flotilla-system", "mesh", true},
		{"spiffe://cluster.local/order-service", "", "", false},
		{"spiffe://cluster.local/ns/default/sa/x/extra", "", "", false},
		{"spiffe://cluster.local/sa/default/ns/x", "", "", false},
	} {
		ns, name, ok := identity.ParseWorkload(spiffeid.RequireFromString(tc.id))
		if ns != tc.ns || name != tc.name || ok != tc.ok {
			t.Errorf("%s: %q %q %v, want %q %q %v", tc.id, ns, name, ok, tc.ns, tc.name, tc.ok)
		}
	}
}

func TestParseMode(t *testing.T) {
	if m, err := identity.ParseMode("STRICT"); err != nil || m != identity.Strict {
		t.Errorf("STRICT: %v %v", m, err)
	}
	if _, err := identity.ParseMode("disable"); err == nil {
		t.Error("disable accepted")
	}
}
