package load

import "testing"

func TestReasonCode(t *testing.T) {
	for reason, want := range map[string]string{
		"out_of_stock: SKU-1: 0 available, 1 requested": "out_of_stock",
		"payment_failed: card declined":                 "payment_failed",
		"reserve_unavailable: gave up":                  "reserve_unavailable",
		"":                                              "unknown",
		"something went wrong: x":                       "unknown",
		":":                                             "unknown",
	} {
		if got := reasonCode(reason); got != want {
			t.Errorf("reasonCode(%q) = %q, want %q", reason, got, want)
		}
	}
}
