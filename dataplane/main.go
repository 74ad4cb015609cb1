package dataplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/flotilla-ci/flotilla/identity"
	"github.com/flotilla-ci/flotilla/mesh"
	"github.com/flotilla-ci/flotilla/tracing"
)

// meshTLS reads the mesh's and the gateway's identities.
func meshTLS(cfg *Config) (*mesh.TLSConfig, error) {
	ns := cfg.Namespace
	if ns == "" {
		ns = identity.DefaultNamespace
	}
	src, err := identity.NewSource(identity.WorkloadDir(cfg.Identity, identity.SystemNamespace, identity.Mesh))
	if err != nil {
		return nil, fmt.Errorf("dataplane: the mesh's identity: %w", err)
	}
	gw, err := identity.NewSource(identity.WorkloadDir(cfg.Identity, identity.SystemNamespace, identity.Gateway))
	if err != nil {
		return nil, fmt.Errorf("dataplane: the gateway's identity: %w", err)
	}
	return &mesh.TLSConfig{Source: src, Gateway: gw, Mode: cfg.MTLS, Namespace: ns}, nil
}

// Config configures the data-plane process.
type Config struct {
	// State is the directory of the admin socket and the last
	// acknowledged snapshot. Required.
	State string
	// DrainTimeout bounds the wait for in-flight requests: of what a
	// snapshot removes, and of everything at shutdown (default 30s).
	DrainTimeout time.Duration
	// Version is flotilla's version, reported by the status.
	Version string
	// Mesh configures the mesh (its Authz comes from the snapshots).
	Mesh mesh.Config
	// Inherited are the listening sockets of the data plane this one
	// replaces, as its supervisor kept them (FileListeners): the admin
	// socket, the gateway's and the services' listeners. This one
	// serves them instead of listening anew, so no connection is
	// refused in between.
	Inherited []net.Listener
	// Identity, when set, is the directory of the workloads' identities
	// (identity.Workloads.Dir): the mesh serves mutual TLS (MTLS mode,
	// default strict) as flotilla-system/mesh, the gateway calls as
	// flotilla-system/gateway, and instances must be the services of
	// Namespace (default identity.DefaultNamespace).
	Identity  string
	MTLS      identity.Mode
	Namespace string
	Logger    *slog.Logger
	// OTEL are the standard OpenTelemetry variables (OTELEnv): with
	// OTEL_EXPORTER_OTLP_ENDPOINT set, every mesh hop and gateway request
	// is a span naming the version and subset that served it.
	OTEL map[string]string
}

// Main is the data-plane process: the mesh, the edge gateway and the admin
// API that takes their configuration. Start serves the snapshot saved in
// State at once, then takes pushes on the admin socket.
type Main struct {
	Config Config

	mesh    *mesh.Mesh
	tracing *tracing.Provider // set up from Config.OTEL; nil: none
	server  *Server
	admin   *http.Server
	ln      net.Listener
	sockets *net.UnixListener // hands copies of the listeners over

	closeOnce sync.Once
	closeErr  error
}

