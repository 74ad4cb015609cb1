// Package bustest is the conformance suite every bus.Bus implementation
// passes, in the manner of testing/slogtest: Run(t, newBus).
package bustest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flotilla-ci/flotilla/bus"
)

// Run runs the suite. newBus returns a fresh, empty bus for each subtest
// (its own stream or namespace); the suite closes it.
func Run(t *testing.T, newBus func(t *testing.T) bus.Bus) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b bus.Bus)
	}{
		{"RoundTripKeepsHeadersAndKey", testRoundTrip},
		{"PerKeyOrder", testPerKeyOrder},
		{"GroupsEachSeeEverything", testGroups},
		{"SharedGroupSplitsWork", testSharedGroup},
		{"RedeliveryWithBackoff", testRedelivery},
		{"DeadLetterAfterMaxDeliveries", testDeadLetter},
		{"PermanentErrorDeadLettersAtOnce", testPermanent},
		{"PanicIsPoisonNotCrash", testPanic},
		{"DurableGroupResumes", testDurable},
		{"ConcurrentPublishers", testConcurrentPublishers},
		{"InvalidAndClosed", testInvalidAndClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBus(t)
			t.Cleanup(func() { _ = b.Close() })
			tc.fn(t, b)
		})
	}
}

const wait = 20 * time.Second

// collector gathers delivered messages.
type collector struct {
	mu   sync.Mutex
	msgs []bus.Message
	ch   chan struct{}
}

func newCollector() *collector { return &collector{ch: make(chan struct{}, 1<<16)} }

func (c *collector) handle(_ context.Context, m bus.Message) error {
	c.mu.Lock()
	c.msgs = append(c.msgs, m)
	c.mu.Unlock()
	c.ch <- struct{}{}
	return nil
}

func (c *collector) waitFor(t *testing.T, n int) []bus.Message {
	t.Helper()
	deadline := time.After(wait)
	for {
		c.mu.Lock()
		got := len(c.msgs)
		c.mu.Unlock()
		if got >= n {
			c.mu.Lock()
			defer c.mu.Unlock()
			return append([]bus.Message(nil), c.msgs...)
		}
		select {
		case <-c.ch:
		case <-deadline:
			t.Fatalf("received %d messages, want %d within %s", got, n, wait)
		}
	}
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.msgs)
}

func subscribe(t *testing.T, b bus.Bus, s bus.Subscription) io.Closer {
	t.Helper()
	sub, err := b.Subscribe(context.Background(), s)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	return sub
}

func publish(t *testing.T, b bus.Bus, msgs ...bus.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := b.Publish(ctx, msgs...); err != nil {
		t.Fatalf("publish: %v", err)
	}
}

func msg(topic, key string, i int) bus.Message {
	return bus.Message{Topic: topic, Key: key, Payload: []byte(strconv.Itoa(i)),
		Headers: map[string]string{bus.HeaderEventID: fmt.Sprintf("%s-%s-%d", topic, key, i), bus.HeaderEventType: topic}}
}

func testRoundTrip(t *testing.T, b bus.Bus) {
	in := bus.Message{Topic: "OrderCreated", Key: "order-1", Payload: []byte{0, 0, 0, 0, 1, 2, 3},
		Headers: map[string]string{
			bus.HeaderEventID: "e-1", bus.HeaderEventType: "OrderCreated",
			bus.HeaderOccurredAt:  "2026-11-26T10:00:00.000000001Z",
			bus.HeaderTraceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		}}
	publish(t, b, in)
	c := newCollector()
	subscribe(t, b, bus.Subscription{Topic: "OrderCreated", Group: "g", Handler: c.handle})
	got := c.waitFor(t, 1)[0]
	if got.Delivery != 1 {
		t.Errorf("Delivery = %d, want 1", got.Delivery)
	}
	got.Delivery = 0
	if diff := cmp.Diff(in, got); diff != "" {
		t.Errorf("delivered message differs (-published +delivered):\n%s", diff)
	}
	if got.ID() != "e-1" || got.Type() != "OrderCreated" {
		t.Errorf("ID, Type = %q, %q", got.ID(), got.Type())
	}
}

