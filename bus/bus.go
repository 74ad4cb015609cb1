// Package bus is the event bus the shop's services publish to and consume
// from: an interface (Bus) with Kafka-shaped semantics, so a JetStream
// (bus/nats) and later a Kafka implementation can stand behind it.
//
// Semantics every implementation provides (bustest.Run checks them):
//
//   - Publish returns nil only once every message is durably stored by the
//     broker. A message has a topic, a key and headers; messages with the
//     same key on the same topic are delivered in publish order.
//   - Subscribe attaches a handler to a (topic, group) pair. Each group sees
//     every message of the topic at least once; subscribers sharing a group
//     share the work. Groups are durable: a group that resubscribes resumes
//     after the last acknowledged message, including messages published
//     while nobody was subscribed.
//   - A handler returning nil acknowledges the message. An error redelivers
//     it after the subscription's backoff; after MaxDeliveries failed
//     deliveries, or at once for an error wrapped with Permanent, the message
//     is published to DeadLetterTopic(topic, group) with the reason in the
//     HeaderDeadLetterReason header, acknowledged, and the group moves on.
//
// Delivery is at least once, so consumers must be idempotent; the outbox and
// the idempotent-consumer helpers in shop/kit build exactly-once effects on
// top.
//
// Watermill was evaluated for this role and not adopted: its SQL forwarder
// (watermill-sql) supports MySQL and PostgreSQL but not SQLite, which is the
// shop's default store; watermill-nats is not available from the module
// proxy here; and its Publisher/Subscriber API has no context on Publish, no
// message key or per-key ordering, and no dead-letter semantics without its
// router middleware. The outbox it would give us is ~150 lines over
// internal/sqldb, so the outbox and the JetStream binding are written here.
package bus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// Standard header names carried by every shop event.
const (
	HeaderEventID     = "event-id"
	HeaderEventType   = "event-type"
	HeaderOccurredAt  = "occurred-at" // RFC 3339 with nanoseconds, UTC
	HeaderTraceparent = "traceparent" // W3C trace context
	HeaderContentType = "content-type"

	// Set on messages in a dead-letter topic.
	HeaderDeadLetterReason = "dead-letter-reason"
	HeaderDeadLetterTopic  = "dead-letter-topic"
	HeaderDeadLetterGroup  = "dead-letter-group"
	HeaderDeliveries       = "deliveries"
)

// Message is one event on the bus.
type Message struct {
	Topic   string
	Key     string // ordering key: same key, same topic → delivered in order
	Headers map[string]string
	Payload []byte

	// Set on delivery only.
	Delivery int // 1 for the first delivery, 2 for the first redelivery, ...
}

// ID returns the event-id header.
func (m Message) ID() string { return m.Headers[HeaderEventID] }

// Type returns the event-type header.
func (m Message) Type() string { return m.Headers[HeaderEventType] }

// Handler processes one delivered message. See the package doc for what its
// result means.
type Handler func(ctx context.Context, m Message) error

// Subscription describes a consumer group's interest in a topic.
type Subscription struct {
	Topic   string
	Group   string // durable consumer group name: [A-Za-z0-9_-]+
	Handler Handler

	// MaxDeliveries is how many times a message is delivered before it is
	// dead-lettered; 0 means DefaultMaxDeliveries.
	MaxDeliveries int
	// Backoff is the delay before each redelivery: Backoff[i] before
	// delivery i+2; the last entry repeats. Empty means DefaultBackoff.
	Backoff []time.Duration
}

// Defaults for Subscription.
const DefaultMaxDeliveries = 5

// DefaultBackoff is the redelivery backoff when a Subscription sets none.
var DefaultBackoff = []time.Duration{100 * time.Millisecond, 500 * time.Millisecond, 2 * time.Second, 5 * time.Second}

// Bus publishes and subscribes.
type Bus interface {
	// Publish stores msgs on the bus and returns once all are acknowledged
	// by the broker. Messages are stored in argument order. It returns
	// ErrClosed after Close, or the broker's error (no message is known
	// stored unless Publish returns nil).
	Publish(ctx context.Context, msgs ...Message) error
	// Subscribe starts delivering the topic to the handler until the
	// returned Closer is closed or the bus is closed. It returns an error
	// wrapping ErrInvalid for a bad topic, group or missing handler.
	Subscribe(ctx context.Context, s Subscription) (io.Closer, error)
	// Ping checks the broker answers (readiness).
	Ping(ctx context.Context) error
	// Close stops every subscription (waiting for running handlers) and
	// releases the connection.
	Close() error
}

// Errors callers branch on.
var (
	ErrClosed  = errors.New("bus closed")
	ErrInvalid = errors.New("invalid")
)

// DeadLetterTopic is where a group's undeliverable messages of a topic go.
func DeadLetterTopic(topic, group string) string { return "deadletter-" + group + "-" + topic }

type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent marks a handler error as not worth retrying (a poison message
// that cannot be decoded, say): the message is dead-lettered at once.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanent{err}
}

// IsPermanent reports whether err was wrapped with Permanent.
func IsPermanent(err error) bool {
	var p permanent
	return errors.As(err, &p)
}

// BackoffFor is the delay before delivery n+1 after delivery n failed.
func BackoffFor(backoff []time.Duration, delivery int) time.Duration {
	if len(backoff) == 0 {
		backoff = DefaultBackoff
	}
	i := delivery - 1
	if i < 0 {
		i = 0
	}
	if i >= len(backoff) {
		i = len(backoff) - 1
	}
	return backoff[i]
}

// ValidName reports whether s is usable as a topic or group name: 1 to 200
// characters of letters, digits, '-' and '_'.
func ValidName(s string) bool {
	if s == "" || len(s) > 200 {
		return false
	}
	for _, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_'
		if !ok {
			return false
		}
	}
	return true
}

// Check validates a subscription.
func (s Subscription) Check() error {
	switch {
	case !ValidName(s.Topic):
		return fmt.Errorf("%w topic %q: want letters, digits, '-' or '_'", ErrInvalid, s.Topic)
	case !ValidName(s.Group):
		return fmt.Errorf("%w group %q: want letters, digits, '-' or '_'", ErrInvalid, s.Group)
	case s.Handler == nil:
		return fmt.Errorf("%w subscription to %s: no handler", ErrInvalid, s.Topic)
	case s.MaxDeliveries < 0:
		return fmt.Errorf("%w subscription to %s: negative max deliveries", ErrInvalid, s.Topic)
	}
	return nil
}
