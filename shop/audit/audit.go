// Package audit checks the shop's invariants on a live system, from its
// services' databases (what `flotilla shop audit` and the chaos
// experiments run; the consistency test holds a finished run to the same
// rules):
//
//   - every order is final (CONFIRMED or CANCELLED), or still within its
//     timeout since it was placed;
//   - stock balances: per SKU, available + reserved + committed =
//     received, and committed = the units confirmed orders bought;
//   - money balances: captured minus refunded = the confirmed orders'
//     total, a confirmed order's payment is CAPTURED for its total, a
//     cancelled order keeps no capture;
//   - one shipment per confirmed order (none for a cancelled one that
//     never shipped), and one confirmation mail per confirmed order.
//
// An order younger than the timeout may be half way (reserved, charged,
// not yet committed): the checks that concern one order skip it, and the
// per-SKU and money sums leave its part out.
package audit

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/flotilla-ci/flotilla/internal/sqldb"
)

// DBs are the databases the audit reads; Shipping and Notification may be
// nil (their checks are skipped and the report says so).
type DBs struct {
	Order, Inventory, Payment, Shipping, Notification *sqldb.DB
}

// Config tunes the audit.
type Config struct {
	// Timeout is how long an order may take to become final (default
	// 30s); younger orders are in flight, not stuck.
	Timeout time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Report is what the audit counted and found.
type Report struct {
	Orders    int `json:"orders"`
	Confirmed int `json:"confirmed"`
	Cancelled int `json:"cancelled"`
	// InFlight are orders not yet final but within the timeout.
	InFlight int `json:"in_flight"`
	// Stuck are orders not final past the timeout.
	Stuck          int      `json:"stuck"`
	SKUs           int      `json:"skus"`
	Captured       int64    `json:"captured"`
	Refunded       int64    `json:"refunded"`
	ConfirmedTotal int64    `json:"confirmed_total"`
	Shipments      int      `json:"shipments"`
	Mails          int      `json:"confirmation_mails"`
	Skipped        []string `json:"skipped,omitempty"`
	// Problems are the invariants broken, each naming the order or SKU.
	Problems []string `json:"problems"`
}

// OK reports whether every invariant held.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// String is a one-line summary.
func (r *Report) String() string {
	s := fmt.Sprintf("%d orders (%d confirmed, %d cancelled, %d in flight, %d stuck), %d SKUs, captured %d - refunded %d = confirmed total %d, %d shipments, %d confirmation mails: ",
		r.Orders, r.Confirmed, r.Cancelled, r.InFlight, r.Stuck, r.SKUs, r.Captured, r.Refunded, r.ConfirmedTotal, r.Shipments, r.Mails)
	if r.OK() {
		return s + "every invariant holds"
	}
	return s + fmt.Sprintf("%d problem(s)", len(r.Problems))
}

type checker struct {
	ctx context.Context
	r   *Report
}

func (c *checker) bad(format string, a ...any) {
	c.r.Problems = append(c.r.Problems, fmt.Sprintf(format, a...))
}

// each scans every row of q into dest and calls fn after each. A query
// that fails is a problem: a check over what could not be read would
// pass.
func (c *checker) each(db *sqldb.DB, q string, dest []any, fn func(), args ...any) {
	rows, err := db.QueryContext(c.ctx, q, args...)
	if err != nil {
		c.bad("query %s: %v", strings.Join(strings.Fields(q), " "), err)
		return
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			c.bad("query %s: %v", strings.Join(strings.Fields(q), " "), err)
			return
		}
		fn()
	}
	if err := rows.Err(); err != nil {
		c.bad("query %s: %v", strings.Join(strings.Fields(q), " "), err)
	}
}

type order struct {
	status string
	total  int64
	young  bool
}

