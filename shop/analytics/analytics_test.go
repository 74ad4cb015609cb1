package analytics_test

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flotilla-ci/flotilla/bus"
	"github.com/flotilla-ci/flotilla/internal/sqldb"
	"github.com/flotilla-ci/flotilla/registry"
	"github.com/flotilla-ci/flotilla/registry/sqlstore"
	"github.com/flotilla-ci/flotilla/shop/analytics"
	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
	"github.com/flotilla-ci/flotilla/shop/order"
	"github.com/flotilla-ci/flotilla/shop/payment"
	"github.com/flotilla-ci/flotilla/shop/user"
)

func start(t *testing.T, kc kit.Config) *analytics.Main {
	t.Helper()
	m := &analytics.Main{Config: analytics.Config{Kit: kc}}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

type producer struct {
	t     *testing.T
	b     bus.Bus
	codec *kit.Codec
}

func newProducer(t *testing.T, env kittest.Env, registryURL string, schemas ...fs.FS) *producer {
	t.Helper()
	ctx := context.Background()
	b, err := kit.Dial(ctx, env.BusURL, env.BusStream, "test", false, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	codec, _ := kit.NewCodec(registryURL)
	for _, s := range schemas {
		if err := codec.Load(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	return &producer{t: t, b: b, codec: codec}
}

// publish sends the event twice (a duplicate delivery) at the given time.
func (p *producer) publish(event, key string, at time.Time, v any) {
	p.t.Helper()
	msg, err := p.codec.Message(context.Background(), event, key, v)
	if err != nil {
		p.t.Fatal(err)
	}
	msg.Headers[bus.HeaderOccurredAt] = at.UTC().Format(time.RFC3339Nano)
	if err := p.b.Publish(context.Background(), msg, msg); err != nil {
		p.t.Fatal(err)
	}
}

func get(t *testing.T, url string, v any) {
	t.Helper()
	r := kittest.Call(t, "GET", url, "", nil)
	if r.Status != 200 {
		t.Fatalf("GET %s: %d %s", url, r.Status, r.Body)
	}
	r.JSON(t, v)
}

func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not true after 20s; last: %s", what, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type ol struct {
	SKU       string `avro:"sku"`
	Quantity  int    `avro:"quantity"`
	UnitPrice int64  `avro:"unitPrice"`
}

func TestAggregates(t *testing.T) {
	kittest.Each(t, func(t *testing.T, env kittest.Env) {
		m := start(t, env.Config(t, analytics.Service))
		p := newProducer(t, env, "", order.Schemas(), payment.Schemas(), user.Schemas())
		h1 := time.Now().UTC().Truncate(time.Hour).Add(-3*time.Hour + 15*time.Minute)
		h2 := h1.Add(time.Hour)
		created := func(id string, at time.Time, total int64, lines ...ol) {
			var items []string
			for _, l := range lines {
				items = append(items, l.SKU)
			}
			p.publish("OrderCreated", id, at, map[string]any{"orderId": id, "userId": "u-1", "items": items, "total": float64(total) / 100,
				"timestamp": at.UnixMilli(), "version": "1.1", "lines": lines, "totalMinor": total, "currency": "EUR"})
		}
		confirmed := func(id string, at time.Time, total int64) {
			p.publish("OrderConfirmed", id, at, map[string]any{"orderId": id, "userId": "u-1", "total": total, "currency": "EUR",
				"paymentId": "pay-" + id, "reservationId": "res-" + id, "timestamp": at, "version": 1})
		}
		cancelled := func(id string, at time.Time, reason string) {
			p.publish("OrderCancelled", id, at, map[string]any{"orderId": id, "userId": "u-1", "reason": reason, "total": int64(100), "currency": "EUR", "timestamp": at, "version": 1})
		}
		payment := func(event, id string, at time.Time) {
			v := map[string]any{"paymentId": "pay-" + id, "orderId": id, "userId": "u-1", "amount": int64(100), "currency": "EUR", "timestamp": at, "version": 1}
			if event == "PaymentFailed" {
				v["reason"] = "card declined"
			}
			p.publish(event, id, at, v)
		}
		created("o-1", h1, 3000, ol{"SKU-1", 2, 1000}, ol{"SKU-2", 1, 1000})
		created("o-2", h1.Add(10*time.Minute), 2500, ol{"SKU-2", 5, 500})
		created("o-3", h2, 900, ol{"SKU-3", 9, 100})
		created("o-4", h2, 400, ol{"SKU-1", 4, 100})
		created("o-5", h2, 100, ol{"SKU-3", 1, 100})
		confirmed("o-1", h1.Add(time.Minute), 3000)
		confirmed("o-2", h1.Add(11*time.Minute), 2500)
		confirmed("o-4", h2.Add(time.Minute), 400)
		cancelled("o-3", h2.Add(time.Minute), "payment declined: card declined")
		cancelled("o-5", h2.Add(time.Minute), "out of stock: SKU-3")
		payment("PaymentCompleted", "o-1", h1)
		payment("PaymentCompleted", "o-2", h1)
		payment("PaymentCompleted", "o-4", h2)
		payment("PaymentFailed", "o-3", h2)
		p.publish("UserRegistered", "u-1", h1, map[string]any{"userId": "u-1", "email": "a@shop.test", "name": "A", "role": "customer", "timestamp": h1, "version": 1})
		// 16 distinct events, each delivered twice.
		var evs []analytics.EventCount
		eventually(t, "every event stored once", func() (bool, string) {
			get(t, m.URL()+"/stats/events", &evs)
			var n int64
			for _, e := range evs {
				n += e.Stored
			}
			return n == 15, fmt.Sprintf("%+v", evs)
		})
		var s analytics.Summary
		get(t, m.URL()+"/stats", &s)
		var hours []analytics.Hour
		get(t, m.URL()+"/stats/orders?from="+h2.Truncate(time.Hour).Format(time.RFC3339)+"&to="+h2.Add(time.Hour).Format(time.RFC3339), &hours)
		if diff := cmp.Diff([]analytics.Hour{{Hour: h2.Truncate(time.Hour), Currency: "EUR", Orders: 1, GMV: 400}}, hours); diff != "" {
			t.Errorf("orders per hour (-want +got):\n%s", diff)
		}
		want := analytics.Summary{
			OrdersPerHour: []analytics.Hour{{Hour: h1.Truncate(time.Hour), Currency: "EUR", Orders: 2, GMV: 5500}, {Hour: h2.Truncate(time.Hour), Currency: "EUR", Orders: 1, GMV: 400}},
			Totals:        analytics.Totals{Orders: 3, GMV: map[string]int64{"EUR": 5900}},
			Conversion:    analytics.Conversion{Checkouts: 5, Orders: 3, Rate: 0.6},
			TopProducts:   []analytics.ProductSales{{SKU: "SKU-1", Units: 6, Revenue: 2400}, {SKU: "SKU-2", Units: 6, Revenue: 3500}},
			Payments:      analytics.Payments{Completed: 3, Failed: 1, FailureRate: 0.25},
			Cancellations: []analytics.Reason{{Reason: "out of stock: SKU-3", Orders: 1}, {Reason: "payment declined: card declined", Orders: 1}},
		}
		if diff := cmp.Diff(want, s); diff != "" {
			t.Errorf("summary (-want +got):\n%s", diff)
		}

		// The same figures for Prometheus.
		resp, err := http.Get(m.URL() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		for _, line := range []string{
			`analytics_orders_confirmed_total 3`,
			`analytics_gmv_minor_total{currency="EUR"} 5900`,
			`analytics_checkouts_total 5`,
			`analytics_cart_to_order_conversion_ratio 0.6`,
			`analytics_payment_failure_ratio 0.25`,
			`analytics_payments_total{outcome="failed"} 1`,
			`analytics_orders_cancelled_total{reason="out of stock: SKU-3"} 1`,
			`analytics_product_units_sold_total{sku="SKU-2"} 6`,
			`analytics_events_stored_total{type="OrderCreated"} 5`,
		} {
			if !strings.Contains(string(body), line+"\n") {
				t.Errorf("/metrics lacks %q", line)
			}
		}

		for _, q := range []string{"/stats/orders?from=yesterday", "/stats/orders?from=2026-11-27T00:00:00Z&to=2026-11-26T00:00:00Z", "/stats/top-products?limit=0", "/stats?colour=red"} {
			if r := kittest.Call(t, "GET", m.URL()+q, "", nil); r.Status != 400 {
				t.Errorf("GET %s: %d %s, want 400", q, r.Status, r.Body)
			}
		}
	})
}

// An event written with a schema version analytics was not built with is
// read with that writer schema from the registry; one whose schema id the
// registry does not know, or whose bytes no schema reads, is stored raw
// with the reason (not lost, not a crash loop); one with no event id is
// dead-lettered.
func TestUnknownVersions(t *testing.T) {
	ctx := context.Background()
	env := kittest.SQLiteEnv(t)
	db, err := sqldb.Open(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	store, err := sqlstore.New(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := registry.New(store, registry.DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	kc := env.Config(t, analytics.Service)
	kc.RegistryURL = ts.URL
	m := start(t, kc)

	p := newProducer(t, env, ts.URL)
	v2, err := fs.ReadFile(order.Schemas(), "OrderConfirmed.avsc")
	if err != nil {
		t.Fatal(err)
	}
	evolved := strings.Replace(string(v2), `{"name": "version"`, `{"name": "channel", "type": "string", "default": "web"}, {"name": "version"`, 1)
	if evolved == string(v2) {
		t.Fatal("could not evolve the OrderConfirmed schema")
	}
	if err := p.codec.Add(ctx, "OrderConfirmed", evolved); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	p.publish("OrderConfirmed", "o-9", now, map[string]any{"orderId": "o-9", "userId": "u", "total": int64(700), "currency": "EUR",
		"paymentId": "p", "reservationId": "r", "timestamp": now, "version": 2, "channel": "app"})
	raw := func(id string, payload []byte, headers map[string]string) {
		h := map[string]string{bus.HeaderEventType: "OrderConfirmed", bus.HeaderOccurredAt: now.UTC().Format(time.RFC3339Nano)}
		if id != "" {
			h[bus.HeaderEventID] = id
		}
		for k, v := range headers {
			h[k] = v
		}
		if err := p.b.Publish(ctx, bus.Message{Topic: "OrderConfirmed", Key: "o-x", Payload: payload, Headers: h}); err != nil {
			t.Fatal(err)
		}
	}
	raw("ev-unknown-id", []byte{0, 0, 0, 0x7f, 0x10, 1, 2, 3}, nil) // schema id 32528: not in the registry
	raw("ev-garbage", []byte("not avro at all"), nil)
	raw("", []byte{0, 0, 0, 0, 1}, nil) // no event id: dead-lettered

	eventually(t, "both bad events stored raw and the evolved one decoded", func() (bool, string) {
		var evs []analytics.EventCount
		get(t, m.URL()+"/stats/events", &evs)
		return cmp.Equal(evs, []analytics.EventCount{{Type: "OrderConfirmed", Stored: 3, Undecoded: 2}}), fmt.Sprintf("%+v", evs)
	})
	var data string
	if err := m.App().DB.QueryRowContext(ctx, `SELECT data FROM analytics_events WHERE event_key = $1`, "o-9").Scan(&data); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(data, `"channel":"app"`) {
		t.Errorf("evolved event stored as %s; want its new field", data)
	}
	var tot analytics.Totals
	get(t, m.URL()+"/stats/totals", &tot)
	if diff := cmp.Diff(analytics.Totals{Orders: 1, GMV: map[string]int64{"EUR": 700}}, tot); diff != "" {
		t.Errorf("totals (-want +got):\n%s", diff)
	}
}