func testPerKeyOrder(t *testing.T, b bus.Bus) {
	const keys, per = 12, 30
	var msgs []bus.Message
	for i := 0; i < per; i++ {
		for k := 0; k < keys; k++ {
			msgs = append(msgs, msg("Stock", "sku-"+strconv.Itoa(k), i))
		}
	}
	// Half published before subscribing, half after; in several batches.
	publish(t, b, msgs[:len(msgs)/2]...)
	c := newCollector()
	// A handler that fails now and then must not break the order either.
	var mu sync.Mutex
	failed := map[string]bool{}
	subscribe(t, b, bus.Subscription{Topic: "Stock", Group: "g", Backoff: []time.Duration{time.Millisecond},
		Handler: func(ctx context.Context, m bus.Message) error {
			mu.Lock()
			n, _ := strconv.Atoi(string(m.Payload))
			if n%7 == 3 && !failed[m.ID()] {
				failed[m.ID()] = true
				mu.Unlock()
				return errors.New("transient")
			}
			mu.Unlock()
			return c.handle(ctx, m)
		}})
	for i := len(msgs) / 2; i < len(msgs); i += 50 {
		publish(t, b, msgs[i:min(i+50, len(msgs))]...)
	}
	got := c.waitFor(t, len(msgs))
	last := map[string]int{}
	for _, m := range got {
		n, _ := strconv.Atoi(string(m.Payload))
		if prev, ok := last[m.Key]; ok && n != prev+1 {
			t.Fatalf("key %s: got %d after %d; want publish order", m.Key, n, prev)
		}
		last[m.Key] = n
	}
	if len(last) != keys {
		t.Fatalf("saw %d keys, want %d", len(last), keys)
	}
}

func testGroups(t *testing.T, b bus.Bus) {
	var msgs []bus.Message
	for i := 0; i < 20; i++ {
		msgs = append(msgs, msg("T", strconv.Itoa(i), i))
	}
	publish(t, b, msgs...)
	a, c := newCollector(), newCollector()
	subscribe(t, b, bus.Subscription{Topic: "T", Group: "a", Handler: a.handle})
	subscribe(t, b, bus.Subscription{Topic: "T", Group: "c", Handler: c.handle})
	for name, col := range map[string]*collector{"a": a, "c": c} {
		got := col.waitFor(t, 20)
		seen := map[string]bool{}
		for _, m := range got {
			seen[m.ID()] = true
		}
		if len(seen) != 20 {
			t.Errorf("group %s saw %d distinct messages, want 20", name, len(seen))
		}
	}
	// Another topic's messages never reach them: a message on Other, then
	// a sentinel on T. Once the Other message reached a group of its own
	// (also named a: a group is per topic) and the sentinel reached a, a
	// stray delivery of Other to a would have come with it.
	other := newCollector()
	subscribe(t, b, bus.Subscription{Topic: "Other", Group: "a", Handler: other.handle})
	publish(t, b, msg("Other", "x", 1))
	other.waitFor(t, 1)
	publish(t, b, msg("T", "sentinel", 20))
	got := a.waitFor(t, 21)
	for _, m := range got {
		if !strings.HasPrefix(m.ID(), "T-") {
			t.Errorf("group a of T got %s (%s), a message of another topic", m.ID(), m.Topic)
		}
	}
	if len(got) != 21 {
		t.Errorf("group a got %d messages, want the 20 and the sentinel", len(got))
	}
}

func testSharedGroup(t *testing.T, b bus.Bus) {
	one, two := newCollector(), newCollector()
	subscribe(t, b, bus.Subscription{Topic: "T", Group: "g", Handler: one.handle})
	subscribe(t, b, bus.Subscription{Topic: "T", Group: "g", Handler: two.handle})
	var msgs []bus.Message
	for i := 0; i < 100; i++ {
		msgs = append(msgs, msg("T", strconv.Itoa(i), i))
	}
	publish(t, b, msgs...)
	// Then a sentinel on every key: a key's messages are delivered in
	// order, so once the group has seen every sentinel, a duplicate of the
	// message before it would have been handled already.
	sentinels := make([]bus.Message, 0, 100)
	for i := 0; i < 100; i++ {
		sentinels = append(sentinels, msg("T", strconv.Itoa(i), 100+i))
	}
	publish(t, b, sentinels...)
	seen := map[string]int{}
	deadline := time.After(wait)
	for {
		clear(seen)
		sentinelsSeen := 0
		for _, c := range []*collector{one, two} {
			c.mu.Lock()
			for _, m := range c.msgs {
				if n, _ := strconv.Atoi(string(m.Payload)); n >= 100 {
					sentinelsSeen++
					continue
				}
				seen[m.ID()]++
			}
			c.mu.Unlock()
		}
		if sentinelsSeen >= 100 {
			break
		}
		select {
		case <-one.ch:
		case <-two.ch:
		case <-deadline:
			t.Fatalf("the group handled %d of 100 sentinels within %s", sentinelsSeen, wait)
		}
	}
	if len(seen) != 100 {
		t.Fatalf("the group saw %d distinct messages, want 100", len(seen))
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%s handled %d times by one group with no failures, want 1", id, n)
		}
	}
}

