package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"

	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/deploy/local"
	"github.com/flotilla-ci/flotilla/deploy/sqlstore"
	"github.com/flotilla-ci/flotilla/graph"
	"github.com/flotilla-ci/flotilla/internal/sqldb"
	"github.com/flotilla-ci/flotilla/mesh"
)

// LocalConfig wires the deploy side of a control plane on this machine:
// the local target, the mesh as its router, the history, the orchestrator
// and its API.
type LocalConfig struct {
	// Graph is the manifest's graph; its file is read again for every
	// plan.
	Graph *graph.Graph
	// Data is the data directory (`flotilla up --data`); the local target
	// keeps its artifacts, logs and state in local.DirIn(Data).
	Data string
	// Router routes the services (the data plane's client, when the data
	// plane runs as a process of its own); without one, Mesh does, in
	// this process. Stable ports come from the manifest's deploy.port.
	Router deploy.Router
	Mesh   *mesh.Mesh
	// Metrics is where the canary analysis reads its figures (the zero
	// value: the mesh's own, or the data plane's through Router).
	Metrics MetricsProvider
	// DB holds the history (shared with the other components); nil opens
	// Data/flotilla.db.
	DB *sqldb.DB
	// Env, Gates, Recorders, BuildFlags and MaxParallel go to the
	// orchestrator (see deploy.Config).
	Env         func(service string) map[string]string
	Gates       []deploy.Gate
	Recorders   []deploy.Recorder
	BuildFlags  []string
	MaxParallel int
	// KeepVersions is deploy.Config's: versions of each service whose
	// artifacts and logs a prune keeps.
	KeepVersions int
	// Target tunes the local target (Dir and Root are set here).
	Target local.Config
	// SmokeClient makes the smoke checks (deploy.Config.Client).
	SmokeClient *http.Client
	Logger      *slog.Logger
}

// Local is the deploy side of a local control plane.
type Local struct {
	Target       *local.Target
	Router       deploy.Router
	Store        *sqlstore.Store
	Orchestrator *deploy.Orchestrator
	API          *API
	// Canary releases every new version (see [Canary]).
	Canary *Canary

	db    *sqldb.DB
	ownDB bool
}

// OpenLocal opens the local target (adopting the instances a previous
// control plane left running, restarting the ones that died), the history
// and the orchestrator, and routes what runs through the mesh again
// (Orchestrator.Restore). Serve API.Handler() to expose it.
func OpenLocal(ctx context.Context, cfg LocalConfig) (*Local, error) {
	var errs []error
	if cfg.Graph == nil {
		errs = append(errs, errors.New("local control plane: no graph"))
	}
	if cfg.Data == "" {
		errs = append(errs, errors.New("local control plane: no data directory"))
	}
	if cfg.Mesh == nil && cfg.Router == nil {
		errs = append(errs, errors.New("local control plane: no router and no mesh"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m := cfg.Graph.Manifest()
	tc := cfg.Target
	tc.Dir, tc.Root = local.DirIn(cfg.Data), m.Root
	if tc.Logger == nil {
		tc.Logger = cfg.Logger
	}
	l := &Local{}
	var err error
	if cfg.DB == nil {
		if cfg.DB, err = sqldb.Open(ctx, filepath.Join(cfg.Data, "flotilla.db")); err != nil {
			return nil, fmt.Errorf("local control plane: %w", err)
		}
		l.ownDB = true
	}
	l.db = cfg.DB
	if l.Store, err = sqlstore.New(ctx, cfg.DB); err != nil {
		l.closeDB()
		return nil, fmt.Errorf("local control plane: history: %w", err)
	}
	if l.Target, err = local.Open(ctx, tc); err != nil {
		l.closeDB()
		return nil, err
	}
	l.Router = cfg.Router
	if l.Router == nil {
		l.Router = &local.MeshRouter{Mesh: cfg.Mesh, Ports: FixedPorts(m), File: PortsFile(cfg.Data)}
	}
	var load func() (*graph.Graph, error)
	if m.File != "" {
		// `flotilla deploy` after an edit to flotilla.yaml sees the edit.
		load = func() (*graph.Graph, error) {
			m, _, err := graph.Load(m.File)
			if err != nil {
				return nil, err
			}
			return graph.New(m), nil
		}
	}
	if l.Canary, err = openCanary(cfg, l); err != nil {
		_ = l.Target.Close()
		l.closeDB()
		return nil, err
	}
	l.Orchestrator, err = deploy.New(deploy.Config{
		Graph: cfg.Graph, Load: load, Target: l.Target, Router: l.Router, Store: l.Store, Shifter: l.Canary,
		Gates: cfg.Gates, Recorders: cfg.Recorders, BuildFlags: cfg.BuildFlags, Env: cfg.Env,
		MaxParallel: cfg.MaxParallel, KeepVersions: cfg.KeepVersions, Logger: cfg.Logger, Client: cfg.SmokeClient,
	})
	if err != nil {
		_ = l.Target.Close()
		l.closeDB()
		return nil, err
	}
	if err := l.Orchestrator.Restore(ctx); err != nil {
		cfg.Logger.WarnContext(ctx, "restore routes of running services", "err", err)
	}
	l.API = NewAPI(l.Orchestrator, cfg.Logger)
	l.API.WithCanary(l.Canary)
	return l, nil
}

// FixedPorts are the services' stable ports the manifest fixes
// (deploy.port).
func FixedPorts(m *graph.Manifest) map[string]int {
	ports := map[string]int{}
	for _, s := range m.Services {
		if s.Deploy.Port != 0 {
			ports[s.Name] = s.Deploy.Port
		}
	}
	return ports
}

// PortsFile is where the stable ports given out are remembered, in the
// data directory.
func PortsFile(data string) string { return filepath.Join(local.DirIn(data), "mesh-ports.json") }

func (l *Local) closeDB() {
	if l.ownDB {
		_ = l.db.Close()
	}
}

// Shutdown waits for a running release to finish, then stops every
// service (SIGTERM: each drains its in-flight requests; SIGKILL after the
// stop timeout) and closes the history. For a clean stop, close the mesh
// (and the gateway in front of it) first: it stops taking requests and
// waits for those in flight, so no request reaches a stopping service.
func (l *Local) Shutdown(ctx context.Context) error {
	l.stopCanaries()
	l.API.Wait()
	err := l.Target.Shutdown(ctx)
	l.closeDB()
	return err
}

// Detach leaves the services running (the next OpenLocal adopts them) and
// closes the history.
func (l *Local) Detach() error {
	l.stopCanaries()
	l.API.Wait()
	err := l.Target.Close()
	l.closeDB()
	return err
}
