package audit

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/internal/sqldb"
)

var now = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

// shop builds the five databases of a small shop whose invariants hold:
// o1 and o2 confirmed (shipped, mailed), o3 cancelled (stock released,
// payment refunded), o4 placed a second ago and still reserving.
func shop(t *testing.T) DBs {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	open := func(name string) *sqldb.DB {
		db, err := sqldb.Open(ctx, filepath.Join(dir, name+".db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		if err := db.Migrate(ctx, name, os.DirFS(filepath.Join("..", name, "migrations"))); err != nil {
			t.Fatalf("migrate %s: %v", name, err)
		}
		return db
	}
	d := DBs{Order: open("order"), Inventory: open("inventory"), Payment: open("payment"), Shipping: open("shipping"), Notification: open("notification")}
	old, young := now.Add(-time.Hour).UnixMilli(), now.Add(-time.Second).UnixMilli()
	exec := func(db *sqldb.DB, q string, args ...any) {
		t.Helper()
		if _, err := db.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for _, o := range []struct {
		id, status string
		total, at  int64
	}{{"o1", "CONFIRMED", 2000, old}, {"o2", "CONFIRMED", 1000, old}, {"o3", "CANCELLED", 500, old}, {"o4", "PENDING", 1000, young}} {
		exec(d.Order, `INSERT INTO orders (id, user_id, status, step, reason, total, currency, reservation_id, payment_id, attempts, lease_until_ms, next_ms, created_ms, updated_ms)
			VALUES ($1, 'u1', $2, '', '', $3, 'EUR', '', '', 0, 0, 0, $4, $4)`, o.id, o.status, o.total, o.at)
	}
	exec(d.Order, `INSERT INTO order_items (order_id, sku, name, quantity, unit_price) VALUES ('o1', 'MUG', 'mug', 2, 1000), ('o2', 'PEN', 'pen', 1, 1000), ('o3', 'MUG', 'mug', 1, 500), ('o4', 'PEN', 'pen', 1, 1000)`)
	// MUG: 10 received, 2 sold to o1; PEN: 10 received, 1 sold to o2, 1 reserved for o4.
	exec(d.Inventory, `INSERT INTO stock (sku, received, available, reserved, committed) VALUES ('MUG', 10, 8, 0, 2), ('PEN', 10, 8, 1, 1)`)
	for _, r := range []struct{ id, order, status, sku string }{{"r1", "o1", "COMMITTED", "MUG"}, {"r2", "o2", "COMMITTED", "PEN"}, {"r3", "o3", "RELEASED", "MUG"}, {"r4", "o4", "RESERVED", "PEN"}} {
		exec(d.Inventory, `INSERT INTO reservations (id, order_id, user_id, status, reason, expires_ms, created_ms, updated_ms) VALUES ($1, $2, 'u1', $3, '', 0, 0, 0)`, r.id, r.order, r.status)
		q := 1
		if r.order == "o1" {
			q = 2
		}
		exec(d.Inventory, `INSERT INTO reservation_items (reservation_id, sku, quantity) VALUES ($1, $2, $3)`, r.id, r.sku, q)
	}
	for _, p := range []struct {
		id, order, status string
		amount, refunded  int64
	}{{"p1", "o1", "CAPTURED", 2000, 0}, {"p2", "o2", "CAPTURED", 1000, 0}, {"p3", "o3", "REFUNDED", 500, 500}} {
		exec(d.Payment, `INSERT INTO payments (id, idempotency_key, request_hash, order_id, user_id, amount, currency, status, reason, refunded, created_ms, updated_ms)
			VALUES ($1, $1, '', $2, 'u1', $3, 'EUR', $4, '', $5, 0, 0)`, p.id, p.order, p.amount, p.status, p.refunded)
	}
	for _, o := range []string{"o1", "o2"} {
		exec(d.Shipping, `INSERT INTO shipments (id, order_id, user_id, status, reason, carrier, service, tracking_number, rate, currency, weight_g, address, attempts, next_ms, created_ms, updated_ms)
			VALUES ($1, $2, 'u1', 'IN_TRANSIT', '', 'c', 's', 't', 0, 'EUR', 0, '', 0, 0, 0, 0)`, "s-"+o, o)
		exec(d.Notification, `INSERT INTO notifications (id, event_id, event, channel, user_id, recipient, subject, body, status, attempts, next_ms, last_error, created_ms, sent_ms)
			VALUES ($1, $1, 'OrderConfirmed', 'email', 'u1', 'a@b', '', '', 'SENT', 1, 0, '', 0, 0)`, "n-"+o)
	}
	return d
}

func audit(t *testing.T, d DBs) *Report {
	t.Helper()
	r, err := Run(context.Background(), d, Config{Timeout: 30 * time.Second, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestAuditHoldsOnAConsistentShop(t *testing.T) {
	r := audit(t, shop(t))
	if !r.OK() {
		t.Fatalf("problems on a consistent shop: %v", r.Problems)
	}
	if r.Confirmed != 2 || r.Cancelled != 1 || r.InFlight != 1 || r.ConfirmedTotal != 3000 || r.Shipments != 2 || r.Mails != 2 {
		t.Errorf("report %s", r)
	}
}

// TestAuditCatchesEachPlantedBreak plants one break of each invariant in
// a consistent shop and wants the audit to name it.
func TestAuditCatchesEachPlantedBreak(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		plant func(d DBs) error
		want  string
	}{
		{"an order stuck past its timeout", func(d DBs) error {
			_, err := d.Order.ExecContext(ctx, `UPDATE orders SET created_ms = $1 WHERE id = 'o4'`, now.Add(-time.Minute).UnixMilli())
			return err
		}, "order o4: PENDING for 1m0s, past the 30s"},
		{"stock committed that no order bought", func(d DBs) error {
			_, err := d.Inventory.ExecContext(ctx, `UPDATE stock SET committed = 3, available = 7 WHERE sku = 'MUG'`)
			return err
		}, "stock MUG: 3 units committed, confirmed orders bought 2"},
		{"a cancelled order's stock kept", func(d DBs) error {
			_, err := d.Inventory.ExecContext(ctx, `UPDATE reservations SET status = 'RESERVED' WHERE order_id = 'o3'`)
			return err
		}, "cancelled order o3: reservation RESERVED kept its stock"},
		{"a refund never made", func(d DBs) error {
			_, err := d.Payment.ExecContext(ctx, `UPDATE payments SET refunded = 0, status = 'CAPTURED' WHERE order_id = 'o3'`)
			return err
		}, "money: captured 3500 - refunded 0 = 3500, confirmed orders total 3000"},
		{"a confirmed order charged the wrong amount", func(d DBs) error {
			_, err := d.Payment.ExecContext(ctx, `UPDATE payments SET amount = 1500 WHERE order_id = 'o1'`)
			return err
		}, "confirmed order o1: payment CAPTURED 1500 (refunded 0), want CAPTURED 2000"},
		{"a confirmed order never shipped", func(d DBs) error {
			_, err := d.Shipping.ExecContext(ctx, `DELETE FROM shipments WHERE order_id = 'o2'`)
			return err
		}, "confirmed order o2: no shipment"},
		{"a confirmation mailed twice", func(d DBs) error {
			_, err := d.Notification.ExecContext(ctx, `INSERT INTO notifications (id, event_id, event, channel, user_id, recipient, subject, body, status, attempts, next_ms, last_error, created_ms, sent_ms)
				VALUES ('n-x', 'n-x', 'OrderConfirmed', 'email', 'u1', 'a@b', '', '', 'SENT', 1, 0, '', 0, 0)`)
			return err
		}, "3 confirmation mails for 2 confirmed orders"},
		{"a confirmation never mailed", func(d DBs) error {
			_, err := d.Notification.ExecContext(ctx, `DELETE FROM notifications WHERE id = 'n-o1'`)
			return err
		}, "1 confirmation mails for 2 orders confirmed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := shop(t)
			if err := tc.plant(d); err != nil {
				t.Fatal(err)
			}
			r := audit(t, d)
			found := false
			for _, p := range r.Problems {
				found = found || strings.Contains(p, tc.want)
			}
			if !found {
				t.Errorf("problems %q; want one saying %q", r.Problems, tc.want)
			}
		})
	}
}
