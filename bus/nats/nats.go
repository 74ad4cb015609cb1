// Package nats implements bus.Bus on NATS JetStream, and starts an embedded
// JetStream server for single-machine use (Embedded).
//
// Layout on the server: one stream (Config.Stream, file storage) holds every
// topic under Config.Prefix; a message with key k on topic t is stored on
// subject <prefix>.<t>.<partition>, partition = fnv32a(k) mod
// Config.Partitions, like a Kafka partitioner. A subscription is one durable
// pull consumer per partition with explicit acks and at most one
// unacknowledged message, which is what keeps per-key order across
// redeliveries while partitions run in parallel. Redelivery backoff is done
// with NAK-with-delay; dead letters are published to the dead-letter topic
// on the same stream before the original is acknowledged.
package nats

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flotilla-ci/flotilla/bus"
)

// Config configures a Bus.
type Config struct {
	URL        string        // nats://host:port
	Stream     string        // JetStream stream name; default "FLOTILLA_EVENTS"
	Prefix     string        // subject prefix; default "flotilla.events"
	Partitions int           // per topic; default 8. Fixed for a stream's life.
	AckWait    time.Duration // redelivery when a handler hangs; default 30s
	MaxAge     time.Duration // retention; default 7 days
	// Dedup makes JetStream drop a message whose event-id it stored within
	// the last DedupWindow (Nats-Msg-Id), so an outbox relay that crashed
	// between publish and mark-sent does not store the event twice.
	Dedup       bool
	DedupWindow time.Duration // default 2 minutes
	Name        string        // connection name shown by the server
	Logger      *slog.Logger
}

// DefaultConfig returns the defaults for url.
func DefaultConfig(url string) Config {
	return Config{URL: url, Stream: "FLOTILLA_EVENTS", Prefix: "flotilla.events", Partitions: 8,
		AckWait: 30 * time.Second, MaxAge: 7 * 24 * time.Hour, Dedup: true, DedupWindow: 2 * time.Minute}
}

func (c *Config) fill() {
	d := DefaultConfig(c.URL)
	if c.Stream == "" {
		c.Stream = d.Stream
	}
	if c.Prefix == "" {
		c.Prefix = d.Prefix
	}
	if c.Partitions <= 0 {
		c.Partitions = d.Partitions
	}
	if c.AckWait <= 0 {
		c.AckWait = d.AckWait
	}
	if c.MaxAge <= 0 {
		c.MaxAge = d.MaxAge
	}
	if c.DedupWindow <= 0 {
		c.DedupWindow = d.DedupWindow
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Bus is a bus.Bus on JetStream.
type Bus struct {
	cfg Config
	nc  *nats.Conn
	js  jetstream.JetStream

	mu     sync.Mutex
	closed bool
	subs   map[*subscription]struct{}
	pubMu  sync.Mutex // keeps batches from interleaving, so argument order is store order
}

var _ bus.Bus = (*Bus)(nil)

// keyHeader carries the message key; it is not shown to handlers.
const keyHeader = "Flotilla-Key"

// New connects to the server and creates or updates the stream.
func New(ctx context.Context, cfg Config) (*Bus, error) {
	cfg.fill()
	opts := []nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			cfg.Logger.Warn("nats async error", "subject", subject, "err", err)
		})}
	if cfg.Name != "" {
		opts = append(opts, nats.Name(cfg.Name))
	}
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats %s: %w", cfg.URL, err)
	}
	// A JetStream API call (creating a stream or a consumer) waits for
	// the server's store: on a busy machine that outlasts nats.go's
	// default of 5s, and a service failed to start on it. A caller's
	// deadline still wins.
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(30*time.Second))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	sc := jetstream.StreamConfig{
		Name:      cfg.Stream,
		Subjects:  []string{cfg.Prefix + ".>"},
		Storage:   jetstream.FileStorage,
		Retention: jetstream.LimitsPolicy,
		MaxAge:    cfg.MaxAge,
	}
	// The window is a property of the stream, the same for every client;
	// Dedup only decides whether this client's messages carry a Nats-Msg-Id.
	sc.Duplicates = cfg.DedupWindow
	if err := ensureStream(ctx, js, sc); err != nil {
		nc.Close()
		return nil, fmt.Errorf("create stream %s: %w", cfg.Stream, err)
	}
	return &Bus{cfg: cfg, nc: nc, js: js, subs: map[*subscription]struct{}{}}, nil
}

