package e2e

import (
	"context"
	"strings"
	"testing"

	"github.com/flotilla-ci/flotilla/internal/sqldb"
)

// TestCheckConsistency shows each invariant of the consistency test's
// checker failing on databases with that one thing wrong, passing on
// consistent ones, and failing, never passing, when what it reads cannot
// be read: a dropped table, a value that does not scan.
func TestCheckConsistency(t *testing.T) {
	ctx := context.Background()
	// Two orders over two SKUs: o1 confirmed (2 of A, captured 1500), o2
	// cancelled out of stock (its reservation released, payment never
	// taken); four events published, each delivered twice.
	setup := map[string][]string{
		"order": {
			`CREATE TABLE orders (id TEXT PRIMARY KEY, status TEXT NOT NULL, total BIGINT NOT NULL, reason TEXT NOT NULL DEFAULT '')`,
			`CREATE TABLE order_items (order_id TEXT NOT NULL, sku TEXT NOT NULL, quantity BIGINT NOT NULL)`,
			`INSERT INTO orders VALUES ('o1', 'CONFIRMED', 1500, ''), ('o2', 'CANCELLED', 700, 'out_of_stock: B: 0 available')`,
			`INSERT INTO order_items VALUES ('o1', 'A', 2), ('o2', 'B', 1)`,
		},
		"inventory": {
			`CREATE TABLE stock (sku TEXT PRIMARY KEY, received BIGINT NOT NULL, available BIGINT NOT NULL, reserved BIGINT NOT NULL, committed BIGINT NOT NULL)`,
			`CREATE TABLE reservations (order_id TEXT PRIMARY KEY, status TEXT NOT NULL)`,
			`INSERT INTO stock VALUES ('A', 10, 8, 0, 2), ('B', 5, 5, 0, 0)`,
			`INSERT INTO reservations VALUES ('o1', 'COMMITTED'), ('o2', 'RELEASED')`,
		},
		"payment": {
			`CREATE TABLE payments (order_id TEXT NOT NULL, status TEXT NOT NULL, amount BIGINT NOT NULL, refunded BIGINT NOT NULL)`,
			`INSERT INTO payments VALUES ('o1', 'CAPTURED', 1500, 0)`,
		},
		"audit": {
			`CREATE TABLE effects (event_id TEXT NOT NULL, topic TEXT NOT NULL, msg_key TEXT NOT NULL, amount BIGINT NOT NULL)`,
			`CREATE TABLE processed_messages (id TEXT PRIMARY KEY)`,
			`CREATE TABLE stats (name TEXT PRIMARY KEY, value BIGINT NOT NULL)`,
			`INSERT INTO effects VALUES ('e1', 'StockReserved', 'o1', 0), ('e2', 'PaymentCompleted', 'o1', 1500), ('e3', 'OrderConfirmed', 'o1', 0), ('e4', 'OrderCancelled', 'o2', 0)`,
			`INSERT INTO processed_messages VALUES ('e1'), ('e2'), ('e3'), ('e4')`,
			`INSERT INTO stats VALUES ('deliveries', 8)`,
		},
	}
	want := consistencyWant{orders: 2, skus: 2, initial: map[string]int64{"A": 10, "B": 5}, outboxRows: 4}
	// check builds the databases, applies spoil (statements by database)
	// and runs the checker.
	check := func(t *testing.T, spoil map[string][]string, w consistencyWant) (consistencyFigures, []string) {
		t.Helper()
		dir := t.TempDir()
		dbs := map[string]*sqldb.DB{}
		for _, name := range []string{"order", "inventory", "payment", "audit"} {
			db, err := sqldb.Open(ctx, dir+"/"+name+".db")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = db.Close() })
			for _, q := range append(append([]string{}, setup[name]...), spoil[name]...) {
				if _, err := db.ExecContext(ctx, q); err != nil {
					t.Fatalf("%s: %s: %v", name, q, err)
				}
			}
			dbs[name] = db
		}
		return checkConsistency(ctx, dbs, dbs["audit"], w)
	}

	f, problems := check(t, nil, want)
	if len(problems) != 0 {
		t.Fatalf("consistent databases: %q", problems)
	}
	if f.confirmed != 1 || f.cancelled != 1 || f.skus != 2 || f.reservations != 2 || f.payments != 1 || f.captured != 1500 || f.effects != 4 || f.reasons["out_of_stock"] != 1 {
		t.Errorf("figures %+v", f)
	}

	for _, tc := range []struct {
		name  string
		spoil map[string][]string
		want  func(w *consistencyWant)
		found string
	}{
		{"order left pending", map[string][]string{"order": {`UPDATE orders SET status = 'PENDING' WHERE id = 'o2'`}}, nil, "1 orders neither CONFIRMED nor CANCELLED"},
		{"orders lost", nil, func(w *consistencyWant) { w.orders = 3 }, "2 orders settled, want the 3 placed"},
		{"stock does not add up", map[string][]string{"inventory": {`UPDATE stock SET available = 7 WHERE sku = 'A'`}}, nil, "A: 7 available + 0 reserved + 2 committed, received 10"},
		{"stock received differs from the initial", nil, func(w *consistencyWant) { w.initial = map[string]int64{"A": 10, "B": 6} }, "B: 5 available + 0 reserved + 0 committed, received 5, initial 6"},
		{"units left reserved", map[string][]string{"inventory": {`UPDATE stock SET available = 4, reserved = 1 WHERE sku = 'B'`}}, nil, "B: 1 units still reserved"},
		{"a SKU lost", map[string][]string{"inventory": {`DELETE FROM stock WHERE sku = 'B'`}}, nil, "1 SKUs with stock, want 2"},
		{"reservation left open", map[string][]string{"inventory": {`INSERT INTO reservations VALUES ('o9', 'RESERVED')`}}, nil, "1 reservations left open"},
		{"committed is not units sold", map[string][]string{"inventory": {`UPDATE stock SET available = 7, committed = 3 WHERE sku = 'A'`}}, nil, "A: 3 committed, confirmed orders bought 2"},
		{"two payments of an order", map[string][]string{"payment": {`INSERT INTO payments VALUES ('o1', 'FAILED', 1500, 0)`}}, nil, "order o1 has two payments"},
		{"payment left pending", map[string][]string{"payment": {`INSERT INTO payments VALUES ('o2', 'PENDING', 700, 0)`}}, nil, "payment of order o2 left PENDING"},
		{"confirmed order not captured", map[string][]string{"payment": {`UPDATE payments SET status = 'FAILED' WHERE order_id = 'o1'`}}, nil, "confirmed order o1: payment [FAILED 1500], want CAPTURED 1500"},
		{"confirmed order captured another amount", map[string][]string{"payment": {`UPDATE payments SET amount = 1400 WHERE order_id = 'o1'`}}, nil, "confirmed order o1: payment [CAPTURED 1400]"},
		{"confirmed order's stock not committed", map[string][]string{"inventory": {`UPDATE reservations SET status = 'RELEASED' WHERE order_id = 'o1'`}}, nil, `confirmed order o1: reservation "RELEASED", want COMMITTED`},
		{"cancelled order kept its capture", map[string][]string{"payment": {`INSERT INTO payments VALUES ('o2', 'CAPTURED', 700, 0)`}}, nil, "cancelled order o2 kept its capture"},
		{"cancelled order kept its stock", map[string][]string{"inventory": {`UPDATE reservations SET status = 'COMMITTED' WHERE order_id = 'o2'`}}, nil, "cancelled order o2: reservation COMMITTED"},
		{"money does not add up", map[string][]string{"payment": {`UPDATE payments SET refunded = 100 WHERE order_id = 'o1'`}}, nil, "captures 1500 - refunds 100 = 1400, confirmed orders total 1500"},
		{"an event not applied", map[string][]string{"audit": {`DELETE FROM effects WHERE event_id = 'e1'`}}, nil, "3 effects (3 distinct, 4 processed) for 4 events published"},
		{"an event applied twice", map[string][]string{"audit": {`INSERT INTO effects VALUES ('e1', 'StockReserved', 'o1', 0)`}}, nil, "5 effects (4 distinct, 4 processed)"},
		{"events not delivered twice", map[string][]string{"audit": {`UPDATE stats SET value = 7`}}, nil, "7 deliveries for 4 events"},
		{"order events off", map[string][]string{"audit": {`UPDATE effects SET topic = 'OrderCancelled' WHERE event_id = 'e3'`}}, nil, "events: 0 OrderConfirmed, 2 OrderCancelled; orders: 1, 1"},
		{"payment events off", map[string][]string{"audit": {`UPDATE effects SET amount = 1000 WHERE event_id = 'e2'`}}, nil, "events: captured 1000 - refunded 0 != confirmed total 1500"},
		{"two terminal events of an order", map[string][]string{"audit": {`UPDATE effects SET topic = 'OrderConfirmed', msg_key = 'o1' WHERE event_id = 'e4'`}}, nil, "1 orders with two terminal events"},

		// What cannot be read fails the check. Each of these would
		// otherwise compare zero with zero, or an empty row with nothing,
		// and pass.
		{"a dropped table", map[string][]string{"order": {`DROP TABLE order_items`}, "inventory": {`UPDATE stock SET available = 10, committed = 0 WHERE sku = 'A'`}},
			nil, "query SELECT i.sku, SUM(i.quantity) FROM order_items"},
		{"a committed count that does not scan", map[string][]string{"inventory": {`UPDATE stock SET committed = 'two' WHERE sku = 'A'`}}, nil, "query SELECT sku, received, available, reserved, committed FROM stock"},
		{"a payment that does not scan", map[string][]string{"payment": {`INSERT INTO payments VALUES ('o2', 'FAILED', 700, 'none')`}}, nil, "query SELECT order_id, status, amount, refunded FROM payments"},
		{"an order total that does not scan", map[string][]string{"order": {`UPDATE orders SET total = 'lots' WHERE id = 'o2'`}}, nil, "query SELECT id, status, total, reason FROM orders"},
		{"a dropped audit table", map[string][]string{"audit": {`DROP TABLE stats`}}, nil, "query SELECT value FROM stats"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := want
			if tc.want != nil {
				tc.want(&w)
			}
			_, problems := check(t, tc.spoil, w)
			found := false
			for _, p := range problems {
				found = found || strings.Contains(p, tc.found)
			}
			if !found {
				t.Errorf("problems %q; want one containing %q", problems, tc.found)
			}
		})
	}
}
