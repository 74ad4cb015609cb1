package nats_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/flotilla-ci/flotilla/bus"
	busnats "github.com/flotilla-ci/flotilla/bus/nats"
)

// Publish an event and consume it through a durable group on an embedded
// JetStream server; a poison message goes to the dead-letter topic.
func Example() {
	dir, _ := os.MkdirTemp("", "example-nats-")
	defer func() { _ = os.RemoveAll(dir) }()
	srv, err := busnats.Embedded(busnats.ServerConfig{Dir: dir})
	if err != nil {
		panic(err)
	}
	defer func() { _ = srv.Close() }()
	ctx := context.Background()
	cfg := busnats.DefaultConfig(srv.URL())
	cfg.Logger = slog.New(slog.DiscardHandler)
	b, err := busnats.New(ctx, cfg)
	if err != nil {
		panic(err)
	}
	defer func() { _ = b.Close() }()

	done := make(chan string, 2)
	sub, _ := b.Subscribe(ctx, bus.Subscription{Topic: "OrderCreated", Group: "notification-service",
		Handler: func(_ context.Context, m bus.Message) error {
			if m.Key == "o-bad" {
				return bus.Permanent(fmt.Errorf("cannot decode"))
			}
			done <- "handled " + m.ID()
			return nil
		}})
	defer func() { _ = sub.Close() }()
	dead, _ := b.Subscribe(ctx, bus.Subscription{Topic: bus.DeadLetterTopic("OrderCreated", "notification-service"), Group: "ops",
		Handler: func(_ context.Context, m bus.Message) error {
			done <- "dead letter " + m.ID() + ": " + m.Headers[bus.HeaderDeadLetterReason]
			return nil
		}})
	defer func() { _ = dead.Close() }()

	_ = b.Publish(ctx, bus.Message{Topic: "OrderCreated", Key: "o-bad", Headers: map[string]string{bus.HeaderEventID: "e-1"}, Payload: []byte{1}})
	fmt.Println(<-done)
	_ = b.Publish(ctx, bus.Message{Topic: "OrderCreated", Key: "o-1", Headers: map[string]string{bus.HeaderEventID: "e-2"}, Payload: []byte{0}})
	fmt.Println(<-done)
	// Output:
	// dead letter e-1: cannot decode
	// handled e-2
}
