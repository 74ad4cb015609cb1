package ui_test

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"testing"

	"github.com/flotilla-ci/flotilla/controlplane"
	"github.com/flotilla-ci/flotilla/dataplane"
)

// TestMain lets the test binary be the platform's own processes, as
// `flotilla up` runs them (the browser test starts a platform): its event
// bus (`<this program> bus ...`) and its data plane (`<this program>
// dataplane ...`).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && (os.Args[1] == "bus" || os.Args[1] == "dataplane") {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		var err error
		if os.Args[1] == "bus" {
			err = controlplane.ServeBus(ctx, os.Args[2:], os.Stderr)
		} else {
			err = dataplane.Command(ctx, os.Args[2:], os.Stderr, "test")
		}
		stop()
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", os.Args[1], err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}
