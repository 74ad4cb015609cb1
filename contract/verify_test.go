package contract

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestVerifyMessagesOverHTTP: without Go producers the verifier asks the
// provider for each message as pact's verifier does: POST {description,
// providerStates}, contents in the body, metadata in Pact-Message-Metadata.
func TestVerifyMessagesOverHTTP(t *testing.T) {
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Description    string `json:"description"`
			ProviderStates []struct {
				Name string `json:"name"`
			} `json:"providerStates"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || r.Method != http.MethodPost {
			http.Error(w, "bad request", 400)
			return
		}
		asked = append(asked, req.Description)
		md, _ := json.Marshal(map[string]any{"topic": "orders"})
		w.Header().Set("Pact-Message-Metadata", base64.StdEncoding.EncodeToString(md))
		w.Header().Set("Content-Type", "application/json")
		if req.Description == "an order-created event" {
			_, _ = w.Write([]byte(`{"orderId":5}`))
			return
		}
		_, _ = w.Write([]byte(`{"orderId":"five"}`))
	}))
	defer srv.Close()
	pact := &Pact{Consumer: "mailer", Provider: "order", Interactions: []*Interaction{
		{Kind: AsyncMessage, Description: "an order-created event", Message: Message{
			Contents: JSONBody(map[string]any{"orderId": 1}), Metadata: map[string]any{"topic": "orders"},
			Rules: Rules{"content": {"$.orderId": {Matchers: []Matcher{{"match": "integer"}}}}}}},
		{Kind: AsyncMessage, Description: "an order-cancelled event", Message: Message{
			Contents: JSONBody(map[string]any{"orderId": 1}),
			Rules:    Rules{"content": {"$.orderId": {Matchers: []Matcher{{"match": "integer"}}}}}}},
	}}
	rep, err := (&Verifier{BaseURL: srv.URL, Sources: []Source{staticSource{pact}}}).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, in := range rep.Pacts[0].Interactions {
		got = append(got, in.Description+":"+strings.Join(mismatchPaths(in.Mismatches), ","))
	}
	if diff := cmp.Diff([]string{"an order-created event:", "an order-cancelled event:$.orderId"}, got); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	if len(asked) != 2 {
		t.Fatalf("provider asked %v", asked)
	}
}

type staticSource struct{ p *Pact }

func (s staticSource) Pacts(context.Context) ([]LoadedPact, error) {
	return []LoadedPact{{Pact: s.p, Origin: "static"}}, nil
}

func mismatchPaths(mm []Mismatch) []string {
	var out []string
	for _, m := range mm {
		out = append(out, m.Path)
	}
	return out
}

// TestFileSourceURL: pacts are fetched from URLs; a bad one names the URL.
func TestFileSourceURL(t *testing.T) {
	good, _ := os.ReadFile("testdata/v3.json")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/good":
			_, _ = w.Write(good)
		case "/bad":
			_, _ = w.Write([]byte(`{"consumer":{"name":"c"},"provider":{"name":"p"},"metadata":{"pactSpecification":{"version":"7"}}}`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	ps, err := FileSource{Paths: []string{srv.URL + "/good"}}.Pacts(context.Background())
	if err != nil || len(ps) != 1 || ps[0].Pact.Consumer != "web" || ps[0].Origin != srv.URL+"/good" {
		t.Fatalf("good url: %v %+v", err, ps)
	}
	for path, want := range map[string]string{"/bad": srv.URL + "/bad: metadata.pactSpecification.version", "/missing": "status 404"} {
		_, err := FileSource{Paths: []string{srv.URL + path}}.Pacts(context.Background())
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", path, err, want)
		}
	}
}

// TestStateHandlerMissing: a verifier with state handlers fails an
// interaction whose state has none, naming it.
func TestStateHandlerMissing(t *testing.T) {
	pact := &Pact{Consumer: "c", Provider: "p", Interactions: []*Interaction{{Kind: HTTP, Description: "d",
		States: []ProviderState{{Name: "the moon is full"}}, Request: Request{Method: "GET", Path: "/"}, Response: Response{Status: 200}}}}
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	rep, err := (&Verifier{BaseURL: srv.URL, Sources: []Source{staticSource{pact}}, StateHandlers: map[string]StateHandler{
		"other": func(context.Context, bool, map[string]any) (map[string]any, error) { return nil, nil },
	}}).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if e := rep.Pacts[0].Interactions[0].Error; !strings.Contains(e, `provider state "the moon is full": no state handler`) {
		t.Fatalf("error %q", e)
	}
}

// TestStubStateSelection: when several interactions match, the stub picks
// the one whose provider state the header names, as pact stub's
// --provider-state-header-name does; --provider-state filters.
func TestStubStateSelection(t *testing.T) {
	mk := func(state string, status int) *Interaction {
		return &Interaction{Kind: HTTP, Description: "an order in state " + state, States: []ProviderState{{Name: state}},
			Request: Request{Method: "GET", Path: "/orders/7"}, Response: Response{Status: status}}
	}
	pact := &Pact{Consumer: "web", Provider: "order", Interactions: []*Interaction{mk("an order exists", 200), mk("no orders", 404)}}
	for _, tc := range []struct {
		name   string
		header string
		filter string
		want   int
	}{
		{"first by default", "", "", 200},
		{"header picks the state", "no orders", "", 404},
		{"unknown state falls back", "other", "", 200},
		{"filter", "", "^no", 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewStub([]*Pact{pact})
			s.StateHeader = "X-Pact-State"
			if tc.filter != "" {
				s.State = regexp.MustCompile(tc.filter)
			}
			req := httptest.NewRequest("GET", "/orders/7", nil)
			if tc.header != "" {
				req.Header.Set("X-Pact-State", tc.header)
			}
			w := httptest.NewRecorder()
			s.ServeHTTP(w, req)
			if w.Code != tc.want {
				t.Fatalf("status %d, want %d", w.Code, tc.want)
			}
		})
	}
}

// TestBinaryBodyByContentType: a consumer expects any PNG; the provider
// passes with another PNG and fails with a GIF.
func TestBinaryBodyByContentType(t *testing.T) {
	png := append([]byte("\x89PNG\r\n\x1a\n"), make([]byte, 24)...)
	dir := t.TempDir()
	p := NewConsumerPact(Config{Consumer: "web", Provider: "media", Dir: dir})
	p.AddInteraction().UponReceiving("a thumbnail").WithRequest(Req{Path: "/thumbs/1"}).
		WillRespondWith(Resp{Status: 200, Headers: map[string]any{"Content-Type": "image/png"}, Body: ContentType("image/png", png)})
	p.Run(t, func(base string) error {
		got, err := httpGet(base + "/thumbs/1")
		if err == nil && got != string(png) {
			err = errorf("got %q", got)
		}
		return err
	})
	image := append([]byte("\x89PNG\r\n\x1a\n"), []byte("another image, other bytes")...)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		_, _ = w.Write(image)
	}))
	defer srv.Close()
	v := Verifier{BaseURL: srv.URL, Sources: []Source{FileSource{Paths: []string{dir}}}}
	rep, err := v.Run(context.Background())
	if err != nil || !rep.OK() {
		t.Fatalf("another PNG: %v %+v", err, rep)
	}
	image = []byte("GIF89a not a png at all")
	rep, err = v.Run(context.Background())
	if err != nil || rep.OK() {
		t.Fatalf("a GIF passed: %v %+v", err, rep)
	}
}

func TestNearestInteraction(t *testing.T) {
	p := &Pact{Consumer: "web", Provider: "order", Interactions: []*Interaction{
		{Kind: HTTP, Description: "create", Request: Request{Method: "POST", Path: "/orders", Body: JSONBody(map[string]any{"a": 1, "b": 2, "c": 3})}, Response: Response{Status: 201}},
		{Kind: HTTP, Description: "list", Request: Request{Method: "GET", Path: "/orders"}, Response: Response{Status: 200}},
	}}
	w := httptest.NewRecorder()
	NewStub([]*Pact{p}).ServeHTTP(w, httptest.NewRequest("POST", "/orders", strings.NewReader(`{"x":1,"y":2,"z":3}`)))
	if w.Code != 404 || !strings.Contains(w.Body.String(), `"description":"create"`) {
		t.Fatalf("nearest: %d %s", w.Code, w.Body)
	}
}

func TestStateChangeAsQuery(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/state" {
			got = append(got, r.Method+" "+r.URL.Query().Get("action")+" "+r.URL.Query().Get("state")+" id="+r.URL.Query().Get("id"))
			return
		}
	}))
	defer srv.Close()
	pact := &Pact{Consumer: "c", Provider: "p", Interactions: []*Interaction{{Kind: HTTP, Description: "d",
		States: []ProviderState{{Name: "an order exists", Params: map[string]any{"id": json.Number("7")}}}, Request: Request{Method: "GET", Path: "/"}, Response: Response{Status: 200}}}}
	rep, err := (&Verifier{BaseURL: srv.URL, StateChangeURL: srv.URL + "/state", StateChangeAsQuery: true, Sources: []Source{staticSource{pact}}}).Run(context.Background())
	if err != nil || !rep.OK() {
		t.Fatalf("%v %+v", err, rep)
	}
	if diff := cmp.Diff([]string{"POST setup an order exists id=7", "POST teardown an order exists id=7"}, got); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
}
