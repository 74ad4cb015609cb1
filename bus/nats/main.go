package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Main runs the embedded JetStream server as a process of its own (what
// `flotilla bus` runs), so the event bus outlives the control plane that
// started it: Run starts the server, calls Ready with its URL, serves
// until ctx ends (SIGTERM), then shuts it down cleanly. Every
// acknowledged write is on disk already (sync always), so a kill -9 loses
// nothing a publisher was told was stored either.
type Main struct {
	Config ServerConfig
	// Ready is called once the server takes connections (may be nil).
	Ready  func(url string)
	Logger *slog.Logger

	mu     sync.Mutex
	srv    *Server
	stop   context.CancelFunc
	closed bool
}

// Run serves until ctx ends or Close is called.
func (m *Main) Run(ctx context.Context) error {
	log := m.Logger
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cfg := m.Config
	if cfg.Logger == nil {
		cfg.Logger = log.With("component", "nats")
	}
	srv, err := Embedded(cfg)
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.srv, m.stop = srv, cancel
	if m.closed {
		cancel()
	}
	m.mu.Unlock()
	log.InfoContext(ctx, "bus ready", "url", srv.URL(), "store", cfg.Dir)
	if m.Ready != nil {
		m.Ready(srv.URL())
	}
	<-ctx.Done()
	log.Info("bus stopping: closing client connections, flushing the streams")
	err = srv.Close()
	log.Info("bus stopped")
	return err
}

// Close stops Run; once Run's server is up, Close returns when it is
// shut down.
func (m *Main) Close() error {
	m.mu.Lock()
	srv, stop := m.srv, m.stop
	m.closed = true
	m.mu.Unlock()
	if stop == nil {
		return nil // Run stops as soon as its server is up
	}
	stop()
	srv.srv.WaitForShutdown()
	return nil
}

// Probe answers nil once the server at url takes connections and its
// JetStream answers: the bus process's readiness.
func Probe(ctx context.Context, url string) error {
	opts := []nats.Option{nats.Name("flotilla-probe"), nats.NoReconnect()}
	if d, ok := ctx.Deadline(); ok {
		opts = append(opts, nats.Timeout(time.Until(d)))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return fmt.Errorf("connect to nats %s: %w", url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream %s: %w", url, err)
	}
	if _, err := js.AccountInfo(ctx); err != nil {
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) {
			return fmt.Errorf("nats %s runs without JetStream", url)
		}
		return fmt.Errorf("jetstream %s: %w", url, err)
	}
	return nil
}
