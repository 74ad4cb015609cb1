// Command analytics benchmarks analytics-service's consumer: events of
// six types published at a fixed rate (default 1,000/s) for a while, each
// stamped with its scheduled time; the lag of every event is the time from
// that stamp to the batch that stored it (target: under 1 s while
// sustained). The service runs in this process on SQLite (or the
// PostgreSQL of -db) with an embedded NATS JetStream server.
//
//	go run ./bench/analytics [-rate 1000] [-duration 30s] [-db postgres://...] [-nats nats://127.0.0.1:4222]
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/flotilla-ci/flotilla/bus"
	busnats "github.com/flotilla-ci/flotilla/bus/nats"
	"github.com/flotilla-ci/flotilla/shop/analytics"
	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/order"
	"github.com/flotilla-ci/flotilla/shop/payment"
	"github.com/flotilla-ci/flotilla/shop/user"
)

func main() {
	rate := flag.Int("rate", 1000, "events per second")
	duration := flag.Duration("duration", 30*time.Second, "how long to publish")
	db := flag.String("db", "", "database (default: a SQLite file in a temp dir)")
	batch := flag.Int("batch", 500, "analytics batch size")
	natsURL := flag.String("nats", "", "NATS server (default: an embedded JetStream server, file storage, sync always)")
	flag.Parse()
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "bench-analytics-")
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	busURL := *natsURL
	if busURL == "" {
		nats, err := busnats.Embedded(busnats.ServerConfig{Dir: filepath.Join(dir, "nats")})
		if err != nil {
			log.Fatal(err)
		}
		defer func() { _ = nats.Close() }()
		busURL = nats.URL()
	}
	stream := fmt.Sprintf("BENCH_ANALYTICS_%d", time.Now().UnixNano())
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	kc := kit.DefaultConfig(analytics.Service)
	kc.DatabaseURL = *db
	if kc.DatabaseURL == "" {
		kc.DatabaseURL = filepath.Join(dir, "analytics.db")
	}
	kc.BusURL, kc.BusStream, kc.Logger = busURL, stream, logger
	m := &analytics.Main{Config: analytics.Config{Kit: kc, Batch: *batch}}
	if err := m.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer func() { _ = m.Close() }()
	if _, err := m.App().DB.ExecContext(ctx, `DELETE FROM analytics_events`); err != nil { // a reused PostgreSQL
		log.Fatal(err)
	}

	b, err := kit.Dial(ctx, busURL, stream, "bench", true, logger)
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = b.Close() }()
	codec, _ := kit.NewCodec("")
	if err := codec.Load(ctx, order.Schemas()); err != nil {
		log.Fatal(err)
	}
	if err := codec.Load(ctx, payment.Schemas()); err != nil {
		log.Fatal(err)
	}
	if err := codec.Load(ctx, user.Schemas()); err != nil {
		log.Fatal(err)
	}
	event := func(i int, at time.Time) (string, string, any) {
		id := fmt.Sprintf("o-%d", i/6)
		switch i % 6 {
		case 0:
			return "OrderCreated", id, map[string]any{"orderId": id, "userId": "u", "items": []string{"SKU-1"}, "total": 12.5, "timestamp": at.UnixMilli(), "version": "1.1",
				"lines": []map[string]any{{"sku": fmt.Sprintf("SKU-%d", i%97), "quantity": 1, "unitPrice": int64(1250)}}, "totalMinor": int64(1250), "currency": "EUR"}
		case 1:
			return "PaymentCompleted", id, map[string]any{"paymentId": "p" + id, "orderId": id, "userId": "u", "amount": int64(1250), "currency": "EUR", "timestamp": at, "version": 1}
		case 2:
			return "OrderConfirmed", id, map[string]any{"orderId": id, "userId": "u", "total": int64(1250), "currency": "EUR", "paymentId": "p", "reservationId": "r", "timestamp": at, "version": 1}
		case 3:
			return "PaymentFailed", id, map[string]any{"paymentId": "p" + id, "orderId": id, "userId": "u", "amount": int64(1250), "currency": "EUR", "reason": "declined", "timestamp": at, "version": 1}
		case 4:
			return "OrderCancelled", id, map[string]any{"orderId": id, "userId": "u", "reason": "payment declined", "total": int64(1250), "currency": "EUR", "timestamp": at, "version": 1}
		default:
			return "UserRegistered", id, map[string]any{"userId": id, "email": id + "@shop.test", "name": id, "role": "customer", "timestamp": at, "version": 1}
		}
	}

	// Publish rate/100 events every 10 ms, each stamped with the time it
	// is handed to the bus; the publisher's lag behind its schedule is
	// reported on its own.
	tick := 10 * time.Millisecond
	per := *rate / 100
	start := time.Now()
	sent := 0
	var sendLag []time.Duration
	for n := 0; ; n++ {
		at := start.Add(time.Duration(n) * tick)
		if at.Sub(start) >= *duration {
			break
		}
		time.Sleep(time.Until(at))
		msgs := make([]bus.Message, 0, per)
		for k := 0; k < per; k++ {
			ev, key, v := event(sent, at)
			msg, err := codec.Message(ctx, ev, key, v)
			if err != nil {
				log.Fatal(err)
			}
			msgs = append(msgs, msg)
			sent++
		}
		stamp := time.Now().UTC().Format(time.RFC3339Nano)
		for _, msg := range msgs {
			msg.Headers[bus.HeaderOccurredAt] = stamp
		}
		if err := b.Publish(ctx, msgs...); err != nil {
			log.Fatal(err)
		}
		sendLag = append(sendLag, time.Since(at))
	}
	pubDone := time.Now()
	var stored int
	for {
		if err := m.App().DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM analytics_events`).Scan(&stored); err != nil {
			log.Fatal(err)
		}
		if stored >= sent || time.Since(pubDone) > 2*time.Minute {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	drained := time.Since(pubDone)
	rows, err := m.App().DB.QueryContext(ctx, `SELECT stored_ms - occurred_ms FROM analytics_events`)
	if err != nil {
		log.Fatal(err)
	}
	var lags []int64
	for rows.Next() {
		var l int64
		if err := rows.Scan(&l); err != nil {
			log.Fatal(err)
		}
		lags = append(lags, l)
	}
	_ = rows.Close()
	slices.Sort(lags)
	slices.Sort(sendLag)
	q := func(p int) int64 { return lags[(len(lags)-1)*p/100] }
	took := pubDone.Sub(start)
	fmt.Printf("analytics on %s: %d events scheduled at %d/s for %s, published in %s (%.0f/s); %d stored, the last %s after publishing ended\n",
		m.App().DB.Dialect, sent, *rate, *duration, took.Round(time.Millisecond), float64(sent)/took.Seconds(), stored, drained.Round(time.Millisecond))
	fmt.Printf("  consumer lag (handed to the bus → stored): p50 %d ms, p99 %d ms, max %d ms (target < 1000 ms)\n", q(50), q(99), lags[len(lags)-1])
	fmt.Printf("  publisher's own send lag: p50 %s, p99 %s\n", sendLag[len(sendLag)/2].Round(time.Millisecond), sendLag[(len(sendLag)-1)*99/100].Round(time.Millisecond))
}
