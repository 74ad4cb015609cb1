package nats_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/bus"
	"github.com/flotilla-ci/flotilla/bus/bustest"
	busnats "github.com/flotilla-ci/flotilla/bus/nats"
	"github.com/flotilla-ci/flotilla/internal/testenv"
)

var seq atomic.Int64

func newBus(t *testing.T, url string) bus.Bus {
	t.Helper()
	n := fmt.Sprintf("T%d_%d", time.Now().UnixNano(), seq.Add(1))
	cfg := busnats.DefaultConfig(url)
	cfg.Stream, cfg.Prefix, cfg.Partitions = n, "t."+n, 4
	cfg.Logger = slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := busnats.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// A second connection: the bus under test may be closed already.
		c, err := busnats.New(context.Background(), cfg)
		if err == nil {
			_ = c.DeleteStream(context.Background())
			_ = c.Close()
		}
	})
	return b
}

func TestConformanceEmbedded(t *testing.T) {
	srv, err := busnats.Embedded(busnats.ServerConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	if !srv.SyncAlways() {
		t.Fatal("embedded server does not sync every write; want sync_interval: always")
	}
	bustest.Run(t, func(t *testing.T) bus.Bus { return newBus(t, srv.URL()) })
}

func TestConformanceServer(t *testing.T) {
	url := testenv.Server(t, testenv.NATS)
	bustest.Run(t, func(t *testing.T) bus.Bus { return newBus(t, url) })
}

// Acknowledged messages survive a restart of the embedded server on the
// same storage directory.
func TestEmbeddedKeepsMessagesAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	srv, err := busnats.Embedded(busnats.ServerConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cfg := busnats.DefaultConfig(srv.URL())
	b, err := busnats.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		if err := b.Publish(ctx, bus.Message{Topic: "T", Key: "k", Payload: []byte{byte(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	_ = b.Close()
	_ = srv.Close()

	srv, err = busnats.Embedded(busnats.ServerConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Close() }()
	cfg.URL = srv.URL()
	b, err = busnats.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = b.Close() }()
	got := make(chan byte, 100)
	sub, err := b.Subscribe(ctx, bus.Subscription{Topic: "T", Group: "g", Handler: func(_ context.Context, m bus.Message) error {
		got <- m.Payload[0]
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Close() }()
	for i := 0; i < 50; i++ {
		select {
		case v := <-got:
			if int(v) != i {
				t.Fatalf("message %d after restart is %d", i, v)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d of 50 messages survived the restart", i)
		}
	}
}
