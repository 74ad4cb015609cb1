package kit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/flotilla-ci/flotilla/bus"
	busnats "github.com/flotilla-ci/flotilla/bus/nats"
	"github.com/flotilla-ci/flotilla/internal/sqldb"
	"github.com/flotilla-ci/flotilla/tracing"
)

// Dial opens the bus named by url: nats://host:port for JetStream. An
// unknown scheme is an error naming the ones supported.
//
// dedup asks the broker to drop a re-published event id (JetStream's
// Nats-Msg-Id window); it is off when the bus.duplicate fault is on, so
// duplicates really reach consumers.
func Dial(ctx context.Context, url, stream, name string, dedup bool, log *slog.Logger) (bus.Bus, error) {
	scheme, _, _ := strings.Cut(url, "://")
	switch scheme {
	case "nats", "tls":
		cfg := busnats.DefaultConfig(url)
		if stream != "" {
			cfg.Stream = stream
			cfg.Prefix = "flotilla." + strings.ToLower(stream)
		}
		cfg.Name, cfg.Logger, cfg.Dedup = name, log, dedup
		return busnats.New(ctx, cfg)
	default:
		return nil, fmt.Errorf("BUS_URL %q: unsupported scheme %q; want nats://host:port", url, scheme)
	}
}

// App is a running shop service: its database, bus, outbox relay, codec,
// HTTP server and consumers.
type App struct {
	Config Config
	DB     *sqldb.DB
	Bus    bus.Bus
	Codec  *Codec
	Log    *slog.Logger
	Crash  *Crasher
	Mux    *http.ServeMux
	// Tracing is the service's tracer provider (a no-op one when tracing
	// is off).
	Tracing *tracing.Provider

	relay   *Relay
	ln      net.Listener
	srv     *http.Server
	ready   atomic.Bool
	subs    []io.Closer
	cancel  context.CancelFunc
	bg      sync.WaitGroup
	closeMu sync.Mutex
	closed  bool
	bgCtx   context.Context
	bgFns   []func(context.Context)
	tls     *tlsState // nil: plain HTTP
	ownTP   bool      // Tracing was set up by Start: Close shuts it down
}

// Start opens the database (migrating the kit's tables and the service's
// own migrations), connects the bus, loads and registers the service's
// event schemas, and listens on Config.Addr. Routes and consumers are added
// next; Serve starts them.
func Start(ctx context.Context, cfg Config, migrations, schemas fs.FS) (*App, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	}
	if cfg.FaultDraw == nil {
		cfg.FaultDraw = rand.Float64
	}
	cfg.Logger = slog.New(tracing.LogHandler(cfg.Logger.Handler()))
	log := cfg.Logger.With("service", cfg.Service)
	a := &App{Config: cfg, Log: log, Mux: http.NewServeMux(), Crash: NewCrasher(cfg.Faults, cfg.Crash), Tracing: cfg.Tracing}
	var err error
	fail := func(e error) (*App, error) {
		a.abort()
		return nil, fmt.Errorf("start %s: %w", cfg.Service, e)
	}
	if a.Tracing == nil {
		tc, err := tracing.ParseEnv(cfg.OTEL, cfg.Service)
		if err != nil {
			return fail(err)
		}
		if a.Tracing, err = tracing.Setup(ctx, tc, log); err != nil {
			return fail(err)
		}
		a.ownTP = true
	}
	if a.DB, err = sqldb.Open(ctx, cfg.DatabaseURL); err != nil {
		return fail(err)
	}
	if n := cfg.DBMaxConns; n > 0 || a.DB.Dialect == sqldb.Postgres {
		if n == 0 {
			n = 8
		}
		a.DB.SetMaxOpenConns(n)
		a.DB.SetMaxIdleConns(n)
	}
	if err := MigrateKit(ctx, a.DB); err != nil {
		return fail(err)
	}
	if migrations != nil {
		if err := a.DB.Migrate(ctx, cfg.Service, migrations); err != nil {
			return fail(err)
		}
	}
	if a.Bus, err = Dial(ctx, cfg.BusURL, cfg.BusStream, cfg.Service, !cfg.Faults.Duplicate, log); err != nil {
		return fail(err)
	}
	a.Bus = bus.Traced(a.Bus, a.Tracing, "nats")
	if a.Codec, err = NewCodec(cfg.RegistryURL); err != nil {
		return fail(err)
	}
	if schemas != nil {
		if err := a.Codec.Load(ctx, schemas); err != nil {
			return fail(err)
		}
	}
	a.relay = &Relay{DB: a.DB, Bus: a.Bus, Faults: &a.Config.Faults, Crash: a.Crash, Log: log}
	if a.ln, err = net.Listen("tcp", cfg.Addr); err != nil {
		return fail(fmt.Errorf("listen on %s: %w", cfg.Addr, err))
	}
	if cfg.Identity != "" {
		if a.ln, err = a.listenTLS(a.ln); err != nil {
			return fail(err)
		}
	}
	a.Mux.HandleFunc("GET /metrics/mtls", a.metricsHandler)
	a.Mux.HandleFunc("GET /metrics/tracing", a.tracingMetrics)
	a.Mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ok", "service": cfg.Service})
	})
	a.Mux.HandleFunc("GET /ready", a.readyHandler)
	return a, nil
}

