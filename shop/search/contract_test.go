package search_test

import (
	"context"
	"fmt"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/contract"
	"github.com/flotilla-ci/flotilla/internal/sqldb"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
	"github.com/flotilla-ci/flotilla/shop/order"
	"github.com/flotilla-ci/flotilla/shop/product"
	"github.com/flotilla-ci/flotilla/shop/search"
	"github.com/flotilla-ci/flotilla/shop/search/bleveindex"
	"github.com/flotilla-ci/flotilla/shop/shoptest/shoppact"
)

// startSearch runs the real search-service on an empty Bleve index, so it
// rebuilds from the product-service at products.
func startSearch(t *testing.T, products string) *search.Main {
	t.Helper()
	cfg := kittest.SQLiteEnv(t).Config(t, search.Service)
	cfg.Deps["product"] = products
	dir := t.TempDir()
	m := &search.Main{Config: search.Config{Kit: cfg, RetryEvery: time.Hour,
		Open:  func() (search.Index, error) { return bleveindex.Open(dir) },
		Reset: func() error { return bleveindex.Reset(dir) }}}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// TestContractProduct records search-service's pact with product-service:
// the catalog listing the real search-service rebuilds its index from.
func TestContractProduct(t *testing.T) {
	p := contract.NewConsumerPact(contract.Config{Consumer: search.Service, Provider: "product-service"})
	p.AddInteraction().
		Given("product SKU-0001 exists", contract.Params{"sku": "SKU-0001"}).
		UponReceiving("a request for the first page of the catalog by sku").
		WithRequest(contract.Req{Method: "GET", Path: "/products", Query: map[string]any{"limit": "100", "offset": "0", "sort": "sku"}}).
		WillRespondWith(contract.Resp{Status: 200, Headers: map[string]any{"Content-Type": shoppact.JSONType()}, Body: map[string]any{
			"items": contract.EachLike(map[string]any{
				"sku": contract.Like("SKU-0001"), "name": contract.Like("Demo product 1"), "description": contract.Like("Seeded demo product."),
				"category": contract.Like("kitchen"), "price": contract.Integer(1237), "currency": contract.Regex("EUR", `^[A-Z]{3}$`),
				"active":    contract.Boolean(true),
				"updatedAt": contract.Regex("2026-01-01T00:00:00Z", `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$`),
			}, 1, 0),
			"nextOffset": nil,
		}})
	p.Run(t, func(base string) error {
		m := startSearch(t, base)
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			st := m.Status()
			if st.FinishedAt != nil && !st.Running {
				if st.Error != "" || st.Listed != 1 {
					return fmt.Errorf("rebuild from the catalog: %+v", st)
				}
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("rebuild did not finish: %+v", st)
			}
		}
		if n, err := m.Index().Count(context.Background()); err != nil || n != 1 {
			return fmt.Errorf("index holds %d documents (%v), want 1", n, err) //nolint:errorlint // err may be nil here: %w would print %!w(<nil>)
		}
		return m.Close()
	})
}

