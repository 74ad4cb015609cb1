package sqlstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flotilla-ci/flotilla/broker"
	"github.com/flotilla-ci/flotilla/broker/sqlstore"
	"github.com/flotilla-ci/flotilla/internal/sqldb/sqldbtest"
)

func pactDoc(consumer, provider string, descs ...string) []byte {
	var its []any
	for _, d := range descs {
		its = append(its, map[string]any{"description": d, "request": map[string]any{"method": "GET", "path": "/" + d}, "response": map[string]any{"status": 200}})
	}
	b, _ := json.Marshal(map[string]any{"consumer": map[string]any{"name": consumer}, "provider": map[string]any{"name": provider},
		"interactions": its, "metadata": map[string]any{"pactSpecification": map[string]any{"version": "3.0.0"}}})
	return b
}

type fixture struct {
	t  *testing.T
	s  *sqlstore.Store
	bg context.Context
}

func (f fixture) publish(consumer, version, branch string, tags []string, pacts map[string][]string) []broker.PublishedContract {
	f.t.Helper()
	p := broker.Publication{Pacticipant: consumer, Version: version, Branch: branch, Tags: tags}
	providers := make([]string, 0, len(pacts))
	for prov := range pacts {
		providers = append(providers, prov)
	}
	sort.Strings(providers)
	for _, prov := range providers {
		doc := pactDoc(consumer, prov, pacts[prov]...)
		sha, err := broker.ContentSHA(doc)
		if err != nil {
			f.t.Fatal(err)
		}
		p.Contracts = append(p.Contracts, broker.Contract{Consumer: consumer, Provider: prov, SHA: sha, Content: doc})
	}
	res, err := f.s.Publish(f.bg, p, false)
	if err != nil {
		f.t.Fatalf("publish %s %s: %v", consumer, version, err)
	}
	return res.Contracts
}

func (f fixture) verify(consumer, provider, sha, providerVersion, branch string, ok bool) {
	f.t.Helper()
	if branch != "" {
		if _, err := f.s.EnsureVersion(f.bg, provider, providerVersion, branch, "", ""); err != nil {
			f.t.Fatal(err)
		}
	}
	if _, err := f.s.AddVerification(f.bg, broker.Verification{Consumer: consumer, Provider: provider, PactSHA: sha, ProviderVersion: providerVersion, Success: ok}); err != nil {
		f.t.Fatalf("verify: %v", err)
	}
}

func (f fixture) deploy(p, v, env string) {
	f.t.Helper()
	if _, err := f.s.RecordDeployment(f.bg, p, v, env, "", false); err != nil {
		f.t.Fatalf("deploy %s %s: %v", p, v, err)
	}
}

func open(t *testing.T, dsn string) fixture {
	t.Helper()
	s, err := sqlstore.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return fixture{t: t, s: s, bg: context.Background()}
}

// summary is the deployable answer and the rows as "c@v>p@v:result".
func (f fixture) summary(q broker.MatrixQuery) (string, []string) {
	f.t.Helper()
	res, err := f.s.Matrix(f.bg, q)
	if err != nil {
		f.t.Fatalf("matrix: %v", err)
	}
	sum := broker.Summarize(q, res)
	d := "unknown"
	if sum.Deployable != nil {
		d = fmt.Sprint(*sum.Deployable)
	}
	var rows []string
	for _, r := range res.Rows {
		pv, v := "-", "?"
		if r.ProviderVersion != nil {
			pv = r.ProviderVersion.Number
		}
		if r.Verification != nil {
			v = fmt.Sprint(r.Verification.Success)
		}
		if r.Ignored {
			v += "(ignored)"
		}
		rows = append(rows, fmt.Sprintf("%s@%s>%s@%s:%s", r.Consumer, r.ConsumerVersion.Number, r.Provider, pv, v))
	}
	return d, rows
}

