package shipping

import (
	"context"
	"fmt"
	"io/fs"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/contract"
	"github.com/flotilla-ci/flotilla/internal/sqldb"
	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
	"github.com/flotilla-ci/flotilla/shop/shoptest/shoppact"
)

// TestContractUserAndOrder records shipping-service's pacts with
// user-service (the customer's addresses) and order-service (the confirmed
// order), both read as shipping-service itself (its identity, no user
// account), through plan, the function that gathers what a label needs.
func TestContractUserAndOrder(t *testing.T) {
	json := map[string]any{"Content-Type": shoppact.JSONType()}
	users := contract.NewConsumerPact(contract.Config{Consumer: Service, Provider: "user-service"})
	users.AddInteraction().
		Given("user u-42 has a delivery address in DE").
		UponReceiving("a request for a customer's addresses").
		WithRequest(contract.Req{Method: "GET", Path: contract.FromProviderState("/users/${userId}/addresses", "/users/u-42/addresses"), Headers: map[string]any{kit.CallerHeader: Service}}).
		WillRespondWith(contract.Resp{Status: 200, Headers: json, Body: map[string]any{"addresses": contract.EachLike(map[string]any{
			"line1": contract.Like("Hauptstr. 1"), "city": contract.Like("Berlin"), "postalCode": contract.Like("10115"), "country": contract.Regex("DE", `^[A-Z]{2}$`),
		}, 1, 0)}})
	orders := contract.NewConsumerPact(contract.Config{Consumer: Service, Provider: "order-service"})
	orders.AddInteraction().
		Given("order o-1 is confirmed").
		UponReceiving("a request for a confirmed order").
		WithRequest(contract.Req{Method: "GET", Path: contract.FromProviderState("/orders/${orderId}", "/orders/o-1"), Headers: map[string]any{kit.CallerHeader: Service}}).
		WillRespondWith(contract.Resp{Status: 200, Headers: json, Body: map[string]any{
			"status": "CONFIRMED",
			"items":  contract.EachLike(map[string]any{"sku": contract.Like("SKU-0001"), "quantity": contract.Integer(2)}, 1, 0),
		}})

	users.Run(t, func(userURL string) error {
		var err error
		orders.Run(t, func(orderURL string) error {
			m := &Main{Config: Config{Rates: RateTable{Home: "DE", Rates: DefaultRates()}, ItemWeightG: 500}}
			m.orders, m.users = kit.NewClient("order-service", orderURL), kit.NewClient("user-service", userURL)
			quote, addr, weight, perr := m.plan(kit.WithService(context.Background(), Service), Shipment{ID: "s-1", OrderID: "o-1", UserID: "u-42"})
			switch {
			case perr != nil:
				err = perr
			case addr.Country != "DE" || weight != 1000 || quote.Carrier == "":
				err = fmt.Errorf("planned %+v to %+v weighing %d", quote, addr, weight)
			}
			return err
		})
		return err
	})
}

// TestContractOrderConfirmed records shipping-service's message pact with
// order-service: an OrderConfirmed, in its Avro JSON shape, encoded with
// shipping's reader schema and handed to the real consumer, which records
// a pending shipment.
func TestContractOrderConfirmed(t *testing.T) {
	cfg := kittest.SQLiteEnv(t).Config(t, Service)
	cfg.Deps["order"], cfg.Deps["user"] = "http://127.0.0.1:1", "http://127.0.0.1:1"
	m := &Main{Config: Config{Kit: cfg, Tick: time.Hour}}
	ctx := context.Background()
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	avsc, err := shoppact.Schema(mustSub(t, readerFS, "readers"), "OrderConfirmed")
	if err != nil {
		t.Fatal(err)
	}
	orders := contract.NewConsumerPact(contract.Config{Consumer: Service, Provider: "order-service"})
	orders.ExpectsToReceive("an OrderConfirmed event").
		WithMetadata(shoppact.Metadata("OrderConfirmed")).
		WithContent(map[string]any{
			"orderId": contract.Like("o-1"), "userId": contract.Like("u-42"), "total": contract.Integer(2474),
			"currency": contract.Regex("EUR", `^[A-Z]{3}$`), "paymentId": contract.Like("p-1"), "reservationId": contract.Like("r-1"),
			"timestamp": contract.Integer(1767225600000), "version": contract.Integer(1),
		}).
		Verify(t, func(msg contract.Message) error {
			bm, err := shoppact.Delivered(ctx, m.app.Codec, avsc, "OrderConfirmed", msg)
			if err != nil {
				return err
			}
			if err := m.app.DB.InTx(ctx, func(tx *sqldb.Tx) error { return m.onConfirmed(ctx, tx, bm) }); err != nil {
				return err
			}
			var user, status string
			if err := m.app.DB.QueryRowContext(ctx, `SELECT user_id, status FROM shipments WHERE order_id = $1`, "o-1").Scan(&user, &status); err != nil || user != "u-42" || status != Pending {
				return fmt.Errorf("shipment of order o-1: user %q status %q, %v", user, status, err) //nolint:errorlint // err may be nil here: %w would print %!w(<nil>)
			}
			return nil
		})
}

func mustSub(t *testing.T, fsys fs.FS, dir string) fs.FS {
	t.Helper()
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		t.Fatal(err)
	}
	return sub
}
