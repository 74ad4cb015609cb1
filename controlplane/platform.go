package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/flotilla-ci/flotilla/broker"
	brokerclient "github.com/flotilla-ci/flotilla/broker/client"
	brokerstore "github.com/flotilla-ci/flotilla/broker/sqlstore"
	"github.com/flotilla-ci/flotilla/dataplane"
	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/deploy/local"
	"github.com/flotilla-ci/flotilla/graph"
	"github.com/flotilla-ci/flotilla/identity"
	"github.com/flotilla-ci/flotilla/internal/sqldb"
	"github.com/flotilla-ci/flotilla/internal/supervise"
	"github.com/flotilla-ci/flotilla/mesh"
	"github.com/flotilla-ci/flotilla/registry"
	registrystore "github.com/flotilla-ci/flotilla/registry/sqlstore"
	"github.com/flotilla-ci/flotilla/schema/serde"
	"github.com/flotilla-ci/flotilla/tracing/store"
	"github.com/flotilla-ci/flotilla/tracing/store/jaeger"
)

// The default addresses of `flotilla up`: one block, 7400–7499, clear of
// PostgreSQL (5432), Redis (6379), NATS (4222, 8222), the Confluent
// registry (8081) and the Pact Broker (9292), so a platform runs beside
// all of them. Services' stable mesh addresses are free ports, remembered
// in the data directory.
const (
	DefaultGatewayAddr  = "127.0.0.1:7400"
	DefaultNATSAddr     = "127.0.0.1:7422"
	DefaultRegistryAddr = "127.0.0.1:7481"
	DefaultBrokerAddr   = "127.0.0.1:7482"
	// DefaultAddr (7480) is the API's.
)

// PlatformConfig configures a [Platform]: what `flotilla up` runs.
type PlatformConfig struct {
	// Manifest is the path of flotilla.yaml. Required.
	Manifest string
	// Data is the data directory: the control plane's database, the
	// event store, the services' artifacts, data and logs. Default:
	// .flotilla beside the manifest.
	Data string
	// Services limits the platform to these services and what they
	// depend on (directly or not); empty means every service.
	Services []string
	// The listen addresses (host:port; port 0 picks a free one).
	APIAddr, GatewayAddr, RegistryAddr, BrokerAddr, NATSAddr string
	// Demo loads the demo data once everything is ready (products with
	// stock, a demo user), through the gateway.
	Demo bool
	// Authz is the mesh's authorization from the graph (default
	// enforce): a call from one service to another it does not
	// depends_on is refused with 403 and counted
	// (flotilla_mesh_authz_denied_total); warn lets it through and counts
	// it. Callers are known by their certificates (MTLS): a caller that
	// is no service of the graph, the gateway or the smoke checks is
	// refused in strict mode; in permissive mode plaintext callers, who
	// are nobody, are let through.
	Authz mesh.AuthzMode
	// MTLS is the mutual TLS mode of the mesh's and the services'
	// listeners, PeerAuthentication's: strict (default) refuses a
	// connection without a certificate of the platform's CA, permissive
	// also accepts plaintext (and counts it). Every workload has an
	// identity either way (package identity): the CA, its key and the
	// SVIDs are in IdentityDir(Data).
	MTLS identity.Mode
	// TrustDomain of the SPIFFE IDs (default cluster.local, as Istio's);
	// CertTTL the SVIDs' lifetime (default identity.DefaultTTL), renewed
	// at half of it.
	TrustDomain string
	CertTTL     time.Duration
	// BuildFlags are the services' `go build` flags (part of their
	// versions).
	BuildFlags []string
	// KeepVersions is how many versions of each service keep their
	// artifacts and logs for a rollback (see deploy.Config).
	KeepVersions int
	// Target tunes the local target (Dir and Root are set from Data and
	// the manifest).
	Target local.Config
	// StopTimeout bounds the whole shutdown (default 60s).
	StopTimeout time.Duration
	// BusCommand is the program and first arguments that run the event
	// bus as a process of its own; the platform adds --dir and --addr.
	// Default: this program's `bus` subcommand (os.Executable() bus). A
	// program other than flotilla serves it with ServeBus.
	BusCommand []string
	// Version is flotilla's version, recorded with the processes the
	// platform starts.
	Version string
	// Dataplane is the command that runs the data plane (the mesh and
	// the gateway) as a process of its own, program first; "--state DIR"
	// is appended. Default: this executable's hidden `dataplane` command
	// (a test binary must run the data plane when its first argument is
	// "dataplane": dataplane.Command).
	Dataplane []string
	// Metrics is where the canary analysis reads its figures (the zero
	// value: the data plane's own measurements).
	Metrics MetricsProvider
	// Tracing says where the platform's processes export their spans
	// (the zero value: the control plane's own trace store).
	Tracing TracingConfig
	// Events receives the release's progress (may be nil).
	Events func(deploy.Event)
	// Ready is called once every service is ready and the demo data is
	// loaded, with where everything is (may be nil).
	Ready  func(PlatformInfo)
	Logger *slog.Logger
}

