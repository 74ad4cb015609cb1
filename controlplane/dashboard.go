package controlplane

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/flotilla-ci/flotilla/broker"
	"github.com/flotilla-ci/flotilla/canary"
	"github.com/flotilla-ci/flotilla/controlplane/ui"
	"github.com/flotilla-ci/flotilla/deploy"
)

// DashboardPath is where the control plane serves its dashboard.
const DashboardPath = ui.Prefix

// dashboard wires the web dashboard of a local control plane: the deploy
// side's status and history, the canaries, the mesh's figures, the
// broker's store and the registry, with api (the token-checked API) for
// its actions. It is told of every release the API runs; it samples until
// ctx ends. The handler returned serves /ui/ and hands every other path
// to api.
func dashboard(ctx context.Context, lc *Local, brk broker.Store, registry string, api http.Handler, log *slog.Logger) (*ui.Server, http.Handler, error) {
	cfg := ui.Config{Deployer: lc.Orchestrator, API: api, Broker: brk, Registry: registry,
		Logger: log.With("component", "dashboard")}
	if lc.Canary != nil {
		cfg.Canaries = lc.Canary.States
	}
	if m, ok := lc.Router.(canary.Metrics); ok {
		cfg.Metrics = m
	}
	dash, err := ui.New(cfg)
	if err != nil {
		return nil, nil, err
	}
	lc.API.Observe(dash.Publish)
	dash.Start(ctx)
	root := http.NewServeMux()
	root.Handle(ui.Prefix, dash.Handler())
	root.Handle("/", api)
	return dash, root, nil
}

// publishTo returns events that tells dash too.
func publishTo(dash *ui.Server, events func(deploy.Event)) func(deploy.Event) {
	return func(e deploy.Event) {
		dash.Publish(e)
		if events != nil {
			events(e)
		}
	}
}