func testRedelivery(t *testing.T, b bus.Bus) {
	c := newCollector()
	var mu sync.Mutex
	var times []time.Time
	backoff := []time.Duration{150 * time.Millisecond, 300 * time.Millisecond}
	subscribe(t, b, bus.Subscription{Topic: "T", Group: "g", MaxDeliveries: 5, Backoff: backoff,
		Handler: func(ctx context.Context, m bus.Message) error {
			mu.Lock()
			times = append(times, time.Now())
			mu.Unlock()
			if m.Delivery < 3 {
				return fmt.Errorf("attempt %d fails", m.Delivery)
			}
			return c.handle(ctx, m)
		}})
	publish(t, b, msg("T", "k", 1))
	got := c.waitFor(t, 1)
	if got[0].Delivery != 3 {
		t.Fatalf("succeeded on delivery %d, want 3", got[0].Delivery)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(times) != 3 {
		t.Fatalf("handler ran %d times, want 3", len(times))
	}
	for i, want := range backoff {
		if gap := times[i+1].Sub(times[i]); gap < want*9/10 {
			t.Errorf("redelivery %d after %s, want at least the backoff %s", i+1, gap, want)
		}
	}
}

func testDeadLetter(t *testing.T, b bus.Bus) {
	c := newCollector()
	var mu sync.Mutex
	attempts := 0
	subscribe(t, b, bus.Subscription{Topic: "T", Group: "g", MaxDeliveries: 3, Backoff: []time.Duration{time.Millisecond},
		Handler: func(ctx context.Context, m bus.Message) error {
			if m.Key == "poison" {
				mu.Lock()
				attempts++
				mu.Unlock()
				return errors.New("cannot decode: bad magic byte")
			}
			return c.handle(ctx, m)
		}})
	dead := newCollector()
	subscribe(t, b, bus.Subscription{Topic: bus.DeadLetterTopic("T", "g"), Group: "ops", Handler: dead.handle})
	// The poison message and the good ones behind it, on the same key's
	// partition and on others: the consumer keeps going.
	publish(t, b, msg("T", "poison", 0), msg("T", "good", 1), msg("T", "good", 2), msg("T", "other", 3))
	c.waitFor(t, 3)
	d := dead.waitFor(t, 1)[0]
	mu.Lock()
	if attempts != 3 {
		t.Errorf("poison handled %d times, want MaxDeliveries=3", attempts)
	}
	mu.Unlock()
	want := map[string]string{
		bus.HeaderDeadLetterReason: "cannot decode: bad magic byte",
		bus.HeaderDeadLetterTopic:  "T", bus.HeaderDeadLetterGroup: "g", bus.HeaderDeliveries: "3",
		bus.HeaderEventID: "T-poison-0", bus.HeaderEventType: "T",
	}
	if diff := cmp.Diff(want, d.Headers); diff != "" {
		t.Errorf("dead letter headers (-want +got):\n%s", diff)
	}
	if string(d.Payload) != "0" || d.Key != "poison" {
		t.Errorf("dead letter payload, key = %q, %q; want the original", d.Payload, d.Key)
	}
}

func testPermanent(t *testing.T, b bus.Bus) {
	dead := newCollector()
	subscribe(t, b, bus.Subscription{Topic: bus.DeadLetterTopic("T", "g"), Group: "ops", Handler: dead.handle})
	var mu sync.Mutex
	attempts := 0
	subscribe(t, b, bus.Subscription{Topic: "T", Group: "g", MaxDeliveries: 10,
		Handler: func(ctx context.Context, m bus.Message) error {
			mu.Lock()
			attempts++
			mu.Unlock()
			return bus.Permanent(errors.New("unknown schema id 99"))
		}})
	publish(t, b, msg("T", "k", 1))
	d := dead.waitFor(t, 1)[0]
	if d.Headers[bus.HeaderDeliveries] != "1" || !strings.Contains(d.Headers[bus.HeaderDeadLetterReason], "unknown schema id 99") {
		t.Errorf("dead letter headers %v; want 1 delivery and the reason", d.Headers)
	}
	mu.Lock()
	defer mu.Unlock()
	if attempts != 1 {
		t.Errorf("handled %d times, want 1 for a permanent error", attempts)
	}
}

func testPanic(t *testing.T, b bus.Bus) {
	dead, c := newCollector(), newCollector()
	subscribe(t, b, bus.Subscription{Topic: bus.DeadLetterTopic("T", "g"), Group: "ops", Handler: dead.handle})
	subscribe(t, b, bus.Subscription{Topic: "T", Group: "g",
		Handler: func(ctx context.Context, m bus.Message) error {
			if m.Key == "boom" {
				var p *bus.Message
				_ = p.Topic // nil dereference
			}
			return c.handle(ctx, m)
		}})
	publish(t, b, msg("T", "boom", 1), msg("T", "boom", 2))
	c.waitFor(t, 0)
	d := dead.waitFor(t, 2)
	if !strings.Contains(d[0].Headers[bus.HeaderDeadLetterReason], "panic") {
		t.Errorf("reason %q; want it to name the panic", d[0].Headers[bus.HeaderDeadLetterReason])
	}
}

func testDurable(t *testing.T, b bus.Bus) {
	c := newCollector()
	sub := subscribe(t, b, bus.Subscription{Topic: "T", Group: "g", Handler: c.handle})
	for i := 0; i < 5; i++ {
		publish(t, b, msg("T", "k", i))
	}
	c.waitFor(t, 5)
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	for i := 5; i < 10; i++ {
		publish(t, b, msg("T", "k", i))
	}
	c2 := newCollector()
	subscribe(t, b, bus.Subscription{Topic: "T", Group: "g", Handler: c2.handle})
	// A sentinel on the same key after them: delivered in order, it comes
	// after any redelivery of 0-9 the resumed group would make.
	publish(t, b, msg("T", "k", 10))
	got := c2.waitFor(t, 6)
	var payloads []string
	for _, m := range got {
		payloads = append(payloads, string(m.Payload))
	}
	if diff := cmp.Diff([]string{"5", "6", "7", "8", "9", "10"}, payloads); diff != "" {
		t.Errorf("after resubscribing, then a sentinel (-want +got):\n%s", diff)
	}
	if c.count() != 5 {
		t.Errorf("closed subscription got %d messages, want 5", c.count())
	}
}

func testConcurrentPublishers(t *testing.T, b bus.Bus) {
	c := newCollector()
	subscribe(t, b, bus.Subscription{Topic: "T", Group: "g", Handler: c.handle})
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				if err := b.Publish(context.Background(), msg("T", "w"+strconv.Itoa(w), i)); err != nil {
					t.Errorf("publish: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	got := c.waitFor(t, 200)
	last := map[string]int{}
	for _, m := range got {
		n, _ := strconv.Atoi(string(m.Payload))
		if prev, ok := last[m.Key]; ok && n != prev+1 {
			t.Fatalf("publisher %s: %d after %d", m.Key, n, prev)
		}
		last[m.Key] = n
	}
}

func testInvalidAndClosed(t *testing.T, b bus.Bus) {
	ctx := context.Background()
	h := func(context.Context, bus.Message) error { return nil }
	for _, s := range []bus.Subscription{
		{Topic: "bad topic", Group: "g", Handler: h},
		{Topic: "a.b", Group: "g", Handler: h},
		{Topic: "T", Group: "", Handler: h},
		{Topic: "T", Group: "g"},
	} {
		if _, err := b.Subscribe(ctx, s); !errors.Is(err, bus.ErrInvalid) {
			t.Errorf("Subscribe(%+v) = %v, want ErrInvalid", s, err)
		}
	}
	if err := b.Publish(ctx, bus.Message{Topic: "a>b"}); !errors.Is(err, bus.ErrInvalid) {
		t.Errorf("Publish to a bad topic = %v, want ErrInvalid", err)
	}
	if err := b.Ping(ctx); err != nil {
		t.Errorf("Ping: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := b.Publish(ctx, msg("T", "k", 1)); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("Publish after Close = %v, want ErrClosed", err)
	}
	if _, err := b.Subscribe(ctx, bus.Subscription{Topic: "T", Group: "g", Handler: h}); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("Subscribe after Close = %v, want ErrClosed", err)
	}
}