func TestContentAddressing(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, dsn string) {
		f := open(t, dsn)
		a := f.publish("web", "1", "main", nil, map[string][]string{"api": {"x", "y"}})
		// Same interactions in another order, other metadata: same pact version.
		doc := []byte(`{"metadata":{"pactSpecification":{"version":"3.0.0"},"pactRust":{"models":"1.2"}},"provider":{"name":"api"},"consumer":{"name":"web"},
			"interactions":[{"response":{"status":200},"request":{"path":"/y","method":"GET"},"description":"y"},{"description":"x","request":{"method":"GET","path":"/x"},"response":{"status":200}}]}`)
		sha, err := broker.ContentSHA(doc)
		if err != nil {
			t.Fatal(err)
		}
		if sha != a[0].SHA {
			t.Fatalf("reordered pact has SHA %s, want %s", sha, a[0].SHA)
		}
		res, err := f.s.Publish(f.bg, broker.Publication{Pacticipant: "web", Version: "2", Contracts: []broker.Contract{{Consumer: "web", Provider: "api", SHA: sha, Content: doc}}}, false)
		if err != nil {
			t.Fatal(err)
		}
		if res.Contracts[0].NewContent {
			t.Errorf("same content published again counted as new content")
		}
		// Different content for a version that already published: conflict, nothing stored.
		other := pactDoc("web", "api", "z")
		osha, _ := broker.ContentSHA(other)
		_, err = f.s.Publish(f.bg, broker.Publication{Pacticipant: "web", Version: "2", Branch: "feat", Contracts: []broker.Contract{{Consumer: "web", Provider: "api", SHA: osha, Content: other}}}, false)
		if !errors.Is(err, broker.ErrConflict) {
			t.Fatalf("republishing different content: %v, want ErrConflict", err)
		}
		v, err := f.s.Version(f.bg, "web", "2")
		if err != nil || len(v.Branches) != 0 {
			t.Errorf("a refused publication left a branch behind: %+v %v", v, err)
		}
		// Merge adds the interaction.
		res, err = f.s.Publish(f.bg, broker.Publication{Pacticipant: "web", Version: "2", Contracts: []broker.Contract{{Consumer: "web", Provider: "api", SHA: osha, Content: other, Merge: true}}}, false)
		if err != nil {
			t.Fatal(err)
		}
		p, err := f.s.Pact(f.bg, "api", "web", res.Contracts[0].SHA)
		if err != nil {
			t.Fatal(err)
		}
		var merged struct {
			Interactions []struct{ Description string }
		}
		_ = json.Unmarshal(p.Content, &merged)
		if len(merged.Interactions) != 3 {
			t.Errorf("merged pact has %d interactions, want 3", len(merged.Interactions))
		}
		pm, _ := f.s.Pacticipant(f.bg, "web")
		if pm.MainBranch != "main" {
			t.Errorf("main branch = %q, want main (detected from the first publication)", pm.MainBranch)
		}
	})
}

func TestConcurrentPublishesMakeNoDuplicates(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, dsn string) {
		f := open(t, dsn)
		doc := pactDoc("web", "api", "x")
		sha, _ := broker.ContentSHA(doc)
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := f.s.Publish(f.bg, broker.Publication{Pacticipant: "web", Version: "1", Branch: "main", Tags: []string{"t"},
					Contracts: []broker.Contract{{Consumer: "web", Provider: "api", SHA: sha, Content: doc}}}, false)
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("concurrent publish: %v", err)
			}
		}
		for table, want := range map[string]int{"broker_pacticipants": 2, "broker_versions": 1, "broker_pact_versions": 1, "broker_pact_publications": 1, "broker_branch_versions": 1, "broker_tags": 1} {
			var n int
			if err := f.s.DB().QueryRowContext(f.bg, "SELECT COUNT(*) FROM "+table).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != want {
				t.Errorf("%s has %d rows, want %d", table, n, want)
			}
		}
	})
}

