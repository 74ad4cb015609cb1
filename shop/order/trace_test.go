package order_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
	"github.com/flotilla-ci/flotilla/shop/order"
	"github.com/flotilla-ci/flotilla/shop/shoptest"
	"github.com/flotilla-ci/flotilla/tracing"
)

type spans []sdktrace.ReadOnlySpan

func service(s sdktrace.ReadOnlySpan) string {
	v, _ := s.Resource().Set().Value("service.name")
	return v.AsString()
}

func version(s sdktrace.ReadOnlySpan) string {
	v, _ := s.Resource().Set().Value("service.version")
	return v.AsString()
}

func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

func (ss spans) inTrace(id trace.TraceID) spans {
	var out spans
	for _, s := range ss {
		if s.SpanContext().TraceID() == id {
			out = append(out, s)
		}
	}
	return out
}

// one returns the only span of svc named name, failing the test when
// there is not exactly one.
func (ss spans) one(t *testing.T, svc, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	var found spans
	for _, s := range ss {
		if service(s) == svc && s.Name() == name {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d spans %q of %s, want 1; the trace has:\n%s", len(found), name, svc, ss)
	}
	return found[0]
}

// child returns the only child of parent named name.
func (ss spans) child(t *testing.T, parent sdktrace.ReadOnlySpan, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	var found spans
	for _, s := range ss {
		if s.Parent().SpanID() == parent.SpanContext().SpanID() && s.Name() == name {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d spans %q under %s, want 1; the trace has:\n%s", len(found), name, parent.Name(), ss)
	}
	return found[0]
}

func (ss spans) byID(id trace.SpanID) sdktrace.ReadOnlySpan {
	for _, s := range ss {
		if s.SpanContext().SpanID() == id {
			return s
		}
	}
	return nil
}

func (ss spans) String() string {
	var b strings.Builder
	for _, s := range ss {
		fmt.Fprintf(&b, "  %s %s (%s) parent %s status %v\n", service(s), s.Name(), s.SpanContext().SpanID(), s.Parent().SpanID(), s.Status().Code)
	}
	return b.String()
}

// A checkout through the in-process shop is one trace: the caller's span,
// order-service's server span named by route, the saga's steps with the
// order's id, the calls to cart, inventory and payment as client spans
// whose children are those services' server spans, each span stamped with
// the version that served it; the events it writes are published as
// children of the request. A declined payment fails process_payment with
// its reason and shows the compensation spans.
func TestCheckoutTrace(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	s := shoptest.Start(t, kittest.SQLiteEnv(t), shoptest.Options{
		Products: 3,
		Faults:   map[string]kit.Faults{"payment-service": {PaymentFailureRate: 0.5}},
		Configure: func(svc string, c *kit.Config) {
			c.Tracing = tracing.NewProvider(tracing.Config{ServiceName: svc, ServiceVersion: "v7-" + svc}, rec)
		},
	})
	s.Stock(t, 3, 1000)
	ada := s.Customer(t, "ada@shop.test")
	client := tracing.NewProvider(tracing.Config{ServiceName: "test-client"}, rec)

	outcomes := map[string]trace.TraceID{}
	orders := map[string]string{}
	for i := 0; i < 30 && len(outcomes) < 2; i++ {
		s.Fill(t, ada, map[string]int{"SKU-0001": 1})
		ctx, root := client.Tracer("test").Start(t.Context(), "checkout")
		r := kittest.Call(t, "POST", s.Order.URL()+"/orders", ada, nil, "Idempotency-Key", fmt.Sprint("trace-", i), "traceparent", tracing.Traceparent(ctx))
		root.End()
		var o order.Order
		r.JSON(t, &o)
		if got := r.Header.Get("traceparent"); !strings.Contains(got, root.SpanContext().TraceID().String()) {
			t.Errorf("answer's traceparent %q is not of the caller's trace %s", got, root.SpanContext().TraceID())
		}
		if _, seen := outcomes[o.Status]; !seen {
			outcomes[o.Status], orders[o.Status] = root.SpanContext().TraceID(), o.ID
		}
		if o.Status == order.Cancelled {
			kittest.Call(t, "DELETE", s.Cart.URL()+"/carts/me", ada, nil)
		}
	}
	if len(outcomes) != 2 {
		t.Fatalf("outcomes %v; want a confirmed and a cancelled order", outcomes)
	}

	// The relay publishes the events a little later.
	var all spans
	deadline := time.Now().Add(10 * time.Second)
	for {
		all = rec.Ended()
		tr := all.inTrace(outcomes[order.Confirmed])
		if slices.ContainsFunc(tr, func(s sdktrace.ReadOnlySpan) bool { return s.Name() == "publish OrderConfirmed" }) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}

	t.Run("confirmed", func(t *testing.T) {
		tr := all.inTrace(outcomes[order.Confirmed])
		id := orders[order.Confirmed]
		srv := tr.one(t, order.Service, "POST /orders")
		root := tr.one(t, "test-client", "checkout")
		if srv.Parent().SpanID() != root.SpanContext().SpanID() || srv.SpanKind() != trace.SpanKindServer {
			t.Errorf("POST /orders: kind %v parent %s, want a server span under the caller's %s", srv.SpanKind(), srv.Parent().SpanID(), root.SpanContext().SpanID())
		}
		if attr(srv, "http.route") != "/orders" || version(srv) != "v7-order-service" {
			t.Errorf("POST /orders: route %q version %q", attr(srv, "http.route"), version(srv))
		}
		for _, step := range []string{"check_inventory", "process_payment", "confirm_order"} {
			sp := tr.one(t, order.Service, step)
			if sp.Parent().SpanID() != srv.SpanContext().SpanID() {
				t.Errorf("%s is not a child of POST /orders", step)
			}
			if attr(sp, "order.id") != id || attr(sp, "saga.id") != id || sp.Status().Code == codes.Error {
				t.Errorf("%s: order.id %q saga.id %q status %v, want %s and no error", step, attr(sp, "order.id"), attr(sp, "saga.id"), sp.Status(), id)
			}
		}
		// Each step's call is a client span whose child is the callee's server span.
		for _, c := range []struct{ step, client, callee, server string }{
			{"check_inventory", "POST inventory-service", "inventory-service", "POST /reservations"},
			{"process_payment", "POST payment-service", "payment-service", "POST /payments"},
		} {
			cl := tr.child(t, tr.one(t, order.Service, c.step), c.client)
			sv := tr.one(t, c.callee, c.server)
			if sv.Parent().SpanID() != cl.SpanContext().SpanID() || version(sv) != "v7-"+c.callee {
				t.Errorf("%s of %s: parent %s version %q, want under %s", c.server, c.callee, sv.Parent().SpanID(), version(sv), c.client)
			}
			if tx := tr.child(t, sv, "db.transaction"); attr(tx, "db.system.name") != "sqlite" || service(tx) != c.callee {
				t.Errorf("%s's transaction: service %s system %q", c.callee, service(tx), attr(tx, "db.system.name"))
			}
		}
		if !slices.ContainsFunc(tr, func(s sdktrace.ReadOnlySpan) bool {
			return service(s) == "cart-service" && s.SpanKind() == trace.SpanKindServer
		}) {
			t.Errorf("no cart-service server span in the trace:\n%s", tr)
		}
		// The event: created in the saga's transaction, published by the relay as its child.
		cr := tr.one(t, order.Service, "create OrderConfirmed")
		pub := tr.one(t, order.Service, "publish OrderConfirmed")
		if pub.Parent().SpanID() != cr.SpanContext().SpanID() || pub.SpanKind() != trace.SpanKindProducer {
			t.Errorf("publish OrderConfirmed: parent %s kind %v, want the create span %s", pub.Parent().SpanID(), pub.SpanKind(), cr.SpanContext().SpanID())
		}
	})

	t.Run("payment declined", func(t *testing.T) {
		tr := all.inTrace(outcomes[order.Cancelled])
		id := orders[order.Cancelled]
		pay := tr.one(t, order.Service, "process_payment")
		if pay.Status().Code != codes.Error || !strings.HasPrefix(pay.Status().Description, "payment_failed") || attr(pay, "saga.next") != "RELEASE" {
			t.Errorf("process_payment: status %v next %q, want failed with payment_failed and RELEASE next", pay.Status(), attr(pay, "saga.next"))
		}
		for _, step := range []string{"compensate.release_stock", "compensate.refund_payment"} {
			sp := tr.one(t, order.Service, step)
			if attr(sp, "order.id") != id || attr(sp, "saga.id") != id {
				t.Errorf("%s: order.id %q, want %s", step, attr(sp, "order.id"), id)
			}
			if sp.StartTime().Before(pay.EndTime()) {
				t.Errorf("%s started before process_payment ended", step)
			}
		}
		rel := tr.one(t, "inventory-service", "POST /reservations/{id}/release")
		if p := tr.byID(rel.Parent().SpanID()); p == nil || p.Name() != "POST inventory-service" || tr.byID(p.Parent().SpanID()).Name() != "compensate.release_stock" {
			t.Errorf("inventory's release is not under compensate.release_stock:\n%s", tr)
		}
		if slices.ContainsFunc(tr, func(s sdktrace.ReadOnlySpan) bool { return s.Name() == "confirm_order" }) {
			t.Error("a declined order has a confirm_order span")
		}
	})
}
