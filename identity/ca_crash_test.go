package identity

import (
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// A rotation that stops at any step (the process killed between two
// writes) leaves, at the next start, the old CA or the new one: a key
// that is its root's, the old root still trusted after a rotation, and
// SVIDs the reopened CA issues verifying against its bundle. Before the
// commit mark the old CA stands; after it, the new one.
func TestRotationCrashLeavesOneConsistentCA(t *testing.T) {
	steps := []string{"staged previous.pem", "staged root.pem", "staged key.pem", "committed",
		"renamed previous.pem", "renamed root.pem", "renamed key.pem"}
	id := spiffeid.RequireFromString("spiffe://cluster.local/ns/default/sa/order-service")
	for i, step := range steps {
		t.Run(step, func(t *testing.T) {
			dir := t.TempDir()
			ca, err := OpenCA(dir, DefaultTrustDomain, nil)
			if err != nil {
				t.Fatal(err)
			}
			old := ca.Root()
			oldSVID, err := ca.Issue(id, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			var newRoot *x509.Certificate
			ca.crash = func(s string) bool {
				if s == "staged key.pem" {
					// The new root is known once it is staged.
					b, _ := os.ReadFile(filepath.Join(dir, rootFile+nextSuffix))
					roots, _ := parseCerts(b)
					if len(roots) == 1 {
						newRoot = roots[0]
					}
				}
				return s == step
			}
			if err := ca.Rotate(); !errors.Is(err, errCrash) {
				t.Fatalf("rotate stopped at %q: %v, want the simulated crash", step, err)
			}
			again, err := OpenCA(dir, DefaultTrustDomain, nil)
			if err != nil {
				t.Fatalf("reopen after a crash at %q: %v", step, err)
			}
			committed := i >= 3
			switch got := again.Root(); {
			case !committed && !got.Equal(old):
				t.Errorf("crash before the commit: the root changed")
			case committed && (newRoot == nil || !got.Equal(newRoot)):
				t.Errorf("crash after the commit: the root is not the new one")
			}
			if committed && !strings.Contains(string(mustRead(t, filepath.Join(dir, previousFile))), "CERTIFICATE") {
				t.Error("the new CA does not keep the old root as previous.pem")
			}
			svid, err := again.Issue(id, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			for name, s := range map[string]*x509svid.SVID{"an SVID of the reopened CA": svid, "an SVID of the old root": oldSVID} {
				if _, _, err := x509svid.Verify(s.Certificates, again.Bundle()); err != nil {
					t.Errorf("%s does not verify against its bundle: %v", name, err)
				}
			}
			left, _ := filepath.Glob(filepath.Join(dir, "*"+nextSuffix))
			if _, err := os.Stat(filepath.Join(dir, commitFile)); err == nil || len(left) > 0 {
				t.Errorf("the reopened CA left the staged change behind: %v", left)
			}
		})
	}
}

// A crash while the first root is written leaves no CA: the next start
// makes one, rather than failing on a key without its root.
func TestFirstRootCrashStartsAgain(t *testing.T) {
	dir := t.TempDir()
	ca := &CA{dir: dir, td: spiffeid.RequireTrustDomainFromString(DefaultTrustDomain), now: time.Now, crash: func(s string) bool { return s == "staged key.pem" }}
	if err := ca.newRoot(); !errors.Is(err, errCrash) {
		t.Fatalf("newRoot: %v, want the simulated crash", err)
	}
	if _, err := OpenCA(dir, DefaultTrustDomain, nil); err != nil {
		t.Fatalf("reopen: %v", err)
	}
}

// A key and a root of different CAs (restored from two backups, or
// written by a version without the commit mark that crashed between its
// two writes) are refused with what to do, never used to sign.
func TestKeyOfAnotherRootIsRefused(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	for _, d := range []string{a, b} {
		if _, err := OpenCA(d, DefaultTrustDomain, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(a, keyFile), mustRead(t, filepath.Join(b, keyFile)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := OpenCA(a, DefaultTrustDomain, nil)
	if err == nil || !strings.Contains(err.Error(), "key.pem is not the key of root.pem") {
		t.Fatalf("a key of another root: %v, want it refused naming key.pem and root.pem", err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
