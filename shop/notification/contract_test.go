package notification

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/contract"
	"github.com/flotilla-ci/flotilla/internal/sqldb"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
	"github.com/flotilla-ci/flotilla/shop/shoptest/shoppact"
)

// TestContractEvents records notification-service's message pacts: every
// event it consumes, with every field of its reader schema, in the event's
// Avro JSON shape, encoded with that schema and handed to the real
// consumer, which must render an email from it (a template that cannot render
// makes it dead).
func TestContractEvents(t *testing.T) {
	m := &Main{Config: Config{Kit: kittest.SQLiteEnv(t).Config(t, Service), DataDir: t.TempDir(), Tick: time.Hour}}
	ctx := context.Background()
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	producers := map[string]string{
		"UserRegistered": "user-service", "OrderConfirmed": "order-service", "OrderCancelled": "order-service",
		"ShipmentCreated": "shipping-service", "ShipmentDelivered": "shipping-service", "PaymentRefunded": "payment-service",
	}
	examples := map[string]any{
		"userId": "u-42", "email": contract.Regex("ada@shop.test", `^[^@\s]+@[^@\s]+$`), "name": "Ada", "role": "customer",
		"orderId": "o-1", "paymentId": "p-1", "reservationId": "r-1", "shipmentId": "s-1",
		"total": 2474, "amount": 2474, "rate": 499, "currency": contract.Regex("EUR", `^[A-Z]{3}$`),
		"country": contract.Regex("DE", `^[A-Z]{2}$`), "carrier": "DHL", "service": "standard", "trackingNumber": "DHL123456789",
		"reason": "payment_failed: declined",
	}
	for _, event := range Events { // UserRegistered first: the others need the recipient
		src, err := readerFS.ReadFile("readers/" + event + ".avsc")
		if err != nil {
			t.Fatal(err)
		}
		body, err := shoppact.Content(string(src), examples)
		if err != nil {
			t.Fatal(err)
		}
		article := "a"
		if event[0] == 'O' {
			article = "an"
		}
		p := contract.NewConsumerPact(contract.Config{Consumer: Service, Provider: producers[event]})
		p.ExpectsToReceive(article+" "+event+" event").
			WithMetadata(shoppact.Metadata(event)).
			WithContent(body).
			Verify(t, func(msg contract.Message) error {
				bm, err := shoppact.Delivered(ctx, m.app.Codec, string(src), event, msg)
				if err != nil {
					return err
				}
				if err := m.app.DB.InTx(ctx, func(tx *sqldb.Tx) error { return m.consumer(event)(ctx, tx, bm) }); err != nil {
					return err
				}
				var status, text string
				err = m.app.DB.QueryRowContext(ctx, `SELECT status, body FROM notifications WHERE event_id = $1 AND channel = $2`, bm.ID(), Email).Scan(&status, &text)
				if err != nil || status == Dead || text == "" {
					return fmt.Errorf("%s: the email is %q (%v): %s", event, status, err, text) //nolint:errorlint // err may be nil here: %w would print %!w(<nil>)
				}
				return nil
			})
	}
}