// ensureStream creates the stream, or updates it only when its config
// differs: every service of a system calls New at start, and needless
// concurrent updates race consumer creation inside nats-server 2.15
// (filestore UpdateConfig vs ConsumerStore, seen under -race).
func ensureStream(ctx context.Context, js jetstream.JetStream, sc jetstream.StreamConfig) error {
	st, err := js.Stream(ctx, sc.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = js.CreateStream(ctx, sc)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return nil // created concurrently by another process, with the same config
		}
		return err
	}
	if err != nil {
		return err
	}
	have := st.CachedInfo().Config
	if slices.Equal(have.Subjects, sc.Subjects) && have.Duplicates == sc.Duplicates && have.MaxAge == sc.MaxAge && have.Storage == sc.Storage {
		return nil
	}
	_, err = js.UpdateStream(ctx, sc)
	return err
}

// DeleteStream removes the bus's stream and everything in it (tests).
func (b *Bus) DeleteStream(ctx context.Context) error {
	return b.js.DeleteStream(ctx, b.cfg.Stream)
}

func (b *Bus) subject(topic, key string) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return b.cfg.Prefix + "." + topic + "." + strconv.Itoa(int(h.Sum32()%uint32(b.cfg.Partitions)))
}

// Publish implements bus.Bus.
func (b *Bus) Publish(ctx context.Context, msgs ...bus.Message) error {
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return bus.ErrClosed
	}
	for _, m := range msgs {
		if !bus.ValidName(m.Topic) {
			return fmt.Errorf("publish: %w topic %q", bus.ErrInvalid, m.Topic)
		}
	}
	b.pubMu.Lock()
	defer b.pubMu.Unlock()
	futures := make([]jetstream.PubAckFuture, 0, len(msgs))
	for _, m := range msgs {
		nm := nats.NewMsg(b.subject(m.Topic, m.Key))
		nm.Data = m.Payload
		for k, v := range m.Headers {
			nm.Header.Set(k, v)
		}
		nm.Header.Set(keyHeader, m.Key)
		var opts []jetstream.PublishOpt
		if id := m.ID(); b.cfg.Dedup && id != "" {
			opts = append(opts, jetstream.WithMsgID(m.Topic+"/"+id))
		}
		opts = append(opts, jetstream.WithExpectStream(b.cfg.Stream))
		f, err := b.js.PublishMsgAsync(nm, opts...)
		if err != nil {
			return fmt.Errorf("publish to %s: %w", m.Topic, err)
		}
		futures = append(futures, f)
	}
	var errs []error
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			errs = append(errs, fmt.Errorf("publish to %s: %w", f.Msg().Subject, err))
		case <-ctx.Done():
			return fmt.Errorf("publish: %w", ctx.Err())
		}
	}
	return errors.Join(errs...)
}

// Ping implements bus.Bus.
func (b *Bus) Ping(ctx context.Context) error {
	if _, err := b.js.Stream(ctx, b.cfg.Stream); err != nil {
		return fmt.Errorf("nats stream %s: %w", b.cfg.Stream, err)
	}
	return nil
}

// Subscribe implements bus.Bus.
func (b *Bus) Subscribe(ctx context.Context, s bus.Subscription) (io.Closer, error) {
	if err := s.Check(); err != nil {
		return nil, err
	}
	if s.MaxDeliveries == 0 {
		s.MaxDeliveries = bus.DefaultMaxDeliveries
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, bus.ErrClosed
	}
	b.mu.Unlock()
	hctx, cancel := context.WithCancel(context.Background())
	sub := &subscription{b: b, s: s, ctx: hctx, cancel: cancel}
	for p := 0; p < b.cfg.Partitions; p++ {
		name := fmt.Sprintf("%s_%s_%d", s.Group, s.Topic, p)
		cons, err := b.js.CreateOrUpdateConsumer(ctx, b.cfg.Stream, jetstream.ConsumerConfig{
			Durable:       name,
			FilterSubject: fmt.Sprintf("%s.%s.%d", b.cfg.Prefix, s.Topic, p),
			AckPolicy:     jetstream.AckExplicitPolicy,
			DeliverPolicy: jetstream.DeliverAllPolicy,
			AckWait:       b.cfg.AckWait,
			MaxDeliver:    -1,
			MaxAckPending: 1,
		})
		if err != nil {
			_ = sub.Close()
			return nil, fmt.Errorf("subscribe %s/%s: %w", s.Group, s.Topic, err)
		}
		cc, err := cons.Consume(sub.handle, jetstream.PullMaxMessages(8),
			jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
				if !errors.Is(err, jetstream.ErrConsumerDeleted) && hctx.Err() == nil {
					b.cfg.Logger.Debug("nats consume", "group", s.Group, "topic", s.Topic, "err", err)
				}
			}))
		if err != nil {
			_ = sub.Close()
			return nil, fmt.Errorf("subscribe %s/%s: %w", s.Group, s.Topic, err)
		}
		sub.ccs = append(sub.ccs, cc)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		_ = sub.stop()
		return nil, bus.ErrClosed
	}
	b.subs[sub] = struct{}{}
	return sub, nil
}