// DefaultPlatformConfig returns the defaults for a manifest.
func DefaultPlatformConfig(manifest string) PlatformConfig {
	return PlatformConfig{
		Manifest: manifest, Data: filepath.Join(filepath.Dir(manifest), ".flotilla"),
		APIAddr: DefaultAddr, GatewayAddr: DefaultGatewayAddr, RegistryAddr: DefaultRegistryAddr,
		BrokerAddr: DefaultBrokerAddr, NATSAddr: DefaultNATSAddr,
		Demo: true, Authz: mesh.AuthzEnforce, MTLS: identity.Strict, StopTimeout: time.Minute,
	}
}

// Validate reports every invalid field at once.
func (c PlatformConfig) Validate() error {
	var errs []error
	if c.Manifest == "" {
		errs = append(errs, errors.New("platform: no manifest"))
	}
	if c.Data == "" {
		errs = append(errs, errors.New("platform: no data directory"))
	}
	for _, a := range []struct{ name, addr string }{
		{"api", c.APIAddr}, {"gateway", c.GatewayAddr}, {"registry", c.RegistryAddr}, {"broker", c.BrokerAddr}, {"nats", c.NATSAddr},
	} {
		if _, port, err := net.SplitHostPort(a.addr); err != nil {
			errs = append(errs, fmt.Errorf("platform: %s address %q: want host:port (port 0 picks a free one)", a.name, a.addr))
		} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			errs = append(errs, fmt.Errorf("platform: %s address %q: want a port from 0 to 65535", a.name, a.addr))
		}
	}
	switch c.Authz {
	case "", mesh.AuthzOff, mesh.AuthzWarn, mesh.AuthzEnforce:
	default:
		errs = append(errs, fmt.Errorf("platform: authz %q: want off, warn or enforce", c.Authz))
	}
	if c.StopTimeout < 0 {
		errs = append(errs, errors.New("platform: stop timeout must not be negative"))
	}
	switch c.MTLS {
	case "", identity.Strict, identity.Permissive:
	default:
		errs = append(errs, fmt.Errorf("platform: mtls %q: want strict or permissive", c.MTLS))
	}
	if c.CertTTL < 0 {
		errs = append(errs, errors.New("platform: certificate lifetime must not be negative"))
	}
	return errors.Join(errs...)
}

// PlatformInfo is where a running platform's parts are; GET /api/platform
// answers with it once the platform is ready.
type PlatformInfo struct {
	Gateway  string `json:"gateway"`  // http://host:port
	API      string `json:"api"`      // http://host:port
	Registry string `json:"registry"` // http://host:port
	Broker   string `json:"broker"`   // http://host:port
	NATS     string `json:"nats"`     // nats://host:port
	Data     string `json:"data"`
	Logs     string `json:"logs"`
	// Traces is the OTLP endpoint the platform's processes export to:
	// the control plane's (API + /v1/traces) or the user's.
	Traces string `json:"traces,omitempty"`
	// Jaeger is the query URL of the Jaeger the platform runs (--jaeger).
	Jaeger string `json:"jaeger,omitempty"`
	// Services are the services deployed, in wave order, with their
	// mesh addresses and gateway prefixes.
	Services []PlatformService `json:"services"`
	// Report is the release that brought them up.
	Report *deploy.Report `json:"report"`
	// Demo says what demo data there is ("" when none was loaded).
	Demo *DemoData `json:"demo,omitempty"`
	// Took is the time from start to ready.
	Took time.Duration `json:"took"`
	// Upgraded says what this control plane upgraded in place when it
	// started (the previous control plane, the data plane), one line
	// each; empty on a plain start.
	Upgraded []string `json:"upgraded,omitempty"`
	// Processes are the platform's own processes (the control plane, the
	// event bus, the data plane) as they are when asked: pid, since when,
	// restarts, adopted or started, and the data plane's configuration.
	Processes []PlatformProcess `json:"processes,omitempty"`
}

// PlatformProcess is one of the platform's own processes.
type PlatformProcess struct {
	supervise.Status
	// ConfigVersion is, for the data plane, the version of the
	// configuration snapshot it acknowledged (0: it did not answer).
	ConfigVersion uint64 `json:"config_version,omitempty"`
	// ConfigRefused is, for the data plane, the last configuration it
	// refused (it serves the previous one), since this control plane
	// started.
	ConfigRefused *dataplane.Refusal `json:"config_refused,omitempty"`
	// Sockets counts, for the data plane, the copies of its listening
	// sockets the control plane keeps for its next process.
	Sockets int `json:"sockets,omitempty"`
}

// PlatformService is one service of a running platform.
type PlatformService struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Mesh    string `json:"mesh"`    // its stable address, host:port
	Gateway string `json:"gateway"` // its public prefix on the gateway
}

// Platform is the whole local platform: the schema registry, the
// contract broker, the local deploy target and the control plane's HTTP
// API in this process; the event bus (the NATS JetStream server) and the
// data plane (the mesh and its edge gateway) each in a process of its
// own, which it supervises (adopting one that runs already) and, for the
// data plane, configures through a dataplane.Client; and the manifest's
// services deployed through the orchestrator. Run brings it up and keeps
// it up until its context ends; everything it starts is stopped again
// (services first), and the data directory keeps the state for the next
// run. A platform killed without Close (or left with Detach) leaves the
// bus, the data plane and the services running: the next one on the data
// directory adopts them.
type Platform struct {
	cfg PlatformConfig
	log *slog.Logger

	info atomic.Pointer[PlatformInfo] // once ready (GET /api/platform)

	closeOnce sync.Once
	closeErr  error
	mu        sync.Mutex
	closers   []closer             // in the order they run
	procs     []*supervise.Process // the platform's own processes
	dp        *dataplane.Client
	started   time.Time // when Run began
	// otel is the OpenTelemetry environment of the platform's processes.
	otel map[string]string
}

