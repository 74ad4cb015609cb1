package order_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/contract"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
	"github.com/flotilla-ci/flotilla/shop/order"
	"github.com/flotilla-ci/flotilla/shop/shoptest"
	"github.com/flotilla-ci/flotilla/shop/shoptest/shoppact"
)

// TestContractProvider verifies every consumer's pact with order-service
// against the real service, with the five services it calls running for
// real; state handlers place orders through the API and wait for the saga.
func TestContractProvider(t *testing.T) {
	env := kittest.SQLiteEnv(t)
	s := shoptest.Start(t, env, shoptest.Options{Products: 3})
	s.Stock(t, 3, 100)
	customer := s.Customer(t, "buyer@shop.test")
	auth := &shoppact.Auth{}
	auth.Set(s.AdminToken)

	// place orders qty of SKU-0001 (stocked with 100) and waits for the
	// saga to end in want.
	place := func(qty int, want string) (order.Order, error) {
		kittest.Call(t, "DELETE", s.Cart.URL()+"/carts/me", customer, nil)
		s.Fill(t, customer, map[string]int{"SKU-0001": qty})
		r := kittest.Call(t, "POST", s.Order.URL()+"/orders", customer, nil)
		var o order.Order
		if r.Status != 201 && r.Status != 202 {
			return o, fmt.Errorf("place an order: %d %s", r.Status, r.Body)
		}
		r.JSON(t, &o)
		for deadline := time.Now().Add(10 * time.Second); o.Status != want && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			kittest.Call(t, "GET", s.Order.URL()+"/orders/"+o.ID, customer, nil).JSON(t, &o)
		}
		if o.Status != want {
			return o, fmt.Errorf("order %s is %s, want %s", o.ID, o.Status, want)
		}
		return o, nil
	}
	states := map[string]contract.StateHandler{
		"order o-1 is confirmed": func(context.Context, bool, map[string]any) (map[string]any, error) {
			o, err := place(2, order.Confirmed)
			return map[string]any{"orderId": o.ID}, err
		},
	}
	v := shoppact.Verifier(t, order.Service, s.Order.URL(), auth, states)
	// Messages are what the saga wrote to the outbox for a real order.
	event := func(name string, qty int, status string) contract.MessageProducer {
		return func(ctx context.Context, _ []contract.ProviderState) (contract.Message, error) {
			if _, err := place(qty, status); err != nil {
				return contract.Message{}, err
			}
			avsc, err := shoppact.Schema(order.Schemas(), name)
			if err != nil {
				return contract.Message{}, err
			}
			return shoppact.Outboxed(ctx, s.Order.App(), avsc, name)
		}
	}
	v.MessageProducers = map[string]contract.MessageProducer{
		"an OrderCreated event":   event("OrderCreated", 2, order.Confirmed),
		"an OrderConfirmed event": event("OrderConfirmed", 2, order.Confirmed),
		// More than is in stock: inventory refuses, the saga cancels.
		"an OrderCancelled event": event("OrderCancelled", 500, order.Cancelled),
	}
	contract.Verify(t, v)
}
