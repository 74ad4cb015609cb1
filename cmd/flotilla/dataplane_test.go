package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"testing"
)

// TestMain runs the test binary as flotilla itself when `flotilla up`,
// run in a test, starts its data plane (this executable, "dataplane").
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "dataplane" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}