func TestMatrix(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, dsn string) {
		f := open(t, dsn)
		c1 := f.publish("order", "o1", "main", nil, map[string][]string{"payment": {"charge"}, "stock": {"reserve"}})
		f.verify("order", "payment", c1[0].SHA, "p1", "main", true)
		f.verify("order", "stock", c1[1].SHA, "s1", "main", true)
		f.deploy("order", "o1", "production")
		f.deploy("payment", "p1", "production")
		f.deploy("stock", "s1", "production")
		f.verify("order", "payment", c1[0].SHA, "p2", "main", false)
		c2 := f.publish("order", "o2", "main", []string{"prod"}, map[string][]string{"payment": {"charge", "refund"}, "stock": {"reserve"}})
		f.verify("order", "stock", c2[1].SHA, "s1", "", true) // same content as o1's: o2's stock pact reuses it

		env := broker.Target{Environment: "production"}
		sel := func(p, v string) []broker.Selector { return []broker.Selector{{Pacticipant: p, Version: v}} }
		tests := []struct {
			name     string
			q        broker.MatrixQuery
			want     string
			wantRows []string
		}{
			{"provider verified by deployed consumer", broker.MatrixQuery{Selectors: sel("payment", "p1"), Target: env}, "true", []string{"order@o1>payment@p1:true"}},
			{"provider failed deployed consumer", broker.MatrixQuery{Selectors: sel("payment", "p2"), Target: env}, "false", []string{"order@o1>payment@p2:false"}},
			{"ignoring the failed consumer", broker.MatrixQuery{Selectors: sel("payment", "p2"), Target: env, Ignore: []broker.Selector{{Pacticipant: "order"}}}, "true", []string{"order@o1>payment@p2:false(ignored)"}},
			{"consumer with an unverified pact", broker.MatrixQuery{Selectors: sel("order", "o2"), Target: env}, "unknown", []string{"order@o2>payment@p1:?", "order@o2>stock@s1:true"}},
			{"consumer already deployed", broker.MatrixQuery{Selectors: sel("order", "o1"), Target: env}, "true", []string{"order@o1>payment@p1:true", "order@o1>stock@s1:true"}},
			{"a version that does not exist", broker.MatrixQuery{Selectors: sel("payment", "nope"), Target: env}, "false", nil},
			{"an environment with nothing deployed", broker.MatrixQuery{Selectors: sel("order", "o1"), Target: broker.Target{Environment: "test"}}, "false", []string{"order@o1>payment@-:?", "order@o1>stock@-:?"}},
			{"two services shipped together", broker.MatrixQuery{Selectors: []broker.Selector{{Pacticipant: "order", Version: "o1"}, {Pacticipant: "payment", Version: "p2"}}, Target: env}, "false",
				[]string{"order@o1>payment@p2:false", "order@o1>stock@s1:true"}},
			{"to a tag", broker.MatrixQuery{Selectors: sel("stock", "s1"), Target: broker.Target{Tag: "prod"}}, "true", []string{"order@o2>stock@s1:true"}},
			{"every version", broker.MatrixQuery{Selectors: sel("payment", "p2"), LatestBy: "cvpv"}, "false", []string{"order@o1>payment@p2:false"}},
			{"latest on a branch", broker.MatrixQuery{Selectors: []broker.Selector{{Pacticipant: "order", Branch: "main"}}, Target: env}, "unknown",
				[]string{"order@o2>payment@p1:?", "order@o2>stock@s1:true"}},
			{"head of the main branch", broker.MatrixQuery{Selectors: []broker.Selector{{Pacticipant: "order", MainBranch: true}}, Target: env}, "unknown",
				[]string{"order@o2>payment@p1:?", "order@o2>stock@s1:true"}},
			{"what runs in an environment", broker.MatrixQuery{Selectors: []broker.Selector{{Pacticipant: "order", Environment: "production"}}, Target: env}, "true",
				[]string{"order@o1>payment@p1:true", "order@o1>stock@s1:true"}},
			{"latest with a tag", broker.MatrixQuery{Selectors: []broker.Selector{{Pacticipant: "order", Latest: true, Tag: "prod"}}, Target: env}, "unknown",
				[]string{"order@o2>payment@p1:?", "order@o2>stock@s1:true"}},
			{"to the latest versions", broker.MatrixQuery{Selectors: sel("order", "o1"), Target: broker.Target{Latest: true}, LatestBy: "cvp"}, "false",
				[]string{"order@o1>payment@p2:false", "order@o1>stock@s1:true"}},
			{"to the main branch heads", broker.MatrixQuery{Selectors: sel("order", "o1"), Target: broker.Target{MainBranch: true}, LatestBy: "cvp"}, "false",
				[]string{"order@o1>payment@p2:false", "order@o1>stock@s1:true"}},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				got, rows := f.summary(tc.q)
				if got != tc.want {
					t.Errorf("deployable = %s, want %s", got, tc.want)
				}
				if diff := cmp.Diff(tc.wantRows, rows); diff != "" {
					t.Errorf("rows (-want +got):\n%s", diff)
				}
			})
		}
	})
}

