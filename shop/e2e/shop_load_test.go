package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/internal/sqldb"
	"github.com/flotilla-ci/flotilla/registry"
	"github.com/flotilla-ci/flotilla/registry/sqlstore"
	"github.com/flotilla-ci/flotilla/shop/analytics"
	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
	"github.com/flotilla-ci/flotilla/shop/load"
	"github.com/flotilla-ci/flotilla/shop/notification"
	"github.com/flotilla-ci/flotilla/shop/search"
	"github.com/flotilla-ci/flotilla/shop/search/bleveindex"
	"github.com/flotilla-ci/flotilla/shop/shipping"
	"github.com/flotilla-ci/flotilla/shop/shoptest"
)

var (
	e2eRate     = flag.Float64("e2e.rate", 50, "requests/s the all-services test offers, open loop")
	e2eDuration = flag.Duration("e2e.duration", 10*time.Second, "how long the all-services test's load runs (the soak: 5m)")
	e2eSettle   = flag.Duration("e2e.settle", 90*time.Second, "how long the all-services test waits for every event to be handled")
)

// shopMix is the all-services test's flows: every one of flotilla load's,
// with checkouts a sixth of the flows, so every check sees many orders.
var shopMix = map[string]int{load.Browse: 4, load.Search: 3, load.AddToCart: 1, load.Checkout: 2, load.Track: 1}

// namedProducts are created through product-service's API (so search
// learns them from ProductCreated), beside the seeded demo catalog.
var namedProducts = []struct{ sku, name, category string }{
	{"KET-ENAMEL", "Enamel Kettle", "kitchen"}, {"MUG-STONE", "Stoneware Mug", "kitchen"},
	{"LAMP-ARC", "Brass Arc Lamp", "home"}, {"RUG-WOOL", "Woollen Runner Rug", "home"},
	{"PEN-FOUNT", "Fountain Pen", "office"}, {"BAG-CANVAS", "Canvas Tote Bag", "fashion"},
	{"SOCK-MERINO", "Merino Hiking Socks", "fashion"}, {"TENT-DOME", "Two Person Dome Tent", "outdoor"},
}

