package controlplane

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/flotilla-ci/flotilla/broker"
	"github.com/flotilla-ci/flotilla/broker/client"
	"github.com/flotilla-ci/flotilla/deploy"
)

// CanIDeploy is the contract gate: the broker's matrix for the service's
// source version against what runs in the environment. A version the
// broker knows nothing about (no pact published, no verification) passes
// with a note: there is nothing to check it against.
type CanIDeploy struct {
	Broker *client.Client
	// Environment is the broker's environment to ask about; empty means
	// the release's.
	Environment string
}

var _ deploy.Gate = CanIDeploy{}

// Name implements deploy.Gate.
func (CanIDeploy) Name() string { return "can-i-deploy" }

// Check implements deploy.Gate.
func (g CanIDeploy) Check(ctx context.Context, req deploy.GateRequest) (deploy.GateResult, error) {
	version := req.Source
	if version == "" {
		version = req.Version
	}
	env := g.Environment
	if env == "" {
		env = req.Environment
	}
	var v map[string]any
	err := g.Broker.Get(ctx, "/pacticipants/"+url.PathEscape(req.Service)+"/versions/"+url.PathEscape(version), &v)
	if client.IsNotFound(err) {
		return deploy.GateResult{Pass: true, Reason: fmt.Sprintf("the broker has no data for %s %s: nothing to check", req.Service, version)}, nil
	}
	if err != nil {
		return deploy.GateResult{}, fmt.Errorf("ask the broker about %s %s: %w", req.Service, version, err)
	}
	m, err := g.Broker.Matrix(ctx, broker.MatrixQuery{
		Selectors: []broker.Selector{{Pacticipant: req.Service, Version: version}},
		Target:    broker.Target{Environment: env}, LatestBy: "cvpv",
	})
	if err != nil {
		return deploy.GateResult{}, fmt.Errorf("can-i-deploy %s %s to %s: %w", req.Service, version, env, err)
	}
	reason := strings.ReplaceAll(m.Summary.Reason, "\n", "; ")
	switch d := m.Summary.Deployable; {
	case d == nil:
		return deploy.GateResult{Reason: "not known yet (a verification is pending): " + reason}, nil
	case *d:
		return deploy.GateResult{Pass: true, Reason: reason}, nil
	default:
		return deploy.GateResult{Reason: reason}, nil
	}
}

// RecordDeployments tells the broker which version of a service now runs in
// the environment (the Pact Broker's record-deployment), after every
// successful deploy or rollback, so can-i-deploy answers against what
// really runs. It records the source version, the one contracts are
// published under.
type RecordDeployments struct {
	Broker      *client.Client
	Environment string // the broker's environment (required)
}

var _ deploy.Recorder = RecordDeployments{}

// Record implements deploy.Recorder.
func (r RecordDeployments) Record(ctx context.Context, rec deploy.Record) error {
	if rec.Result != deploy.Succeeded {
		return nil
	}
	version := rec.Spec.Source
	if version == "" {
		version = rec.Version
	}
	if err := r.Broker.RecordDeployment(ctx, rec.Service, version, r.Environment, "", false); err != nil {
		return fmt.Errorf("record-deployment %s %s to %s: %w", rec.Service, version, r.Environment, err)
	}
	return nil
}
