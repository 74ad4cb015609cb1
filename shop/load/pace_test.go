package load

import (
	"testing"
	"time"
)

// TestDue is the open loop's pacing arithmetic: when each flow is due
// from the loop's start, at a flow rate and at a request rate, and how
// the request rate's schedule follows what finished flows actually sent.
func TestDue(t *testing.T) {
	ms := func(n float64) time.Duration { return time.Duration(n * float64(time.Millisecond)) }
	for _, tc := range []struct {
		name             string
		cfg              Config
		finished, sent   int
		scheduled        int
		prev, want       time.Duration
		perFlow, offered float64
	}{
		// 50 flows/s: slot n of a constant 20ms pace, whatever flows send.
		{name: "flow rate, first slot", cfg: Config{Rate: 50, Flows: map[string]int{Browse: 1}}, scheduled: 1, want: ms(20), perFlow: 2, offered: 100},
		{name: "flow rate, tenth slot", cfg: Config{Rate: 50, Flows: map[string]int{Browse: 1}}, scheduled: 10, want: ms(200), perFlow: 2, offered: 100},
		{name: "flow rate, flows that sent one request each", cfg: Config{Rate: 50, Flows: map[string]int{Browse: 1}}, finished: 40, sent: 40, scheduled: 50, want: ms(1000), perFlow: 1, offered: 50},
		// 100 requests/s of browse (2 requests a flow): before any
		// finished, each flow costs the mix's 2 requests, 20ms.
		{name: "request rate, nothing finished", cfg: Config{RequestRate: 100, Flows: map[string]int{Browse: 1}}, scheduled: 5, want: ms(100), perFlow: 2, offered: 100},
		// 80 finished having sent one request each: they cost 80
		// requests; the 20 still running cost what the prior-weighted
		// average says, (80 + 20*2) / (80 + 20) = 1.2 each: 104
		// requests, 1.04s at 100/s.
		{name: "request rate, flows sent fewer than the mix says", cfg: Config{RequestRate: 100, Flows: map[string]int{Browse: 1}}, finished: 80, sent: 80, scheduled: 100, want: ms(1040), perFlow: 1, offered: 100},
		// Flows that sent more push the schedule back: 50 finished with 4
		// each are 200 requests, the 50 running (200 + 20*2) / (50 + 20) each:
		// 371.4 requests, 3.71s at 100/s.
		{name: "request rate, flows sent more", cfg: Config{RequestRate: 100, Flows: map[string]int{Browse: 1}}, finished: 50, sent: 200, scheduled: 100, want: ms(1000 * (200 + 50*240.0/70) / 100), perFlow: 4, offered: 100},
		// Never before the previous flow's slot.
		{name: "never earlier than prev", cfg: Config{RequestRate: 100, Flows: map[string]int{Browse: 1}}, scheduled: 1, prev: time.Second, want: time.Second, perFlow: 2, offered: 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &runner{cfg: tc.cfg, finished: tc.finished, sent: tc.sent}
			got := r.due(tc.scheduled, tc.prev)
			if d := got - tc.want; d < -time.Microsecond || d > time.Microsecond {
				t.Errorf("due(%d, %v) = %v, want %v", tc.scheduled, tc.prev, got, tc.want)
			}
			if p := r.perFlow(false); p != tc.perFlow {
				t.Errorf("perFlow = %v, want %v", p, tc.perFlow)
			}
			if o := r.offered(); o != tc.offered {
				t.Errorf("offered = %v, want %v", o, tc.offered)
			}
		})
	}
}
