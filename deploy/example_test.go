package deploy_test

import (
	"context"
	"fmt"

	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/graph"
)

// A plan for two services, named in any order: charlie-service depends on
// alpha-service through bravo-service, so it deploys in a later wave.
func ExampleMakePlan() {
	m, _, err := graph.Load("testdata/shop/flotilla.yaml")
	if err != nil {
		panic(err)
	}
	plan, err := deploy.MakePlan(context.Background(), graph.New(m),
		deploy.Request{Services: []string{"charlie-service", "alpha-service"}}, nil, nil)
	if err != nil {
		panic(err)
	}
	for i, wave := range plan.Waves {
		for _, it := range wave {
			fmt.Printf("wave %d: %s (%s, package %s)\n", i+1, it.Service, it.Action, it.Spec.Build.Package)
		}
	}
	// Output:
	// wave 1: alpha-service (deploy, package ./cmd/svc)
	// wave 2: charlie-service (deploy, package ./cmd/svc)
}
