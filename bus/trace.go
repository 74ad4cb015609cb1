package bus

import (
	"context"
	"fmt"
	"io"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/flotilla-ci/flotilla/tracing"
)

// Traced returns b with its messages traced by tp, whatever the
// technology behind it (system names it on the spans: "nats").
//
// Publish starts a producer span "publish <topic>" per message, as a
// child of the trace context the message's headers carry (an outbox row
// keeps the context of the request that wrote it, so an event relayed
// later still belongs to that request's trace) or, without one, of ctx;
// it then writes the span's W3C traceparent (and baggage) into the
// message's headers. A delivery runs its handler under a consumer span
// "process <topic>", a child of the producer's span with a span link to
// it, so a trace view shows the async branch under what caused it and a
// collector that splits traces at the bus can still join them. Handler
// errors are recorded on the consumer span.
func Traced(b Bus, tp trace.TracerProvider, system string) Bus {
	return &tracedBus{Bus: b, tracer: tp.Tracer("github.com/flotilla-ci/flotilla/bus"), system: system}
}

type tracedBus struct {
	Bus
	tracer trace.Tracer
	system string
}

// Unwrap returns the bus Traced wrapped.
func (t *tracedBus) Unwrap() Bus { return t.Bus }

// Publish implements Bus.
func (t *tracedBus) Publish(ctx context.Context, msgs ...Message) error {
	out := make([]Message, len(msgs))
	spans := make([]trace.Span, len(msgs))
	for i, m := range msgs {
		h := make(map[string]string, len(m.Headers)+2)
		for k, v := range m.Headers {
			h[k] = v
		}
		pctx := ctx
		if h[HeaderTraceparent] != "" {
			pctx = tracing.Propagator.Extract(trace.ContextWithSpanContext(ctx, trace.SpanContext{}), propagation.MapCarrier(h))
		}
		pctx, span := t.tracer.Start(pctx, "publish "+m.Topic, trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(
				attribute.String("messaging.system", t.system),
				attribute.String("messaging.operation.type", "send"),
				attribute.String("messaging.destination.name", m.Topic),
				attribute.String("messaging.message.id", h[HeaderEventID]),
			))
		tracing.Propagator.Inject(pctx, propagation.MapCarrier(h))
		m.Headers = h
		out[i], spans[i] = m, span
	}
	err := t.Bus.Publish(ctx, out...)
	for _, s := range spans {
		_ = tracing.Fail(s, err)
		s.End()
	}
	return err
}

// Subscribe implements Bus.
func (t *tracedBus) Subscribe(ctx context.Context, s Subscription) (io.Closer, error) {
	h, topic, group := s.Handler, s.Topic, s.Group
	if h == nil {
		return t.Bus.Subscribe(ctx, s)
	}
	s.Handler = func(ctx context.Context, m Message) (err error) {
		pctx := tracing.Propagator.Extract(ctx, propagation.MapCarrier(m.Headers))
		opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(
			attribute.String("messaging.system", t.system),
			attribute.String("messaging.operation.type", "process"),
			attribute.String("messaging.destination.name", topic),
			attribute.String("messaging.consumer.group.name", group),
			attribute.String("messaging.message.id", m.ID()),
			attribute.Int("flotilla.delivery", m.Delivery),
		)}
		if psc := trace.SpanContextFromContext(pctx); psc.IsValid() {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: psc,
				Attributes: []attribute.KeyValue{attribute.String("flotilla.link", "producer")}}))
		}
		ctx, span := t.tracer.Start(pctx, "process "+topic, opts...)
		defer func() {
			if p := recover(); p != nil {
				_ = tracing.Fail(span, fmt.Errorf("handler panic: %v", p))
				span.End()
				panic(p)
			}
			if err != nil {
				_ = tracing.Fail(span, err)
				span.SetAttributes(attribute.Bool("flotilla.permanent", IsPermanent(err)))
			}
			span.End()
		}()
		return h(ctx, m)
	}
	return t.Bus.Subscribe(ctx, s)
}
