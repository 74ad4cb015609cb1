package client_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/flotilla-ci/flotilla/broker"
	"github.com/flotilla-ci/flotilla/broker/client"
)

// The client encodes matrix queries the way the Pact CLI does, and the
// broker's parser reads them back unchanged.
func TestMatrixQueryRoundTrip(t *testing.T) {
	tests := []broker.MatrixQuery{
		{Selectors: []broker.Selector{{Pacticipant: "payment service", Version: "v2+build/7"}}, LatestBy: "cvpv", Target: broker.Target{Environment: "production"}},
		{Selectors: []broker.Selector{{Pacticipant: "a", Version: "1"}, {Pacticipant: "b", Version: "2"}}, LatestBy: "cvpv", Target: broker.Target{Environment: "test"},
			Ignore: []broker.Selector{{Pacticipant: "c"}}},
		{Selectors: []broker.Selector{{Pacticipant: "a", Latest: true, Tag: "main"}}, LatestBy: "cvp", Target: broker.Target{Tag: "prod"}},
		{Selectors: []broker.Selector{{Pacticipant: "a", Branch: "feat"}}, LatestBy: "cvp", Target: broker.Target{MainBranch: true}},
	}
	for _, q := range tests {
		got, err := broker.ParseMatrixQuery(client.MatrixQueryString(q))
		if err != nil {
			t.Fatalf("%s: %v", client.MatrixQueryString(q), err)
		}
		if diff := cmp.Diff(q, got); diff != "" {
			t.Errorf("%s (-sent +parsed):\n%s", client.MatrixQueryString(q), diff)
		}
	}
}

func TestErrorsCarryTheBrokersMessages(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusConflict)
		_, _ = w.Write([]byte(`{"errors":{"content":["a different pact was published for 1"]},"notices":[{"type":"error","text":"cannot overwrite"}]}`))
	}))
	defer hs.Close()
	c, err := client.New(hs.URL, client.WithToken("t"))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Send(context.Background(), http.MethodPost, "/contracts/publish", map[string]any{}, nil)
	for _, want := range []string{"409", "content: a different pact was published for 1", "cannot overwrite"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
	if _, err := client.New("127.0.0.1:7292"); err == nil {
		t.Error("a URL without a scheme was accepted")
	}
}
