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
// source version against what runs in the environment. Closed unless the
// broker says deployable: a failed verification (naming the consumer,
// its version and the interactions that failed), a verification not
// published yet (unknown), a version the broker has no data for, and a
// broker that cannot be asked all keep the service out. With Contracts
// set, it is also a deploy.Preparer: before each release it publishes the
// release's pacts and verifies their providers, so the broker has the
// data to answer.
type CanIDeploy struct {
	Broker *client.Client
	// Environment is the broker's environment to ask about; empty means
	// the release's.
	Environment string
	// Contracts, when set, is what Prepare does before a release.
	Contracts *Contracts

	state prepared
}

var _ deploy.Preparer = (*CanIDeploy)(nil)

// Name implements deploy.Gate.
func (*CanIDeploy) Name() string { return "can-i-deploy" }

// Check implements deploy.Gate.
func (g *CanIDeploy) Check(ctx context.Context, req deploy.GateRequest) (deploy.GateResult, error) {
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
		return deploy.GateResult{Reason: fmt.Sprintf("the broker has no data for %s %s: publish its pacts (as a consumer) or its verification results (as a provider) first", req.Service, version)}, nil
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
	reason := strings.ReplaceAll(strings.TrimSpace(m.Summary.Reason), "\n", "; ")
	switch d := m.Summary.Deployable; {
	case d != nil && *d:
		return deploy.GateResult{Pass: true, Reason: reason}, nil
	case d == nil:
		reason = "not known yet (a verification is missing or pending): " + reason
	}
	if more := g.explain(ctx, m); more != "" {
		reason += "; " + more
	}
	return deploy.GateResult{Reason: reason}, nil
}

// explain names what keeps a matrix from being deployable: each failed
// verification's consumer, versions and failed interactions (from the
// published test results), and why a verification that is missing was
// not published.
func (g *CanIDeploy) explain(ctx context.Context, m client.Matrix) string {
	var out []string
	for _, r := range m.Rows {
		vr := r.VerificationResult
		switch {
		case vr == nil:
			if p := g.state.of(r.Provider.Name); p != "" {
				out = append(out, fmt.Sprintf("%s has not verified the pact of %s %s: %s", r.Provider.Name, r.Consumer.Name, r.Consumer.VersionNumber(), p))
			}
		case !vr.Success:
			what := fmt.Sprintf("%s %s fails the pact of %s %s", r.Provider.Name, r.Provider.VersionNumber(), r.Consumer.Name, r.Consumer.VersionNumber())
			res, err := g.Broker.Verification(ctx, vr.Links.Self.Href)
			if err != nil {
				out = append(out, what+" (its test results could not be read: "+err.Error()+")")
				continue
			}
			var failed []string
			for _, t := range res.TestResults {
				if t.Success {
					continue
				}
				f := fmt.Sprintf("%q", t.InteractionDescription)
				if len(t.Mismatches) > 0 {
					mm := t.Mismatches[0]
					f += fmt.Sprintf(" (%s %s: %s)", mm.Attribute, mm.Identifier, mm.Description)
				}
				failed = append(failed, f)
			}
			if len(failed) > 0 {
				what += ": interaction " + strings.Join(failed, ", interaction ")
			}
			out = append(out, what)
		}
	}
	return strings.Join(out, "; ")
}

// RecordDeployments tells the broker which version of a service now runs in
// the environment (the Pact Broker's record-deployment), after every
// successful deploy or rollback, and that none does any more
// (record-undeployment) when a release's rollback stopped a service that
// did not run before, so can-i-deploy answers against what really runs.
// It records the source version, the one contracts are published under.
type RecordDeployments struct {
	Broker      *client.Client
	Environment string // the broker's environment (required)
}

var _ deploy.Recorder = RecordDeployments{}

// Record implements deploy.Recorder.
func (r RecordDeployments) Record(ctx context.Context, rec deploy.Record) error {
	if rec.Action == deploy.RecordRollback && rec.Result == deploy.RolledBack {
		if _, err := r.Broker.RecordUndeployment(ctx, rec.Service, r.Environment, ""); err != nil {
			return fmt.Errorf("record-undeployment %s from %s: %w", rec.Service, r.Environment, err)
		}
		return nil
	}
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
