package kit_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/bus"
	"github.com/flotilla-ci/flotilla/internal/sqldb"
	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
)

func TestAppHealthReadyAndDrain(t *testing.T) {
	kittest.Each(t, func(t *testing.T, env kittest.Env) {
		cfg := env.Config(t, "demo-service")
		app, err := kit.Start(context.Background(), cfg, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		started := make(chan struct{})
		app.Mux.Handle("GET /slow", kit.Handle(func(w http.ResponseWriter, r *http.Request) error {
			close(started)
			time.Sleep(300 * time.Millisecond)
			kit.WriteJSON(w, 200, map[string]string{"done": "yes"})
			return nil
		}))
		app.Mux.Handle("GET /boom", kit.Handle(func(w http.ResponseWriter, r *http.Request) error { panic("boom") }))
		app.Serve()
		for _, path := range []string{"/health", "/ready"} {
			resp, err := http.Get(app.URL() + path)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("%s: %v %v", path, resp, err)
			}
			_ = resp.Body.Close()
		}
		resp, err := http.Get(app.URL() + "/boom")
		if err != nil {
			t.Fatal(err)
		}
		var e kit.Problem
		_ = json.NewDecoder(resp.Body).Decode(&e)
		_ = resp.Body.Close()
		if resp.StatusCode != 500 || e.Code != "internal" || resp.Header.Get("Content-Type") != kit.ProblemContentType {
			t.Errorf("panic → %d %+v, want 500 internal", resp.StatusCode, e)
		}
		// An in-flight request finishes during Close.
		done := make(chan string, 1)
		go func() {
			resp, err := http.Get(app.URL() + "/slow")
			if err != nil {
				done <- err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			done <- string(b)
		}()
		<-started
		if err := app.Close(); err != nil {
			t.Fatal(err)
		}
		if got := <-done; got != "{\"done\":\"yes\"}\n" {
			t.Errorf("in-flight request during drain got %q", got)
		}
		if resp, err := http.Get(app.URL() + "/health"); err == nil {
			_ = resp.Body.Close()
			t.Error("still accepting after Close")
		}
	})
}

func TestStartReportsBadBusURL(t *testing.T) {
	cfg := kit.DefaultConfig("x")
	cfg.DatabaseURL = t.TempDir() + "/x.db"
	cfg.BusURL = "kafka://localhost:9092"
	_, err := kit.Start(context.Background(), cfg, nil, nil)
	if err == nil || err.Error() != `start x: BUS_URL "kafka://localhost:9092": unsupported scheme "kafka"; want nats://host:port` {
		t.Errorf("err = %v", err)
	}
}

// A service's consumer applies each event once, dead-letters a poison one
// with the reason, and keeps going.
func TestAppConsumeDeadLettersPoison(t *testing.T) {
	kittest.Each(t, func(t *testing.T, env kittest.Env) {
		ctx := context.Background()
		cfg := env.Config(t, "reader-service")
		cfg.Faults.Duplicate = true // no broker dedup: the duplicate reaches the consumer
		app, err := kit.Start(ctx, cfg, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = app.Close() }()
		if err := app.Codec.Add(ctx, "OrderCreated", v1); err != nil {
			t.Fatal(err)
		}
		if _, err := app.DB.ExecContext(ctx, `CREATE TABLE seen (order_id TEXT NOT NULL)`); err != nil {
			t.Fatal(err)
		}
		err = app.Consume(ctx, "OrderCreated", func(ctx context.Context, tx *sqldb.Tx, m bus.Message) error {
			var o orderV1
			if err := app.Codec.Decode(ctx, m.Topic, m.Payload, &o); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO seen (order_id) VALUES ($1)`, o.OrderID)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		dead := make(chan bus.Message, 4)
		if _, err := app.Bus.Subscribe(ctx, bus.Subscription{Topic: bus.DeadLetterTopic("OrderCreated", "reader-service"), Group: "ops",
			Handler: func(_ context.Context, m bus.Message) error { dead <- m; return nil }}); err != nil {
			t.Fatal(err)
		}
		app.Serve()
		good, err := app.Codec.Message(ctx, "OrderCreated", "o-1", orderV1{"o-1", 5})
		if err != nil {
			t.Fatal(err)
		}
		poison := bus.Message{Topic: "OrderCreated", Key: "o-1", Payload: []byte("{not avro}"), Headers: map[string]string{bus.HeaderEventID: "poison-1"}}
		after, _ := app.Codec.Message(ctx, "OrderCreated", "o-1", orderV1{"o-2", 7})
		if err := app.Bus.Publish(ctx, good, good, poison, after); err != nil {
			t.Fatal(err)
		}
		select {
		case d := <-dead:
			if d.ID() != "poison-1" || !strings.Contains(d.Headers[bus.HeaderDeadLetterReason], "undecodable") || d.Headers[bus.HeaderDeliveries] != "1" {
				t.Errorf("dead letter %v", d.Headers)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("poison event not dead-lettered")
		}
		// A sentinel on the same key comes after everything above (same
		// key, same topic: in order): once it is applied, a late duplicate
		// of o-1 would have been too.
		sentinel, _ := app.Codec.Message(ctx, "OrderCreated", "o-1", orderV1{"o-sentinel", 1})
		if err := app.Bus.Publish(ctx, sentinel); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			var done int
			if err := app.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM seen WHERE order_id = 'o-sentinel'`).Scan(&done); err != nil {
				t.Fatal(err)
			}
			if done > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the sentinel event was not applied in 30s")
			}
			time.Sleep(20 * time.Millisecond)
		}
		var n int
		if err := app.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM seen WHERE order_id <> 'o-sentinel'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 2 {
			t.Errorf("%d effects; want 2 (o-1 once despite the duplicate, then o-2 after the poison)", n)
		}
	})
}

// Readiness follows the database and the bus.
func TestReadyFailsWhenTheBusIsGone(t *testing.T) {
	env := kittest.SQLiteEnv(t)
	app, err := kit.Start(context.Background(), env.Config(t, "ready-service"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = app.Close() }()
	app.Serve()
	if r := kittest.Call(t, "GET", app.URL()+"/ready", "", nil); r.Status != 200 {
		t.Fatalf("ready: %d %s", r.Status, r.Body)
	}
	_ = app.Bus.Close()
	r := kittest.Call(t, "GET", app.URL()+"/ready", "", nil)
	if r.Status != 503 || r.ErrorCode() != "not_ready" || !strings.Contains(string(r.Body), "bus unreachable") {
		t.Errorf("ready without a bus: %d %s", r.Status, r.Body)
	}
	if r := kittest.Call(t, "GET", app.URL()+"/health", "", nil); r.Status != 200 {
		t.Errorf("health (liveness) without a bus: %d, want 200", r.Status)
	}
}