type closer struct {
	name string
	fn   func(ctx context.Context) error
	// detach, when set, replaces fn in Detach: it leaves what it closes
	// running, for the next platform to adopt.
	detach func() error
}

// NewPlatform checks the configuration.
func NewPlatform(cfg PlatformConfig) (*Platform, error) {
	d := DefaultPlatformConfig(cfg.Manifest)
	if cfg.Data == "" {
		cfg.Data = d.Data
	}
	if cfg.StopTimeout == 0 {
		cfg.StopTimeout = d.StopTimeout
	}
	if cfg.Authz == "" {
		cfg.Authz = d.Authz
	}
	if cfg.MTLS == "" {
		cfg.MTLS = d.MTLS
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if len(cfg.Dataplane) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("platform: the data plane's program: %w", err)
		}
		cfg.Dataplane = []string{exe, "dataplane"}
	}
	return &Platform{cfg: cfg, log: cfg.Logger}, nil
}

// onClose registers what Close runs, in registration order.
func (p *Platform) onClose(name string, fn func(ctx context.Context) error) {
	p.onCloseOrDetach(name, fn, nil)
}

// onCloseOrDetach registers what Close runs, and what Detach runs
// instead (nil: the same).
func (p *Platform) onCloseOrDetach(name string, fn func(ctx context.Context) error, detach func() error) {
	p.mu.Lock()
	p.closers = append(p.closers, closer{name, fn, detach})
	p.mu.Unlock()
}

// Run starts the platform, deploys the services, loads the demo data,
// calls Config.Ready, and waits for ctx to end; then it stops everything
// (Close). An error before ready (a manifest problem, a port in use, a
// service that does not build or get ready) stops what had started and is
// returned.
func (p *Platform) Run(ctx context.Context) error {
	started := time.Now()
	p.started = started.UTC()
	info, err := p.start(ctx)
	if err != nil {
		return errors.Join(err, p.Close())
	}
	info.Took = time.Since(started)
	p.info.Store(info)
	if p.cfg.Ready != nil {
		p.cfg.Ready(*info)
	}
	<-ctx.Done()
	p.log.InfoContext(ctx, "stopping the platform")
	return p.Close()
}

// Close stops what Run started: the API, the gateway and the mesh stop
// taking requests, the services are drained and stopped, then the
// registry, the broker, the event store and the database close. It is
// safe to call more than once.
func (p *Platform) Close() error { return p.close(false) }

// Detach stops the control plane as Close does, but leaves the services,
// the event bus and the data plane running for the next platform on the
// data directory to adopt: what a kill -9 of `flotilla up` leaves, and an
// upgrade of flotilla wants. Close or Detach, whichever comes first,
// happens once.
func (p *Platform) Detach() error { return p.close(true) }

func (p *Platform) close(detach bool) error {
	p.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), p.cfg.StopTimeout)
		defer cancel()
		p.mu.Lock()
		cs := p.closers
		p.closers = nil
		p.mu.Unlock()
		var errs []error
		for _, c := range cs {
			var err error
			if detach && c.detach != nil {
				err = c.detach()
			} else {
				err = c.fn(ctx)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("stop %s: %w", c.name, err))
			}
		}
		p.closeErr = errors.Join(errs...)
	})
	return p.closeErr
}

// listeners are the platform's own addresses, taken before anything
// starts so a port in use is reported before a process is spawned.
type listeners struct {
	api, registry, broker net.Listener
	natsAddr              string // host:port, never port 0
}

// listen takes the platform's addresses, and checks the gateway's is free
// unless the running data plane serves it (gatewayServed).
func (p *Platform) listen(ctx context.Context, data string, gatewayServed bool) (*listeners, error) {
	l := &listeners{}
	var errs []error
	take := func(name, addr, flag string) net.Listener {
		var lc net.ListenConfig
		ln, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			errs = append(errs, portError(name, addr, flag, err))
			return nil
		}
		return ln
	}
	l.api = take("the control-plane API", p.cfg.APIAddr, "--api-addr")
	// The data plane listens on the gateway's address: check it is free.
	if !gatewayServed {
		if g := take("the gateway", p.cfg.GatewayAddr, "--gateway-addr"); g != nil {
			_ = g.Close()
		}
	}
	l.registry = take("the schema registry", p.cfg.RegistryAddr, "--registry-addr")
	l.broker = take("the contract broker", p.cfg.BrokerAddr, "--broker-addr")
	// The bus process listens itself: a bus a previous control plane
	// left running is adopted where it listens; otherwise check the port
	// is free, and pick one now when asked for port 0.
	if addr, ok := p.runningBus(data); ok {
		l.natsAddr = addr
	} else if n := take("the NATS server", p.cfg.NATSAddr, "--nats-addr"); n != nil {
		l.natsAddr = n.Addr().String()
		_ = n.Close()
	}
	if err := errors.Join(errs...); err != nil {
		for _, ln := range []net.Listener{l.api, l.registry, l.broker} {
			if ln != nil {
				_ = ln.Close()
			}
		}
		return nil, err
	}
	return l, nil
}

