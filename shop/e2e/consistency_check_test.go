package e2e

import (
	"context"
	"fmt"
	"strings"

	"github.com/flotilla-ci/flotilla/internal/sqldb"
)

// consistencyWant is what the consistency test's run did, for the checker
// to hold the services' databases against.
type consistencyWant struct {
	orders, skus int
	initial      map[string]int64 // units each SKU was stocked with
	outboxRows   int              // events the services' outboxes published
}

// consistencyFigures are what the checker counted, for the report.
type consistencyFigures struct {
	confirmed, cancelled, pending int
	reasons                       map[string]int // cancelled orders by reason
	skus, reservations, payments  int
	captured, refunded            int64
	effects                       int
	deliveries                    int64
}

// invariants collects the checker's problems. A query that fails, a row
// that does not scan and an iteration that ends in an error are problems
// too: a check over what could not be read would compare zero with zero
// and pass.
type invariants struct {
	ctx      context.Context
	problems []string
}

func (c *invariants) check(ok bool, format string, args ...any) {
	if !ok {
		c.problems = append(c.problems, "invariant broken: "+fmt.Sprintf(format, args...))
	}
}

func (c *invariants) failed(q string, err error) {
	c.problems = append(c.problems, fmt.Sprintf("query %s: %v", strings.Join(strings.Fields(q), " "), err))
}

// scan reads the one row of q into dest.
func (c *invariants) scan(db *sqldb.DB, q string, dest ...any) {
	if err := db.QueryRowContext(c.ctx, q).Scan(dest...); err != nil {
		c.failed(q, err)
	}
}

// each scans every row of q into dest and calls fn after each; it stops
// at the first row that does not scan.
func (c *invariants) each(db *sqldb.DB, q string, dest []any, fn func()) {
	rows, err := db.QueryContext(c.ctx, q)
	if err != nil {
		c.failed(q, err)
		return
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			c.failed(q, err)
			return
		}
		fn()
	}
	if err := rows.Err(); err != nil {
		c.failed(q, err)
	}
}

