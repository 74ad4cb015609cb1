package inventory

import (
	"context"
	"io/fs"
	"testing"

	"github.com/flotilla-ci/flotilla/internal/sqldb"
	"github.com/flotilla-ci/flotilla/internal/sqldb/sqldbtest"
)

// A reservation and its items are read (and, on PostgreSQL, locked) in one
// round trip; a missing one is a not-found error.
func TestLoadReservationIsOneStatement(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db := sqldbtest.Open(t, dsn)
		mig, _ := fs.Sub(migrationFS, "migrations")
		if err := db.Migrate(ctx, Service, mig); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, `INSERT INTO reservations (id, order_id, user_id, status, reason, expires_ms, created_ms, updated_ms) VALUES ('r1', 'o1', 'u1', $1, '', 5000, 1000, 1000)`, Reserved); err != nil {
			t.Fatal(err)
		}
		for _, l := range []Line{{SKU: "SKU-2", Quantity: 2}, {SKU: "SKU-1", Quantity: 1}} {
			if _, err := db.ExecContext(ctx, `INSERT INTO reservation_items (reservation_id, sku, quantity) VALUES ('r1', $1, $2)`, l.SKU, l.Quantity); err != nil {
				t.Fatal(err)
			}
		}
		for _, by := range [][2]string{{"id", "r1"}, {"order_id", "o1"}} {
			var res Reservation
			var n int64
			err := db.InTx(ctx, func(tx *sqldb.Tx) error {
				before := db.Statements()
				var err error
				res, err = loadReservationBy(ctx, tx, by[0], by[1])
				n = db.Statements() - before
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if n != 1 {
				t.Errorf("by %s: %d statements, want 1", by[0], n)
			}
			if res.ID != "r1" || res.OrderID != "o1" || res.Status != Reserved || res.ExpiresAt.UnixMilli() != 5000 ||
				len(res.Items) != 2 || res.Items[0] != (Line{SKU: "SKU-1", Quantity: 1}) || res.Items[1] != (Line{SKU: "SKU-2", Quantity: 2}) {
				t.Errorf("by %s: %+v", by[0], res)
			}
		}
		err := db.InTx(ctx, func(tx *sqldb.Tx) error {
			_, err := loadReservationBy(ctx, tx, "id", "absent")
			return err
		})
		if !isNotFound(err) {
			t.Errorf("absent reservation: %v, want not found", err)
		}
	})
}