// portError says which address is taken and what to do.
func portError(name, addr, flag string, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%s cannot listen on %s: the port is in use (another 'flotilla up'?); stop what listens there, or pass %s 127.0.0.1:0 to pick a free port", name, addr, flag)
	}
	return fmt.Errorf("%s cannot listen on %s: %w", name, addr, err)
}

func (p *Platform) start(ctx context.Context) (*PlatformInfo, error) {
	m, _, err := graph.Load(p.cfg.Manifest)
	if err != nil {
		return nil, err
	}
	g := graph.New(m)
	if probs := g.Validate(); len(probs) > 0 {
		var errs []error
		for _, pr := range probs {
			errs = append(errs, errors.New(pr.String()))
		}
		return nil, fmt.Errorf("the manifest has problems (run 'flotilla graph check'):\n%w", errors.Join(errs...))
	}
	names, err := selectServices(g, p.cfg.Services)
	if err != nil {
		return nil, err
	}
	data, err := filepath.Abs(p.cfg.Data)
	if err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	if os.Getenv(busProcessEnv) != "" {
		// This program was started as the platform's bus and does not
		// serve the bus subcommand: starting a platform here would start
		// another bus, and so on.
		return nil, fmt.Errorf("this process was started as the platform's event bus (%s is set), and its program does not serve the bus subcommand: set PlatformConfig.BusCommand, or serve it with controlplane.ServeBus", busProcessEnv)
	}
	// The data plane's client; a data plane that runs already (the
	// control plane restarted) serves the gateway's address itself.
	// A control plane of another version running on the data directory
	// hands over to this one (an upgrade): it leaves the bus, the data
	// plane and the services running, and exits.
	took, err := p.takeOver(ctx, data)
	if err != nil {
		return nil, err
	}
	// The data plane's client, and the keeper of copies of its listening
	// sockets, which the next data plane started is given: they listen
	// across its restarts and upgrades.
	dpDir := filepath.Join(data, "dataplane")
	keeper := dataplane.NewKeeper(dpDir)
	dp, err := dataplane.NewClient(dataplane.ClientConfig{Socket: dataplane.SocketIn(dpDir), Ports: FixedPorts(m), PortsFile: PortsFile(data),
		OnAck: func(ctx context.Context, ack *dataplane.Ack) {
			if keeper.Covers(ack) {
				return
			}
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := keeper.Sync(ctx); err != nil {
				p.log.WarnContext(ctx, "the data plane's new listening sockets are not kept: a restart of it would refuse connections until it listens again", "err", err)
			}
		}})
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.dp = dp
	p.mu.Unlock()
	p.onClose("dataplane client", func(context.Context) error { dp.Close(); return nil })
	// A data plane that runs (its process recorded and alive) serves the
	// gateway's port: ask it, patiently on a busy machine, before the
	// port is called taken.
	gatewayServed := false
	st, err := p.dataplaneStatus(ctx, dp)
	if prev, perr := supervise.ReadState(dpDir, "dataplane"); err != nil && perr == nil {
		for deadline := time.Now().Add(15 * time.Second); err != nil && time.Now().Before(deadline); {
			if ok, _ := prev.Running(); !ok {
				break
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
			st, err = p.dataplaneStatus(ctx, dp)
		}
	}
	if err == nil {
		gatewayServed = st.Gateway == p.cfg.GatewayAddr
	}
	ls, err := p.listen(ctx, data, gatewayServed)
	if err != nil {
		return nil, err
	}
	// Until each is served (and its closer registered), a failure must
	// close the listeners.
	pending := []net.Listener{ls.api, ls.registry, ls.broker}
	defer func() {
		for _, ln := range pending {
			if ln != nil {
				_ = ln.Close()
			}
		}
	}()
	served := func(ln net.Listener) {
		for i, x := range pending {
			if x == ln {
				pending[i] = nil
			}
		}
	}
	secrets, err := loadSecrets(filepath.Join(data, "secrets.json"))
	if err != nil {
		return nil, err
	}
	// The API's tokens (made on the first start).
	tokens, err := EnsureTokens(data)
	if err != nil {
		return nil, err
	}
	// The CA and the platform's own identities, before any process that
	// needs one starts.
	ids, err := p.openIdentity(ctx, data)
	if err != nil {
		return nil, fmt.Errorf("identities: %w", err)
	}

	// The one database of the control plane: the registry, the broker
	// and the deploy history, each under its own migrations.
	db, err := sqldb.Open(ctx, filepath.Join(data, "flotilla.db"))
	if err != nil {
		return nil, fmt.Errorf("control-plane database: %w", err)
	}

	host := func(ln net.Listener) string { return ln.Addr().String() }
	info := &PlatformInfo{
		API:      "http://" + host(ls.api),
		Registry: "http://" + host(ls.registry), Broker: "http://" + host(ls.broker),
		Data: data, Logs: filepath.Join(local.DirIn(data), "logs"),
	}

	// The trace store, and where the platform's processes export spans:
	// here, with the ingest token, unless the user named an endpoint.
	tcfg := p.cfg.Tracing.Store
	if tcfg == (store.Config{}) {
		tcfg = store.DefaultConfig()
	}
	traces, err := store.New(tcfg)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	itok, err := ingestToken(data)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	var jaegerProc *supervise.Process
	if bin := p.cfg.Tracing.Jaeger; bin != "" {
		a := p.cfg.Tracing.JaegerAddrs
		if a == (jaeger.Addrs{}) {
			a = jaeger.DefaultAddrs()
		}
		jp, err := p.startJaeger(ctx, data, bin, a)
		if err != nil {
			_ = db.Close()
			return nil, err
		}
		p.mu.Lock()
		p.procs = append(p.procs, jp)
		p.mu.Unlock()
		jaegerProc = jp
		p.cfg.Tracing.Endpoint = "http://" + a.OTLPHTTP
		info.Jaeger = "http://" + a.QueryHTTP
	}
	p.otel = otelEnv(p.cfg.Tracing, info.API, itok)
	info.Traces = p.otel[EnvOTLPEndpoint]
	if p.cfg.Tracing.Endpoint == "" {
		info.Traces = info.API + TracesPath
	}

	// The event bus, a process of its own: adopted when a previous
	// control plane left it running.
	bus, err := p.startBus(ctx, data, ls.natsAddr)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	p.mu.Lock()
	p.procs = append(p.procs, bus)
	p.mu.Unlock()
	info.NATS = "nats://" + ls.natsAddr

	// Registered now, they run in this order at Close: the API and the
	// gateway stop taking requests, the mesh drains, the services stop,
	// then what they used.
	var (
		lc      *Local
		dpProc  *supervise.Process
		apiSrv  *http.Server
		regSrv  *http.Server
		brkSrv  *http.Server
		closeMu sync.Mutex
	)
	shutdown := func(s **http.Server) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			closeMu.Lock()
			srv := *s
			closeMu.Unlock()
			if srv == nil {
				return nil
			}
			return srv.Shutdown(ctx)
		}
	}
	// The canaries in progress are interrupted first (their states kept
	// for the next control plane): the releases waiting on them end, and
	// the API does not wait for them to finish.
	p.onClose("canaries", func(context.Context) error {
		if lc != nil && lc.Canary != nil {
			lc.Canary.Interrupt()
		}
		return nil
	})
	p.onClose("api", shutdown(&apiSrv))
	// The data plane stops taking requests and drains them (SIGTERM)
	// before the services stop.
	p.onCloseOrDetach("data plane", func(ctx context.Context) error {
		defer keeper.Close()
		if dpProc == nil {
			return nil
		}
		return dpProc.Stop(ctx)
	}, func() error {
		defer keeper.Close()
		if dpProc != nil {
			dpProc.Detach()
		}
		return nil
	})
	p.onCloseOrDetach("services", func(ctx context.Context) error {
		if lc == nil {
			return nil
		}
		return lc.Shutdown(ctx)
	}, func() error {
		if lc == nil {
			return nil
		}
		return lc.Detach()
	})
	p.onClose("registry", shutdown(&regSrv))
	p.onClose("broker", shutdown(&brkSrv))
	p.onCloseOrDetach("nats", bus.Stop, func() error { bus.Detach(); return nil })
	p.onClose("database", func(context.Context) error { return db.Close() })
	if jaegerProc != nil {
		p.onClose("jaeger", jaegerProc.Stop)
	}
	newServer := func(ln net.Listener, h http.Handler, name string, dst **http.Server) {
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second,
			ErrorLog: slog.NewLogLogger(p.log.Handler(), slog.LevelWarn)}
		closeMu.Lock()
		*dst = srv
		closeMu.Unlock()
		served(ln)
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				p.log.Error("server stopped", "server", name, "err", err)
			}
		}()
	}

	// The schema registry and the contract broker.
	rstore, err := registrystore.New(ctx, db)
	if err != nil {
		return nil, fmt.Errorf("schema registry: %w", err)
	}
	reg, err := registry.New(rstore, registry.DefaultConfig(), p.log.With("component", "registry"))
	if err != nil {
		return nil, err
	}
	newServer(ls.registry, reg, "registry", &regSrv)
	bstore, err := brokerstore.New(ctx, db)
	if err != nil {
		return nil, fmt.Errorf("contract broker: %w", err)
	}
	if _, err := bstore.Environment(ctx, "local"); err != nil {
		if _, err := bstore.CreateEnvironment(ctx, broker.Environment{Name: "local", DisplayName: "Local"}); err != nil {
			return nil, fmt.Errorf("contract broker: environment local: %w", err)
		}
	}
	brk, err := broker.New(broker.DefaultConfig(), bstore, p.log.With("component", "broker"))
	if err != nil {
		return nil, err
	}
	newServer(ls.broker, brk, "broker", &brkSrv)
	bc, err := brokerclient.New(info.Broker)
	if err != nil {
		return nil, fmt.Errorf("contract broker client: %w", err)
	}

	// The data plane: the mesh and the gateway, in a process of its own
	// that outlives this one, authorizing calls from the graph.
	if dpProc, err = p.startDataplane(ctx, dpDir, dp, keeper, ids); err != nil {
		return nil, err
	}
	if took != "" {
		info.Upgraded = append(info.Upgraded, took)
	}
	if st := dpProc.Status(); st.HandedOver {
		info.Upgraded = append(info.Upgraded, fmt.Sprintf("data plane: pid %d took over the listening sockets from %s", st.PID, st.HandedOverFrom))
	}
	p.mu.Lock()
	p.procs = append(p.procs, dpProc)
	p.mu.Unlock()
	policy := map[string][]string{}
	for _, s := range m.Services {
		policy[s.Name] = append([]string{}, s.DependsOn...)
	}
	// Callers are known by their certificates: in strict mode one that is
	// no service of the graph (nor the gateway, nor a smoke check) is
	// refused; permissive lets plaintext callers, who are nobody, in.
	unknown := mesh.UnknownDeny
	if p.cfg.MTLS == identity.Permissive {
		unknown = mesh.UnknownAllow
	}
	if err := dp.SetAuthz(ctx, dataplane.Authz{Mode: p.cfg.Authz, Unknown: unknown, Policy: policy}); err != nil {
		return nil, fmt.Errorf("data plane: %w", err)
	}

	// The deploy side: the local target (adopting what a previous run
	// left running), the history, the orchestrator, the gates.
	env := ids.env(m, p.serviceEnv(info, secrets))
	target := p.cfg.Target
	target.ProbeTransport = ids.probeTransport()
	lc, err = OpenLocal(ctx, LocalConfig{
		SmokeClient: ids.smokeClient(),
		Graph:       g, Data: data, Router: dp, DB: db, Env: env, Metrics: p.cfg.Metrics,
		Gates: []deploy.Gate{
			SchemasCompatible{Registry: serde.NewClient(info.Registry, "", ""), Manifest: func() (*graph.Manifest, error) {
				m, _, err := graph.Load(m.File)
				return m, err
			}},
			&CanIDeploy{Broker: bc, Contracts: p.contracts(m, info.Broker)},
		},
		Recorders:  []deploy.Recorder{RecordDeployments{Broker: bc, Environment: "local"}},
		BuildFlags: p.cfg.BuildFlags, KeepVersions: p.cfg.KeepVersions, Target: target, Logger: p.log,
	})
	if err != nil {
		return nil, err
	}

	// Every service's stable address, then the gateway's routes to them.
	addrs := map[string]string{}
	for _, n := range names {
		addr, err := lc.Router.Declare(ctx, n)
		if err != nil {
			return nil, err
		}
		addrs[n] = addr
		info.Services = append(info.Services, PlatformService{Name: n, Mesh: addr, Gateway: GatewayPrefix(n) + "/"})
	}
	gwc := GatewayConfig(m.Services, addrs)
	gwc.Listen = p.cfg.GatewayAddr
	gwAddr, err := dp.SetGateway(ctx, &gwc)
	if err != nil {
		if strings.Contains(err.Error(), "address already in use") {
			return nil, portError("the gateway", p.cfg.GatewayAddr, "--gateway-addr", syscall.EADDRINUSE)
		}
		return nil, fmt.Errorf("data plane: gateway: %w", err)
	}
	info.Gateway = "http://" + gwAddr

	// The API, with the data plane's metrics and where everything is.
	mux := http.NewServeMux()
	mux.Handle("/api/", lc.API.Handler())
	mux.Handle("GET /metrics", dp.MetricsHandler())
	Traces{Store: traces}.Routes(mux)
	ids.routes(mux)
	p.chaosRoutes(ctx, mux, policy, dp, lc)
	mux.HandleFunc("GET /api/platform", func(w http.ResponseWriter, r *http.Request) {
		if i := p.info.Load(); i != nil {
			now := *i
			now.Processes = []PlatformProcess{{Status: supervise.Status{Name: "control plane", Phase: supervise.Ready,
				PID: os.Getpid(), Started: p.started, Version: p.cfg.Version}}}
			for _, st := range p.Processes() {
				pp := PlatformProcess{Status: st}
				if st.Name == "dataplane" {
					ctx, cancel := context.WithTimeout(r.Context(), time.Second)
					if ds, err := dp.Status(ctx); err == nil {
						pp.ConfigVersion = ds.Version
					}
					cancel()
					pp.ConfigRefused = dp.LastRefusal()
					pp.Sockets = len(keeper.Sockets())
				}
				now.Processes = append(now.Processes, pp)
			}
			writeJSON(w, http.StatusOK, now)
			return
		}
		writeError(w, http.StatusServiceUnavailable, errors.New("the platform is starting: its services are being deployed"))
	})
	// The dashboard under /ui/, the API (with its tokens) beside it.
	dash, root, err := dashboard(ctx, lc, bstore, info.Registry, tokens.Middleware(mux), p.log)
	if err != nil {
		return nil, err
	}
	newServer(ls.api, root, "api", &apiSrv)

	// The release that brings every service up, in waves.
	p.log.InfoContext(ctx, "deploying", "services", names, "data", data)
	rep, err := lc.Orchestrator.Deploy(ctx, deploy.Request{Services: names, Who: "flotilla up"}, publishTo(dash, p.cfg.Events))
	info.Report = rep
	if ctx.Err() != nil {
		// Interrupted (Ctrl-C): what did start is stopped by Close.
		return nil, fmt.Errorf("interrupted before every service was up: %w", ctx.Err())
	}
	if err != nil {
		return nil, upError(rep, err)
	}
	for i, s := range info.Services {
		for _, oc := range rep.Outcomes {
			if oc.Service == s.Name {
				info.Services[i].Version = oc.Version
			}
		}
	}
	sort.SliceStable(info.Services, func(i, j int) bool {
		return indexOf(rep.Plan.Services(), info.Services[i].Name) < indexOf(rep.Plan.Services(), info.Services[j].Name)
	})
	if p.cfg.Demo {
		demo, err := LoadDemo(ctx, info.Gateway, names, secrets)
		if err != nil {
			return nil, fmt.Errorf("demo data: %w", err)
		}
		info.Demo = demo
	}
	return info, nil
}

