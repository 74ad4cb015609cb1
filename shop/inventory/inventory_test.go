package inventory

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
	"github.com/flotilla-ci/flotilla/shop/product/producttest"
	"github.com/flotilla-ci/flotilla/shop/user/usertest"
)

func stock(t *testing.T, m *Main, sku string) Stock {
	t.Helper()
	s, err := loadStock(context.Background(), m.app.DB, sku)
	if err != nil {
		t.Fatal(err)
	}
	if s.Available+s.Reserved+s.Committed != s.Received {
		t.Fatalf("%s: %d available + %d reserved + %d committed != %d received", sku, s.Available, s.Reserved, s.Committed, s.Received)
	}
	return s
}

func TestInventoryService(t *testing.T) {
	kittest.Each(t, func(t *testing.T, env kittest.Env) {
		users, custTok, adminTok := usertest.StartForTest(t, env)
		products := producttest.Start(t, env, users.URL(), 5)
		cfg := env.Config(t, Service)
		cfg.Deps["product"] = products.URL()
		m := &Main{Config: Config{Kit: cfg, Users: users.URL(), SweepInterval: time.Hour}}
		if err := m.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = m.Close() }()
		url := m.URL()
		otherTok := usertest.Token(t, users.URL(), "other@shop.test")

		for sku, n := range map[string]int{"SKU-0001": 50, "SKU-0002": 10} {
			if r := kittest.Call(t, "POST", url+"/stock/"+sku, adminTok, map[string]int{"add": n}); r.Status != 200 {
				t.Fatalf("receive %s: %d %s", sku, r.Status, r.Body)
			}
		}

		t.Run("bad input writes nothing", func(t *testing.T) {
			for _, tc := range []struct {
				name   string
				tok    string
				path   string
				body   any
				status int
				code   string
			}{
				{"receive as customer", custTok, "/stock/SKU-0001", map[string]int{"add": 5}, 403, "forbidden"},
				{"receive unknown sku", adminTok, "/stock/NOPE-1", map[string]int{"add": 5}, 422, "unknown_sku"},
				{"receive negative", adminTok, "/stock/SKU-0001", map[string]int{"add": -5}, 400, "bad_request"},
				{"negative quantity", custTok, "/reservations", ReserveRequest{OrderID: "o-bad", Items: []Line{{"SKU-0001", -1}}}, 400, "bad_request"},
				{"zero quantity", custTok, "/reservations", ReserveRequest{OrderID: "o-bad", Items: []Line{{"SKU-0001", 0}}}, 400, "bad_request"},
				{"no items", custTok, "/reservations", ReserveRequest{OrderID: "o-bad"}, 400, "bad_request"},
				{"no order", custTok, "/reservations", ReserveRequest{Items: []Line{{"SKU-0001", 1}}}, 400, "bad_request"},
				{"unknown sku", custTok, "/reservations", ReserveRequest{OrderID: "o-bad", Items: []Line{{"SKU-0001", 1}, {"NOPE-1", 1}}}, 422, "unknown_sku"},
				{"too many", custTok, "/reservations", ReserveRequest{OrderID: "o-bad", Items: []Line{{"SKU-0001", 1}, {"SKU-0002", 11}}}, 409, "out_of_stock"},
				{"no stock row", custTok, "/reservations", ReserveRequest{OrderID: "o-bad", Items: []Line{{"SKU-0003", 1}}}, 409, "out_of_stock"},
				{"no service identity", "", "/reservations", ReserveRequest{OrderID: "o-bad", Items: []Line{{"SKU-0001", 1}}}, 403, "internal_endpoint"},
				{"malformed", custTok, "/reservations", `{"orderId": 5}`, 400, "bad_request"},
			} {
				var as []string // the saga's steps are order-service's; a call without its identity is refused
				if tc.tok != "" {
					as = kittest.AsService(t, "order-service", tc.tok)
				}
				r := kittest.Call(t, "POST", url+tc.path, tc.tok, tc.body, as...)
				if r.Status != tc.status || r.ErrorCode() != tc.code {
					t.Errorf("%s: %d %s, want %d %s", tc.name, r.Status, r.Body, tc.status, tc.code)
				}
			}
			if s := stock(t, m, "SKU-0001"); s.Available != 50 || s.Received != 50 {
				t.Errorf("SKU-0001 after bad requests: %+v", s)
			}
			if s := stock(t, m, "SKU-0002"); s.Available != 10 {
				t.Errorf("SKU-0002 partially reserved by a failed request: %+v", s)
			}
		})

		t.Run("never oversells under concurrency", func(t *testing.T) {
			var wg sync.WaitGroup
			var mu sync.Mutex
			ok, out := 0, 0
			for i := 0; i < 40; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := kittest.Call(t, "POST", url+"/reservations", custTok, ReserveRequest{OrderID: fmt.Sprintf("race-%d", i), Items: []Line{{"SKU-0001", 3}}}, kittest.AsService(t, "order-service", custTok)...)
					mu.Lock()
					defer mu.Unlock()
					switch {
					case r.Status == 201:
						ok++
					case r.Status == 409 && r.ErrorCode() == "out_of_stock":
						out++
					default:
						t.Errorf("reserve: %d %s", r.Status, r.Body)
					}
				}()
			}
			wg.Wait()
			s := stock(t, m, "SKU-0001")
			if ok != 16 || out != 24 || s.Available != 2 || s.Reserved != 48 {
				t.Errorf("%d reserved, %d out of stock; stock %+v; want 16, 24 and 2 available", ok, out, s)
			}
		})

		t.Run("commit, release, idempotency, ownership", func(t *testing.T) {
			r := kittest.Call(t, "POST", url+"/reservations", custTok, ReserveRequest{OrderID: "o-1", Items: []Line{{"SKU-0002", 4}}}, kittest.AsService(t, "order-service", custTok)...)
			var res Reservation
			r.JSON(t, &res)
			if r.Status != 201 || res.Status != Reserved {
				t.Fatalf("reserve: %d %s", r.Status, r.Body)
			}
			// The same order again: the same reservation, no more stock taken.
			var again Reservation
			r = kittest.Call(t, "POST", url+"/reservations", custTok, ReserveRequest{OrderID: "o-1", Items: []Line{{"SKU-0002", 4}}}, kittest.AsService(t, "order-service", custTok)...)
			r.JSON(t, &again)
			if r.Status != 200 || again.ID != res.ID || stock(t, m, "SKU-0002").Available != 6 {
				t.Errorf("repeat reserve: %d %+v", r.Status, again)
			}
			if r := kittest.Call(t, "POST", url+"/reservations/"+res.ID+"/release", otherTok, nil); r.Status != 403 {
				t.Errorf("another user's release: %d", r.Status)
			}
			if r := kittest.Call(t, "GET", url+"/reservations?orderId=o-1", otherTok, nil); r.Status != 403 {
				t.Errorf("another user's read: %d", r.Status)
			}
			for i := 0; i < 2; i++ {
				if r := kittest.Call(t, "POST", url+"/reservations/"+res.ID+"/commit", custTok, nil, kittest.AsService(t, "order-service", custTok)...); r.Status != 200 {
					t.Errorf("commit #%d: %d %s", i+1, r.Status, r.Body)
				}
			}
			if s := stock(t, m, "SKU-0002"); s.Committed != 4 || s.Reserved != 0 || s.Available != 6 {
				t.Errorf("after commit: %+v", s)
			}
			if r := kittest.Call(t, "POST", url+"/reservations/"+res.ID+"/release", custTok, nil, kittest.AsService(t, "order-service", custTok)...); r.Status != 409 {
				t.Errorf("release after commit: %d", r.Status)
			}
			r = kittest.Call(t, "POST", url+"/reservations", custTok, ReserveRequest{OrderID: "o-2", Items: []Line{{"SKU-0002", 6}}}, kittest.AsService(t, "order-service", custTok)...)
			r.JSON(t, &res)
			for i := 0; i < 2; i++ {
				if r := kittest.Call(t, "POST", url+"/reservations/"+res.ID+"/release", custTok, nil, kittest.AsService(t, "order-service", custTok)...); r.Status != 200 {
					t.Errorf("release #%d: %d %s", i+1, r.Status, r.Body)
				}
			}
			if r := kittest.Call(t, "POST", url+"/reservations/"+res.ID+"/commit", custTok, nil, kittest.AsService(t, "order-service", custTok)...); r.Status != 409 || !strings.Contains(string(r.Body), "released") {
				t.Errorf("commit after release: %d %s", r.Status, r.Body)
			}
			if s := stock(t, m, "SKU-0002"); s.Available != 6 || s.Reserved != 0 {
				t.Errorf("after release: %+v", s)
			}
		})

		t.Run("return sold stock after a failed shipment", func(t *testing.T) {
			before := stock(t, m, "SKU-0002")
			var res Reservation
			kittest.Call(t, "POST", url+"/reservations", custTok, ReserveRequest{OrderID: "o-3", Items: []Line{{"SKU-0002", 2}}}, kittest.AsService(t, "order-service", custTok)...).JSON(t, &res)
			if r := kittest.Call(t, "POST", url+"/reservations/"+res.ID+"/return", custTok, nil, kittest.AsService(t, "order-service", custTok)...); r.Status != 409 || r.ErrorCode() != "reservation_open" {
				t.Errorf("return before commit: %d %s", r.Status, r.Body)
			}
			kittest.Call(t, "POST", url+"/reservations/"+res.ID+"/commit", custTok, nil, kittest.AsService(t, "order-service", custTok)...)
			if r := kittest.Call(t, "POST", url+"/reservations/"+res.ID+"/return", otherTok, nil); r.Status != 403 {
				t.Errorf("another user's return: %d", r.Status)
			}
			for i := 0; i < 2; i++ {
				r := kittest.Call(t, "POST", url+"/reservations/"+res.ID+"/return", custTok, nil, kittest.AsService(t, "order-service", custTok)...)
				var got Reservation
				r.JSON(t, &got)
				if r.Status != 200 || got.Status != Returned {
					t.Errorf("return #%d: %d %s", i+1, r.Status, r.Body)
				}
			}
			if s := stock(t, m, "SKU-0002"); s != before {
				t.Errorf("after return %+v, want %+v again", s, before)
			}
		})

		t.Run("sweeper releases expired reservations", func(t *testing.T) {
			before := stock(t, m, "SKU-0001")
			n, err := m.Sweep(context.Background(), time.Now().Add(time.Hour))
			if err != nil || n != 16 {
				t.Fatalf("swept %d, %v; want the 16 open reservations", n, err)
			}
			s := stock(t, m, "SKU-0001")
			if s.Reserved != 0 || s.Available != before.Available+48 {
				t.Errorf("after sweep: %+v", s)
			}
			if n, _ := m.Sweep(context.Background(), time.Now().Add(time.Hour)); n != 0 {
				t.Errorf("second sweep released %d", n)
			}
		})
	})
}
