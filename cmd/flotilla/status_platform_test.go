package main

import (
	"strings"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/controlplane"
	"github.com/flotilla-ci/flotilla/dataplane"
	"github.com/flotilla-ci/flotilla/internal/supervise"
)

// status shows each platform process: phase, pid, version, uptime,
// restarts, whether it was adopted, the data plane's configuration.
func TestWritePlatform(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	var b strings.Builder
	writePlatform(&b, []controlplane.PlatformProcess{
		{Status: supervise.Status{Name: "control plane", Phase: supervise.Ready, PID: 10, Version: "v1.2.0 (abc1234) go1.26.8 linux/amd64", Started: now.Add(-90 * time.Second)}},
		{Status: supervise.Status{Name: "bus", Phase: supervise.Ready, PID: 11, Version: "v1.1.0", Started: now.Add(-time.Hour), Adopted: true}},
		{Status: supervise.Status{Name: "dataplane", Phase: supervise.Ready, PID: 12, Started: now.Add(-5 * time.Second), Restarts: 1, LastExit: "signal: killed"}, ConfigVersion: 42},
		{Status: supervise.Status{Name: "dataplane", Phase: supervise.Ready, PID: 13, Started: now.Add(-5 * time.Second), HandedOver: true, HandedOverFrom: "pid 12 running /d/flotilla-01"},
			ConfigVersion: 43, Sockets: 3, ConfigRefused: &dataplane.Refusal{Version: 44, Acked: 43, Reason: "a loop", At: now.Add(-2 * time.Second)}},
	}, now)
	want := `PLATFORM       PHASE  PID  VERSION           UP      RESTARTS  NOTE
control plane  ready  10   v1.2.0 (abc1234)  1m30s   0         -
bus            ready  11   v1.1.0            1h0m0s  0         adopted
dataplane      ready  12   -                 5s      1         config 42 acknowledged, last exit: signal: killed
dataplane      ready  13   -                 5s      0         took over from pid 12 running /d/flotilla-01, config 43 acknowledged, config 44 REFUSED 2s ago (serves 43): a loop, 3 listening sockets kept
`
	if got := b.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
