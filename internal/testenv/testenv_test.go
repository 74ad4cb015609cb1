package testenv

import "testing"

func TestDefaultPort(t *testing.T) {
	for scheme, want := range map[string]string{"postgres": "5432", "redis": "6379", "nats": "4222", "http": "80"} {
		if got := defaultPort(scheme); got != want {
			t.Errorf("defaultPort(%q) = %q, want %q", scheme, got, want)
		}
	}
}

func TestLookupSkipsWhenUnset(t *testing.T) {
	t.Setenv("CI", "")
	t.Setenv("FLOTILLA_TEST_NOTHING", "")
	ran := false
	t.Run("inner", func(t *testing.T) {
		Lookup(t, "FLOTILLA_TEST_NOTHING")
		ran = true
	})
	if ran {
		t.Fatal("Lookup returned for an unset variable; want a skip")
	}
}