func (a *App) readyHandler(w http.ResponseWriter, r *http.Request) {
	if !a.ready.Load() {
		WriteError(w, r, Errorf(http.StatusServiceUnavailable, "not_ready", "%s is starting or draining", a.Config.Service))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := a.DB.PingContext(ctx); err != nil {
		WriteError(w, r, Errorf(http.StatusServiceUnavailable, "not_ready", "database unreachable: %v", err))
		return
	}
	if err := a.Bus.Ping(ctx); err != nil {
		WriteError(w, r, Errorf(http.StatusServiceUnavailable, "not_ready", "bus unreachable: %v", err))
		return
	}
	WriteJSON(w, http.StatusOK, map[string]string{"status": "ready", "service": a.Config.Service})
}

// URL is the service's base URL (http://host:port).
func (a *App) URL() string {
	addr := a.ln.Addr().(*net.TCPAddr)
	host := addr.IP.String()
	if addr.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	return fmt.Sprintf("http://%s", net.JoinHostPort(host, fmt.Sprint(addr.Port)))
}

// Tx runs fn in a transaction; when fn emitted events, the outbox relay
// is woken after the commit (a transaction without events costs the relay
// nothing).
//
// Under a traced request or delivery the transaction is a span,
// "db.transaction", failed when fn or the commit fails.
func (a *App) Tx(ctx context.Context, fn func(tx *sqldb.Tx) error) error {
	return InTx(ctx, a.DB, func(tx *sqldb.Tx) error {
		// Registered first, so it fires after the commit and before Emit's
		// wake-up: the relay has not run at this crash point.
		tx.AfterCommit(func() { a.Crash.At("outbox.after_commit") })
		return fn(tx)
	})
}

// Emit encodes event v and adds it to the outbox inside tx; the relay is
// woken once tx commits.
//
// Under a traced request the event's creation is a producer span,
// "create <event>", whose trace context the outbox row keeps: the bus
// publishes the event, later, as that span's child.
func (a *App) Emit(ctx context.Context, tx *sqldb.Tx, event, key string, v any) (err error) {
	ctx, span := tracing.Tracer(ctx, tracerName).Start(ctx, "create "+event, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.String("messaging.operation.type", "create"), attribute.String("messaging.destination.name", event)))
	defer func() { _ = tracing.Fail(span, err); span.End() }()
	m, err := a.Codec.Message(ctx, event, key, v)
	if err != nil {
		return err
	}
	span.SetAttributes(attribute.String("messaging.message.id", m.ID()))
	if err := AddOutbox(ctx, tx, m); err != nil {
		return err
	}
	tx.AfterCommit(a.relay.Notify)
	return nil
}