func TestDeploymentsReplaceEachOther(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, dsn string) {
		f := open(t, dsn)
		f.publish("web", "1", "", nil, map[string][]string{"api": {"a"}})
		f.publish("web", "2", "", nil, map[string][]string{"api": {"a"}})
		f.deploy("web", "1", "production")
		f.deploy("web", "2", "production")
		ds, err := f.s.CurrentDeployments(f.bg, "production", "web")
		if err != nil || len(ds) != 1 || ds[0].Version != "2" {
			t.Fatalf("currently deployed = %+v, %v; want only version 2", ds, err)
		}
		if _, err := f.s.RecordDeployment(f.bg, "web", "9", "production", "", false); !errors.Is(err, broker.ErrNotFound) {
			t.Errorf("deploying an unknown version: %v, want ErrNotFound", err)
		}
		if _, err := f.s.RecordDeployment(f.bg, "web", "1", "mars", "", false); !errors.Is(err, broker.ErrNotFound) {
			t.Errorf("deploying to an unknown environment: %v, want ErrNotFound", err)
		}
		d, err := f.s.EndDeployment(f.bg, ds[0].UUID)
		if err != nil || d.Current {
			t.Fatalf("undeploy: %+v %v", d, err)
		}
		if ds, _ := f.s.CurrentDeployments(f.bg, "production", ""); len(ds) != 0 {
			t.Errorf("after undeploying, %d deployments remain", len(ds))
		}
	})
}

