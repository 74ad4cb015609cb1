package controlplane_test

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"testing"

	"github.com/flotilla-ci/flotilla/controlplane"
)

// TestMain lets the test binary be the platform's event bus: a Platform
// runs its bus as `<this program> bus --dir D --addr A` (the default
// BusCommand), a process of its own, as `flotilla up` does.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "bus" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := controlplane.ServeBus(ctx, os.Args[2:], os.Stderr)
		stop()
		if err != nil {
			_, _ = os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}
