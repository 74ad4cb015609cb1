// Command tracestore measures the memory of the control plane's local
// trace store (tracing/store) at its size bound: it fills a store with
// checkout-shaped traces (13 spans over 9 services, with attributes, an
// error event and bus links) well past its bound, then prints the spans
// and traces kept, the store's own estimate of their size, and the Go
// heap in use after a GC, against the empty store's.
//
//	go run ./bench/tracestore [-max-spans 100000] [-max-bytes 134217728] [-traces 30000]
package main

import (
	"flag"
	"fmt"
	"runtime"
	"time"

	"github.com/flotilla-ci/flotilla/tracing/store"
)

func heap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func main() {
	def := store.DefaultConfig()
	maxSpans := flag.Int("max-spans", def.MaxSpans, "the store's span bound")
	maxBytes := flag.Int64("max-bytes", def.MaxBytes, "the store's size bound in bytes")
	traces := flag.Int("traces", 30_000, "checkout traces to add")
	flag.Parse()
	cfg := def
	cfg.MaxSpans, cfg.MaxBytes = *maxSpans, *maxBytes
	before := heap()
	st, err := store.New(cfg)
	if err != nil {
		panic(err)
	}
	t0 := time.Now()
	start := time.Now()
	for i := range *traces {
		st.Add(checkout(i, t0.Add(time.Duration(i)*time.Millisecond)))
	}
	took := time.Since(start)
	after := heap()
	s := st.Stats()
	used := after - before
	fmt.Printf("bound: %d spans / %d MiB; added %d traces (%d spans) in %v (%.0f spans/s)\n",
		cfg.MaxSpans, cfg.MaxBytes>>20, *traces, *traces*13, took.Round(time.Millisecond), float64(*traces*13)/took.Seconds())
	fmt.Printf("kept: %d traces, %d spans; evicted %d traces\n", s.Traces, s.Spans, s.Evicted)
	fmt.Printf("store's estimate: %.1f MiB (%d bytes/span)\n", float64(s.Bytes)/(1<<20), s.Bytes/int64(max(s.Spans, 1)))
	fmt.Printf("heap in use at the bound: %.1f MiB (%d bytes/span); estimate/heap = %.2f\n",
		float64(used)/(1<<20), used/uint64(max(s.Spans, 1)), float64(s.Bytes)/float64(used))
	runtime.KeepAlive(st)
}

func hexID(n, width int) string { return fmt.Sprintf("%0*x", width, n) }

// checkout is one checkout's spans, shaped like the shop's.
func checkout(i int, t time.Time) []store.Span {
	tid := hexID(i+1, 32)
	at := func(ms int) time.Time { return t.Add(time.Duration(ms) * time.Millisecond) }
	mk := func(id, parent int, svc, name, kind string, s, e int, attrs ...string) store.Span {
		sp := store.Span{TraceID: tid, SpanID: hexID(i*16+id, 16), Service: svc, Version: "3f2a1b9c0d1e", Name: name, Kind: kind,
			Start: at(s), End: at(e), Status: store.StatusUnset}
		if parent != 0 {
			sp.ParentSpanID = hexID(i*16+parent, 16)
		}
		for k := 0; k+1 < len(attrs); k += 2 {
			sp.Attributes = append(sp.Attributes, store.Attr{Key: attrs[k], Value: attrs[k+1]})
		}
		return sp
	}
	oid := fmt.Sprintf("o-%08d", i)
	spans := []store.Span{
		mk(1, 0, "gateway", "POST /api/order/orders", store.KindServer, 0, 120, "http.request.method", "POST", "http.response.status_code", "201", "http.route", "/api/order/orders", "url.path", "/api/order/orders"),
		mk(2, 1, "order-service", "POST /orders", store.KindServer, 2, 115, "http.request.method", "POST", "http.response.status_code", "201", "http.route", "/orders"),
		mk(3, 2, "cart-service", "GET /carts/me", store.KindServer, 4, 12, "http.request.method", "GET", "http.route", "/carts/me"),
		mk(4, 2, "user-service", "GET /users/me", store.KindServer, 5, 9, "http.request.method", "GET", "http.route", "/users/me"),
		mk(5, 2, "order-service", "check_inventory", store.KindInternal, 13, 30, "order.id", oid, "saga.id", "s-"+oid),
		mk(6, 5, "inventory-service", "POST /reservations", store.KindServer, 14, 29, "http.request.method", "POST", "db.system", "sqlite"),
		mk(7, 2, "order-service", "process_payment", store.KindInternal, 31, 100, "order.id", oid, "saga.id", "s-"+oid),
		mk(8, 7, "payment-service", "POST /payments", store.KindServer, 32, 99, "http.request.method", "POST", "payment.amount", "4590"),
		mk(9, 2, "order-service", "publish OrderCreated", store.KindProducer, 101, 103, "messaging.system", "nats", "messaging.destination.name", "OrderCreated"),
		mk(10, 9, "shipping-service", "process OrderCreated", store.KindConsumer, 104, 130, "messaging.system", "nats", "messaging.destination.name", "OrderCreated"),
		mk(11, 9, "notification-service", "process OrderCreated", store.KindConsumer, 104, 118, "messaging.system", "nats", "messaging.destination.name", "OrderCreated"),
		mk(12, 9, "analytics-service", "process OrderCreated", store.KindConsumer, 105, 109, "messaging.system", "nats", "messaging.destination.name", "OrderCreated"),
		mk(13, 2, "order-service", "db.tx", store.KindInternal, 103, 114, "db.system", "sqlite"),
	}
	for k := 9; k <= 11; k++ {
		spans[k].Links = []store.Link{{TraceID: tid, SpanID: spans[8].SpanID}}
	}
	if i%10 == 0 {
		spans[7].Status, spans[7].StatusMessage = store.StatusError, "card declined"
		spans[7].Events = []store.Event{{Name: "exception", Time: at(98), Attributes: store.Attrs{{Key: "exception.message", Value: "card declined"}, {Key: "exception.type", Value: "*payment.DeclinedError"}}}}
	}
	return spans
}
