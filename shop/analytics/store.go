package analytics

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/flotilla-ci/flotilla/internal/sqldb"
)

// writer stores events in batches: every handler waiting on the bus hands
// its event over and waits; the writer takes all that are waiting (up to
// max), inserts them in one transaction of multi-row INSERTs, and answers
// them all, so acknowledgements follow the commit (nothing lost) and a
// redelivered event id is ignored (nothing doubled).
type writer struct {
	db  *sqldb.DB
	ch  chan *pending
	max int

	lagMS   atomic.Int64 // the last batch's largest occurred → stored delay
	stored  atomic.Int64
	batches atomic.Int64
}

type pending struct {
	r    record
	done chan error
}

func newWriter(db *sqldb.DB, max int) *writer {
	return &writer{db: db, ch: make(chan *pending, max), max: max}
}

// store hands r to the writer and waits until it is committed.
func (w *writer) store(ctx context.Context, r record) error {
	p := &pending{r: r, done: make(chan error, 1)}
	select {
	case w.ch <- p:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w *writer) run(ctx context.Context) {
	for {
		var batch []*pending
		select {
		case <-ctx.Done():
			return
		case p := <-w.ch:
			batch = append(batch, p)
		}
	drain:
		for len(batch) < w.max {
			select {
			case p := <-w.ch:
				batch = append(batch, p)
			default:
				break drain
			}
		}
		err := w.flush(ctx, batch)
		for _, p := range batch {
			p.done <- err
		}
	}
}

const eventCols = 12

func (w *writer) flush(ctx context.Context, batch []*pending) error {
	now := time.Now().UnixMilli()
	err := w.db.InTx(ctx, func(tx *sqldb.Tx) error {
		// Rows of one statement must have distinct keys on PostgreSQL's
		// ON CONFLICT; a batch may hold a duplicate delivery twice.
		seen := make(map[string]bool, len(batch))
		var ev []any
		var ln []any
		lineSeen := map[[2]string]bool{}
		for _, p := range batch {
			r := p.r
			if seen[r.EventID] {
				continue
			}
			seen[r.EventID] = true
			ev = append(ev, r.EventID, r.Type, r.Key, r.OccurredMS, now, r.SchemaID, r.Decoded, r.Data, r.OrderID, r.Amount, r.Currency, r.Reason)
			for _, l := range r.Lines {
				k := [2]string{r.OrderID, l.SKU}
				if lineSeen[k] {
					continue
				}
				lineSeen[k] = true
				ln = append(ln, r.OrderID, l.SKU, l.Quantity, l.UnitPrice)
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO analytics_events (event_id, type, event_key, occurred_ms, stored_ms, schema_id, decoded, data, order_id, amount, currency, reason) VALUES `+
			values(len(ev)/eventCols, eventCols)+` ON CONFLICT (event_id) DO NOTHING`, ev...); err != nil {
			return fmt.Errorf("insert %d events: %w", len(ev)/eventCols, err)
		}
		if len(ln) > 0 {
			if _, err := tx.ExecContext(ctx, `INSERT INTO analytics_order_lines (order_id, sku, quantity, unit_price) VALUES `+
				values(len(ln)/4, 4)+` ON CONFLICT (order_id, sku) DO NOTHING`, ln...); err != nil {
				return fmt.Errorf("insert order lines: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	var lag int64
	done := time.Now().UnixMilli()
	for _, p := range batch {
		if d := done - p.r.OccurredMS; d > lag {
			lag = d
		}
	}
	w.lagMS.Store(lag)
	w.stored.Add(int64(len(batch)))
	w.batches.Add(1)
	return nil
}

// values renders n rows of k placeholders: ($1, $2), ($3, $4), ...
func values(n, k int) string {
	var b strings.Builder
	i := 1
	for r := 0; r < n; r++ {
		if r > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for c := 0; c < k; c++ {
			if c > 0 {
				b.WriteString(", ")
			}
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(i))
			i++
		}
		b.WriteByte(')')
	}
	return b.String()
}