// Consume subscribes the service's group to topic with an idempotent
// handler. Decode errors wrapping ErrPoison are dead-lettered at once.
func (a *App) Consume(ctx context.Context, topic string, fn ConsumeFunc) error {
	h := Idempotent(a.DB, a.Config.Service, func(ctx context.Context, tx *sqldb.Tx, m bus.Message) error {
		err := fn(ctx, tx, m)
		if errors.Is(err, ErrPoison) {
			return bus.Permanent(err)
		}
		return err
	}, a.Crash)
	sub, err := a.Bus.Subscribe(ctx, bus.Subscription{Topic: topic, Group: a.Config.Service, Handler: func(ctx context.Context, m bus.Message) error {
		ctx = WithService(ctx, a.Config.Service)
		err := h(ctx, m)
		if err != nil && !bus.IsPermanent(err) {
			a.Log.WarnContext(ctx, "consume", "topic", topic, "event_id", m.ID(), "delivery", m.Delivery, "err", err)
		}
		return err
	}})
	if err != nil {
		return err
	}
	a.subs = append(a.subs, sub)
	return nil
}

// Go runs fn in the background until the App closes (sweepers, resumers).
// Functions added before Serve start with it.
func (a *App) Go(fn func(ctx context.Context)) {
	if a.bgCtx == nil {
		a.bgFns = append(a.bgFns, fn)
		return
	}
	a.bg.Add(1)
	go func() {
		defer a.bg.Done()
		fn(a.bgCtx)
	}()
}

// Serve starts the relay and the HTTP server, and returns immediately.
func (a *App) Serve() {
	ctx, cancel := context.WithCancel(WithService(context.Background(), a.Config.Service))
	a.cancel = cancel
	a.bgCtx = ctx
	for _, fn := range a.bgFns {
		a.Go(fn)
	}
	a.bg.Add(1)
	go func() {
		defer a.bg.Done()
		a.relay.Run(ctx)
	}()
	a.srv = &http.Server{
		Handler:           a.traceRequests(logRequests(a.Log, traceContext(httpFaults(a.Config.Faults, a.Config.FaultDraw, problemMux(a.Mux))))),
		BaseContext:       func(net.Listener) context.Context { return WithService(context.Background(), a.Config.Service) },
		ConnContext:       a.connContext,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(a.Log.Handler(), slog.LevelWarn),
	}
	go func() {
		if err := a.srv.Serve(a.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.Log.Error("serve", "err", err)
		}
	}()
	a.ready.Store(true)
	if f := a.Config.Faults.String(); f != "" {
		a.Log.Warn("serving with faults on purpose", "url", a.URL(), "database", a.DB.Dialect, "faults", f)
		return
	}
	a.Log.Info("serving", "url", a.URL(), "database", a.DB.Dialect)
}

// Relay is the app's outbox relay (tests drive it directly).
func (a *App) Relay() *Relay { return a.relay }

// Close drains: readiness goes false, the server stops accepting and
// finishes in-flight requests within Config.Drain, consumers stop, the
// relay makes a last pass, and the bus and database close.
func (a *App) Close() error {
	a.closeMu.Lock()
	defer a.closeMu.Unlock()
	if a.closed {
		return nil
	}
	a.closed = true
	a.ready.Store(false)
	var errs []error
	if a.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), a.Config.Drain)
		if err := a.srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("drain http: %w", err))
			_ = a.srv.Close()
		}
		cancel()
	}
	for _, s := range a.subs {
		_ = s.Close()
	}
	if a.tls != nil {
		dialers.Delete(a.Config.Service)
	}
	if a.cancel != nil {
		a.cancel()
	}
	a.bg.Wait()
	a.abort()
	if a.ownTP {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := a.Tracing.Shutdown(ctx); err != nil {
			a.Log.Warn("flush traces", "err", err)
		}
		cancel()
	}
	a.Log.Info("stopped")
	return errors.Join(errs...)
}

func (a *App) abort() {
	if a.ln != nil && a.srv == nil {
		_ = a.ln.Close()
	}
	if a.tls != nil && a.srv == nil {
		dialers.Delete(a.Config.Service)
	}
	if a.Bus != nil {
		_ = a.Bus.Close()
	}
	if a.DB != nil {
		_ = a.DB.Close()
	}
}

func subFS(f fs.FS, dir string) (fs.FS, error) { return fs.Sub(f, dir) }
