package kit_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/flotilla-ci/flotilla/bus"
	busnats "github.com/flotilla-ci/flotilla/bus/nats"
	"github.com/flotilla-ci/flotilla/internal/sqldb"
	"github.com/flotilla-ci/flotilla/shop/kit"
)

// A state change and its event commit together (the outbox); the relay
// publishes the event; a consumer applies it once even when it is
// delivered twice.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "kit-example-")
	defer func() { _ = os.RemoveAll(dir) }()
	srv, _ := busnats.Embedded(busnats.ServerConfig{Dir: filepath.Join(dir, "nats")})
	defer func() { _ = srv.Close() }()
	b, _ := kit.Dial(ctx, srv.URL(), "", "example", false, slog.New(slog.DiscardHandler))
	defer func() { _ = b.Close() }()
	db, _ := sqldb.Open(ctx, filepath.Join(dir, "service.db"))
	defer func() { _ = db.Close() }()
	_ = kit.MigrateKit(ctx, db)
	_, _ = db.ExecContext(ctx, `CREATE TABLE greetings (text TEXT NOT NULL)`)

	// The producer: state and event in one transaction.
	_ = db.InTx(ctx, func(tx *sqldb.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO greetings (text) VALUES ('hello')`); err != nil {
			return err
		}
		return kit.AddOutbox(ctx, tx, bus.Message{Topic: "Greeted", Key: "g-1", Payload: []byte("hello")})
	})
	// The relay, duplicating every event (the bus.duplicate fault).
	relay := &kit.Relay{DB: db, Bus: b, Faults: &kit.Faults{Duplicate: true}}
	n, _ := relay.Once(ctx)
	fmt.Println("relayed", n)

	// The consumer: idempotent, so the duplicate has no effect.
	applied := make(chan string, 2)
	h := kit.Idempotent(db, "greeter", func(ctx context.Context, tx *sqldb.Tx, m bus.Message) error {
		applied <- string(m.Payload)
		return nil
	}, nil)
	deliveries := make(chan struct{}, 2)
	sub, _ := b.Subscribe(ctx, bus.Subscription{Topic: "Greeted", Group: "greeter", Handler: func(ctx context.Context, m bus.Message) error {
		defer func() { deliveries <- struct{}{} }()
		return h(ctx, m)
	}})
	defer func() { _ = sub.Close() }()
	<-deliveries
	<-deliveries
	close(applied)
	for a := range applied {
		fmt.Println("applied", a)
	}
	// Output:
	// relayed 1
	// applied hello
}
