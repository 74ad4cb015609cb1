package nats_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/flotilla-ci/flotilla/bus"
	"github.com/flotilla-ci/flotilla/bus/bustest"
	busnats "github.com/flotilla-ci/flotilla/bus/nats"
	"github.com/flotilla-ci/flotilla/tracing"
)

func embedded(t *testing.T) string {
	t.Helper()
	srv, err := busnats.Embedded(busnats.ServerConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv.URL()
}

// A traced bus with tracing off is the bus: the conformance suite passes
// through it, the traceparent a message carries included.
func TestConformanceTracedNoop(t *testing.T) {
	url := embedded(t)
	bustest.Run(t, func(t *testing.T) bus.Bus { return bus.Traced(newBus(t, url), noop.NewTracerProvider(), "nats") })
}

func spanNamed(t *testing.T, spans []sdktrace.ReadOnlySpan, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	for _, s := range spans {
		if s.Name() == name {
			return s
		}
	}
	var names []string
	for _, s := range spans {
		names = append(names, s.Name())
	}
	t.Fatalf("no span %q among %v", name, names)
	return nil
}

func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

// An event written under a request (its traceparent in the headers, as an
// outbox row keeps it) is published under a producer span that is the
// request's child, and consumed under a consumer span that is the
// producer's child and links to it; a failing handler's error is on its
// span.
func TestTracedPublishAndConsumeLinkToTheRequest(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	producer := tracing.NewProvider(tracing.Config{ServiceName: "order-service"}, rec)
	consumer := tracing.NewProvider(tracing.Config{ServiceName: "shipping-service"}, rec)
	url := embedded(t)
	pub := bus.Traced(newBus(t, url), producer, "nats")
	defer func() { _ = pub.Close() }()

	// The request that wrote the event.
	reqCtx, req := producer.Tracer("test").Start(t.Context(), "POST /orders")
	tp := tracing.Traceparent(reqCtx)
	req.End()

	sub := bus.Traced(pub.(interface{ Unwrap() bus.Bus }).Unwrap(), consumer, "nats")
	got := make(chan context.Context, 2)
	c, err := sub.Subscribe(t.Context(), bus.Subscription{Topic: "orders-created", Group: "shipping", Backoff: []time.Duration{10 * time.Millisecond},
		Handler: func(ctx context.Context, m bus.Message) error {
			got <- ctx
			if m.Delivery == 1 {
				return errors.New("database is down")
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	// The relay publishes later, under a context of its own.
	if err := pub.Publish(context.Background(), bus.Message{Topic: "orders-created", Key: "o1",
		Headers: map[string]string{bus.HeaderEventID: "e1", bus.HeaderTraceparent: tp}, Payload: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	var handlerCtx context.Context
	for range 2 {
		select {
		case handlerCtx = <-got:
		case <-time.After(10 * time.Second):
			t.Fatal("not delivered twice")
		}
	}
	_ = c.Close()
	spans := rec.Ended()
	p := spanNamed(t, spans, "publish orders-created")
	if p.Parent().SpanID() != req.SpanContext().SpanID() || p.SpanContext().TraceID() != req.SpanContext().TraceID() {
		t.Errorf("producer span's parent = %v, want the request's span %v", p.Parent(), req.SpanContext())
	}
	if p.SpanKind() != trace.SpanKindProducer || attr(p, "messaging.destination.name") != "orders-created" || attr(p, "messaging.system") != "nats" ||
		attr(p, "messaging.message.id") != "e1" || p.Resource().String() == "" {
		t.Errorf("producer span kind %v attrs %v", p.SpanKind(), p.Attributes())
	}
	var process []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == "process orders-created" {
			process = append(process, s)
		}
	}
	if len(process) != 2 {
		t.Fatalf("%d consumer spans, want 2 (a failed delivery and its redelivery)", len(process))
	}
	for i, s := range process {
		if s.Parent().SpanID() != p.SpanContext().SpanID() || s.SpanContext().TraceID() != p.SpanContext().TraceID() {
			t.Errorf("consumer span %d parent %v, want the producer span", i, s.Parent())
		}
		if len(s.Links()) != 1 || s.Links()[0].SpanContext.SpanID() != p.SpanContext().SpanID() {
			t.Errorf("consumer span %d links %v, want one to the producer span", i, s.Links())
		}
		if s.SpanKind() != trace.SpanKindConsumer || attr(s, "messaging.consumer.group.name") != "shipping" {
			t.Errorf("consumer span %d kind %v attrs %v", i, s.SpanKind(), s.Attributes())
		}
		if name, _ := s.Resource().Set().Value("service.name"); name.AsString() != "shipping-service" {
			t.Errorf("consumer span %d from %q, want shipping-service", i, name.AsString())
		}
	}
	if process[0].Status().Code != codes.Error || len(process[0].Events()) == 0 || process[0].Events()[0].Name != "exception" {
		t.Errorf("failed delivery's span status %v events %v, want the error recorded", process[0].Status(), process[0].Events())
	}
	if process[1].Status().Code == codes.Error || attr(process[1], "flotilla.delivery") != "2" {
		t.Errorf("redelivery's span status %v delivery %q", process[1].Status(), attr(process[1], "flotilla.delivery"))
	}
	if trace.SpanContextFromContext(handlerCtx).SpanID() != process[1].SpanContext().SpanID() {
		t.Error("the handler does not run under the consumer span")
	}
}
