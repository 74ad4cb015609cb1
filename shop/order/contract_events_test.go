package order

import (
	"context"
	"fmt"
	"testing"

	"github.com/flotilla-ci/flotilla/contract"
	"github.com/flotilla-ci/flotilla/internal/sqldb"
	"github.com/flotilla-ci/flotilla/shop/shoptest/shoppact"
)

// TestContractShipmentFailed records order-service's message pact with
// shipping-service: a ShipmentFailed, in its Avro JSON shape, encoded with
// order's own copy of the schema and handed to the real consumer.
func TestContractShipmentFailed(t *testing.T) {
	m := startOrder(t, nil)
	ctx := context.Background()
	p := contract.NewConsumerPact(contract.Config{Consumer: Service, Provider: "shipping-service"})
	p.ExpectsToReceive("a ShipmentFailed event").
		WithMetadata(shoppact.Metadata("ShipmentFailed")).
		WithContent(map[string]any{
			"shipmentId": contract.Like("s-1"), "orderId": contract.Like("o-1"), "userId": contract.Like("u-42"),
			"reason":    contract.Regex("no_address", `^(no_address|undeliverable|carrier_rejected|order_not_found)$`),
			"detail":    contract.Like("user u-42 has no delivery address"),
			"timestamp": contract.Integer(1767225600000), "version": contract.Integer(1),
		}).
		Verify(t, func(msg contract.Message) error {
			bm, err := shoppact.Delivered(ctx, m.app.Codec, shipmentFailedSchema, "ShipmentFailed", msg)
			if err != nil {
				return err
			}
			var e shipmentFailed
			if err := m.app.Codec.Decode(ctx, bm.Topic, bm.Payload, &e); err != nil || e.OrderID != "o-1" || e.Reason != "no_address" {
				return fmt.Errorf("decoded %+v, %v", e, err) //nolint:errorlint // err may be nil here: %w would print %!w(<nil>)
			}
			return m.app.DB.InTx(ctx, func(tx *sqldb.Tx) error { return m.shipmentFailed(ctx, tx, bm) })
		})
}
