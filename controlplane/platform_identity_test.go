package controlplane_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/controlplane"
	"github.com/flotilla-ci/flotilla/identity"
)

// checkRotationUnderLoad sends 100 requests a second (half through the
// gateway on kept-alive connections, half as order-service straight to
// user-service's mesh address, each on a new mutual TLS connection) while
// the certificates are rotated three times (the second time from a new
// root), and wants every request answered: no dropped request. After
// each rotation the mesh serves its new certificate.
func checkRotationUnderLoad(t *testing.T, info controlplane.PlatformInfo) {
	t.Helper()
	api := apiClient(t, info)
	ctx := context.Background()
	mesh := map[string]string{}
	for _, s := range info.Services {
		mesh[s.Name] = s.Mesh
	}
	direct := serviceClient(t, info.Data, "order-service")
	direct.Transport.(*http.Transport).DisableKeepAlives = true
	public := &http.Client{Timeout: 10 * time.Second}
	targets := []struct {
		c   *http.Client
		url string
	}{
		{public, info.Gateway + "/api/product/products?limit=5"},
		{direct, "http://" + mesh["user-service"] + "/.well-known/jwks.json"},
	}
	var total, failed atomic.Int64
	var firstErr atomic.Pointer[string]
	stop := make(chan struct{})
	var wg sync.WaitGroup
	ticking := make(chan struct{}) // closed when no more requests start
	go func() {
		defer close(ticking)
		tick := time.NewTicker(10 * time.Millisecond) // 100/s
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			tg := targets[i%2]
			wg.Add(1)
			go func() {
				defer wg.Done()
				total.Add(1)
				resp, err := tg.c.Get(tg.url)
				if err == nil {
					_ = resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("%s: %s", tg.url, resp.Status)
					}
				}
				if err != nil {
					failed.Add(1)
					msg := err.Error()
					firstErr.CompareAndSwap(nil, &msg)
				}
			}()
		}
	}()
	before, err := api.Identities(ctx)
	if err != nil {
		t.Fatal(err)
	}
	serial := func(r controlplane.IdentitiesResponse, id string) string {
		for _, e := range r.Identities {
			if strings.HasSuffix(e.ID, id) {
				return e.Serial
			}
		}
		return ""
	}
	prev := serial(before, "/sa/"+identity.Mesh)
	for i, newRoot := range []bool{false, true, false} {
		time.Sleep(time.Second) // load before, between and after the rotations
		after, err := api.RotateIdentities(ctx, newRoot)
		if err != nil {
			t.Fatalf("rotation %d: %v", i+1, err)
		}
		now := serial(after, "/sa/"+identity.Mesh)
		if now == prev || now == "" || len(after.Rotated) < 6 {
			t.Fatalf("rotation %d: the mesh's serial %s → %s, %d rotated; want a new one for every identity", i+1, prev, now, len(after.Rotated))
		}
		prev = now
		// The mesh presents its new certificate to new connections
		// (it reads its files again at most a second after they change).
		deadline := time.Now().Add(5 * time.Second)
		for got := meshSerial(t, info, mesh["user-service"]); got != now; got = meshSerial(t, info, mesh["user-service"]) {
			if time.Now().After(deadline) {
				t.Fatalf("rotation %d: the mesh still presents serial %s, want %s", i+1, got, now)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	time.Sleep(time.Second)
	close(stop)
	<-ticking // every wg.Add happened before the Wait
	wg.Wait()
	if f := failed.Load(); f != 0 || total.Load() < 300 {
		t.Errorf("under rotation: %d of %d requests failed (first: %v); want 0 of at least 300", f, total.Load(), *firstErr.Load())
	}
	t.Logf("rotation under load: %d requests, %d failed, across three rotations", total.Load(), failed.Load())
}

// meshSerial is the serial of the certificate the mesh presents at addr.
func meshSerial(t *testing.T, info controlplane.PlatformInfo, addr string) string {
	t.Helper()
	c := serviceClient(t, info.Data, "order-service")
	d := c.Transport.(*http.Transport).DialContext
	conn, err := d(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	return fmt.Sprintf("%x", conn.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber)
}

// checkAPIToken checks the control plane's API wants a token: none is
// 401 saying where the tokens are, the read-only one reads but cannot
// deploy (403), and the token files are readable by their owner only.
func checkAPIToken(t *testing.T, info controlplane.PlatformInfo) {
	t.Helper()
	adminFile := controlplane.TokenFile(info.Data, controlplane.RoleAdmin)
	readFile := controlplane.TokenFile(info.Data, controlplane.RoleRead)
	for _, f := range []string{adminFile, readFile} {
		fi, err := os.Stat(f)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("token file %s: %v %v; want mode 0600", f, fi.Mode(), err)
		}
	}
	ctx := context.Background()
	_, err := controlplane.NewClient(info.API).Status(ctx)
	var ae *controlplane.APIError
	if !errorsAs(err, &ae) || ae.Status != http.StatusUnauthorized || !strings.Contains(ae.Msg, adminFile) {
		t.Errorf("status without a token: %v; want 401 naming %s", err, adminFile)
	}
	_, err = controlplane.NewClient(info.API).WithToken("flt_admin_forged").Status(ctx)
	if !errorsAs(err, &ae) || ae.Status != http.StatusUnauthorized {
		t.Errorf("status with a forged token: %v; want 401", err)
	}
	tok, err := controlplane.ReadToken(readFile)
	if err != nil {
		t.Fatal(err)
	}
	ro := controlplane.NewClient(info.API).WithToken(tok)
	if _, err := ro.Status(ctx); err != nil {
		t.Errorf("status with the read-only token: %v", err)
	}
	_, err = ro.RotateIdentities(ctx, false)
	if !errorsAs(err, &ae) || ae.Status != http.StatusForbidden || !strings.Contains(ae.Msg, adminFile) {
		t.Errorf("a rotation with the read-only token: %v; want 403 naming %s", err, adminFile)
	}
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }
