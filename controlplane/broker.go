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
	var failed, unknown, notes []string
	for _, r := range m.Rows {
		if r.Ignored {
			continue
		}
		vr, consumer, provider := r.VerificationResult, r.Consumer.Name, r.Provider.Name
		cv, pv := r.Consumer.VersionNumber(), r.Provider.VersionNumber()
		switch {
		case vr != nil && vr.Success:
		case vr != nil:
			failed = append(failed, g.failure(ctx, r))
		case pv == "":
			// No version of the provider runs in the environment. The
			// release may bring one: the pact is then checked against
			// that version. Otherwise nothing can break yet (a consumer
			// that calls a provider depends_on it, and the orchestrator
			// refuses it without its dependency); the provider's own
			// gate checks this pact when it is deployed.
			rel := g.state.released(provider)
			if rel == "" {
				notes = append(notes, fmt.Sprintf("%s is not deployed in %s: its pact with %s is checked when it is", provider, env, consumer))
				continue
			}
			pm, err := g.Broker.Matrix(ctx, broker.MatrixQuery{LatestBy: "cvpv",
				Selectors: []broker.Selector{{Pacticipant: consumer, Version: cv}, {Pacticipant: provider, Version: rel}}})
			if err != nil {
				return deploy.GateResult{}, fmt.Errorf("can-i-deploy %s %s with %s %s of this release: %w", consumer, cv, provider, rel, err)
			}
			found := false
			for _, pr := range pm.Rows {
				if pr.Consumer.Name != consumer || pr.Provider.Name != provider || pr.Provider.VersionNumber() != rel {
					continue
				}
				found = true
				switch v := pr.VerificationResult; {
				case v != nil && v.Success:
				case v != nil:
					failed = append(failed, g.failure(ctx, pr))
				default:
					unknown = append(unknown, g.unverified(consumer, cv, provider, rel))
				}
			}
			if !found {
				unknown = append(unknown, g.unverified(consumer, cv, provider, rel))
			}
		default:
			unknown = append(unknown, g.unverified(consumer, cv, provider, pv))
		}
	}
	if len(failed) > 0 || len(unknown) > 0 {
		reason := strings.Join(failed, "; ")
		if len(unknown) > 0 {
			if reason != "" {
				reason += "; "
			}
			reason += "not known yet (a verification is missing or pending): " + strings.Join(unknown, "; ")
		}
		return deploy.GateResult{Reason: reason}, nil
	}
	reason := strings.ReplaceAll(strings.TrimSpace(m.Summary.Reason), "\n", "; ")
	if len(notes) > 0 {
		reason = "the pacts with what runs in " + env + " are verified; " + strings.Join(notes, "; ")
	}
	return deploy.GateResult{Pass: true, Reason: reason}, nil
}

// unverified says a pact has no verification by a provider version, and
// why, when the release's verification of it did not publish.
func (g *CanIDeploy) unverified(consumer, cv, provider, pv string) string {
	s := fmt.Sprintf("%s %s has not verified the pact of %s %s", provider, pv, consumer, cv)
	if p := g.state.of(provider); p != "" {
		s += ": " + p
	}
	return s
}

// failure names a failed verification's provider, consumer, versions and
// failed interactions with their first mismatch, from the published test
// results.
func (g *CanIDeploy) failure(ctx context.Context, r client.MatrixRow) string {
	what := fmt.Sprintf("%s %s fails the pact of %s %s", r.Provider.Name, r.Provider.VersionNumber(), r.Consumer.Name, r.Consumer.VersionNumber())
	res, err := g.Broker.Verification(ctx, r.VerificationResult.Links.Self.Href)
	if err != nil {
		return what + " (its test results could not be read: " + err.Error() + ")"
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
	return what
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