// dataplaneStatus asks a data plane that may run already for its status.
func (p *Platform) dataplaneStatus(ctx context.Context, dp *dataplane.Client) (dataplane.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return dp.Status(ctx)
}

// startDataplane adopts the data plane that runs already (after a
// restart of the control plane), taking what it serves as the desired
// state, or starts one, which the control plane then configures from
// scratch (what it kept on disk is from before a stop, when its services
// stopped too). A data plane of another program (an upgrade of flotilla)
// hands over to a new one: the new one starts on copies of its listening
// sockets and with its last configuration, the old one drains and exits.
// A data plane that dies is restarted by the supervisor on the sockets
// the keeper holds, and given the whole configuration again.
func (p *Platform) startDataplane(ctx context.Context, dir string, dp *dataplane.Client, keeper *dataplane.Keeper, ids *platformIdentity) (*supervise.Process, error) {
	args := append(append([]string{}, p.cfg.Dataplane[1:]...), "--state", dir,
		"--identity", ids.w.Dir, "--mtls", string(ids.mode), "--namespace", ids.ns)
	sock := dataplane.SocketIn(dir)
	proc, err := supervise.Start(ctx, supervise.Spec{
		Name: "dataplane", Dir: dir, Path: p.cfg.Dataplane[0], Args: args,
		Version: p.cfg.Version, Env: p.dataplaneEnv(),
		ReadyPID: func(ctx context.Context, pid int) error {
			st, err := dataplane.ProbeStatus(ctx, sock)
			if err == nil && st.PID != pid {
				err = fmt.Errorf("the data plane answering is pid %d, not %d", st.PID, pid)
			}
			return err
		},
		// Copies of the running data plane's sockets when it answers (an
		// upgrade), else those kept (a restart after a crash).
		ExtraFiles: func(ctx context.Context) []*os.File {
			if err := keeper.Sync(ctx); err != nil && !errors.Is(err, dataplane.ErrUnreachable) {
				p.log.WarnContext(ctx, "the data plane's listening sockets", "err", err)
			}
			return keeper.Files()
		},
		Handover:    true,
		StopTimeout: p.cfg.StopTimeout,
		OnRestart: func(ctx context.Context, st supervise.Status) {
			if err := dp.Push(ctx); err != nil {
				p.log.ErrorContext(ctx, "the restarted data plane was not given its configuration", "pid", st.PID, "err", err)
				return
			}
			p.log.InfoContext(ctx, "the restarted data plane was given its configuration", "pid", st.PID, "restarts", st.Restarts)
		},
		Logger: p.log.With("component", "supervise"),
	})
	if err != nil {
		return nil, fmt.Errorf("data plane: %w", err)
	}
	st := proc.Status()
	if st.Adopted || st.HandedOver {
		// Kept-alive connections may reach the one that handed over.
		dp.Close()
		if err := dp.Adopt(ctx); err != nil {
			return proc, err
		}
		if st.HandedOver {
			p.log.InfoContext(ctx, "the data plane was upgraded", "pid", st.PID, "from", st.HandedOverFrom)
		} else {
			p.log.InfoContext(ctx, "adopted the running data plane", "pid", st.PID)
		}
	}
	if err := keeper.Sync(ctx); err != nil {
		p.log.WarnContext(ctx, "the data plane's listening sockets are not kept: a restart of it would refuse connections until it listens again", "err", err)
	}
	return proc, nil
}

