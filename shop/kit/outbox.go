package kit

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flotilla-ci/flotilla/bus"
	"github.com/flotilla-ci/flotilla/internal/sqldb"
)

//go:embed migrations/*.sql
var migrations embed.FS

// MigrateKit creates the outbox and processed_messages tables.
func MigrateKit(ctx context.Context, db *sqldb.DB) error {
	sub, _ := subFS(migrations, "migrations")
	return db.Migrate(ctx, "kit", sub)
}

// NewID returns a random 128-bit id in UUID form.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// AddOutbox writes m to the outbox inside tx: it is published after the
// transaction commits, at least once, even if the process dies in between.
// It fills the event-id and occurred-at headers when they are missing.
func AddOutbox(ctx context.Context, tx *sqldb.Tx, m bus.Message) error {
	if m.Headers == nil {
		m.Headers = map[string]string{}
	}
	if m.Headers[bus.HeaderEventID] == "" {
		m.Headers[bus.HeaderEventID] = NewID()
	}
	now := time.Now().UTC()
	if m.Headers[bus.HeaderOccurredAt] == "" {
		m.Headers[bus.HeaderOccurredAt] = now.Format(time.RFC3339Nano)
	}
	h, err := json.Marshal(m.Headers)
	if err != nil {
		return fmt.Errorf("outbox headers: %w", err)
	}
	if m.Payload == nil {
		m.Payload = []byte{}
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO outbox (topic, msg_key, headers, payload, created_at) VALUES ($1, $2, $3, $4, $5)`,
		m.Topic, m.Key, string(h), m.Payload, now)
	if err != nil {
		return fmt.Errorf("outbox insert: %w", err)
	}
	return nil
}

// Relay publishes outbox rows to the bus in id order and marks them sent.
// Run one relay per database: ids are read in order, so per-key order is
// the commit order of the rows' transactions (rows of one aggregate are
// written under its row lock, so that is the order they happened in).
type Relay struct {
	DB     *sqldb.DB
	Bus    bus.Bus
	Faults *Faults
	Crash  *Crasher
	Log    *slog.Logger
	Batch  int           // rows per publish; default 256
	Poll   time.Duration // idle poll interval; default 200ms
	// Coalesce is how long the relay waits after a wake-up so the rows of
	// transactions committing together go out in one publish and one
	// mark-sent; default 2ms.
	Coalesce time.Duration

	wake chan struct{}
	once sync.Once
}

func (r *Relay) init() {
	r.once.Do(func() {
		r.wake = make(chan struct{}, 1)
		if r.Batch <= 0 {
			r.Batch = 256
		}
		if r.Poll <= 0 {
			r.Poll = 200 * time.Millisecond
		}
		if r.Coalesce <= 0 {
			r.Coalesce = 2 * time.Millisecond
		}
		if r.Log == nil {
			r.Log = slog.Default()
		}
		if r.Faults == nil {
			r.Faults = &Faults{}
		}
	})
}

// Notify wakes the relay (call after committing outbox rows).
func (r *Relay) Notify() {
	r.init()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run relays until ctx is cancelled, then makes one last pass.
func (r *Relay) Run(ctx context.Context) {
	r.init()
	t := time.NewTicker(r.Poll)
	defer t.Stop()
	for {
		for {
			n, err := r.Once(ctx)
			if err != nil {
				if ctx.Err() == nil {
					r.Log.WarnContext(ctx, "outbox relay", "err", err)
				}
				break
			}
			if n < r.Batch {
				break
			}
		}
		select {
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, _ = r.Once(final)
			cancel()
			return
		case <-r.wake:
			select {
			case <-time.After(r.Coalesce):
			case <-ctx.Done():
			}
		case <-t.C:
		}
	}
}

// Once publishes up to Batch unsent rows and marks them sent, returning
// how many it relayed.
func (r *Relay) Once(ctx context.Context) (int, error) {
	r.init()
	rows, err := r.DB.QueryContext(ctx, `SELECT id, topic, msg_key, headers, payload FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT $1`, r.Batch)
	if err != nil {
		return 0, fmt.Errorf("read outbox: %w", err)
	}
	var ids []int64
	var msgs []bus.Message
	for rows.Next() {
		var id int64
		var m bus.Message
		var h string
		if err := rows.Scan(&id, &m.Topic, &m.Key, &h, &m.Payload); err != nil {
			_ = rows.Close()
			return 0, fmt.Errorf("read outbox: %w", err)
		}
		if err := json.Unmarshal([]byte(h), &m.Headers); err != nil {
			_ = rows.Close()
			return 0, fmt.Errorf("outbox row %d headers: %w", id, err)
		}
		ids = append(ids, id)
		msgs = append(msgs, m)
	}
	if err := rows.Close(); err != nil {
		return 0, err
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	if len(msgs) == 0 {
		return 0, nil
	}
	if d := r.Faults.PublishStall; d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	out := msgs
	if r.Faults.Duplicate {
		out = make([]bus.Message, 0, 2*len(msgs))
		for _, m := range msgs {
			out = append(out, m, m)
		}
	}
	if err := r.Bus.Publish(ctx, out...); err != nil {
		return 0, fmt.Errorf("publish outbox: %w", err)
	}
	r.Crash.At("outbox.after_publish")
	if err := r.markSent(ctx, ids); err != nil {
		return 0, fmt.Errorf("mark outbox sent: %w", err)
	}
	return len(msgs), nil
}

// markSent sets sent_at on the relayed rows. On PostgreSQL the ids go as
// one array parameter, so the statement's text (and the prepared statement
// pgx caches per connection) is the same whatever the batch size; SQLite
// gets one placeholder per id.
func (r *Relay) markSent(ctx context.Context, ids []int64) error {
	now := time.Now().UTC()
	if r.DB.Dialect == sqldb.Postgres {
		_, err := r.DB.ExecContext(ctx, `UPDATE outbox SET sent_at = $1 WHERE id = ANY($2)`, now, ids)
		return err
	}
	ph := make([]string, len(ids))
	args := make([]any, 0, len(ids)+1)
	args = append(args, now)
	for i, id := range ids {
		ph[i] = "$" + strconv.Itoa(i+2)
		args = append(args, id)
	}
	_, err := r.DB.ExecContext(ctx, `UPDATE outbox SET sent_at = $1 WHERE id IN (`+strings.Join(ph, ",")+`)`, args...)
	return err
}

// Unsent counts outbox rows not yet published.
func Unsent(ctx context.Context, db *sqldb.DB) (int, error) {
	var n int
	err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL`).Scan(&n)
	return n, err
}

