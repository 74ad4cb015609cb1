package shipping_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
	"github.com/flotilla-ci/flotilla/shop/shipping"
)

// TestPrepare drives the worker against upstreams that answer each order
// differently, and checks what becomes of each shipment: created, failed
// for good (with the reason), retried, or dropped with its cancelled order.
func TestPrepare(t *testing.T) {
	orders := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := strings.TrimPrefix(r.URL.Path, "/orders/")
		// shipping-service calls as itself: its identity, no token.
		if r.Header.Get(kit.CallerHeader) != shipping.Service || r.Header.Get("Authorization") != "" {
			http.Error(w, `{"code":"internal_endpoint","detail":"no"}`, http.StatusForbidden)
			return
		}
		switch id {
		case "gone":
			http.Error(w, `{"code":"not_found","detail":"no such order"}`, 404)
		case "flaky":
			http.Error(w, `{"code":"internal","detail":"boom"}`, 500)
		case "cancelled":
			_ = json.NewEncoder(w).Encode(map[string]any{"id": id, "status": "CANCELLED"})
		default:
			_ = json.NewEncoder(w).Encode(map[string]any{"id": id, "status": "CONFIRMED", "items": []map[string]any{{"sku": "A", "quantity": 3}}})
		}
	}))
	defer orders.Close()
	users := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/login":
			_ = json.NewEncoder(w).Encode(map[string]any{"token": "svc-token", "expiresAt": time.Now().Add(time.Hour)})
		case strings.HasPrefix(r.URL.Path, "/users/u-fr/"):
			_ = json.NewEncoder(w).Encode(map[string]any{"addresses": []map[string]string{{"line1": "1 rue X", "city": "Paris", "postalCode": "75001", "country": "FR"}}})
		default:
			_ = json.NewEncoder(w).Encode(map[string]any{"addresses": []map[string]string{{"line1": "Hauptstr. 1", "city": "Berlin", "postalCode": "10115", "country": "DE"}}})
		}
	}))
	defer users.Close()

	for _, tc := range []struct {
		name, order, user string
		failureRate       float64
		status, reason    string
		carrier           string
	}{
		{"created at the cheapest carrier", "ok-1", "u-de", 0, shipping.LabelCreated, "", "Hermes"},
		{"another zone, another carrier", "ok-2", "u-fr", 0, shipping.LabelCreated, "", "DPD"},
		{"unknown order fails for good", "gone", "u-de", 0, shipping.Failed, shipping.ReasonOrderNotFound, ""},
		{"an upstream error is retried", "flaky", "u-de", 0, shipping.Pending, "", ""},
		{"a cancelled order is not shipped", "cancelled", "u-de", 0, shipping.Cancelled, "order_cancelled", ""},
		{"the carrier refuses (failure rate)", "ok-3", "u-de", 1, shipping.Failed, shipping.ReasonCarrierRejected, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := kittest.SQLiteEnv(t)
			kc := env.Config(t, shipping.Service)
			kc.Deps["order"], kc.Deps["user"] = orders.URL, users.URL
			m := &shipping.Main{Config: shipping.Config{Kit: kc, FailureRate: tc.failureRate, Tick: time.Hour}}
			if err := m.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = m.Close() }()
			db := m.App().DB
			ctx := context.Background()
			if _, err := db.ExecContext(ctx, `INSERT INTO shipments (id, order_id, user_id, status, reason, carrier, service, tracking_number, rate, currency, weight_g, address, attempts, next_ms, created_ms, updated_ms)
				VALUES ('s-1', $1, $2, 'PENDING', '', '', '', '', 0, '', 0, '', 0, 0, 0, 0)`, tc.order, tc.user); err != nil {
				t.Fatal(err)
			}
			if err := m.Pass(ctx); err != nil {
				t.Fatal(err)
			}
			var status, reason, carrier string
			var attempts, weight int
			if err := db.QueryRowContext(ctx, `SELECT status, reason, carrier, attempts, weight_g FROM shipments WHERE id = 's-1'`).Scan(&status, &reason, &carrier, &attempts, &weight); err != nil {
				t.Fatal(err)
			}
			if status != tc.status || reason != tc.reason || carrier != tc.carrier {
				t.Errorf("shipment %s %q by %q; want %s %q by %q", status, reason, carrier, tc.status, tc.reason, tc.carrier)
			}
			if tc.status == shipping.Pending && attempts != 1 {
				t.Errorf("attempts = %d, want 1 (retried later)", attempts)
			}
			if tc.status == shipping.LabelCreated && weight != 1500 {
				t.Errorf("weight = %d g, want 1500 (3 items)", weight)
			}
			var events int
			if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM outbox`).Scan(&events); err != nil {
				t.Fatal(err)
			}
			want := map[string]int{shipping.LabelCreated: 1, shipping.Failed: 1}[tc.status]
			if events != want {
				t.Errorf("%d events in the outbox, want %d", events, want)
			}
		})
	}
}