// Close implements bus.Bus.
func (b *Bus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	subs := make([]*subscription, 0, len(b.subs))
	for s := range b.subs {
		subs = append(subs, s)
	}
	b.mu.Unlock()
	for _, s := range subs {
		_ = s.stop()
	}
	err := b.nc.Drain()
	b.nc.Close()
	if err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		return fmt.Errorf("close nats: %w", err)
	}
	return nil
}

type subscription struct {
	b      *Bus
	s      bus.Subscription
	ctx    context.Context
	cancel context.CancelFunc
	ccs    []jetstream.ConsumeContext

	mu       sync.Mutex
	stopped  bool
	inflight sync.WaitGroup
	once     sync.Once
}

func (s *subscription) handle(jm jetstream.Msg) {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		_ = jm.Nak() // someone else in the group, or our next life, takes it
		return
	}
	s.inflight.Add(1)
	s.mu.Unlock()
	defer s.inflight.Done()

	delivery := 1
	if md, err := jm.Metadata(); err == nil {
		delivery = int(md.NumDelivered)
	}
	h := jm.Headers()
	m := bus.Message{Topic: s.s.Topic, Key: h.Get(keyHeader), Payload: jm.Data(), Delivery: delivery, Headers: map[string]string{}}
	for k, vs := range h {
		if k == keyHeader || strings.HasPrefix(k, "Nats-") || len(vs) == 0 {
			continue
		}
		m.Headers[k] = vs[0]
	}
	err := callHandler(s.ctx, s.s.Handler, m)
	if err == nil {
		s.ack(jm)
		return
	}
	if s.ctx.Err() != nil { // stopping: not the message's fault
		_ = jm.Nak()
		return
	}
	if bus.IsPermanent(err) || delivery >= s.s.MaxDeliveries {
		if derr := s.deadLetter(m, err); derr != nil {
			s.b.cfg.Logger.Error("dead-letter publish failed; will redeliver", "topic", m.Topic, "group", s.s.Group, "err", derr)
			_ = jm.NakWithDelay(bus.BackoffFor(s.s.Backoff, delivery))
			return
		}
		s.b.cfg.Logger.Warn("message dead-lettered", "topic", m.Topic, "group", s.s.Group,
			"event_id", m.ID(), "deliveries", delivery, "reason", err.Error())
		s.ack(jm)
		return
	}
	_ = jm.NakWithDelay(bus.BackoffFor(s.s.Backoff, delivery))
}

func (s *subscription) ack(jm jetstream.Msg) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := jm.DoubleAck(ctx); err != nil {
		// The message will be redelivered after AckWait; consumers are idempotent.
		s.b.cfg.Logger.Warn("ack failed", "topic", s.s.Topic, "group", s.s.Group, "err", err)
	}
}

// callHandler turns a handler panic into a permanent error, so one poison
// message cannot take the consumer down.
func callHandler(ctx context.Context, h bus.Handler, m bus.Message) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = bus.Permanent(fmt.Errorf("handler panic: %v", p))
		}
	}()
	return h(ctx, m)
}

func (s *subscription) deadLetter(m bus.Message, reason error) error {
	headers := make(map[string]string, len(m.Headers)+4)
	for k, v := range m.Headers {
		headers[k] = v
	}
	headers[bus.HeaderDeadLetterReason] = reason.Error()
	headers[bus.HeaderDeadLetterTopic] = m.Topic
	headers[bus.HeaderDeadLetterGroup] = s.s.Group
	headers[bus.HeaderDeliveries] = strconv.Itoa(m.Delivery)
	dl := bus.Message{Topic: bus.DeadLetterTopic(m.Topic, s.s.Group), Key: m.Key, Headers: headers, Payload: m.Payload}
	if len(dl.Topic) > 200 {
		dl.Topic = dl.Topic[:200]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.b.Publish(ctx, dl)
}

func (s *subscription) stop() error {
	s.once.Do(func() {
		s.mu.Lock()
		s.stopped = true
		s.mu.Unlock()
		s.cancel()
		for _, cc := range s.ccs {
			cc.Stop()
		}
		for _, cc := range s.ccs {
			select {
			case <-cc.Closed():
			case <-time.After(5 * time.Second):
			}
		}
		s.inflight.Wait()
	})
	return nil
}

// Close stops the subscription; the group's position is kept.
func (s *subscription) Close() error {
	err := s.stop()
	s.b.mu.Lock()
	delete(s.b.subs, s)
	s.b.mu.Unlock()
	return err
}
