package controlplane_test

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"testing"

	"github.com/flotilla-ci/flotilla/dataplane"
)

// TestMain runs the test binary as the data plane when the platform
// starts it as such (PlatformConfig.Dataplane defaults to this executable
// with "dataplane").
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "dataplane" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		err := dataplane.Command(ctx, os.Args[2:], os.Stderr, "test")
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "dataplane:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}
