package tracing

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// processor is a batching span processor that never blocks the code that
// ends a span: a span that finds the queue full is dropped, and so are the
// spans of an export the collector did not accept; both are counted
// (Provider.Stats). The SDK's batch processor drops too, but does not
// say how many.
type processor struct {
	exp      sdktrace.SpanExporter
	queue    chan sdktrace.ReadOnlySpan
	batch    int
	interval time.Duration
	timeout  time.Duration
	log      *slog.Logger

	flush    chan chan struct{}
	stop     chan struct{}
	done     chan struct{}
	stopped  atomic.Bool
	stopOnce sync.Once

	exported, dropped, failures atomic.Int64
	failing                     bool // only the run goroutine touches it
}

var _ sdktrace.SpanProcessor = (*processor)(nil)

func newProcessor(exp sdktrace.SpanExporter, cfg Config, log *slog.Logger) *processor {
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 4096
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 512
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	p := &processor{exp: exp, queue: make(chan sdktrace.ReadOnlySpan, cfg.QueueSize), batch: cfg.BatchSize,
		interval: cfg.Interval, timeout: cfg.Timeout, log: log,
		flush: make(chan chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	go p.run()
	return p
}

func (p *processor) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

func (p *processor) OnEnd(s sdktrace.ReadOnlySpan) {
	if !s.SpanContext().IsSampled() {
		return
	}
	if p.stopped.Load() {
		p.dropped.Add(1)
		return
	}
	select {
	case p.queue <- s:
	default:
		p.dropped.Add(1)
	}
}

func (p *processor) run() {
	defer close(p.done)
	t := time.NewTicker(p.interval)
	defer t.Stop()
	buf := make([]sdktrace.ReadOnlySpan, 0, p.batch)
	send := func() {
		if len(buf) > 0 {
			p.export(buf)
			buf = make([]sdktrace.ReadOnlySpan, 0, p.batch)
		}
	}
	drain := func() {
		for {
			select {
			case s := <-p.queue:
				buf = append(buf, s)
				if len(buf) >= p.batch {
					send()
				}
			default:
				send()
				return
			}
		}
	}
	for {
		select {
		case s := <-p.queue:
			buf = append(buf, s)
			if len(buf) >= p.batch {
				send()
			}
		case <-t.C:
			send()
		case ch := <-p.flush:
			drain()
			close(ch)
		case <-p.stop:
			drain()
			return
		}
	}
}

func (p *processor) export(spans []sdktrace.ReadOnlySpan) {
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	if err := p.exp.ExportSpans(ctx, spans); err != nil {
		p.dropped.Add(int64(len(spans)))
		p.failures.Add(1)
		if !p.failing {
			p.failing = true
			p.log.Warn("trace export failed; dropping spans until the collector answers", "spans", len(spans), "err", err)
		}
		return
	}
	p.exported.Add(int64(len(spans)))
	if p.failing {
		p.failing = false
		p.log.Info("trace export recovered", "dropped_total", p.dropped.Load())
	}
}

func (p *processor) ForceFlush(ctx context.Context) error {
	if p.stopped.Load() {
		return nil
	}
	ch := make(chan struct{})
	select {
	case p.flush <- ch:
	case <-p.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *processor) Shutdown(ctx context.Context) error {
	var err error
	p.stopOnce.Do(func() {
		p.stopped.Store(true)
		close(p.stop)
		select {
		case <-p.done:
		case <-ctx.Done():
			err = ctx.Err()
		}
		if e := p.exp.Shutdown(ctx); err == nil {
			err = e
		}
	})
	return err
}