// HandoverSignal asks a running control plane (`flotilla up`) to hand
// over to a newer one: it leaves the bus, the data plane and the services
// running (Detach) and exits. The newer one sends it (takeOver).
const HandoverSignal = syscall.SIGUSR2

// takeOver makes the control plane of another version that runs on the
// data directory hand over, and waits until it exited; one of the same
// version is an error (two control planes on one data directory). The
// control plane is then recorded as this process.
func (p *Platform) takeOver(ctx context.Context, data string) (string, error) {
	dir := ProcessDir(data)
	note := ""
	if st, err := supervise.ReadState(dir, "controlplane"); err == nil && st.PID != os.Getpid() {
		if ok, _ := st.Running(); ok {
			if st.Version == p.cfg.Version {
				return "", fmt.Errorf("flotilla up (pid %d, version %s) already runs on the data directory %s: use it ('flotilla status'), or stop it (Ctrl-C) first", st.PID, st.Version, data)
			}
			p.log.InfoContext(ctx, "upgrading: the running control plane hands over", "pid", st.PID, "version", st.Version, "to", p.cfg.Version)
			if err := syscall.Kill(st.PID, HandoverSignal); err != nil {
				return "", fmt.Errorf("the running control plane (pid %d, version %s): ask it to hand over: %w", st.PID, st.Version, err)
			}
			deadline := time.Now().Add(p.cfg.StopTimeout)
			for supervise.Alive(st.PID) {
				if time.Now().After(deadline) {
					return "", fmt.Errorf("the running control plane (pid %d, version %s) did not hand over within %v: stop it (Ctrl-C), then run flotilla up again", st.PID, st.Version, p.cfg.StopTimeout)
				}
				select {
				case <-ctx.Done():
					return "", ctx.Err()
				case <-time.After(50 * time.Millisecond):
				}
			}
			p.log.InfoContext(ctx, "the previous control plane handed over", "pid", st.PID, "version", st.Version)
			short := func(v string) string { v, _, _ = strings.Cut(v, " go1."); return v } // the toolchain is noise here
			note = fmt.Sprintf("control plane: %s (pid %d) handed over to %s (pid %d)", short(st.Version), st.PID, short(p.cfg.Version), os.Getpid())
		}
	}
	if err := supervise.RecordSelf(dir, "controlplane", p.cfg.Version, nil); err != nil {
		return "", fmt.Errorf("record the control plane: %w", err)
	}
	p.onCloseOrDetach("control plane record", func(context.Context) error {
		if st, err := supervise.ReadState(dir, "controlplane"); err == nil && st.PID == os.Getpid() {
			_ = os.Remove(supervise.StatePath(dir, "controlplane"))
		}
		return nil
	}, func() error { return nil })
	return note, nil
}

