// Package uitest gives the dashboard's tests and benchmarks a deploy side
// without processes: the manifest's real graph, a real history store
// (SQLite) filled with releases, and every service reported serving.
package uitest

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/deploy/sqlstore"
	"github.com/flotilla-ci/flotilla/graph"
	"github.com/flotilla-ci/flotilla/internal/sqldb"
)

// Deployer implements ui.Deployer over a graph and a history store.
type Deployer struct {
	G     *graph.Graph
	Store *sqlstore.Store

	mu      sync.Mutex
	running *deploy.Running
	status  map[string]deploy.ServiceStatus
}

// Open loads the manifest and opens a history in dir with releases
// releases of every service (release 1 deploys v1 of each, release n
// redeploys the service n mod len, so most of the history is one service
// each, as day-to-day releases are; every seventh one failed and was
// rolled back).
func Open(ctx context.Context, manifest, dir string, releases int) (*Deployer, error) {
	m, _, err := graph.Load(manifest)
	if err != nil {
		return nil, err
	}
	g := graph.New(m)
	db, err := sqldb.Open(ctx, filepath.Join(dir, "history.db"))
	if err != nil {
		return nil, err
	}
	st, err := sqlstore.New(ctx, db)
	if err != nil {
		return nil, err
	}
	d := &Deployer{G: g, Store: st, status: map[string]deploy.ServiceStatus{}}
	names := m.Names()
	version := map[string]int{}
	start := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	for r := 1; r <= releases; r++ {
		svcs := names
		if r > 1 {
			svcs = []string{names[r%len(names)]}
		}
		at := start.Add(time.Duration(r) * 7 * time.Minute)
		who := []string{"alice via admin token", "bob via admin token", "ci via admin token"}[r%3]
		id, err := st.StartRelease(ctx, who, svcs, at)
		if err != nil {
			return nil, err
		}
		for i, s := range svcs {
			prev := ""
			if version[s] > 0 {
				prev = fmt.Sprintf("v%d-%s", version[s], s[:3])
			}
			rec := deploy.Record{Release: id, Service: s, Previous: prev, Action: "deploy", Result: deploy.Succeeded, Who: who,
				Started: at.Add(time.Duration(i) * 300 * time.Millisecond), Duration: 1200 * time.Millisecond}
			if r > 1 && r%7 == 0 {
				rec.Version = fmt.Sprintf("v%d-%s", version[s]+1, s[:3])
				rec.Result, rec.Reason = deploy.Failed, "smoke GET /health: 500"
			} else {
				version[s]++
				rec.Version = fmt.Sprintf("v%d-%s", version[s], s[:3])
			}
			rec.Spec = deploy.Spec{Service: s, Version: rec.Version}
			if _, err := st.Add(ctx, rec); err != nil {
				return nil, err
			}
		}
	}
	for _, s := range names {
		v := fmt.Sprintf("v%d-%s", version[s], s[:3])
		if version[s] == 0 {
			d.status[s] = deploy.ServiceStatus{Service: s, Health: "not deployed"}
			continue
		}
		d.status[s] = deploy.ServiceStatus{Service: s, Stable: v, Weights: map[string]int{v: 100}, Health: "ready", Since: start}
	}
	return d, nil
}

// Close closes the history.
func (d *Deployer) Close() error { return d.Store.Close() }

// Graph implements ui.Deployer.
func (d *Deployer) Graph() *graph.Graph { return d.G }

// Status implements ui.Deployer.
func (d *Deployer) Status(context.Context) ([]deploy.ServiceStatus, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []deploy.ServiceStatus
	for _, n := range d.G.Manifest().Names() {
		out = append(out, d.status[n])
	}
	return out, nil
}

// SetCanary reports a canary of a service at a weight.
func (d *Deployer) SetCanary(service, version string, weight int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.status[service]
	st.Canary = []string{version}
	st.Weights = map[string]int{st.Stable: 100 - weight, version: weight}
	d.status[service] = st
}

// Running implements ui.Deployer.
func (d *Deployer) Running() *deploy.Running {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.running
}

// SetRunning sets the release in progress (nil: none).
func (d *Deployer) SetRunning(r *deploy.Running) {
	d.mu.Lock()
	d.running = r
	d.mu.Unlock()
}

// History implements ui.Deployer.
func (d *Deployer) History(ctx context.Context, service string, limit int) ([]deploy.Record, error) {
	return d.Store.List(ctx, service, limit)
}
