package analytics

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// collector computes the aggregates from the event table at scrape time,
// so Prometheus sees what the stats API answers.
type collector struct{ m *Main }

var (
	descEvents      = prometheus.NewDesc("analytics_events_stored_total", "Events stored, by type.", []string{"type"}, nil)
	descUndecoded   = prometheus.NewDesc("analytics_events_undecoded_total", "Events stored raw because no schema could read them, by type.", []string{"type"}, nil)
	descOrders      = prometheus.NewDesc("analytics_orders_confirmed_total", "Confirmed orders.", nil, nil)
	descGMV         = prometheus.NewDesc("analytics_gmv_minor_total", "Gross merchandise value of confirmed orders, minor units.", []string{"currency"}, nil)
	descHourOrders  = prometheus.NewDesc("analytics_orders_current_hour", "Confirmed orders in the current hour.", nil, nil)
	descHourGMV     = prometheus.NewDesc("analytics_gmv_current_hour_minor", "GMV of the current hour's confirmed orders, minor units.", []string{"currency"}, nil)
	descCheckouts   = prometheus.NewDesc("analytics_checkouts_total", "Carts submitted as orders (OrderCreated).", nil, nil)
	descConversion  = prometheus.NewDesc("analytics_cart_to_order_conversion_ratio", "Confirmed orders over checkouts.", nil, nil)
	descPayments    = prometheus.NewDesc("analytics_payments_total", "Payments by outcome.", []string{"outcome"}, nil)
	descFailureRate = prometheus.NewDesc("analytics_payment_failure_ratio", "Failed over completed plus failed payments.", nil, nil)
	descCancelled   = prometheus.NewDesc("analytics_orders_cancelled_total", "Cancelled orders by reason.", []string{"reason"}, nil)
	descUnits       = prometheus.NewDesc("analytics_product_units_sold_total", "Units sold in confirmed orders, top 20 products.", []string{"sku"}, nil)
	descLag         = prometheus.NewDesc("analytics_ingest_lag_seconds", "In the last stored batch, the longest time from an event occurring to its commit here.", nil, nil)
	descBatches     = prometheus.NewDesc("analytics_batches_total", "Batches committed by this process.", nil, nil)
)

func (c collector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := c.m.stats
	fail := func(d *prometheus.Desc, err error) { ch <- prometheus.NewInvalidMetric(d, err) }
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if evs, err := s.Events(ctx); err != nil {
		fail(descEvents, err)
	} else {
		for _, e := range evs {
			counter(descEvents, float64(e.Stored), e.Type)
			counter(descUndecoded, float64(e.Undecoded), e.Type)
		}
	}
	if t, err := s.Totals(ctx); err != nil {
		fail(descOrders, err)
	} else {
		counter(descOrders, float64(t.Orders))
		for cur, v := range t.GMV {
			counter(descGMV, float64(v), cur)
		}
	}
	now := time.Now()
	if hs, err := s.OrdersPerHour(ctx, now.Truncate(time.Hour), now.Add(time.Hour)); err != nil {
		fail(descHourOrders, err)
	} else {
		var n int64
		for _, h := range hs {
			n += h.Orders
			gauge(descHourGMV, float64(h.GMV), h.Currency)
		}
		gauge(descHourOrders, float64(n))
	}
	if cv, err := s.Conversion(ctx); err != nil {
		fail(descConversion, err)
	} else {
		counter(descCheckouts, float64(cv.Checkouts))
		gauge(descConversion, cv.Rate)
	}
	if p, err := s.Payments(ctx); err != nil {
		fail(descPayments, err)
	} else {
		counter(descPayments, float64(p.Completed), "completed")
		counter(descPayments, float64(p.Failed), "failed")
		counter(descPayments, float64(p.Refunded), "refunded")
		gauge(descFailureRate, p.FailureRate)
	}
	if rs, err := s.Cancellations(ctx); err != nil {
		fail(descCancelled, err)
	} else {
		for _, r := range rs {
			counter(descCancelled, float64(r.Orders), r.Reason)
		}
	}
	if ps, err := s.TopProducts(ctx, 20); err != nil {
		fail(descUnits, err)
	} else {
		for _, p := range ps {
			counter(descUnits, float64(p.Units), p.SKU)
		}
	}
	gauge(descLag, float64(c.m.w.lagMS.Load())/1000)
	counter(descBatches, float64(c.m.w.batches.Load()))
}

func (m *Main) metrics() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{m: m})
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}