// upError is the error of a release that did not bring every service up:
// each failed service with its reason (a build's compiler output, a
// readiness timeout with the log's tail).
func upError(rep *deploy.Report, err error) error {
	if rep == nil {
		return err
	}
	var errs []error
	for _, oc := range rep.Outcomes {
		switch oc.Result {
		case deploy.Failed:
			errs = append(errs, fmt.Errorf("%s failed: %s", oc.Service, oc.Reason))
		case deploy.Skipped:
			errs = append(errs, fmt.Errorf("%s skipped: %s", oc.Service, oc.Reason))
		}
	}
	if len(errs) == 0 {
		return err
	}
	return fmt.Errorf("not every service came up:\n%w", errors.Join(errs...))
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return len(s)
}

// GatewayPrefix is a service's public prefix on the platform's gateway:
// product-service → /api/product (its paths below it: /api/product/products).
func GatewayPrefix(service string) string {
	return "/api/" + strings.TrimSuffix(service, "-service")
}

// selectServices returns the services to run: the named ones and what
// they depend on, or all.
func selectServices(g *graph.Graph, only []string) ([]string, error) {
	m := g.Manifest()
	if len(only) == 0 {
		return m.Names(), nil
	}
	var unknown []string
	want := map[string]bool{}
	var visit func(string)
	visit = func(n string) {
		if want[n] {
			return
		}
		want[n] = true
		for _, d := range g.DependsOn(n) {
			visit(d)
		}
	}
	for _, n := range only {
		if m.Service(n) == nil {
			unknown = append(unknown, n)
			continue
		}
		visit(n)
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("unknown service(s) %s (the manifest has: %s)", strings.Join(unknown, ", "), strings.Join(m.Names(), ", "))
	}
	var out []string
	for _, n := range m.Names() {
		if want[n] {
			out = append(out, n)
		}
	}
	return out, nil
}