// TestAllServices runs the ten services of the shop together (in this
// process, on SQLite, one embedded NATS JetStream server and the schema
// registry), places orders with flotilla load's generator at a fixed
// request rate, waits for every event to be handled, then checks the
// services against each other: every confirmed order has one shipment and
// one confirmation mail, search finds every product with its price and
// the units sold, analytics' totals are order-service's, and the load saw
// no errors. The five-minute soak of issue 7 is the same test:
//
//	go test ./shop/e2e -run AllServices -v -e2e.rate 100 -e2e.duration 5m -timeout 15m
func TestAllServices(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the all-services test runs the whole shop under load")
	}
	ctx := context.Background()
	env := kittest.SQLiteEnv(t)
	regURL := startRegistry(t)
	conf := func(service string, c *kit.Config) { c.RegistryURL = regURL }
	shop := shoptest.Start(t, env, shoptest.Options{Products: 40, Configure: conf})
	kc := func(service string) kit.Config {
		c := env.Config(t, service)
		conf(service, &c)
		return c
	}
	start := func(name string, m interface {
		Start(context.Context) error
		Close() error
	}) {
		if err := m.Start(ctx); err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		t.Cleanup(func() { _ = m.Close() })
	}
	sc := kc(shipping.Service)
	sc.Deps["order"], sc.Deps["user"] = shop.Order.URL(), shop.User.URL()
	ship := &shipping.Main{Config: shipping.Config{Kit: sc,
		LabelAfter: 500 * time.Millisecond, DeliverAfter: time.Second}}
	start(shipping.Service, ship)
	mailDir := t.TempDir()
	notify := &notification.Main{Config: notification.Config{Kit: kc(notification.Service), Users: shop.User.URL(), DataDir: mailDir}}
	start(notification.Service, notify)
	qc := kc(search.Service)
	qc.Deps["product"] = shop.Product.URL()
	indexDir := filepath.Join(t.TempDir(), "index")
	srch := &search.Main{Config: search.Config{Kit: qc,
		Open:  func() (search.Index, error) { return bleveindex.Open(indexDir) },
		Reset: func() error { return bleveindex.Reset(indexDir) }}}
	start(search.Service, srch)
	stats := &analytics.Main{Config: analytics.Config{Kit: kc(analytics.Service)}}
	start(analytics.Service, stats)

	for _, p := range namedProducts {
		r := kittest.Call(t, "POST", shop.Product.URL()+"/products", shop.AdminToken, map[string]any{"sku": p.sku, "name": p.name,
			"description": "A " + strings.ToLower(p.name) + " for the all-services test.", "category": p.category, "price": 1000 + int64(len(p.name))*37, "currency": "EUR"})
		if r.Status != 201 && r.Status != 200 {
			t.Fatalf("create %s: %d %s", p.sku, r.Status, r.Body)
		}
		if r := kittest.Call(t, "POST", shop.Inventory.URL()+"/stock/"+p.sku, shop.AdminToken, map[string]int{"add": 1_000_000}); r.Status != 200 {
			t.Fatalf("stock %s: %d %s", p.sku, r.Status, r.Body)
		}
	}
	shop.Stock(t, 40, 1_000_000)

	c := load.DefaultConfig()
	c.Targets = load.Targets{User: shop.User.URL(), Product: shop.Product.URL(), Cart: shop.Cart.URL(), Order: shop.Order.URL(), Shipping: ship.URL(), Search: srch.URL()}
	c.Mode, c.Users, c.Flows, c.Seed = load.Open, 0, shopMix, 20261126
	c.RequestRate = *e2eRate
	c.Duration = load.Duration(*e2eDuration)
	t.Logf("all services: offering %.0f requests/s (about %.1f flows/s at %.2f requests a flow) for %s", *e2eRate, c.FlowRate(), c.RequestsPerFlow(), *e2eDuration)
	var progress io.Writer // a line a second, for the soak run with -v
	if testing.Verbose() && *e2eDuration >= time.Minute {
		progress = os.Stderr
	}
	sum, err := load.Run(ctx, c, progress)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	sum.Write(&out)
	t.Logf("flotilla load:\n%s", out.String())
	// Timeouts are the machine's load, not a wrong answer: they are
	// reported, and the checks below allow for orders placed after the
	// client gave up; every other error fails the test.
	orderTimeouts := 0
	for _, r := range sum.Routes {
		if r.Route == "POST /orders" {
			orderTimeouts = r.Timeouts
		}
	}
	loadAvg := readLoadAvg()

	// A price change after the load: search must show the new price.
	repriced := namedProducts[0].sku
	if r := kittest.Call(t, "PUT", shop.Product.URL()+"/products/"+repriced+"/price", shop.AdminToken, map[string]any{"price": 4242, "currency": "EUR"}); r.Status != 200 {
		t.Fatalf("reprice %s: %d %s", repriced, r.Status, r.Body)
	}

	// Wait for the events to settle: the checks pass, or the deadline
	// passes and the last snapshot's problems are the failures.
	settleStart := time.Now()
	deadline := settleStart.Add(*e2eSettle)
	var snap shopSnapshot
	var counts shopCounts
	var problems []string
	for {
		snap = takeSnapshot(t, ctx, snapshotSources{orderDB: shop.Order.App().DB, shipDB: ship.App().DB, notifyDB: notify.App().DB,
			mailDir: filepath.Join(mailDir, "mail"), product: shop.Product.URL(), search: srch.URL(), analytics: stats.URL()})
		snap.loadErrors, snap.ordersPlaced, snap.orderTimeouts = sum.Errors-sum.Timeouts, sum.OrdersPlaced, orderTimeouts
		counts, problems = checkShop(snap)
		if len(problems) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	settled := time.Since(settleStart)
	for _, p := range problems {
		t.Errorf("all services: %s", p)
	}
	if sum.Requests == 0 || counts.confirmed == 0 {
		t.Errorf("all services: %d requests, %d confirmed orders: the load did not exercise the shop", sum.Requests, counts.confirmed)
	}
	if p, ok := snap.products[repriced]; !ok || p.Price != 4242 {
		t.Errorf("all services: %s at %+v in product-service after the price change to 4242", repriced, p)
	}

	report := []string{
		fmt.Sprintf("all services: 10 services (sqlite, embedded NATS, schema registry), flotilla load open loop %.0f req/s offered for %s: %d requests, %.1f/s, %d errors (%d of them timeouts), p50 %s p90 %s p99 %s max %s, %d flows skipped",
			*e2eRate, *e2eDuration, sum.Requests, sum.Rate, sum.Errors, sum.Timeouts, sum.P50.Round(time.Microsecond), sum.P90.Round(time.Microsecond), sum.P99.Round(time.Microsecond), sum.Max.Round(time.Microsecond), sum.Skipped),
		fmt.Sprintf("all services: %d orders placed, %d CONFIRMED, %d CANCELLED; settled %s after the load (load average %s)", counts.orders, counts.confirmed, counts.cancelled, settled.Round(100*time.Millisecond), loadAvg),
		fmt.Sprintf("all services: %d confirmed orders with one shipment each (%d shipments, %d delivered)", counts.confirmed, counts.shipments, counts.delivered),
		fmt.Sprintf("all services: %d OrderConfirmed notifications, one SENT per confirmed order, each in the mail sink (%d .eml files in all)", counts.confirmations, counts.mailFiles),
		fmt.Sprintf("all services: search finds all %d products by name, with product-service's price and popularity = %d units sold", counts.products, counts.unitsSold),
		fmt.Sprintf("all services: analytics %d orders, GMV %v = order-service's confirmed orders; %d checkouts", counts.confirmed, counts.gmv, counts.checkouts),
	}
	for _, line := range report {
		t.Log(line)
	}
	if !t.Failed() {
		// make test runs without -v; CI prints this file after it (the
		// consistency test, earlier in file order, creates it).
		if f, err := os.OpenFile(filepath.Join(os.TempDir(), "flotilla-consistency.txt"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
			_, _ = f.WriteString(strings.Join(report, "\n") + "\n")
			_ = f.Close()
		}
	}
}

func readLoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// startRegistry serves the schema registry (on a SQLite file) as flotilla
// up's control plane does, and returns its URL.
func startRegistry(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	db, err := sqldb.Open(ctx, filepath.Join(t.TempDir(), "registry.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	st, err := sqlstore.New(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := registry.New(st, registry.DefaultConfig(), slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return ts.URL
}

// shopSnapshot is what the services hold after a run, as the checks
// compare it.
type shopSnapshot struct {
	orders        []shopOrder
	shipments     map[string][]string // order id → statuses of its shipments
	confirmations []confirmation      // OrderConfirmed notifications
	mailFiles     map[string]bool     // names in the mail sink
	products      map[string]catalogProduct
	searchHits    map[string][]search.Hit // sku → hits of a query for its name
	analytics     analyticsFigures
	loadErrors    int // wrong answers: the errors that were not timeouts
	ordersPlaced  int
	// orderTimeouts are the POST /orders that timed out at the client: on
	// a machine too busy for the offered rate an order can be placed after
	// the client gave up, so order-service may hold up to that many more.
	orderTimeouts int
}

type shopOrder struct {
	id, status, currency string
	total                int64
	items                map[string]int64
}

type confirmation struct {
	id, orderID, status string
}

type catalogProduct struct {
	SKU, Name, Currency string
	Price               int64
}

type analyticsFigures struct {
	orders, checkouts, confirmedOrders int64
	gmv                                map[string]int64
}

type shopCounts struct {
	orders, confirmed, cancelled, shipments, delivered, confirmations, mailFiles, products int
	unitsSold                                                                              int64
	gmv                                                                                    map[string]int64
	checkouts                                                                              int64
}

// checkShop compares the services' records with each other and returns
// the counts it checked and every disagreement.
func checkShop(s shopSnapshot) (shopCounts, []string) {
	var c shopCounts
	var p []string
	bad := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	if s.loadErrors != 0 {
		bad("flotilla load saw %d errors", s.loadErrors)
	}
	c.orders = len(s.orders)
	switch {
	case s.orderTimeouts == 0 && s.ordersPlaced != c.orders:
		bad("flotilla load placed %d orders; order-service has %d", s.ordersPlaced, c.orders)
	case c.orders < s.ordersPlaced || c.orders > s.ordersPlaced+s.orderTimeouts:
		bad("flotilla load placed %d orders and %d more timed out; order-service has %d", s.ordersPlaced, s.orderTimeouts, c.orders)
	}
	gmv := map[string]int64{}
	units := map[string]int64{}
	status := map[string]string{}
	for _, o := range s.orders {
		status[o.id] = o.status
		switch o.status {
		case "CONFIRMED":
			c.confirmed++
			gmv[o.currency] += o.total
			for sku, q := range o.items {
				units[sku] += q
				c.unitsSold += q
			}
		case "CANCELLED":
			c.cancelled++
		default:
			bad("order %s still %s", o.id, o.status)
		}
	}
	c.gmv = gmv

	// Shipping: one shipment per confirmed order, none for any other.
	for _, o := range s.orders {
		sh := s.shipments[o.id]
		if o.status != "CONFIRMED" {
			if len(sh) > 0 {
				bad("%s order %s has %d shipments", o.status, o.id, len(sh))
			}
			continue
		}
		switch {
		case len(sh) == 0:
			bad("confirmed order %s has no shipment", o.id)
		case len(sh) > 1:
			bad("confirmed order %s has %d shipments", o.id, len(sh))
		case sh[0] != shipping.LabelCreated && sh[0] != shipping.InTransit && sh[0] != shipping.Delivered:
			bad("confirmed order %s: shipment %s", o.id, sh[0])
		}
	}
	for id, sh := range s.shipments {
		c.shipments += len(sh)
		for _, st := range sh {
			if st == shipping.Delivered {
				c.delivered++
			}
		}
		if _, ok := status[id]; !ok {
			bad("shipment for order %s, which order-service does not have", id)
		}
	}

	// Notification: exactly one confirmation sent per confirmed order.
	perOrder := map[string][]confirmation{}
	for _, n := range s.confirmations {
		if n.orderID == "" {
			bad("OrderConfirmed notification %s names no order", n.id)
			continue
		}
		perOrder[n.orderID] = append(perOrder[n.orderID], n)
	}
	c.confirmations = len(s.confirmations)
	c.mailFiles = len(s.mailFiles)
	for _, o := range s.orders {
		ns := perOrder[o.id]
		if o.status != "CONFIRMED" {
			if len(ns) > 0 {
				bad("%s order %s got %d confirmation notifications", o.status, o.id, len(ns))
			}
			continue
		}
		if len(ns) != 1 {
			bad("confirmed order %s got %d confirmation notifications, want 1", o.id, len(ns))
			continue
		}
		if ns[0].status != "SENT" {
			bad("confirmation of order %s is %s", o.id, ns[0].status)
		} else if !s.mailFiles[ns[0].id+".eml"] {
			bad("confirmation %s of order %s is SENT but not in the mail sink", ns[0].id, o.id)
		}
	}
	for id := range perOrder {
		if _, ok := status[id]; !ok {
			bad("confirmation notification for order %s, which order-service does not have", id)
		}
	}

	// Search: every product found by its name, as product-service has it,
	// with the units its confirmed orders bought.
	c.products = len(s.products)
	if c.products == 0 {
		bad("product-service lists no products")
	}
	for sku, pr := range s.products {
		var hit *search.Hit
		for i := range s.searchHits[sku] {
			if s.searchHits[sku][i].SKU == sku {
				hit = &s.searchHits[sku][i]
			}
		}
		if hit == nil {
			bad("search for %q does not find %s", pr.Name, sku)
			continue
		}
		if hit.Name != pr.Name || hit.Price != pr.Price || hit.Currency != pr.Currency {
			bad("search has %s as %q %d %s; product-service %q %d %s", sku, hit.Name, hit.Price, hit.Currency, pr.Name, pr.Price, pr.Currency)
		}
		if hit.Popularity != units[sku] {
			bad("search: %s popularity %d; confirmed orders bought %d", sku, hit.Popularity, units[sku])
		}
	}
	for sku := range units {
		if _, ok := s.products[sku]; !ok {
			bad("confirmed orders bought %s, which product-service does not list", sku)
		}
	}

	// Analytics: its totals are order-service's.
	a := s.analytics
	c.checkouts = a.checkouts
	if a.orders != int64(c.confirmed) || a.confirmedOrders != int64(c.confirmed) {
		bad("analytics counts %d confirmed orders (conversion: %d); order-service %d", a.orders, a.confirmedOrders, c.confirmed)
	}
	if a.checkouts != int64(c.orders) {
		bad("analytics counts %d checkouts; order-service has %d orders", a.checkouts, c.orders)
	}
	for cur, v := range gmv {
		if a.gmv[cur] != v {
			bad("analytics GMV %s %d; order-service's confirmed orders %d", cur, a.gmv[cur], v)
		}
	}
	for cur, v := range a.gmv {
		if _, ok := gmv[cur]; !ok && v != 0 {
			bad("analytics GMV %s %d; order-service has no confirmed order in %s", cur, v, cur)
		}
	}
	sort.Strings(p)
	return c, p
}

type snapshotSources struct {
	orderDB, shipDB, notifyDB *sqldb.DB
	mailDir                   string
	product, search           string
	analytics                 string
}

var orderIDRE = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

// takeSnapshot reads what the checks compare: order, shipping and
// notification from their databases (thousands of rows; their APIs page
// by user), the catalog, search and analytics through their APIs.
func takeSnapshot(t *testing.T, ctx context.Context, src snapshotSources) shopSnapshot {
	t.Helper()
	s := shopSnapshot{shipments: map[string][]string{}, mailFiles: map[string]bool{}, products: map[string]catalogProduct{}, searchHits: map[string][]search.Hit{}}
	fail := func(what string, err error) {
		t.Helper()
		t.Fatalf("snapshot: %s: %v", what, err)
	}
	byID := map[string]int{}
	rows, err := src.orderDB.QueryContext(ctx, `SELECT id, status, total, currency FROM orders ORDER BY id`)
	if err != nil {
		fail("orders", err)
	}
	for rows.Next() {
		var o shopOrder
		if err := rows.Scan(&o.id, &o.status, &o.total, &o.currency); err != nil {
			fail("orders", err)
		}
		o.items = map[string]int64{}
		byID[o.id] = len(s.orders)
		s.orders = append(s.orders, o)
	}
	_ = rows.Close()
	rows, err = src.orderDB.QueryContext(ctx, `SELECT order_id, sku, quantity FROM order_items`)
	if err != nil {
		fail("order items", err)
	}
	for rows.Next() {
		var id, sku string
		var q int64
		if err := rows.Scan(&id, &sku, &q); err != nil {
			fail("order items", err)
		}
		if i, ok := byID[id]; ok {
			s.orders[i].items[sku] += q
		}
	}
	_ = rows.Close()
	rows, err = src.shipDB.QueryContext(ctx, `SELECT order_id, status FROM shipments`)
	if err != nil {
		fail("shipments", err)
	}
	for rows.Next() {
		var id, st string
		if err := rows.Scan(&id, &st); err != nil {
			fail("shipments", err)
		}
		s.shipments[id] = append(s.shipments[id], st)
	}
	_ = rows.Close()
	rows, err = src.notifyDB.QueryContext(ctx, `SELECT id, body, status FROM notifications WHERE event = 'OrderConfirmed'`)
	if err != nil {
		fail("notifications", err)
	}
	for rows.Next() {
		var n confirmation
		var body string
		if err := rows.Scan(&n.id, &body, &n.status); err != nil {
			fail("notifications", err)
		}
		n.orderID = orderIDRE.FindString(body)
		s.confirmations = append(s.confirmations, n)
	}
	_ = rows.Close()
	files, err := os.ReadDir(src.mailDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		fail("mail sink", err)
	}
	for _, f := range files {
		s.mailFiles[f.Name()] = true
	}

	for off := 0; ; off += 100 {
		var page struct {
			Items []catalogProduct `json:"items"`
		}
		getJSON(t, fmt.Sprintf("%s/products?limit=100&offset=%d", src.product, off), &page)
		for _, p := range page.Items {
			s.products[p.SKU] = p
		}
		if len(page.Items) < 100 {
			break
		}
	}
	for sku, p := range s.products {
		var res search.Result
		getJSON(t, src.search+"/search?facets=false&limit=100&q="+url.QueryEscape(p.Name), &res)
		s.searchHits[sku] = res.Hits
	}
	var totals analytics.Totals
	getJSON(t, src.analytics+"/stats/totals", &totals)
	var conv analytics.Conversion
	getJSON(t, src.analytics+"/stats/conversion", &conv)
	s.analytics = analyticsFigures{orders: totals.Orders, gmv: totals.GMV, checkouts: conv.Checkouts, confirmedOrders: conv.Orders}
	return s
}

func getJSON(t *testing.T, u string, out any) {
	t.Helper()
	st, body, err := call("GET", u, "", nil)
	if err != nil || st != 200 {
		t.Fatalf("GET %s: %d %s %v", u, st, body, err)
	}
	if err := json.Unmarshal(body, out); err != nil {
		t.Fatalf("GET %s: %v in %s", u, err, body)
	}
}