// checkConsistency holds the order path's databases (dbs by service:
// order, inventory, payment) and the audit consumer's against every
// invariant the consistency test promises, and returns what it counted
// and every problem found.
func checkConsistency(ctx context.Context, dbs map[string]*sqldb.DB, audit *sqldb.DB, want consistencyWant) (consistencyFigures, []string) {
	c := &invariants{ctx: ctx}
	f := consistencyFigures{reasons: map[string]int{}}
	c.scan(dbs["order"], `SELECT COALESCE(SUM(CASE WHEN status = 'CONFIRMED' THEN 1 ELSE 0 END), 0), COALESCE(SUM(CASE WHEN status = 'CANCELLED' THEN 1 ELSE 0 END), 0), COALESCE(SUM(CASE WHEN status NOT IN ('CONFIRMED', 'CANCELLED') THEN 1 ELSE 0 END), 0) FROM orders`, &f.confirmed, &f.cancelled, &f.pending)
	c.check(f.pending == 0, "%d orders neither CONFIRMED nor CANCELLED", f.pending)
	c.check(f.confirmed+f.cancelled == want.orders, "%d orders settled, want the %d placed", f.confirmed+f.cancelled, want.orders)

	// Stock: available + reserved + committed = initial, nothing left reserved.
	{
		var sku string
		var rec, av, res, com int64
		c.each(dbs["inventory"], `SELECT sku, received, available, reserved, committed FROM stock`, []any{&sku, &rec, &av, &res, &com}, func() {
			f.skus++
			c.check(rec == want.initial[sku] && av+res+com == rec, "%s: %d available + %d reserved + %d committed, received %d, initial %d", sku, av, res, com, rec, want.initial[sku])
			c.check(res == 0, "%s: %d units still reserved", sku, res)
		})
	}
	c.check(f.skus == want.skus, "%d SKUs with stock, want %d", f.skus, want.skus)
	var open int
	c.scan(dbs["inventory"], `SELECT COUNT(*) FROM reservations WHERE status = 'RESERVED'`, &open)
	c.check(open == 0, "%d reservations left open", open)

	// Committed stock equals what confirmed orders bought.
	orderUnits := map[string]int64{}
	{
		var sku string
		var q int64
		c.each(dbs["order"], `SELECT i.sku, SUM(i.quantity) FROM order_items i JOIN orders o ON o.id = i.order_id WHERE o.status = 'CONFIRMED' GROUP BY i.sku`, []any{&sku, &q}, func() {
			orderUnits[sku] = q
		})
	}
	{
		var sku string
		var com int64
		c.each(dbs["inventory"], `SELECT sku, committed FROM stock`, []any{&sku, &com}, func() {
			c.check(com == orderUnits[sku], "%s: %d committed, confirmed orders bought %d", sku, com, orderUnits[sku])
		})
	}

	// Per order: confirmed ⇔ captured and committed; cancelled ⇒ no capture kept, no stock kept.
	payments := map[string][2]string{} // order → status, amount
	{
		var id, st string
		var amt, ref int64
		c.each(dbs["payment"], `SELECT order_id, status, amount, refunded FROM payments`, []any{&id, &st, &amt, &ref}, func() {
			f.payments++
			c.check(payments[id][0] == "", "order %s has two payments", id)
			payments[id] = [2]string{st, fmt.Sprint(amt)}
			if st == "CAPTURED" || st == "REFUNDED" {
				f.captured += amt
			}
			f.refunded += ref
			c.check(st != "PENDING", "payment of order %s left PENDING", id)
		})
	}
	reservations := map[string]string{}
	{
		var id, st string
		c.each(dbs["inventory"], `SELECT order_id, status FROM reservations`, []any{&id, &st}, func() { reservations[id] = st })
	}
	f.reservations = len(reservations)
	var confirmedTotal int64
	{
		var id, st, reason string
		var total int64
		c.each(dbs["order"], `SELECT id, status, total, reason FROM orders`, []any{&id, &st, &total, &reason}, func() {
			p, r := payments[id], reservations[id]
			if st == "CONFIRMED" {
				confirmedTotal += total
				c.check(p[0] == "CAPTURED" && p[1] == fmt.Sprint(total), "confirmed order %s: payment %v, want CAPTURED %d", id, p, total)
				c.check(r == "COMMITTED", "confirmed order %s: reservation %q, want COMMITTED", id, r)
			} else {
				f.reasons[strings.SplitN(reason, ":", 2)[0]]++
				c.check(p[0] != "CAPTURED", "cancelled order %s kept its capture", id)
				c.check(r != "COMMITTED" && r != "RESERVED", "cancelled order %s: reservation %s", id, r)
			}
		})
	}
	c.check(f.captured-f.refunded == confirmedTotal, "captures %d - refunds %d = %d, confirmed orders total %d", f.captured, f.refunded, f.captured-f.refunded, confirmedTotal)

	// Events: every outbox row published, each applied once by the audit consumer.
	var distinct, processed int
	c.scan(audit, `SELECT COUNT(*), COUNT(DISTINCT event_id) FROM effects`, &f.effects, &distinct)
	c.scan(audit, `SELECT COUNT(*) FROM processed_messages`, &processed)
	c.check(f.effects == want.outboxRows && distinct == f.effects && processed == f.effects, "%d effects (%d distinct, %d processed) for %d events published", f.effects, distinct, processed, want.outboxRows)
	c.scan(audit, `SELECT value FROM stats WHERE name = 'deliveries'`, &f.deliveries)
	c.check(f.deliveries >= int64(2*want.outboxRows), "%d deliveries for %d events; every event is published twice", f.deliveries, want.outboxRows)
	var evConfirmed, evCancelled int
	var evCaptured, evRefunded int64
	c.scan(audit, `SELECT COALESCE(SUM(CASE WHEN topic = 'OrderConfirmed' THEN 1 ELSE 0 END), 0), COALESCE(SUM(CASE WHEN topic = 'OrderCancelled' THEN 1 ELSE 0 END), 0),
		COALESCE(SUM(CASE WHEN topic = 'PaymentCompleted' THEN amount ELSE 0 END), 0), COALESCE(SUM(CASE WHEN topic = 'PaymentRefunded' THEN amount ELSE 0 END), 0) FROM effects`,
		&evConfirmed, &evCancelled, &evCaptured, &evRefunded)
	c.check(evConfirmed == f.confirmed && evCancelled == f.cancelled, "events: %d OrderConfirmed, %d OrderCancelled; orders: %d, %d", evConfirmed, evCancelled, f.confirmed, f.cancelled)
	c.check(evCaptured-evRefunded == confirmedTotal, "events: captured %d - refunded %d != confirmed total %d", evCaptured, evRefunded, confirmedTotal)
	var terminalTwice int
	c.scan(audit, `SELECT COUNT(*) FROM (SELECT msg_key FROM effects WHERE topic IN ('OrderConfirmed', 'OrderCancelled') GROUP BY msg_key HAVING COUNT(*) > 1) x`, &terminalTwice)
	c.check(terminalTwice == 0, "%d orders with two terminal events", terminalTwice)
	return f, c.problems
}
