package broker_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/broker"
)

type receiver struct {
	mu     sync.Mutex
	bodies []string
	fail   int // answer 500 to this many requests first
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.fail > 0 {
		rc.fail--
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	rc.bodies = append(rc.bodies, r.Header.Get("X-Event")+" "+string(b))
}

func (rc *receiver) got() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]string(nil), rc.bodies...)
}

// TestWebhooks: a webhook on contract_requiring_verification_published is
// delivered (with its variables filled in) once per new pact content,
// retried while the receiver fails, and recorded.
func TestWebhooks(t *testing.T) {
	url, store := newBroker(t, broker.DefaultConfig())
	rc := &receiver{fail: 1}
	hook := httptest.NewServer(rc)
	defer hook.Close()
	r := call(t, "POST", url+"/webhooks", "", map[string]any{
		"description": "verify api when a pact needs it",
		"provider":    map[string]any{"name": "api"},
		"events":      []any{map[string]any{"name": "contract_requiring_verification_published"}},
		"request": map[string]any{"method": "POST", "url": hook.URL + "/build?pact=${pactbroker.pactUrl}",
			"headers": map[string]any{"X-Event": "${pactbroker.eventName}"},
			"body":    map[string]any{"pact": "${pactbroker.pactUrl}", "consumer": "${pactbroker.consumerName}", "version": "${pactbroker.consumerVersionNumber}"}},
	})
	if r.status != 201 {
		t.Fatalf("create webhook: %d %s", r.status, r.raw)
	}
	id := r.body["uuid"].(string)
	for _, v := range []string{"1", "2"} { // the same content twice: one delivery
		if r := call(t, "POST", url+"/contracts/publish", "", publishBody("web", v, b64(helloPact))); r.status != 200 {
			t.Fatal(r.raw)
		}
	}
	d := &broker.Deliverer{Queue: store, BaseURL: url}
	ctx := context.Background()
	if err := d.DeliverDue(ctx); err != nil {
		t.Fatal(err)
	}
	if got := rc.got(); len(got) != 0 {
		t.Fatalf("the first attempt should have failed, got %v", got)
	}
	time.Sleep(1100 * time.Millisecond) // the first retry is after 1s
	if err := d.DeliverDue(ctx); err != nil {
		t.Fatal(err)
	}
	got := rc.got()
	if len(got) != 1 {
		t.Fatalf("deliveries: %v, want one", got)
	}
	event, body, _ := strings.Cut(got[0], " ")
	var payload map[string]string
	_ = json.Unmarshal([]byte(body), &payload)
	if event != "contract_requiring_verification_published" || payload["consumer"] != "web" || payload["version"] != "1" ||
		!strings.HasPrefix(payload["pact"], url+"/pacts/provider/api/consumer/web/pact-version/") {
		t.Errorf("delivered %s %v", event, payload)
	}
	list := call(t, "GET", url+"/webhooks/"+id+"/deliveries", "", nil)
	ds := list.body["deliveries"].([]any)
	if len(ds) != 1 || ds[0].(map[string]any)["status"] != "succeeded" || ds[0].(map[string]any)["attempts"].(float64) != 2 {
		t.Errorf("deliveries record: %s", list.raw)
	}
	req, _ := http.NewRequest("DELETE", url+"/webhooks/"+id, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("delete webhook: %v %v", resp, err)
	}
	_ = resp.Body.Close()
	if ws, _ := store.Webhooks(ctx); len(ws) != 0 {
		t.Errorf("after delete: %+v", ws)
	}
}

func TestWebhookBadInput(t *testing.T) {
	url, store := newBroker(t, broker.DefaultConfig())
	for _, tc := range []struct {
		body any
		want string
	}{
		{map[string]any{"events": []any{map[string]any{"name": "contract_published"}}, "request": map[string]any{"method": "POST", "url": "ftp://x"}}, "request.url"},
		{map[string]any{"events": []any{map[string]any{"name": "whenever"}}, "request": map[string]any{"method": "POST", "url": "http://x"}}, "events[0].name"},
		{map[string]any{"events": []any{}, "request": map[string]any{"method": "FETCH", "url": "http://x"}}, "request.method"},
	} {
		if r := call(t, "POST", url+"/webhooks", "", tc.body); r.status != 400 || !strings.Contains(r.raw, tc.want) {
			t.Errorf("%v: %d %s", tc.body, r.status, r.raw)
		}
	}
	if ws, _ := store.Webhooks(context.Background()); len(ws) != 0 {
		t.Errorf("refused webhooks were stored: %+v", ws)
	}
	cfg := broker.DefaultConfig()
	cfg.WebhookHosts = []string{"ci.example.com", "*.builds.example.com"}
	url, _ = newBroker(t, cfg)
	for host, want := range map[string]int{"ci.example.com": 201, "x.builds.example.com": 201, "169.254.169.254": 400, "evil.com": 400} {
		r := call(t, "POST", url+"/webhooks", "", map[string]any{"events": []any{map[string]any{"name": "contract_published"}},
			"request": map[string]any{"method": "POST", "url": "http://" + host + "/hook"}})
		if r.status != want {
			t.Errorf("webhook to %s: %d %s, want %d", host, r.status, r.raw, want)
		}
	}
}

func FuzzParseWebhook(f *testing.F) {
	f.Add([]byte(`{"events":[{"name":"contract_published"}],"request":{"method":"POST","url":"http://ci/${pactbroker.pactUrl}","body":{"a":1}}}`))
	f.Add([]byte(`{"request":{}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		w, err := broker.ParseWebhook(b)
		if err == nil && (len(w.Events) == 0 || w.URL == "" || w.Method == "") {
			t.Fatalf("accepted an incomplete webhook: %+v", w)
		}
	})
}
