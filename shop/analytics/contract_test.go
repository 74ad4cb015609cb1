package analytics

import (
	"context"
	"fmt"
	"io/fs"
	"testing"

	"github.com/flotilla-ci/flotilla/contract"
	"github.com/flotilla-ci/flotilla/shop/inventory"
	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
	"github.com/flotilla-ci/flotilla/shop/order"
	"github.com/flotilla-ci/flotilla/shop/payment"
	"github.com/flotilla-ci/flotilla/shop/product"
	"github.com/flotilla-ci/flotilla/shop/shipping"
	"github.com/flotilla-ci/flotilla/shop/shoptest/shoppact"
	"github.com/flotilla-ci/flotilla/shop/user"
)

// TestContractEvents records analytics-service's message pacts: every
// event it subscribes to, with every field of the schema it reads the
// event with, in the event's Avro JSON shape, encoded with that schema and
// handed to the real handler, which must store it decoded.
func TestContractEvents(t *testing.T) {
	m := &Main{Config: Config{Kit: kittest.SQLiteEnv(t).Config(t, Service)}}
	ctx := context.Background()
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	type producer struct {
		name    string
		schemas fs.FS
	}
	var (
		users     = producer{user.Service, user.Schemas()}
		products  = producer{product.Service, product.Schemas()}
		stock     = producer{inventory.Service, inventory.Schemas()}
		payments  = producer{payment.Service, payment.Schemas()}
		orders    = producer{order.Service, order.Schemas()}
		shipments = producer{shipping.Service, shipping.Schemas()}
	)
	producers := map[string]producer{
		"UserRegistered": users, "ProductCreated": products, "ProductUpdated": products, "PriceChanged": products,
		"StockReserved": stock, "StockReleased": stock, "StockDepleted": stock,
		"PaymentCompleted": payments, "PaymentFailed": payments, "PaymentRefunded": payments,
		"OrderCreated": orders, "OrderConfirmed": orders, "OrderCancelled": orders,
		"ShipmentCreated": shipments, "ShipmentDelivered": shipments, "ShipmentFailed": shipments,
	}
	examples := map[string]any{
		"userId": "u-42", "orderId": "o-1", "paymentId": "p-1", "reservationId": "r-1", "shipmentId": "s-1",
		"sku": "SKU-0001", "currency": contract.Regex("EUR", `^[A-Z]{3}$`),
		"amount": 2474, "totalMinor": 2474, "unitPrice": 1237, "quantity": 2, "rate": 499, "price": 1237,
		"reason": "payment_failed: declined",
	}
	for _, event := range Events {
		p, ok := producers[event]
		if !ok {
			t.Fatalf("no producer for %s", event)
		}
		avsc, err := shoppact.Schema(p.schemas, event)
		if err != nil {
			t.Fatal(err)
		}
		body, err := shoppact.Content(avsc, examples)
		if err != nil {
			t.Fatal(err)
		}
		article := "a"
		if event[0] == 'O' {
			article = "an"
		}
		pact := contract.NewConsumerPact(contract.Config{Consumer: Service, Provider: p.name})
		pact.ExpectsToReceive(article+" "+event+" event").
			WithMetadata(shoppact.Metadata(event)).
			WithContent(body).
			Verify(t, func(msg contract.Message) error {
				// analytics decodes with its own reader; the bus carries what a
				// producer's codec (no registry here: schema id 0) writes.
				codec, err := kit.NewCodec("")
				if err != nil {
					return err
				}
				if err := codec.AddReader(event, avsc); err != nil {
					return err
				}
				bm, err := shoppact.Delivered(ctx, codec, avsc, event, msg)
				if err != nil {
					return err
				}
				if err := m.handle(ctx, bm); err != nil {
					return err
				}
				var decoded bool
				err = m.app.DB.QueryRowContext(ctx, `SELECT decoded FROM analytics_events WHERE event_id = $1`, bm.ID()).Scan(&decoded)
				if err != nil || !decoded {
					return fmt.Errorf("%s stored decoded=%v (%v)", event, decoded, err) //nolint:errorlint // err may be nil here: %w would print %!w(<nil>)
				}
				return nil
			})
	}
}
