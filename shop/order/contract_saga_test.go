package order

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/contract"
	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
	"github.com/flotilla-ci/flotilla/shop/shoptest/shoppact"
)

// TestContractPlaceOrder records the happy path of the real order-service
// against the contract mocks of all four of its providers at once: the
// caller checked, the cart read, stock reserved, the charge captured, the
// stock committed and, once the order is confirmed, the cart emptied.
func TestContractPlaceOrder(t *testing.T) {
	users := userPact()
	carts := contract.NewConsumerPact(contract.Config{Consumer: Service, Provider: "cart-service"})
	addCart(carts, cartState, "a request for the caller's cart, re-priced", cartBody())
	carts.AddInteraction().
		Given(cartState).
		UponReceiving("a request to empty the cart of a confirmed order's user").
		WithRequest(contract.Req{Method: "DELETE", Path: contract.FromProviderState("/carts/${userId}", "/carts/u-42"), Headers: sagaHeaders()}).
		WillRespondWith(contract.Resp{Status: 200})
	stock := contract.NewConsumerPact(contract.Config{Consumer: Service, Provider: "inventory-service"})
	addReserve(stock)
	addCommit(stock)
	payments := contract.NewConsumerPact(contract.Config{Consumer: Service, Provider: "payment-service"})
	addCharge(payments)

	var err error
	users.Run(t, func(u string) error {
		carts.Run(t, func(c string) error {
			stock.Run(t, func(i string) error {
				payments.Run(t, func(p string) error {
					err = placeAndConfirm(t, u, c, i, p)
					return err
				})
				return err
			})
			return err
		})
		return err
	})
}

func placeAndConfirm(t *testing.T, users, carts, inventory, payments string) error {
	// The cart is emptied after the order is confirmed, in the saga's own
	// time: watch for it on the way to the mock.
	emptied := make(chan struct{})
	var once sync.Once
	target, err := url.Parse(carts)
	if err != nil {
		return err
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = func(r *http.Response) error {
		if r.Request.Method == http.MethodDelete {
			once.Do(func() { close(emptied) })
		}
		return nil
	}
	watch := httptest.NewServer(rp)
	defer watch.Close()

	m := startOrder(t, map[string]string{"user": users, "cart": watch.URL, "inventory": inventory, "payment": payments})
	defer func() { _ = m.Close() }()
	tok := shoppact.Token(t, "u-42", kit.RoleCustomer)
	r := kittest.Call(t, "POST", m.URL()+"/orders", tok, nil)
	var o Order
	r.JSON(t, &o)
	if r.Status != 201 && r.Status != 202 {
		return fmt.Errorf("place an order: %d %s", r.Status, r.Body)
	}
	select {
	case <-emptied:
	case <-time.After(10 * time.Second):
		return fmt.Errorf("the cart was not emptied within 10s")
	}
	kittest.Call(t, "GET", m.URL()+"/orders/"+o.ID, tok, nil).JSON(t, &o)
	if o.Status != Confirmed || o.ReservationID != "r-1" || o.PaymentID != "p-1" {
		return fmt.Errorf("order after the saga: %+v", o)
	}
	return nil
}