// TestContractEvents records search-service's message pacts: each event
// it consumes, as the pact's example in the event's Avro JSON shape, is
// encoded with search's schema and handed to its real handler.
func TestContractEvents(t *testing.T) {
	m := startSearch(t, "http://127.0.0.1:1")
	ctx := context.Background()
	schema := func(fsys fs.FS, event string) string {
		s, err := shoppact.Schema(fsys, event)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	ts := contract.Integer(1767225600000)
	handle := func(event string, schemas fs.FS, check func() error) func(contract.Message) error {
		return func(msg contract.Message) error {
			bm, err := shoppact.Delivered(ctx, m.App().Codec, schema(schemas, event), event, msg)
			if err != nil {
				return err
			}
			if err := m.App().DB.InTx(ctx, func(tx *sqldb.Tx) error { return m.HandlerFor(event)(ctx, tx, bm) }); err != nil {
				return err
			}
			return check()
		}
	}
	indexed := func(sku string, price int64, active bool) func() error {
		return func() error {
			var p int64
			var a bool
			err := m.App().DB.QueryRowContext(ctx, `SELECT price, active FROM search_products WHERE sku = $1`, sku).Scan(&p, &a)
			if err != nil || (price > 0 && p != price) || a != active {
				return fmt.Errorf("search_products %s: price %d active %v, %v", sku, p, a, err) //nolint:errorlint // err may be nil here: %w would print %!w(<nil>)
			}
			return nil
		}
	}
	products := contract.NewConsumerPact(contract.Config{Consumer: search.Service, Provider: "product-service"})
	products.ExpectsToReceive("a ProductCreated event").
		WithMetadata(shoppact.Metadata("ProductCreated")).
		WithContent(map[string]any{
			"sku": contract.Like("SKU-0500"), "name": contract.Like("Teapot"), "description": contract.Like("Holds tea."),
			"category": contract.Like("kitchen"), "price": contract.Integer(2500), "currency": contract.Regex("EUR", `^[A-Z]{3}$`),
			"sellerId": contract.Like("u-42"), "timestamp": ts, "version": contract.Integer(1),
		}).
		Verify(t, handle("ProductCreated", product.Schemas(), indexed("SKU-0500", 2500, true)))
	products.ExpectsToReceive("a ProductUpdated event").
		WithMetadata(shoppact.Metadata("ProductUpdated")).
		WithContent(map[string]any{
			"sku": contract.Like("SKU-0500"), "name": contract.Like("Teapot"), "description": contract.Like("Holds tea."),
			"category": contract.Like("kitchen"), "active": contract.Boolean(false), "timestamp": contract.Integer(1767225601000), "version": contract.Integer(1),
		}).
		Verify(t, handle("ProductUpdated", product.Schemas(), indexed("SKU-0500", 0, false)))
	products.ExpectsToReceive("a PriceChanged event").
		WithMetadata(shoppact.Metadata("PriceChanged")).
		WithContent(map[string]any{
			"sku": contract.Like("SKU-0500"), "oldPrice": contract.Integer(2500), "newPrice": contract.Integer(1999),
			"currency": contract.Regex("EUR", `^[A-Z]{3}$`), "timestamp": contract.Integer(1767225602000), "version": contract.Integer(1),
		}).
		Verify(t, handle("PriceChanged", product.Schemas(), indexed("SKU-0500", 1999, false)))

	orders := contract.NewConsumerPact(contract.Config{Consumer: search.Service, Provider: "order-service"})
	orders.ExpectsToReceive("an OrderCreated event").
		WithMetadata(shoppact.Metadata("OrderCreated")).
		WithContent(map[string]any{
			"orderId": contract.Like("o-1"), "userId": contract.Like("u-42"),
			"items": contract.EachLike("SKU-0500", 1, 0), "total": contract.Decimal(24.74),
			"lines": contract.EachLike(map[string]any{
				"sku": contract.Like("SKU-0500"), "quantity": contract.Integer(2), "unitPrice": contract.Integer(1237),
			}, 1, 0),
			"timestamp": ts, "version": contract.Like("1"),
		}).
		Verify(t, handle("OrderCreated", order.Schemas(), func() error {
			var lines string
			if err := m.App().DB.QueryRowContext(ctx, `SELECT lines FROM search_orders WHERE order_id = $1`, "o-1").Scan(&lines); err != nil || !strings.Contains(lines, "SKU-0500") {
				return fmt.Errorf("order o-1's lines not recorded for popularity: %q, %v", lines, err) //nolint:errorlint // err may be nil here: %w would print %!w(<nil>)
			}
			return nil
		}))
	orders.ExpectsToReceive("an OrderConfirmed event").
		WithMetadata(shoppact.Metadata("OrderConfirmed")).
		WithContent(map[string]any{
			"orderId": contract.Like("o-1"), "userId": contract.Like("u-42"), "total": contract.Integer(2474),
			"currency": contract.Regex("EUR", `^[A-Z]{3}$`), "paymentId": contract.Like("p-1"), "reservationId": contract.Like("r-1"),
			"timestamp": ts, "version": contract.Integer(1),
		}).
		Verify(t, handle("OrderConfirmed", order.Schemas(), func() error {
			var confirmed bool
			if err := m.App().DB.QueryRowContext(ctx, `SELECT confirmed FROM search_orders WHERE order_id = $1`, "o-1").Scan(&confirmed); err != nil || !confirmed {
				return fmt.Errorf("order o-1 not recorded as confirmed: %v", err) //nolint:errorlint // err may be nil here: %w would print %!w(<nil>)
			}
			return nil
		}))
}
