package user

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flotilla-ci/flotilla/shop/kit"
)

// Abuse limits: a login flood must neither take user-service's memory nor
// guess passwords. Logins are throttled per account and per client
// address (failures in a window; the check comes before any hashing, so
// a refused attempt costs nothing), and password hashing (argon2id, 19 MiB
// each) runs at most MaxHashing at a time: the rest wait up to HashWait,
// then get 503 with Retry-After.

// Limits are user-service's abuse limits; zero fields take the defaults.
type Limits struct {
	// MaxHashing is how many argon2id hashes run at once (default 4: 76
	// MiB of hashing memory at most).
	MaxHashing int
	// HashWait is how long a request waits for a hashing slot before
	// 503 (default 5s).
	HashWait time.Duration
	// AccountFailures failed logins of one account within LoginWindow
	// lock it until the window has passed (default 5).
	AccountFailures int
	// AddressFailures failed logins from one client address within
	// LoginWindow refuse its logins until then (default 20).
	AddressFailures int
	// LoginWindow is the throttle's window (default 1m).
	LoginWindow time.Duration
}

func (l *Limits) defaults() {
	if l.MaxHashing <= 0 {
		l.MaxHashing = 4
	}
	if l.HashWait <= 0 {
		l.HashWait = 5 * time.Second
	}
	if l.AccountFailures <= 0 {
		l.AccountFailures = 5
	}
	if l.AddressFailures <= 0 {
		l.AddressFailures = 20
	}
	if l.LoginWindow <= 0 {
		l.LoginWindow = time.Minute
	}
}

// hashSlots bounds concurrent hashing.
type hashSlots struct {
	slots chan struct{}
	wait  time.Duration
}

// do runs fn in a hashing slot, or answers 503 busy after the wait.
func (h *hashSlots) do(ctx context.Context, fn func()) error {
	t := time.NewTimer(h.wait)
	defer t.Stop()
	select {
	case h.slots <- struct{}{}:
	case <-t.C:
		return &kit.Error{Status: http.StatusServiceUnavailable, Code: "busy", Message: "too many password checks at once: retry in a second"}
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-h.slots }()
	fn()
	return nil
}

// throttle counts failed logins per key (an account, an address) over a
// fixed window. Its memory is bounded: past maxKeys, expired windows are
// swept, and if that is not enough the oldest half of the map goes.
type throttle struct {
	mu      sync.Mutex
	limit   int
	window  time.Duration
	now     func() time.Time
	windows map[string]*failWindow
}

type failWindow struct {
	start time.Time
	n     int
}

const maxThrottleKeys = 100_000

func newThrottle(limit int, window time.Duration, now func() time.Time) *throttle {
	return &throttle{limit: limit, window: window, now: now, windows: map[string]*failWindow{}}
}

// blocked says whether key is over its limit, and for how long still.
func (t *throttle) blocked(key string) (bool, time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	w := t.windows[key]
	if w == nil {
		return false, 0
	}
	left := w.start.Add(t.window).Sub(t.now())
	if left <= 0 {
		delete(t.windows, key)
		return false, 0
	}
	return w.n >= t.limit, left
}

// fail counts a failed login of key.
func (t *throttle) fail(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	w := t.windows[key]
	if w == nil || now.Sub(w.start) >= t.window {
		if len(t.windows) >= maxThrottleKeys {
			t.sweep(now)
		}
		w = &failWindow{start: now}
		t.windows[key] = w
	}
	w.n++
}

// forget clears key's failures (a successful login of the account).
func (t *throttle) forget(key string) {
	t.mu.Lock()
	delete(t.windows, key)
	t.mu.Unlock()
}

func (t *throttle) sweep(now time.Time) {
	for k, w := range t.windows {
		if now.Sub(w.start) >= t.window {
			delete(t.windows, k)
		}
	}
	if len(t.windows) < maxThrottleKeys {
		return
	}
	n := 0
	for k := range t.windows { // map order is random: drop half, whichever
		if n >= maxThrottleKeys/2 {
			break
		}
		delete(t.windows, k)
		n++
	}
}

// tooMany is the 429 of a throttled login.
func tooMany(w http.ResponseWriter, left time.Duration, what string) error {
	secs := int(left.Seconds() + 0.999)
	if secs < 1 {
		secs = 1
	}
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	return kit.Errorf(http.StatusTooManyRequests, "too_many_logins", "too many failed logins %s: retry in %ds", what, secs)
}

// gatewayCaller is the identity the edge gateway calls services with
// (mesh.GatewayCaller): only its X-Forwarded-For is believed.
const gatewayCaller = "flotilla-gateway"

// clientAddress is the address a login came from: the gateway's own entry
// of X-Forwarded-For (the last one) when the gateway forwarded it, else
// the connection's peer.
func clientAddress(r *http.Request) string {
	if kit.Caller(r) == gatewayCaller {
		xff := r.Header.Values("X-Forwarded-For")
		if len(xff) > 0 {
			last := xff[len(xff)-1]
			if i := strings.LastIndexByte(last, ','); i >= 0 {
				last = last[i+1:]
			}
			if a := strings.TrimSpace(last); a != "" {
				return a
			}
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
