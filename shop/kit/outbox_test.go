package kit_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/bus"
	"github.com/flotilla-ci/flotilla/internal/sqldb"
	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
)

type crashed struct{ point string }

// TestOutboxRelayAndIdempotentConsumer follows events from a committed
// transaction to a consumer's side effect through a relay that crashes
// after publishing, duplicate delivery, and a consumer that crashes after
// its effect: every event's effect lands exactly once, none is lost.
func TestOutboxRelayAndIdempotentConsumer(t *testing.T) {
	kittest.Each(t, func(t *testing.T, env kittest.Env) {
		ctx := context.Background()
		cfg := env.Config(t, "test-service")
		b, err := kit.Dial(ctx, cfg.BusURL, cfg.BusStream, "test", false, cfg.Logger)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = b.Close() }()
		db, err := sqldb.Open(ctx, cfg.DatabaseURL)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = db.Close() }()
		if err := kit.MigrateKit(ctx, db); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, `CREATE TABLE effects (event_id TEXT NOT NULL, n INTEGER NOT NULL)`); err != nil {
			t.Fatal(err)
		}

		// 30 committed events, and 5 in a rolled-back transaction that must never appear.
		for i := 0; i < 30; i++ {
			err := db.InTx(ctx, func(tx *sqldb.Tx) error {
				return kit.AddOutbox(ctx, tx, bus.Message{Topic: "Thing", Key: "k", Payload: []byte{byte(i)}})
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		rollback := errors.New("rollback")
		err = db.InTx(ctx, func(tx *sqldb.Tx) error {
			for i := 0; i < 5; i++ {
				if err := kit.AddOutbox(ctx, tx, bus.Message{Topic: "Thing", Key: "k", Payload: []byte{99}}); err != nil {
					return err
				}
			}
			return rollback
		})
		if !errors.Is(err, rollback) {
			t.Fatal(err)
		}

		// A relay that crashes after its first publish: nothing is marked sent.
		crashAt := func(point string) { panic(crashed{point}) }
		faults := kit.Faults{Duplicate: true, Crash: map[string]int{"outbox.after_publish": 1}}
		relay := &kit.Relay{DB: db, Bus: b, Faults: &faults, Crash: kit.NewCrasher(faults, crashAt), Batch: 10}
		func() {
			defer func() {
				if p := recover(); p != (crashed{"outbox.after_publish"}) {
					t.Fatalf("relay did not crash at outbox.after_publish: %v", p)
				}
			}()
			_, _ = relay.Once(ctx)
		}()
		if n, _ := kit.Unsent(ctx, db); n != 30 {
			t.Fatalf("after the crash %d rows unsent, want 30 (publish happened, mark-sent did not)", n)
		}
		// The restarted relay publishes everything (again), duplicated.
		for {
			n, err := relay.Once(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				break
			}
		}
		if n, _ := kit.Unsent(ctx, db); n != 0 {
			t.Fatalf("%d rows unsent after relaying", n)
		}

		// The consumer crashes once after its first effect, before the ack.
		var mu sync.Mutex
		crashes := 0
		cfaults := kit.Faults{Crash: map[string]int{"consumer.after_effect": 1}}
		h := kit.Idempotent(db, "effects", func(ctx context.Context, tx *sqldb.Tx, m bus.Message) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO effects (event_id, n) VALUES ($1, $2)`, m.ID(), int(m.Payload[0]))
			return err
		}, kit.NewCrasher(cfaults, func(string) { mu.Lock(); crashes++; mu.Unlock(); panic("crash") }))
		sub, err := b.Subscribe(ctx, bus.Subscription{Topic: "Thing", Group: "effects", Handler: h, Backoff: []time.Duration{10 * time.Millisecond}, MaxDeliveries: 10})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = sub.Close() }()
		// Then a sentinel event on the same key, through the outbox: the
		// key's events arrive in order, each handled before the next, so
		// once its effect is there every duplicate published or redelivered
		// before it has been handled already.
		const sentinel = 100
		if err := db.InTx(ctx, func(tx *sqldb.Tx) error {
			return kit.AddOutbox(ctx, tx, bus.Message{Topic: "Thing", Key: "k", Payload: []byte{sentinel}})
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := relay.Once(ctx); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for seen := 0; seen == 0; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the sentinel event's effect did not land within 20s")
			}
			if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM effects WHERE n = $1`, sentinel).Scan(&seen); err != nil {
				t.Fatal(err)
			}
		}
		var n, distinct int
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*), COUNT(DISTINCT event_id) FROM effects WHERE n <> $1`, sentinel).Scan(&n, &distinct); err != nil {
			t.Fatal(err)
		}
		if n != 30 || distinct != 30 {
			t.Fatalf("effects: %d rows for %d events; want 30 for 30 (each exactly once)", n, distinct)
		}
		var sum int
		_ = db.QueryRowContext(ctx, `SELECT COALESCE(SUM(n), 0) FROM effects WHERE n <> $1`, sentinel).Scan(&sum)
		if sum != 29*30/2 {
			t.Errorf("sum of payloads %d: a rolled-back event leaked or one was lost", sum)
		}
		if crashes != 1 {
			t.Errorf("consumer crash point fired %d times, want 1", crashes)
		}
	})
}

func TestIdempotentRejectsEventsWithoutID(t *testing.T) {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	if err := kit.MigrateKit(ctx, db); err != nil {
		t.Fatal(err)
	}
	h := kit.Idempotent(db, "c", func(context.Context, *sqldb.Tx, bus.Message) error { return nil }, nil)
	if err := h(ctx, bus.Message{Topic: "T"}); !bus.IsPermanent(err) {
		t.Errorf("err = %v, want a permanent (dead-letter) error", err)
	}
}
