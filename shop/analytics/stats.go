package analytics

import (
	"context"
	"fmt"
	"time"

	"github.com/flotilla-ci/flotilla/internal/sqldb"
)

// Hour is one hour's confirmed orders in one currency.
type Hour struct {
	Hour     time.Time `json:"hour"`
	Currency string    `json:"currency"`
	Orders   int64     `json:"orders"`
	GMV      int64     `json:"gmv"` // minor units
}

// Conversion is checkouts (a cart submitted as an order: OrderCreated) and
// how many became confirmed orders. cart-service publishes no events, so
// carts abandoned before checkout are not counted.
type Conversion struct {
	Checkouts int64   `json:"checkouts"`
	Orders    int64   `json:"orders"`
	Rate      float64 `json:"rate"`
}

// ProductSales is one product's units and revenue over confirmed orders.
type ProductSales struct {
	SKU     string `json:"sku"`
	Units   int64  `json:"units"`
	Revenue int64  `json:"revenue"` // minor units
}

// Payments is charges by outcome.
type Payments struct {
	Completed   int64   `json:"completed"`
	Failed      int64   `json:"failed"`
	Refunded    int64   `json:"refunded"`
	FailureRate float64 `json:"failureRate"` // failed / (completed + failed)
}

// Reason is how many orders were cancelled for one reason.
type Reason struct {
	Reason string `json:"reason"`
	Orders int64  `json:"orders"`
}

// Totals are all-time confirmed orders and GMV per currency.
type Totals struct {
	Orders int64            `json:"orders"`
	GMV    map[string]int64 `json:"gmv"`
}

// EventCount is how many events of one type are stored.
type EventCount struct {
	Type       string `json:"type"`
	Stored     int64  `json:"stored"`
	Undecoded  int64  `json:"undecoded"`
	LastMillis int64  `json:"-"`
}

// Stats answers the aggregate queries from the event table. Every figure
// counts an order once, whatever its events' deliveries.
type Stats struct{ DB *sqldb.DB }

// confirmedOrders is one row per confirmed order: its hour, amount and currency.
const confirmedOrders = `SELECT order_id, MIN(occurred_ms) AS ms, MAX(amount) AS amount, MAX(currency) AS currency
	FROM analytics_events WHERE type = 'OrderConfirmed' AND order_id <> '' GROUP BY order_id`

// OrdersPerHour is confirmed orders and GMV per hour in [from, to).
func (s Stats) OrdersPerHour(ctx context.Context, from, to time.Time) ([]Hour, error) {
	rows, err := s.DB.QueryContext(ctx, `SELECT ms / 3600000 AS h, currency, COUNT(*), SUM(amount) FROM (`+confirmedOrders+`) c
		WHERE ms >= $1 AND ms < $2 GROUP BY ms / 3600000, currency ORDER BY h, currency`, from.UnixMilli(), to.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("orders per hour: %w", err)
	}
	defer func() { _ = rows.Close() }()
	out := []Hour{}
	for rows.Next() {
		var h Hour
		var hour int64
		if err := rows.Scan(&hour, &h.Currency, &h.Orders, &h.GMV); err != nil {
			return nil, err
		}
		h.Hour = time.UnixMilli(hour * 3600000).UTC()
		out = append(out, h)
	}
	return out, rows.Err()
}

// Totals is all-time confirmed orders and GMV.
func (s Stats) Totals(ctx context.Context) (Totals, error) {
	t := Totals{GMV: map[string]int64{}}
	rows, err := s.DB.QueryContext(ctx, `SELECT currency, COUNT(*), SUM(amount) FROM (`+confirmedOrders+`) c GROUP BY currency`)
	if err != nil {
		return t, fmt.Errorf("totals: %w", err)
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		var cur string
		var n, gmv int64
		if err := rows.Scan(&cur, &n, &gmv); err != nil {
			return t, err
		}
		t.Orders += n
		t.GMV[cur] = gmv
	}
	return t, rows.Err()
}

// Conversion is checkouts to confirmed orders.
func (s Stats) Conversion(ctx context.Context) (Conversion, error) {
	var c Conversion
	err := s.DB.QueryRowContext(ctx, `SELECT
		(SELECT COUNT(DISTINCT order_id) FROM analytics_events WHERE type = 'OrderCreated' AND order_id <> ''),
		(SELECT COUNT(DISTINCT order_id) FROM analytics_events WHERE type = 'OrderConfirmed' AND order_id <> '')`).Scan(&c.Checkouts, &c.Orders)
	if err != nil {
		return c, fmt.Errorf("conversion: %w", err)
	}
	if c.Checkouts > 0 {
		c.Rate = float64(c.Orders) / float64(c.Checkouts)
	}
	return c, nil
}

// TopProducts is the n best-selling products over confirmed orders.
func (s Stats) TopProducts(ctx context.Context, n int) ([]ProductSales, error) {
	rows, err := s.DB.QueryContext(ctx, `SELECT l.sku, SUM(l.quantity), SUM(l.quantity * l.unit_price) FROM analytics_order_lines l
		WHERE l.order_id IN (SELECT order_id FROM analytics_events WHERE type = 'OrderConfirmed')
		GROUP BY l.sku ORDER BY SUM(l.quantity) DESC, l.sku LIMIT $1`, n)
	if err != nil {
		return nil, fmt.Errorf("top products: %w", err)
	}
	defer func() { _ = rows.Close() }()
	out := []ProductSales{}
	for rows.Next() {
		var p ProductSales
		if err := rows.Scan(&p.SKU, &p.Units, &p.Revenue); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// Payments is charges by outcome and the failure rate.
func (s Stats) Payments(ctx context.Context) (Payments, error) {
	var p Payments
	err := s.DB.QueryRowContext(ctx, `SELECT
		(SELECT COUNT(*) FROM analytics_events WHERE type = 'PaymentCompleted'),
		(SELECT COUNT(*) FROM analytics_events WHERE type = 'PaymentFailed'),
		(SELECT COUNT(*) FROM analytics_events WHERE type = 'PaymentRefunded')`).Scan(&p.Completed, &p.Failed, &p.Refunded)
	if err != nil {
		return p, fmt.Errorf("payments: %w", err)
	}
	if n := p.Completed + p.Failed; n > 0 {
		p.FailureRate = float64(p.Failed) / float64(n)
	}
	return p, nil
}

// Cancellations is cancelled orders by reason, most frequent first.
func (s Stats) Cancellations(ctx context.Context) ([]Reason, error) {
	rows, err := s.DB.QueryContext(ctx, `SELECT reason, COUNT(DISTINCT order_id) FROM analytics_events WHERE type = 'OrderCancelled'
		GROUP BY reason ORDER BY COUNT(DISTINCT order_id) DESC, reason`)
	if err != nil {
		return nil, fmt.Errorf("cancellations: %w", err)
	}
	defer func() { _ = rows.Close() }()
	out := []Reason{}
	for rows.Next() {
		var r Reason
		if err := rows.Scan(&r.Reason, &r.Orders); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Events is how many events of each type are stored.
func (s Stats) Events(ctx context.Context) ([]EventCount, error) {
	rows, err := s.DB.QueryContext(ctx, `SELECT type, COUNT(*), SUM(CASE WHEN decoded THEN 0 ELSE 1 END) FROM analytics_events GROUP BY type ORDER BY type`)
	if err != nil {
		return nil, fmt.Errorf("event counts: %w", err)
	}
	defer func() { _ = rows.Close() }()
	out := []EventCount{}
	for rows.Next() {
		var e EventCount
		if err := rows.Scan(&e.Type, &e.Stored, &e.Undecoded); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}
