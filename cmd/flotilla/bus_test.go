package main

import (
	"context"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	busnats "github.com/flotilla-ci/flotilla/bus/nats"
)

// TestMain lets the test binary be flotilla's own processes: `flotilla
// up` in these tests runs its event bus and its data plane as this
// program's bus and dataplane subcommands.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && (os.Args[1] == "bus" || os.Args[1] == "dataplane") {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

func TestBusServesUntilCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"bus", "--dir", t.TempDir(), "--addr", "127.0.0.1:0"}, strings.NewReader(""), &stdout, &stderr)
	}()
	var url string
	deadline := time.Now().Add(time.Minute)
	for url == "" {
		if _, after, ok := strings.Cut(stdout.String(), "bus ready: "); ok {
			url = strings.TrimSpace(after)
			break
		}
		select {
		case code := <-done:
			t.Fatalf("bus exited %d before ready: %s", code, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("bus not ready after a minute: %s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
	defer pcancel()
	if err := busnats.Probe(pctx, url); err != nil {
		t.Fatalf("bus at %s: %v", url, err)
	}
	cancel() // SIGTERM, as main turns it into a cancelled context
	select {
	case code := <-done:
		if code != exitOK {
			t.Fatalf("bus exited %d after SIGTERM: %s", code, stderr.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("bus did not stop")
	}
	if !strings.Contains(stderr.String(), "bus stopped") {
		t.Fatalf("no clean shutdown logged: %s", stderr.String())
	}
}

func TestBusUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"bus"}, []string{"--dir is required"}},
		{[]string{"bus", "--dir", "x", "--addr", "nowhere"}, []string{`--addr "nowhere"`}},
		{[]string{"bus", "--dir", "x", "--addr", "127.0.0.1:70000", "--max-store", "-1"}, []string{"port from 0 to 65535", "--max-store -1"}},
	} {
		var stdout, stderr syncBuffer
		code := run(context.Background(), tc.args, strings.NewReader(""), &stdout, &stderr)
		if code != exitUsage {
			t.Errorf("%v: exit %d, want %d", tc.args, code, exitUsage)
		}
		for _, w := range tc.want {
			if !strings.Contains(stderr.String(), w) {
				t.Errorf("%v: %q does not say %q", tc.args, stderr.String(), w)
			}
		}
	}
}
