package controlplane

import (
	"context"
	"fmt"
	"strings"

	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/graph"
	"github.com/flotilla-ci/flotilla/schema/repocheck"
)

// SchemasCompatible is the event-schema gate: every schema (.avsc) the
// service owns must parse and be compatible with the versions its subject
// has in the registry, at the subject's compatibility level, and every
// consumer's reader schema must read it; every reader schema the service
// keeps must read each writer version it may receive (the repository's and
// the registered ones); and its reader files must match its subscribes
// (schema/repocheck, as `flotilla schema check --registry` does).
type SchemasCompatible struct {
	// Registry is the schema registry (*serde.Client).
	Registry repocheck.Registry
	// Manifest returns the manifest as it is now (the schema files are
	// read from its root).
	Manifest func() (*graph.Manifest, error)
}

var _ deploy.Gate = SchemasCompatible{}

// Name implements deploy.Gate.
func (SchemasCompatible) Name() string { return "schemas" }

// Check implements deploy.Gate.
func (g SchemasCompatible) Check(ctx context.Context, req deploy.GateRequest) (deploy.GateResult, error) {
	m, err := g.Manifest()
	if err != nil {
		return deploy.GateResult{}, fmt.Errorf("schemas of %s: %w", req.Service, err)
	}
	rep, err := repocheck.Check(ctx, m, repocheck.Options{Registry: g.Registry})
	if err != nil {
		return deploy.GateResult{}, fmt.Errorf("schemas of %s: %w", req.Service, err)
	}
	var problems []string
	n := 0
	for _, res := range rep.Results {
		if res.Service != req.Service {
			continue
		}
		n++
		switch {
		case res.File.Err != nil:
			problems = append(problems, fmt.Sprintf("%s does not parse: %v", res.Path, res.File.Err))
		case res.Err != nil:
			// The registry could not be asked: the gate cannot answer.
			return deploy.GateResult{}, fmt.Errorf("check %s against the registry: %w", res.Path, res.Err)
		}
		for _, c := range res.Comparisons {
			for _, p := range c.Problems {
				problems = append(problems, fmt.Sprintf("%s (subject %s, %s): %s", res.Path, res.Subject(), c.Mode, p))
			}
		}
		for _, b := range res.BrokenReaders {
			problems = append(problems, fmt.Sprintf("%s: %s", res.Path, b))
		}
	}
	for _, rr := range rep.Readers {
		if rr.Service != req.Service {
			continue
		}
		n++
		if rr.Err != nil {
			problems = append(problems, fmt.Sprintf("%s does not parse: %v", rr.Path, rr.Err))
		}
		for _, c := range rr.Checks {
			for _, p := range c.Problems {
				field := ""
				if p.Field != "" {
					field = " field " + p.Field
				}
				problems = append(problems, fmt.Sprintf("%s:%d%s cannot read %s: %s at %s", rr.Path, p.Line, field, c.Writer, p.Reason, p.Location))
			}
		}
	}
	for _, f := range rep.Findings {
		if strings.Contains(f, req.Service+" ") {
			problems = append(problems, f)
		}
	}
	if len(problems) > 0 {
		return deploy.GateResult{Reason: strings.Join(problems, "; ")}, nil
	}
	return deploy.GateResult{Pass: true, Reason: fmt.Sprintf("%d schema(s) compatible with the registry", n)}, nil
}
