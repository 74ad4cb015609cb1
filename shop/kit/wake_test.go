package kit

import (
	"context"
	"errors"
	"testing"

	"github.com/flotilla-ci/flotilla/internal/sqldb"
)

// The relay is woken after a commit that wrote events, and only then: a
// transaction without events must not cost it a read of the outbox.
func TestTxWakesRelayOnlyForEvents(t *testing.T) {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	if err := MigrateKit(ctx, db); err != nil {
		t.Fatal(err)
	}
	codec, _ := NewCodec("")
	if err := codec.Add(ctx, "Thing", `{"type":"record","name":"Thing","fields":[{"name":"n","type":"int"}]}`); err != nil {
		t.Fatal(err)
	}
	type thing struct {
		N int `avro:"n"`
	}
	a := &App{DB: db, Codec: codec, relay: &Relay{DB: db}}
	a.relay.init()
	woken := func() bool {
		select {
		case <-a.relay.wake:
			return true
		default:
			return false
		}
	}

	if err := a.Tx(ctx, func(tx *sqldb.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO processed_messages (consumer, event_id, topic, processed_at) VALUES ('c', 'e', 't', CURRENT_TIMESTAMP)`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if woken() {
		t.Error("a transaction without events woke the relay")
	}

	rollback := errors.New("rollback")
	if err := a.Tx(ctx, func(tx *sqldb.Tx) error {
		if err := a.Emit(ctx, tx, "Thing", "k", thing{N: 1}); err != nil {
			return err
		}
		return rollback
	}); !errors.Is(err, rollback) {
		t.Fatalf("rolled-back transaction: %v", err)
	}
	if woken() {
		t.Error("a rolled-back transaction woke the relay")
	}

	if err := a.Tx(ctx, func(tx *sqldb.Tx) error { return a.Emit(ctx, tx, "Thing", "k", thing{N: 2}) }); err != nil {
		t.Fatal(err)
	}
	if !woken() {
		t.Error("a committed event did not wake the relay")
	}
	if n, err := Unsent(ctx, db); err != nil || n != 1 {
		t.Fatalf("unsent = %d, %v; want 1 (the committed event)", n, err)
	}
}