func TestForVerification(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, dsn string) {
		f := open(t, dsn)
		main1 := f.publish("web", "w1", "main", nil, map[string][]string{"api": {"a"}})
		f.deploy("web", "w1", "production")
		main2 := f.publish("web", "w2", "main", []string{"beta"}, map[string][]string{"api": {"a", "b"}})
		feat := f.publish("web", "w3", "feat-x", nil, map[string][]string{"api": {"a", "b", "c"}})
		mob := f.publish("mobile", "m1", "master", nil, map[string][]string{"api": {"m"}})
		f.verify("web", "api", main1[0].SHA, "a1", "main", true)
		f.verify("web", "api", feat[0].SHA, "a2", "feat-x", true) // verified, but not on main
		if _, err := f.s.RecordDeployment(f.bg, "mobile", "m1", "production", "", true); err != nil {
			t.Fatal(err)
		}

		tr := true
		type got struct {
			Consumer, SHA string
			Versions      []string
			Pending, WIP  bool
		}
		run := func(q broker.ForVerificationQuery) []got {
			t.Helper()
			ps, err := f.s.ForVerification(f.bg, "api", q)
			if err != nil {
				t.Fatal(err)
			}
			var out []got
			for _, p := range ps {
				g := got{Consumer: p.Consumer, SHA: p.SHA, Pending: p.Pending, WIP: p.WIP}
				for _, by := range p.SelectedBy {
					g.Versions = append(g.Versions, by.ConsumerVersion)
				}
				out = append(out, g)
			}
			sort.Slice(out, func(i, j int) bool { return out[i].SHA < out[j].SHA })
			return out
		}
		sorted := func(gs ...got) []got {
			sort.Slice(gs, func(i, j int) bool { return gs[i].SHA < gs[j].SHA })
			return gs
		}
		tests := []struct {
			name string
			q    broker.ForVerificationQuery
			want []got
		}{
			{"main branch and deployed, pending on main",
				broker.ForVerificationQuery{Selectors: []broker.ConsumerVersionSelector{{MainBranch: true}, {DeployedOrReleased: true}}, ProviderVersionBranch: "main", IncludePendingStatus: true},
				sorted(got{"web", main2[0].SHA, []string{"w2"}, true, false}, got{"web", main1[0].SHA, []string{"w1"}, false, false}, got{"mobile", mob[0].SHA, []string{"m1", "m1"}, true, false})},
			{"a branch",
				broker.ForVerificationQuery{Selectors: []broker.ConsumerVersionSelector{{Branch: "feat-x"}}, ProviderVersionBranch: "feat-x", IncludePendingStatus: true},
				[]got{{"web", feat[0].SHA, []string{"w3"}, false, false}}},
			{"matching branch",
				broker.ForVerificationQuery{Selectors: []broker.ConsumerVersionSelector{{MatchingBranch: true}}, ProviderVersionBranch: "feat-x"},
				[]got{{"web", feat[0].SHA, []string{"w3"}, false, false}}},
			{"latest tag, one consumer",
				broker.ForVerificationQuery{Selectors: []broker.ConsumerVersionSelector{{Tag: "beta", Latest: &tr, Consumer: "web"}}},
				[]got{{"web", main2[0].SHA, []string{"w2"}, false, false}}},
			{"deployed or released in production",
				broker.ForVerificationQuery{Selectors: []broker.ConsumerVersionSelector{{Environment: "production"}}},
				sorted(got{"web", main1[0].SHA, []string{"w1"}, false, false}, got{"mobile", mob[0].SHA, []string{"m1"}, false, false})},
			{"latest of every consumer",
				broker.ForVerificationQuery{Selectors: []broker.ConsumerVersionSelector{{Latest: &tr}}},
				sorted(got{"web", feat[0].SHA, []string{"w3"}, false, false}, got{"mobile", mob[0].SHA, []string{"m1"}, false, false})},
			{"WIP: feature pacts not yet verified on main",
				broker.ForVerificationQuery{Selectors: []broker.ConsumerVersionSelector{{MainBranch: true}}, ProviderVersionBranch: "main", IncludePendingStatus: true, IncludeWIPPactsSince: time.Now().Add(-time.Hour)},
				sorted(got{"web", main2[0].SHA, []string{"w2"}, true, false}, got{"mobile", mob[0].SHA, []string{"m1"}, true, false}, got{"web", feat[0].SHA, []string{"w3"}, true, true})},
			{"released only",
				broker.ForVerificationQuery{Selectors: []broker.ConsumerVersionSelector{{Released: true}}},
				[]got{{"mobile", mob[0].SHA, []string{"m1"}, false, false}}},
			{"deployed only",
				broker.ForVerificationQuery{Selectors: []broker.ConsumerVersionSelector{{Deployed: true, Environment: "production"}}},
				[]got{{"web", main1[0].SHA, []string{"w1"}, false, false}}},
			{"deployed or released",
				broker.ForVerificationQuery{Selectors: []broker.ConsumerVersionSelector{{DeployedOrReleased: true}}},
				sorted(got{"web", main1[0].SHA, []string{"w1"}, false, false}, got{"mobile", mob[0].SHA, []string{"m1"}, false, false})},
			{"a missing branch falls back",
				broker.ForVerificationQuery{Selectors: []broker.ConsumerVersionSelector{{Branch: "feat-y", FallbackBranch: "main", Consumer: "web"}}},
				[]got{{"web", main2[0].SHA, []string{"w2"}, false, false}}},
			{"latest of every branch",
				broker.ForVerificationQuery{Selectors: []broker.ConsumerVersionSelector{{AllBranches: true, Latest: &tr}}},
				sorted(got{"web", main2[0].SHA, []string{"w2"}, false, false}, got{"web", feat[0].SHA, []string{"w3"}, false, false}, got{"mobile", mob[0].SHA, []string{"m1"}, false, false})},
			{"an unknown consumer selects nothing",
				broker.ForVerificationQuery{Selectors: []broker.ConsumerVersionSelector{{Latest: &tr, Consumer: "ghost"}}},
				nil},
			{"WIP since the future finds nothing more",
				broker.ForVerificationQuery{Selectors: []broker.ConsumerVersionSelector{{MainBranch: true}}, ProviderVersionBranch: "main", IncludeWIPPactsSince: time.Now().Add(time.Hour)},
				sorted(got{"web", main2[0].SHA, []string{"w2"}, false, false}, got{"mobile", mob[0].SHA, []string{"m1"}, false, false})},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				if diff := cmp.Diff(tc.want, run(tc.q)); diff != "" {
					t.Errorf("pacts (-want +got):\n%s", diff)
				}
			})
		}
	})
}