// contracts is the contract gate's release step for the manifest's
// repository: its pacts/ published, its providers verified by their own
// Go tests (TestContractProvider) against the platform's broker.
func (p *Platform) contracts(m *graph.Manifest, brokerURL string) *Contracts {
	root := m.Root
	load := func() (*graph.Manifest, error) {
		m, _, err := graph.Load(m.File)
		return m, err
	}
	return &Contracts{
		Pacts: filepath.Join(root, "pacts"), BrokerURL: brokerURL, Branch: gitBranch(root),
		Source: func(ctx context.Context, service string) (string, error) {
			m, err := load()
			if err != nil {
				return "", err
			}
			fp, err := deploy.NewVersioner(m, nil).Of(ctx, service)
			return fp.Source, err
		},
		Verify: GoTestVerifier(root, func(provider string) (string, error) {
			m, err := load()
			if err != nil {
				return "", err
			}
			s := m.Service(provider)
			if s == nil || len(s.Paths) == 0 {
				return "", fmt.Errorf("%s is not a service of %s with paths: its pacts cannot be verified", provider, m.File)
			}
			return s.Paths[0], nil
		}),
	}
}

// gitBranch is the repository's git branch, or "local" outside git (or
// on a detached head).
func gitBranch(root string) string {
	out, err := exec.Command("git", "-C", root, "rev-parse", "--abbrev-ref", "HEAD").Output()
	if b := strings.TrimSpace(string(out)); err == nil && b != "" && b != "HEAD" {
		return b
	}
	return "local"
}
