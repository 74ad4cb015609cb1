package order

import (
	"context"
	"io/fs"
	"testing"

	"github.com/flotilla-ci/flotilla/internal/sqldb"
	"github.com/flotilla-ci/flotilla/internal/sqldb/sqldbtest"
)

// The saga reads the order before every step: one round trip, items in
// SKU order, and no rows for an order that does not exist.
func TestLoadIsOneStatement(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db := sqldbtest.Open(t, dsn)
		mig, _ := fs.Sub(migrationFS, "migrations")
		if err := db.Migrate(ctx, Service, mig); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, `INSERT INTO orders (id, user_id, idempotency_key, status, step, reason, total, currency, reservation_id, payment_id, attempts, lease_until_ms, next_ms, created_ms, updated_ms)
			VALUES ('o1', 'u1', NULL, $1, $2, '', 700, 'EUR', '', '', 2, 0, 0, 1000, 2000)`, Pending, StepCharge); err != nil {
			t.Fatal(err)
		}
		for _, it := range []Item{{SKU: "SKU-2", Name: "two", Quantity: 2, UnitPrice: 200}, {SKU: "SKU-1", Name: "one", Quantity: 3, UnitPrice: 100}} {
			if _, err := db.ExecContext(ctx, `INSERT INTO order_items (order_id, sku, name, quantity, unit_price) VALUES ('o1', $1, $2, $3, $4)`, it.SKU, it.Name, it.Quantity, it.UnitPrice); err != nil {
				t.Fatal(err)
			}
		}
		m := &Main{}
		before := db.Statements()
		o, err := m.load(ctx, db, "o1")
		if err != nil {
			t.Fatal(err)
		}
		if n := db.Statements() - before; n != 1 {
			t.Errorf("load sent %d statements, want 1", n)
		}
		if o.ID != "o1" || o.Step != StepCharge || o.Total != 700 || o.attempts != 2 || o.CreatedAt.UnixMilli() != 1000 || o.updated.UnixMilli() != 2000 {
			t.Errorf("loaded %+v", o)
		}
		if len(o.Items) != 2 || o.Items[0] != (Item{SKU: "SKU-1", Name: "one", Quantity: 3, UnitPrice: 100}) || o.Items[1].SKU != "SKU-2" {
			t.Errorf("items %+v, want SKU-1 then SKU-2", o.Items)
		}
		if _, err := m.load(ctx, db, "absent"); !sqldb.IsNoRows(err) {
			t.Errorf("loading an absent order: %v, want no rows", err)
		}
	})
}