func TestWebhookQueue(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, dsn string) {
		f := open(t, dsn)
		for _, w := range []broker.Webhook{
			{Provider: "api", Events: []string{broker.EventContractPublished, broker.EventProviderVerificationFailed}, Method: "POST", URL: "http://ci/a", Enabled: true},
			{Consumer: "other", Events: []string{broker.EventContractPublished}, Method: "POST", URL: "http://ci/b", Enabled: true},
			{Events: []string{broker.EventContractPublished}, Method: "POST", URL: "http://ci/c", Enabled: false},
		} {
			if _, err := f.s.CreateWebhook(f.bg, w); err != nil {
				t.Fatal(err)
			}
		}
		pcs := f.publish("web", "1", "", nil, map[string][]string{"api": {"a"}})
		f.verify("web", "api", pcs[0].SHA, "a1", "", false)
		// A refused publication queues nothing.
		other := pactDoc("web", "api", "b")
		osha, _ := broker.ContentSHA(other)
		if _, err := f.s.Publish(f.bg, broker.Publication{Pacticipant: "web", Version: "1", Contracts: []broker.Contract{{Consumer: "web", Provider: "api", SHA: osha, Content: other}}}, false); err == nil {
			t.Fatal("conflicting publication accepted")
		}
		// Two claimers at once never take the same delivery.
		var mu sync.Mutex
		seen := map[int64]int{}
		var wg sync.WaitGroup
		for i := 0; i < 4; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ds, err := f.s.ClaimDeliveries(f.bg, time.Now(), time.Minute, 10)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				for _, d := range ds {
					seen[d.ID]++
				}
			}()
		}
		wg.Wait()
		if len(seen) != 2 {
			t.Fatalf("claimed %d deliveries, want 2 (contract_published and provider_verification_failed to webhook a)", len(seen))
		}
		for id, n := range seen {
			if n != 1 {
				t.Errorf("delivery %d claimed %d times", id, n)
			}
			if err := f.s.FinishDelivery(f.bg, id, true, 200, "", time.Now(), false); err != nil {
				t.Fatal(err)
			}
		}
		if ds, _ := f.s.ClaimDeliveries(f.bg, time.Now().Add(2*time.Minute), time.Minute, 10); len(ds) != 0 {
			t.Errorf("delivered deliveries were claimed again: %+v", ds)
		}
	})
}