// ConsumeFunc applies one event's effect inside tx.
type ConsumeFunc func(ctx context.Context, tx *sqldb.Tx, m bus.Message) error

// errDuplicate rolls back a transaction whose event was already processed.
var errDuplicate = errors.New("already processed")

// Idempotent turns fn into a bus handler that applies each event id once
// per consumer: the id is recorded in processed_messages in the same
// transaction as fn's effect, so a redelivered or duplicated event has no
// second effect. A message without an event id is poison (dead-lettered).
// After a commit, crash point consumer.after_effect fires before the ack.
func Idempotent(db *sqldb.DB, consumer string, fn ConsumeFunc, crash *Crasher) bus.Handler {
	return func(ctx context.Context, m bus.Message) error {
		id := m.ID()
		if id == "" {
			return bus.Permanent(fmt.Errorf("%s on %s: no %s header", consumer, m.Topic, bus.HeaderEventID))
		}
		err := InTx(ctx, db, func(tx *sqldb.Tx) error {
			// One round trip: a row already there (or committed meanwhile by
			// a concurrent delivery) inserts nothing.
			res, err := tx.ExecContext(ctx, `INSERT INTO processed_messages (consumer, event_id, topic, processed_at) VALUES ($1, $2, $3, $4)
				ON CONFLICT (consumer, event_id) DO NOTHING`, consumer, id, m.Topic, time.Now().UTC())
			if err != nil {
				if sqldb.IsUniqueViolation(err) {
					return errDuplicate
				}
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 0 {
				return errDuplicate
			}
			return fn(ctx, tx, m)
		})
		if errors.Is(err, errDuplicate) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: event %s: %w", consumer, id, err)
		}
		crash.At("consumer.after_effect")
		return nil
	}
}

// Crasher fires armed crash points (Faults.Crash). A nil *Crasher never
// fires.
type Crasher struct {
	points map[string]int
	crash  func(point string)
	mu     sync.Mutex
	hits   map[string]int
}

// NewCrasher arms f's crash points; crash is called at the armed hit
// (nil means ExitCrash).
func NewCrasher(f Faults, crash func(point string)) *Crasher {
	if crash == nil {
		crash = ExitCrash
	}
	return &Crasher{points: f.Crash, crash: crash, hits: map[string]int{}}
}

// At counts a pass through point and crashes on the armed hit.
func (c *Crasher) At(point string) {
	if c == nil || len(c.points) == 0 {
		return
	}
	at, ok := c.points[point]
	if !ok {
		return
	}
	c.mu.Lock()
	c.hits[point]++
	n := c.hits[point]
	c.mu.Unlock()
	if n == at {
		c.crash(point)
	}
}

// ExitCrash logs the crash point and exits the process with status 70, no
// deferred functions run, no buffers flushed: as close to kill -9 as a
// process can do to itself.
func ExitCrash(point string) {
	fmt.Fprintf(os.Stderr, "crash point %s reached: exiting\n", point)
	os.Exit(70)
}
