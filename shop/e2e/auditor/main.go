// Command auditor is the consistency test's independent consumer: it
// subscribes to every event the order path publishes, decodes each with the
// producer's schema, and records its effect once (an idempotent consumer),
// so the test can prove every event arrived and none was applied twice. It
// runs as its own process so its speed does not depend on the test's race
// detector. On SIGTERM it records how many deliveries it saw and exits.
//
//	BUS_URL=nats://... BUS_STREAM=... DATABASE_URL=audit.db auditor
package main

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	"github.com/flotilla-ci/flotilla/bus"
	"github.com/flotilla-ci/flotilla/internal/sqldb"
	"github.com/flotilla-ci/flotilla/shop/inventory"
	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/order"
	"github.com/flotilla-ci/flotilla/shop/payment"
	"github.com/flotilla-ci/flotilla/shop/product"
	"github.com/flotilla-ci/flotilla/shop/user"
)

// Topics are every event the six order-path services publish.
var Topics = []string{"UserRegistered", "ProductCreated", "ProductUpdated", "PriceChanged", "StockReserved", "StockReleased", "StockDepleted",
	"PaymentCompleted", "PaymentFailed", "PaymentRefunded", "OrderCreated", "OrderConfirmed", "OrderCancelled"}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Getenv("BUS_URL"), os.Getenv("BUS_STREAM"), os.Getenv("DATABASE_URL")); err != nil {
		fmt.Fprintln(os.Stderr, "auditor:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, busURL, stream, dsn string) error {
	db, err := sqldb.Open(ctx, dsn)
	if err != nil {
		return err
	}
	defer func() { _ = db.Close() }()
	if err := kit.MigrateKit(ctx, db); err != nil {
		return err
	}
	for _, q := range []string{
		`CREATE TABLE IF NOT EXISTS effects (event_id TEXT NOT NULL, topic TEXT NOT NULL, msg_key TEXT NOT NULL, amount BIGINT NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS stats (name TEXT PRIMARY KEY, value BIGINT NOT NULL)`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	codec, _ := kit.NewCodec("")
	for _, s := range []fs.FS{user.Schemas(), product.Schemas(), inventory.Schemas(), payment.Schemas(), order.Schemas()} {
		if err := codec.Load(ctx, s); err != nil {
			return err
		}
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	b, err := kit.Dial(ctx, busURL, stream, "auditor", false, log)
	if err != nil {
		return err
	}
	var deliveries atomic.Int64
	for _, topic := range Topics {
		h := kit.Idempotent(db, "audit", func(ctx context.Context, tx *sqldb.Tx, m bus.Message) error {
			var e map[string]any
			if err := codec.Decode(ctx, m.Topic, m.Payload, &e); err != nil {
				return bus.Permanent(err)
			}
			var amount int64
			if a, ok := e["amount"].(int64); ok {
				amount = a
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO effects (event_id, topic, msg_key, amount) VALUES ($1, $2, $3, $4)`, m.ID(), m.Topic, m.Key, amount)
			return err
		}, nil)
		if _, err := b.Subscribe(ctx, bus.Subscription{Topic: topic, Group: "audit", Handler: func(ctx context.Context, m bus.Message) error {
			deliveries.Add(1)
			return h(ctx, m)
		}}); err != nil {
			return err
		}
	}
	fmt.Println("auditor: subscribed")
	<-ctx.Done()
	_ = b.Close()
	_, err = db.ExecContext(context.Background(), `INSERT INTO stats (name, value) VALUES ('deliveries', $1)`, deliveries.Load())
	return err
}
