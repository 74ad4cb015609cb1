package e2e

import (
	"strings"
	"testing"

	"github.com/flotilla-ci/flotilla/shop/search"
)

// TestCheckShop shows each of the all-services test's checks failing on a
// snapshot with that one thing wrong, and passing on the consistent one.
func TestCheckShop(t *testing.T) {
	good := func() shopSnapshot {
		return shopSnapshot{
			orders: []shopOrder{
				{id: "o1", status: "CONFIRMED", currency: "EUR", total: 1500, items: map[string]int64{"A": 2, "B": 1}},
				{id: "o2", status: "CONFIRMED", currency: "EUR", total: 700, items: map[string]int64{"B": 1}},
				{id: "o3", status: "CANCELLED", currency: "EUR", total: 900, items: map[string]int64{"A": 1}},
			},
			shipments:     map[string][]string{"o1": {"DELIVERED"}, "o2": {"IN_TRANSIT"}},
			confirmations: []confirmation{{id: "n1", orderID: "o1", status: "SENT"}, {id: "n2", orderID: "o2", status: "SENT"}},
			mailFiles:     map[string]bool{"n1.eml": true, "n2.eml": true, "n9.eml": true},
			products:      map[string]catalogProduct{"A": {SKU: "A", Name: "Kettle", Currency: "EUR", Price: 500}, "B": {SKU: "B", Name: "Mug", Currency: "EUR", Price: 700}},
			searchHits: map[string][]search.Hit{
				"A": {{Doc: search.Doc{SKU: "A", Name: "Kettle", Currency: "EUR", Price: 500, Popularity: 2}}},
				"B": {{Doc: search.Doc{SKU: "A", Name: "Kettle", Currency: "EUR", Price: 500, Popularity: 2}}, {Doc: search.Doc{SKU: "B", Name: "Mug", Currency: "EUR", Price: 700, Popularity: 2}}},
			},
			analytics:    analyticsFigures{orders: 2, confirmedOrders: 2, checkouts: 3, gmv: map[string]int64{"EUR": 2200}},
			ordersPlaced: 3,
		}
	}
	c, problems := checkShop(good())
	if len(problems) != 0 {
		t.Fatalf("consistent snapshot: %q", problems)
	}
	// An order placed after its client timed out is no inconsistency.
	late := good()
	late.ordersPlaced, late.orderTimeouts = 2, 1
	if _, problems := checkShop(late); len(problems) != 0 {
		t.Errorf("one of three orders placed after its client timed out: %q", problems)
	}
	if c.confirmed != 2 || c.cancelled != 1 || c.shipments != 2 || c.delivered != 1 || c.confirmations != 2 || c.unitsSold != 4 || c.products != 2 {
		t.Errorf("counts %+v", c)
	}
	for _, tc := range []struct {
		name  string
		spoil func(s *shopSnapshot)
		want  string
	}{
		{"missing shipment", func(s *shopSnapshot) { delete(s.shipments, "o2") }, "confirmed order o2 has no shipment"},
		{"two shipments", func(s *shopSnapshot) { s.shipments["o1"] = append(s.shipments["o1"], "LABEL_CREATED") }, "confirmed order o1 has 2 shipments"},
		{"failed shipment", func(s *shopSnapshot) { s.shipments["o2"] = []string{"FAILED"} }, "confirmed order o2: shipment FAILED"},
		{"cancelled shipment", func(s *shopSnapshot) { s.shipments["o1"] = []string{"CANCELLED"} }, "confirmed order o1: shipment CANCELLED"},
		{"shipment of a cancelled order", func(s *shopSnapshot) { s.shipments["o3"] = []string{"LABEL_CREATED"} }, "CANCELLED order o3 has 1 shipments"},
		{"double notification", func(s *shopSnapshot) {
			s.confirmations = append(s.confirmations, confirmation{id: "n3", orderID: "o1", status: "SENT"})
		}, "confirmed order o1 got 2 confirmation notifications, want 1"},
		{"missing notification", func(s *shopSnapshot) { s.confirmations = s.confirmations[:1] }, "confirmed order o2 got 0 confirmation notifications"},
		{"notification not sent", func(s *shopSnapshot) { s.confirmations[1].status = "DEAD" }, "confirmation of order o2 is DEAD"},
		{"sent but not in the sink", func(s *shopSnapshot) { delete(s.mailFiles, "n2.eml") }, "confirmation n2 of order o2 is SENT but not in the mail sink"},
		{"notification of a cancelled order", func(s *shopSnapshot) {
			s.confirmations = append(s.confirmations, confirmation{id: "n4", orderID: "o3", status: "SENT"})
		}, "CANCELLED order o3 got 1 confirmation notifications"},
		{"product not found", func(s *shopSnapshot) { s.searchHits["B"] = s.searchHits["B"][:1] }, `search for "Mug" does not find B`},
		{"stale price in search", func(s *shopSnapshot) { s.searchHits["A"][0].Price = 450 }, "search has A as \"Kettle\" 450 EUR"},
		{"popularity off", func(s *shopSnapshot) { s.searchHits["A"][0].Popularity = 3 }, "search: A popularity 3; confirmed orders bought 2"},
		{"analytics count off", func(s *shopSnapshot) { s.analytics.orders = 3 }, "analytics counts 3 confirmed orders"},
		{"analytics GMV off", func(s *shopSnapshot) { s.analytics.gmv["EUR"] = 2100 }, "analytics GMV EUR 2100; order-service's confirmed orders 2200"},
		{"analytics checkouts off", func(s *shopSnapshot) { s.analytics.checkouts = 2 }, "analytics counts 2 checkouts; order-service has 3 orders"},
		{"order left pending", func(s *shopSnapshot) { s.orders[2].status = "PENDING" }, "order o3 still PENDING"},
		{"load errors", func(s *shopSnapshot) { s.loadErrors = 4 }, "flotilla load saw 4 errors"},
		{"orders lost", func(s *shopSnapshot) { s.ordersPlaced = 4 }, "flotilla load placed 4 orders; order-service has 3"},
		{"more orders than placed or timed out", func(s *shopSnapshot) { s.ordersPlaced, s.orderTimeouts = 1, 1 }, "flotilla load placed 1 orders and 1 more timed out; order-service has 3"},
		{"orders lost beside timeouts", func(s *shopSnapshot) { s.ordersPlaced, s.orderTimeouts = 4, 2 }, "flotilla load placed 4 orders and 2 more timed out; order-service has 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := good()
			tc.spoil(&s)
			_, problems := checkShop(s)
			found := false
			for _, p := range problems {
				found = found || strings.Contains(p, tc.want)
			}
			if !found {
				t.Errorf("problems %q; want one containing %q", problems, tc.want)
			}
		})
	}
}
