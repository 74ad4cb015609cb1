package load

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// Slowness is told apart from wrong answers: the client's timeout and a
// 504 count as timeouts, a refused connection and a 500 do not.
func TestTimedOut(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	defer slow.Close()
	c := &http.Client{Timeout: 50 * time.Millisecond}
	resp, clientTimeout := c.Get(slow.URL)
	if clientTimeout == nil {
		_ = resp.Body.Close()
		t.Fatal("a request to a server that never answers returned no error")
	}
	refused := httptest.NewServer(http.NotFoundHandler())
	refused.Close()
	resp, refusedErr := http.Get(refused.URL)
	if refusedErr == nil {
		_ = resp.Body.Close()
		t.Fatal("a request to a closed server returned no error")
	}
	for _, c := range []struct {
		name   string
		err    error
		status int
		want   bool
	}{
		{"the client's timeout", clientTimeout, 0, true},
		{"a deadline, wrapped", fmt.Errorf("flow: %w", context.DeadlineExceeded), 0, true},
		{"a 504", nil, http.StatusGatewayTimeout, true},
		{"a refused connection", refusedErr, 0, false},
		{"a 500", nil, http.StatusInternalServerError, false},
		{"a 502", nil, http.StatusBadGateway, false},
		{"another error", errors.New("boom"), 0, false},
	} {
		if got := timedOut(c.err, c.status); got != c.want {
			t.Errorf("%s (%v, %d): timedOut = %v, want %v", c.name, c.err, c.status, got, c.want)
		}
	}
}
