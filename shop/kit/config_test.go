package kit

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseFaults(t *testing.T) {
	tests := []struct {
		in      string
		want    Faults
		wantErr string
	}{
		{in: "", want: Faults{Crash: map[string]int{}}},
		{in: "payment.failure_rate=0.2, payment.latency=300ms,inventory.slow=5ms,bus.publish_stall=1s,bus.duplicate=true,crash=outbox.after_publish@3,crash=saga.after_charge",
			want: Faults{PaymentFailureRate: 0.2, PaymentLatency: 300 * time.Millisecond, InventorySlow: 5 * time.Millisecond,
				PublishStall: time.Second, Duplicate: true, Crash: map[string]int{"outbox.after_publish": 3, "saga.after_charge": 1}}},
		{in: "http.error_rate=0.3,http.latency=150ms", want: Faults{HTTPErrorRate: 0.3, HTTPLatency: 150 * time.Millisecond, Crash: map[string]int{}}},
		{in: "http.error_rate=1", want: Faults{HTTPErrorRate: 1, Crash: map[string]int{}}},
		{in: "http.error_rate=1.5", wantErr: `http.error_rate="1.5": want a number from 0 to 1`},
		{in: "http.error_rate=-0.1", wantErr: `http.error_rate="-0.1": want a number from 0 to 1`},
		{in: "http.error_rate=NaN", wantErr: `http.error_rate="NaN": want a number from 0 to 1`},
		{in: "http.error_rate=30%", wantErr: `http.error_rate="30%": want a number from 0 to 1`},
		{in: "http.latency=150", wantErr: `http.latency="150": want a duration such as 200ms`},
		{in: "http.latency=-1s", wantErr: `http.latency="-1s": want a duration`},
		{in: "payment.failure_rate=2", wantErr: `payment.failure_rate="2": want a number from 0 to 1`},
		{in: "payment.failure_rate=NaN", wantErr: "want a number from 0 to 1"},
		{in: "payment.latency=fast", wantErr: `payment.latency="fast": want a duration`},
		{in: "bus.duplicate=maybe", wantErr: "want true or false"},
		{in: "crash=nowhere", wantErr: `crash="nowhere": unknown crash point; known: outbox.after_commit`},
		{in: "crash=outbox.after_publish@0", wantErr: "want POINT@N with N ≥ 1"},
		{in: "chaos=1", wantErr: `unknown fault "chaos"`},
		{in: "payment.latency", wantErr: "want name=value"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseFaults(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			again, err := ParseFaults(got.String())
			if err != nil || !cmp.Equal(got, again) {
				t.Errorf("String() %q does not parse back: %v", got.String(), err)
			}
		})
	}
}

func FuzzParseFaults(f *testing.F) {
	f.Add("payment.failure_rate=0.2,crash=outbox.after_publish@3")
	f.Add("bus.duplicate=true,,inventory.slow=1ms")
	f.Add("http.error_rate=0.3,http.latency=150ms")
	f.Add("http.error_rate=1e-3, http.latency=1h2m3.5s")
	f.Add("http.error_rate=Inf,http.latency=-0s")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseFaults(s)
		if err != nil {
			return
		}
		again, err := ParseFaults(got.String())
		if err != nil {
			t.Fatalf("String() of a parsed value does not parse: %q: %v", got.String(), err)
		}
		if !cmp.Equal(got, again) {
			t.Fatalf("round trip changed %q", s)
		}
	})
}

func TestLoad(t *testing.T) {
	env := map[string]string{"BUS_URL": "nats://127.0.0.1:4222", "USER_URL": "http://127.0.0.1:9001/", "FAULTS": "payment.failure_rate=0.5", "DATABASE_URL": "postgres://x@h/db"}
	getenv := func(k string) string { return env[k] }
	c, err := Load("cart-service", []string{"user", "product"}, []string{"-product-url", "http://127.0.0.1:9002", "-addr", ":0"}, getenv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"user": "http://127.0.0.1:9001", "product": "http://127.0.0.1:9002"}
	if diff := cmp.Diff(want, c.Deps); diff != "" {
		t.Errorf("deps (-want +got):\n%s", diff)
	}
	if c.Addr != ":0" || c.DatabaseURL != "postgres://x@h/db" || c.Faults.PaymentFailureRate != 0.5 {
		t.Errorf("config = %+v", c)
	}
	if c.CallTimeout != 10*time.Second || c.Client("user-service", "user").HTTP.Timeout != 10*time.Second {
		t.Errorf("call timeout %v, want the default 10s on every client", c.CallTimeout)
	}
	env["CALL_TIMEOUT"] = "30s"
	if c, err := Load("cart-service", []string{"product"}, []string{"-product-url", "http://p"}, getenv, io.Discard); err != nil || c.Client("product-service", "product").HTTP.Timeout != 30*time.Second || c.Client("product-service", "product").Base != "http://p" {
		t.Errorf("CALL_TIMEOUT=30s: %v, %v", c.CallTimeout, err)
	}
	for _, bad := range []string{"soon", "0s", "-1s"} {
		env["CALL_TIMEOUT"] = bad
		if _, err := Load("x", nil, nil, getenv, io.Discard); err == nil || !strings.Contains(err.Error(), "CALL_TIMEOUT") {
			t.Errorf("CALL_TIMEOUT=%s: err = %v, want CALL_TIMEOUT named", bad, err)
		}
	}
	env["CALL_TIMEOUT"] = ""
	delete(env, "USER_URL")
	env["BUS_URL"] = ""
	_, err = Load("cart-service", []string{"user"}, nil, getenv, io.Discard)
	for _, want := range []string{"BUS_URL is not set", "USER_URL is not set: want the base URL of user-service"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want it to say %q", err, want)
		}
	}
	env["DRAIN_TIMEOUT"] = "soon"
	if _, err := Load("x", nil, nil, getenv, io.Discard); err == nil || !strings.Contains(err.Error(), "DRAIN_TIMEOUT") {
		t.Errorf("err = %v, want DRAIN_TIMEOUT named", err)
	}
}
