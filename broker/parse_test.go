package broker_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/flotilla-ci/flotilla/broker"
)

func TestParseMatrixQuery(t *testing.T) {
	tests := []struct {
		name  string
		query string
		want  broker.MatrixQuery
	}{
		{"pact CLI to an environment", "q%5B%5D%5Bpacticipant%5D=web&q%5B%5D%5Bversion%5D=c0ffee1&latestby=cvpv&environment=production",
			broker.MatrixQuery{Selectors: []broker.Selector{{Pacticipant: "web", Version: "c0ffee1"}}, LatestBy: "cvpv", Target: broker.Target{Environment: "production"}}},
		{"two pacticipants, a repeated key starts a new selector", "q[][pacticipant]=a&q[][version]=1&q[][pacticipant]=b&q[][version]=2&latestby=cvpv",
			broker.MatrixQuery{Selectors: []broker.Selector{{Pacticipant: "a", Version: "1"}, {Pacticipant: "b", Version: "2"}}, LatestBy: "cvpv"}},
		{"to a tag", "q[][pacticipant]=a&q[][version]=1&tag=prod&latestby=cvp&latest=true",
			broker.MatrixQuery{Selectors: []broker.Selector{{Pacticipant: "a", Version: "1"}}, LatestBy: "cvp", Target: broker.Target{Tag: "prod"}}},
		{"latest with tag, ignore", "q[][pacticipant]=a&q[][latest]=true&q[][tag]=main&latestby=cvp&latest=true&ignore[][pacticipant]=x",
			broker.MatrixQuery{Selectors: []broker.Selector{{Pacticipant: "a", Latest: true, Tag: "main"}}, LatestBy: "cvp", Target: broker.Target{Latest: true}, Ignore: []broker.Selector{{Pacticipant: "x"}}}},
		{"branch and main branch (can-i-merge)", "q[][pacticipant]=a&q[][branch]=feat&mainBranch=true&latestby=cvp",
			broker.MatrixQuery{Selectors: []broker.Selector{{Pacticipant: "a", Branch: "feat"}}, LatestBy: "cvp", Target: broker.Target{MainBranch: true}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := broker.ParseMatrixQuery(tc.query)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzParseMatrixQuery(f *testing.F) {
	for _, s := range []string{"q[][pacticipant]=a&q[][version]=1&latestby=cvpv&environment=production", "q[0][pacticipant]=a&ignore[][pacticipant]=b", "%zz", "latest=maybe", "q[][pacticipant]=&q[][x]=1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q, err := broker.ParseMatrixQuery(s)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if len(q.Selectors) == 0 {
			t.Fatalf("%q parsed without selectors", s)
		}
		for _, sel := range q.Selectors {
			if sel.Pacticipant == "" {
				t.Fatalf("%q parsed a selector without a pacticipant", s)
			}
		}
	})
}

func FuzzParsePublication(f *testing.F) {
	good, _ := json.Marshal(publishBody("web", "1", b64(helloPact)))
	f.Add(good)
	f.Add([]byte(`{"pacticipantName":"web","pacticipantVersionNumber":"1","contracts":[{"consumerName":"web","providerName":"api","specification":"pact","contentType":"application/json","content":"e30="}]}`))
	f.Add([]byte(`{"contracts":[{}]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := broker.ParsePublication(body)
		if err != nil {
			var ve broker.ValidationErrors
			if !errors.As(err, &ve) {
				t.Fatalf("error %T is not ValidationErrors", err)
			}
			return
		}
		if p.Pacticipant == "" || p.Version == "" || len(p.Contracts) == 0 {
			t.Fatalf("accepted an incomplete publication: %+v", p)
		}
		for _, c := range p.Contracts {
			if c.Consumer != p.Pacticipant || len(c.SHA) != 40 {
				t.Fatalf("accepted contract %+v", c)
			}
			sha, err := broker.ContentSHA(c.Content)
			if err != nil || sha != c.SHA {
				t.Fatalf("content address not stable: %s vs %s (%v)", sha, c.SHA, err)
			}
		}
	})
}

func FuzzParseForVerification(f *testing.F) {
	f.Add([]byte(`{"consumerVersionSelectors":[{"mainBranch":true},{"deployedOrReleased":true}],"providerVersionBranch":"main","includePendingStatus":true,"includeWipPactsSince":"2024-01-01"}`))
	f.Add([]byte(`{"consumerVersionSelectors":[{"branch":true,"latest":true},{"tag":"prod","latest":true,"consumer":"web"}]}`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, body []byte) {
		q, err := broker.ParseForVerification(body)
		if err != nil {
			return
		}
		for _, s := range q.Selectors {
			if s.MatchingBranch && q.ProviderVersionBranch == "" {
				t.Fatalf("matchingBranch accepted without a provider branch")
			}
		}
	})
}

func TestContentSHAIgnoresMetadataAndOrder(t *testing.T) {
	a := `{"consumer":{"name":"c"},"provider":{"name":"p"},"interactions":[{"description":"x","_id":"old"},{"description":"y"}],"metadata":{"pactSpecification":{"version":"2.0.0"}}}`
	b := `{"metadata":{"pactSpecification":{"version":"2.0.0"},"client":{"name":"other"}},"interactions":[{"description":"y"},{"description":"x"}],"provider":{"name":"p"},"consumer":{"name":"c"}}`
	c := `{"consumer":{"name":"c"},"provider":{"name":"p"},"interactions":[{"description":"y"},{"description":"z"}],"metadata":{"pactSpecification":{"version":"2.0.0"}}}`
	sa, _ := broker.ContentSHA([]byte(a))
	sb, _ := broker.ContentSHA([]byte(b))
	sc, _ := broker.ContentSHA([]byte(c))
	if sa != sb || sa == sc {
		t.Errorf("SHA(a)=%s SHA(b)=%s SHA(c)=%s: want a==b!=c", sa, sb, sc)
	}
	if _, err := broker.ContentSHA([]byte("[1]")); err == nil {
		t.Errorf("a JSON array has a content address")
	}
}