// Start opens the state directory, serves the saved snapshot and the
// admin socket. A saved snapshot that cannot be served is logged and
// reported by the status; the data plane then waits for a push.
func (m *Main) Start(ctx context.Context) error {
	cfg := &m.Config
	if cfg.State == "" {
		return errors.New("dataplane: no state directory")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 30 * time.Second
	}
	if err := os.MkdirAll(cfg.State, 0o700); err != nil {
		return fmt.Errorf("dataplane: state directory: %w", err)
	}
	inherited := map[string]net.Listener{}
	for _, l := range cfg.Inherited {
		inherited[listenerKey(l)] = l
	}
	closeInherited := func() {
		for _, l := range inherited {
			_ = l.Close()
		}
	}
	var ln net.Listener
	adminKey := "unix:" + SocketIn(cfg.State)
	if l := inherited[adminKey]; l != nil {
		// The admin socket the previous data plane served, with the
		// requests waiting on it.
		ln = l
		delete(inherited, adminKey)
		cfg.Logger.InfoContext(ctx, "dataplane: taking over the listening sockets", "count", len(cfg.Inherited))
	} else {
		var err error
		if ln, err = listenAdmin(SocketIn(cfg.State)); err != nil {
			closeInherited()
			return err
		}
	}
	// The socket file belongs to whichever data plane serves it last:
	// one that stops must not remove it under the next.
	if ul, ok := ln.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(false)
	}
	sockets, err := listenSockets(SocketsIn(cfg.State))
	if err != nil {
		_ = ln.Close()
		closeInherited()
		return err
	}
	fail := func(err error) error {
		_ = ln.Close()
		_ = sockets.Close()
		closeInherited()
		return err
	}
	mc := cfg.Mesh
	if mc.Logger == nil {
		mc.Logger = cfg.Logger.With("component", "mesh")
	}
	if cfg.Identity != "" {
		if mc.TLS, err = meshTLS(cfg); err != nil {
			return fail(err)
		}
	}
	if err := m.setupTracing(ctx, &mc); err != nil {
		return fail(err)
	}
	if m.mesh, err = mesh.New(mc); err != nil {
		return fail(err)
	}
	m.server, err = NewServer(ServerConfig{Mesh: m.mesh, State: cfg.State, DrainTimeout: cfg.DrainTimeout,
		Version: cfg.Version, Logger: cfg.Logger, Inherited: inherited})
	if err != nil {
		return fail(err)
	}
	_ = m.server.Start(ctx) // logged, and in the status
	m.ln = ln
	m.sockets = sockets
	adminLn := ln
	go serveSockets(sockets, func() ([]Socket, error) {
		socks, err := m.server.Sockets()
		if err != nil {
			return nil, err
		}
		f, err := dupFD(adminLn)
		if err != nil {
			closeSockets(socks)
			return nil, err
		}
		return append(socks, Socket{Name: "admin", Network: "unix", Addr: SocketIn(cfg.State), File: f}), nil
	}, func(msg string, args ...any) { cfg.Logger.Warn(msg, args...) })
	m.admin = &http.Server{Handler: m.server.Handler(), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn)}
	go func() {
		if err := m.admin.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			cfg.Logger.Error("dataplane: admin API stopped", "err", err)
		}
	}()
	cfg.Logger.InfoContext(ctx, "dataplane: serving", "socket", ln.Addr().String(), "version", m.server.Acked(), "pid", os.Getpid())
	return nil
}

// listenAdmin listens on the admin socket, taking over a stale one (left
// by a data plane that died) but never one that answers.
func listenAdmin(path string) (net.Listener, error) {
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		_ = c.Close()
		return nil, fmt.Errorf("dataplane: another data plane serves %s: stop it first", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("dataplane: remove the stale socket: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("dataplane: admin socket: %w (a path of at most 107 bytes is needed)", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("dataplane: admin socket: %w", err)
	}
	return ln, nil
}

// listenSockets listens on the socket the listeners are handed over on,
// in place of one a previous data plane left (it serves the same
// sockets, and stops soon).
func listenSockets(path string) (*net.UnixListener, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("dataplane: remove %s: %w", path, err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("dataplane: sockets socket: %w", err)
	}
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o600); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("dataplane: sockets socket: %w", err)
	}
	return ln, nil
}

// Run starts the data plane and serves until ctx is done, then drains
// (Close).
func (m *Main) Run(ctx context.Context) error {
	if err := m.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	return m.Close()
}

// Server is the snapshot server (after Start).
func (m *Main) Server() *Server { return m.server }

// Socket is the admin socket's path.
func (m *Main) Socket() string { return SocketIn(m.Config.State) }

// Close stops taking pushes, then stops the gateway and the mesh's
// listeners, letting in-flight requests finish (up to DrainTimeout). The
// saved snapshot stays for the next start.
func (m *Main) Close() error {
	m.closeOnce.Do(func() {
		if m.admin == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), m.Config.DrainTimeout)
		defer cancel()
		var errs []error
		_ = m.sockets.Close()
		if err := m.admin.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("admin API: %w", err))
		}
		if err := m.server.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("gateway: %w", err))
		}
		if err := m.mesh.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("mesh: %w", err))
		}
		m.closeTracing()
		m.closeErr = errors.Join(errs...)
	})
	return m.closeErr
}
