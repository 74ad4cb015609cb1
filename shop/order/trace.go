package order

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/flotilla-ci/flotilla/tracing"
)

const tracerName = "github.com/flotilla-ci/flotilla/shop/order"

// stepSpans names the saga's steps as its spans: the forward steps as the
// scenario's tracing example names them, the compensations under
// "compensate.".
var stepSpans = map[string]string{
	StepReserve: "check_inventory",
	StepCharge:  "process_payment",
	StepConfirm: "confirm_order",
	StepRelease: "compensate.release_stock",
	StepRefund:  "compensate.refund_payment",
	StepReturn:  "compensate.return_stock",
}

// sagaContext is the context a drive of the saga runs under: the
// request's (a fresh order is driven for its checkout) or, for a saga the
// resumer picks up, a root span "saga.resume" of the service's own.
func (m *Main) sagaContext(ctx context.Context, id string) (context.Context, func()) {
	if trace.SpanContextFromContext(ctx).IsValid() {
		return ctx, func() {}
	}
	ctx, span := m.app.Tracing.Tracer(tracerName).Start(ctx, "saga.resume",
		trace.WithAttributes(attribute.String("order.id", id), attribute.String("saga.id", id)))
	return ctx, func() { span.End() }
}

// startStep starts the span of the order's current step.
func startStep(ctx context.Context, o Order) (context.Context, trace.Span) {
	name := stepSpans[o.Step]
	if name == "" {
		name = "saga." + o.Step
	}
	return tracing.Tracer(ctx, tracerName).Start(ctx, name, trace.WithAttributes(
		attribute.String("order.id", o.ID),
		attribute.String("saga.id", o.ID),
		attribute.String("saga.step", o.Step),
		attribute.Int("saga.attempt", o.attempts+1),
	))
}

// endStep records what the step decided: the next step, an error (the
// step will be retried), or a reason to compensate (a declined payment,
// stock refused), which fails the span with that reason.
func endStep(span trace.Span, tr transition, err error) {
	if span.IsRecording() {
		var r errRetry
		switch {
		case errors.As(err, &r):
			span.RecordError(r.err)
			span.SetStatus(codes.Error, r.err.Error())
			span.SetAttributes(attribute.Bool("saga.retry", true))
		case err != nil:
			_ = tracing.Fail(span, err)
		default:
			span.SetAttributes(attribute.String("saga.next", tr.step))
			if tr.status != "" {
				span.SetAttributes(attribute.String("order.status", tr.status))
			}
			if tr.reason != "" && tr.step == StepRelease {
				span.SetAttributes(attribute.String("saga.reason", tr.reason))
				span.SetStatus(codes.Error, tr.reason)
			}
		}
	}
	span.End()
}
