package user

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
)

// A customer who registered the admin's address before it was configured
// is not promoted: the start fails, naming the address.
func TestAdminAddressTakenByACustomer(t *testing.T) {
	env := kittest.SQLiteEnv(t)
	cfg := env.Config(t, Service)
	cfg.DatabaseURL = t.TempDir() + "/user.db"
	m := &Main{Config: Config{Kit: cfg}}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	register(t, m.URL(), "boss@shop.test")
	_ = m.Close()
	m2 := &Main{Config: Config{Kit: cfg, Admin: Admin{Email: "Boss@shop.test", Password: "a long admin password"}}}
	err := m2.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "boss@shop.test is registered by a customer") {
		t.Fatalf("start = %v", err)
	}
}

// Failed logins lock the account (and, past more, the address) for the
// window, before any hashing; the right password works once it passed.
func TestLoginThrottle(t *testing.T) {
	env := kittest.SQLiteEnv(t)
	m := &Main{Config: Config{Kit: env.Config(t, Service), Limits: Limits{AccountFailures: 3, AddressFailures: 6, LoginWindow: time.Minute}}}
	// The throttle's clock: the window passes when the test says so.
	var clockMu sync.Mutex
	now := time.Now()
	m.now = func() time.Time {
		clockMu.Lock()
		defer clockMu.Unlock()
		return now
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	register(t, m.URL(), "ada@shop.test")
	try := func(email, pw string) kittest.Response {
		return kittest.Call(t, "POST", m.URL()+"/login", "", map[string]string{"email": email, "password": pw})
	}
	for i := range 3 {
		if r := try("ada@shop.test", "wrong password"); r.Status != 401 {
			t.Fatalf("failure %d: %d %s", i, r.Status, r.Body)
		}
	}
	r := try("ADA@shop.test", "correct horse")
	if r.Status != 429 || r.ErrorCode() != "too_many_logins" || r.Header.Get("Retry-After") == "" {
		t.Fatalf("locked account: %d %s (Retry-After %q)", r.Status, r.Body, r.Header.Get("Retry-After"))
	}
	// Another account from the same address still logs in, until the
	// address has failed AddressFailures times.
	register(t, m.URL(), "bob@shop.test")
	for i := range 3 {
		if r := try(fmt.Sprintf("nobody%d@shop.test", i), "wrong password"); r.Status != 401 {
			t.Fatalf("address failure %d: %d %s", i, r.Status, r.Body)
		}
	}
	if r := try("bob@shop.test", "correct horse"); r.Status != 429 {
		t.Fatalf("locked address: %d %s", r.Status, r.Body)
	}
	clockMu.Lock()
	now = now.Add(time.Minute)
	clockMu.Unlock()
	if r := try("ada@shop.test", "correct horse"); r.Status != 200 {
		t.Fatalf("ada after the window: %d %s", r.Status, r.Body)
	}
}

// At most MaxHashing hashes run at once; the rest wait, then get 503
// with Retry-After.
func TestHashingIsBounded(t *testing.T) {
	h := &hashSlots{slots: make(chan struct{}, 2), wait: 50 * time.Millisecond}
	var mu sync.Mutex
	running, peak := 0, 0
	release := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- h.do(context.Background(), func() {
				mu.Lock()
				running++
				peak = max(peak, running)
				mu.Unlock()
				<-release
				mu.Lock()
				running--
				mu.Unlock()
			})
		}()
	}
	busy := 0
	for range 3 {
		err := <-errs
		var e *kit.Error
		if ok := asError(err, &e); !ok || e.Status != http.StatusServiceUnavailable || e.Code != "busy" {
			t.Fatalf("excess hash: %v", err)
		}
		busy++
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("admitted hash: %v", err)
		}
	}
	if peak != 2 || busy != 3 {
		t.Errorf("peak %d at once, %d refused; want 2 and 3", peak, busy)
	}
}

func asError(err error, e **kit.Error) bool {
	return errors.As(err, e)
}