// Run audits the shop. Its error is only for databases it could not be
// given; a broken invariant is a problem in the report.
func Run(ctx context.Context, dbs DBs, cfg Config) (*Report, error) {
	if dbs.Order == nil || dbs.Inventory == nil || dbs.Payment == nil {
		return nil, fmt.Errorf("audit: the order, inventory and payment databases are required")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &Report{Problems: []string{}}
	c := &checker{ctx: ctx, r: r}
	cutoff := cfg.Now().Add(-cfg.Timeout).UnixMilli()

	// Orders: final, or within the timeout.
	orders := map[string]*order{}
	{
		var id, st string
		var total, created int64
		c.each(dbs.Order, `SELECT id, status, total, created_ms FROM orders`, []any{&id, &st, &total, &created}, func() {
			r.Orders++
			o := &order{status: st, total: total}
			orders[id] = o
			switch st {
			case "CONFIRMED":
				r.Confirmed++
			case "CANCELLED":
				r.Cancelled++
			default:
				if created >= cutoff {
					r.InFlight++
					o.young = true
				} else {
					r.Stuck++
					c.bad("order %s: %s for %v, past the %v an order may take to become final", id, st, cfg.Now().Sub(time.UnixMilli(created)).Round(time.Second), cfg.Timeout)
				}
			}
		})
	}
	inFlight := func(id string) bool { o := orders[id]; return o != nil && o.young }

	// Stock: every SKU balanced; committed = what confirmed orders bought.
	sold := map[string]int64{}
	{
		var sku string
		var q int64
		c.each(dbs.Order, `SELECT i.sku, SUM(i.quantity) FROM order_items i JOIN orders o ON o.id = i.order_id WHERE o.status = 'CONFIRMED' GROUP BY i.sku`, []any{&sku, &q}, func() { sold[sku] = q })
	}
	// Units of in-flight orders already committed (the saga commits the
	// reservation just before it confirms).
	committing := map[string]int64{}
	{
		var oid, st, sku string
		var q int64
		c.each(dbs.Inventory, `SELECT r.order_id, r.status, i.sku, i.quantity FROM reservations r JOIN reservation_items i ON i.reservation_id = r.id`, []any{&oid, &st, &sku, &q}, func() {
			if st == "COMMITTED" && orders[oid] != nil && orders[oid].status != "CONFIRMED" && inFlight(oid) {
				committing[sku] += q
			}
		})
	}
	{
		var sku string
		var rec, av, res, com int64
		c.each(dbs.Inventory, `SELECT sku, received, available, reserved, committed FROM stock`, []any{&sku, &rec, &av, &res, &com}, func() {
			r.SKUs++
			if av+res+com != rec {
				c.bad("stock %s: %d available + %d reserved + %d committed != %d received", sku, av, res, com, rec)
			}
			if com != sold[sku] && com != sold[sku]+committing[sku] {
				c.bad("stock %s: %d units committed, confirmed orders bought %d", sku, com, sold[sku])
			}
		})
	}
	{
		var oid, st string
		c.each(dbs.Inventory, `SELECT order_id, status FROM reservations`, []any{&oid, &st}, func() {
			o := orders[oid]
			switch {
			case o == nil:
				c.bad("reservation for order %s, which order-service does not have", oid)
			case o.young:
			case o.status == "CONFIRMED" && st != "COMMITTED":
				c.bad("confirmed order %s: reservation %s, want COMMITTED", oid, st)
			case o.status == "CANCELLED" && (st == "COMMITTED" || st == "RESERVED"):
				c.bad("cancelled order %s: reservation %s kept its stock", oid, st)
			}
		})
	}

	// Money.
	paid := map[string]bool{}
	var youngNet int64
	{
		var oid, st string
		var amt, ref int64
		c.each(dbs.Payment, `SELECT order_id, status, amount, refunded FROM payments`, []any{&oid, &st, &amt, &ref}, func() {
			o := orders[oid]
			if paid[oid] {
				c.bad("order %s: two payments", oid)
			}
			paid[oid] = true
			net := int64(0)
			if st == "CAPTURED" || st == "REFUNDED" {
				r.Captured += amt
				net = amt
			}
			r.Refunded += ref
			net -= ref
			switch {
			case o == nil:
				c.bad("payment for order %s, which order-service does not have", oid)
			case o.young:
				youngNet += net
			case o.status == "CONFIRMED" && (st != "CAPTURED" || amt != o.total || ref != 0):
				c.bad("confirmed order %s: payment %s %d (refunded %d), want CAPTURED %d", oid, st, amt, ref, o.total)
			case o.status == "CANCELLED" && net != 0:
				c.bad("cancelled order %s: kept %d of its payment", oid, net)
			}
		})
	}
	for id, o := range orders {
		if o.status == "CONFIRMED" {
			r.ConfirmedTotal += o.total
			if !paid[id] {
				c.bad("confirmed order %s: no payment", id)
			}
		}
	}
	if r.Captured-r.Refunded-youngNet != r.ConfirmedTotal {
		c.bad("money: captured %d - refunded %d = %d, confirmed orders total %d", r.Captured, r.Refunded, r.Captured-r.Refunded-youngNet, r.ConfirmedTotal)
	}

	// One shipment per confirmed order, after the timeout.
	if dbs.Shipping != nil {
		shipped := map[string]int{}
		var oid string
		c.each(dbs.Shipping, `SELECT order_id FROM shipments`, []any{&oid}, func() { r.Shipments++; shipped[oid]++ })
		var missing []string
		for id, o := range orders {
			if o.status == "CONFIRMED" && shipped[id] == 0 && !recent(ctx, dbs.Order, id, cutoff) {
				missing = append(missing, id)
			}
		}
		sort.Strings(missing)
		for _, id := range missing {
			c.bad("confirmed order %s: no shipment", id)
		}
		for id, n := range shipped {
			if orders[id] == nil {
				c.bad("shipment for order %s, which order-service does not have", id)
			} else if n > 1 {
				c.bad("order %s: %d shipments", id, n)
			}
		}
	} else {
		r.Skipped = append(r.Skipped, "shipments (no shipping database)")
	}

	// One confirmation mail per confirmed order (the mails name no order,
	// so they are counted, not matched).
	if dbs.Notification != nil {
		var n int
		c.each(dbs.Notification, `SELECT COUNT(*) FROM notifications WHERE event = 'OrderConfirmed' AND channel = 'email'`, []any{&n}, func() { r.Mails = n })
		confirmedOld := 0
		for id, o := range orders {
			if o.status == "CONFIRMED" && !recent(ctx, dbs.Order, id, cutoff) {
				confirmedOld++
			}
		}
		switch {
		case r.Mails > r.Confirmed:
			c.bad("%d confirmation mails for %d confirmed orders: some order was mailed twice", r.Mails, r.Confirmed)
		case r.Mails < confirmedOld:
			c.bad("%d confirmation mails for %d orders confirmed more than %v ago: some order was never mailed", r.Mails, confirmedOld, cfg.Timeout)
		}
	} else {
		r.Skipped = append(r.Skipped, "confirmation mails (no notification database)")
	}
	sort.Strings(r.Problems)
	return r, nil
}

// recent reports whether the order was last updated after cutoff (its
// shipment and mail may still be on their way).
func recent(ctx context.Context, db *sqldb.DB, id string, cutoff int64) bool {
	var updated int64
	if err := db.QueryRowContext(ctx, `SELECT updated_ms FROM orders WHERE id = $1`, id).Scan(&updated); err != nil {
		return false
	}
	return updated >= cutoff
}
