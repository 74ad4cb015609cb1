package notification_test

import (
	"context"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flotilla-ci/flotilla/bus"
	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
	"github.com/flotilla-ci/flotilla/shop/notification"
	"github.com/flotilla-ci/flotilla/shop/order"
	"github.com/flotilla-ci/flotilla/shop/payment"
	"github.com/flotilla-ci/flotilla/shop/shipping"
	"github.com/flotilla-ci/flotilla/shop/user"
	"github.com/flotilla-ci/flotilla/shop/user/usertest"
)

// texts records text messages: the SMS provider double.
type texts struct {
	mu   sync.Mutex
	sent []notification.SMSMessage
}

func (x *texts) Send(ctx context.Context, m notification.SMSMessage) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.sent = append(x.sent, m)
	return nil
}

func (x *texts) All() []notification.SMSMessage {
	x.mu.Lock()
	defer x.mu.Unlock()
	return append([]notification.SMSMessage(nil), x.sent...)
}

// publisher puts events on the bus as their producers would.
type publisher struct {
	bus   bus.Bus
	codec *kit.Codec
}

func newPublisher(t *testing.T, env kittest.Env) *publisher {
	t.Helper()
	ctx := context.Background()
	// No broker-side dedup: a duplicate really reaches the consumer.
	b, err := kit.Dial(ctx, env.BusURL, env.BusStream, "test-publisher", false, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	codec, _ := kit.NewCodec("")
	for _, s := range []fs.FS{user.Schemas(), order.Schemas(), shipping.Schemas(), payment.Schemas()} {
		if err := codec.Load(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	return &publisher{bus: b, codec: codec}
}

// publish sends event v copies times with one event id, and returns the id.
func (p *publisher) publish(t *testing.T, event string, v map[string]any, copies int) string {
	t.Helper()
	key, _ := v["orderId"].(string)
	if key == "" {
		key, _ = v["userId"].(string)
	}
	m, err := p.codec.Message(context.Background(), event, key, v)
	if err != nil {
		t.Fatal(err)
	}
	for range copies {
		if err := p.bus.Publish(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	return m.ID()
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func subject(t *testing.T, raw string) string {
	t.Helper()
	msg, err := mail.ReadMessage(strings.NewReader(raw))
	if err != nil {
		t.Fatalf("parse mail: %v\n%s", err, raw)
	}
	s, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNotification(t *testing.T) {
	kittest.Each(t, func(t *testing.T, env kittest.Env) {
		smtpd := startSMTP(t)
		smtpd.set(func() { smtpd.reject["bounce@shop.test"] = true })
		sms := &texts{}
		tmpl := fstest.MapFS{}
		_ = fs.WalkDir(notification.DefaultTemplates(), ".", func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				b, _ := fs.ReadFile(notification.DefaultTemplates(), p)
				tmpl[p] = &fstest.MapFile{Data: b}
			}
			return err
		})
		tmpl["OrderCancelled.email.tmpl"] = &fstest.MapFile{Data: []byte("Subject: cancelled\n\n{{.E.noSuchField}}\n")}

		users, customer, admin := usertest.StartForTest(t, env)
		nm := &notification.Main{Config: notification.Config{Kit: env.Config(t, notification.Service), Users: users.URL(),
			Mailer: &notification.SMTP{Addr: smtpd.Addr(), Timeout: 5 * time.Second}, SMS: sms, Templates: tmpl,
			RetryBase: 20 * time.Millisecond, Tick: 20 * time.Millisecond, MaxAttempts: 5}}
		if err := nm.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = nm.Close() })
		pub := newPublisher(t, env)
		var me struct{ ID string }
		kittest.Call(t, "GET", users.URL()+"/users/me", customer, nil).JSON(t, &me)

		list := func(t *testing.T, token, query string) []notification.Notification {
			t.Helper()
			r := kittest.Call(t, "GET", nm.URL()+"/notifications"+query, token, nil)
			if r.Status != 200 {
				t.Fatalf("list: %d %s", r.Status, r.Body)
			}
			var out struct{ Notifications []notification.Notification }
			r.JSON(t, &out)
			return out.Notifications
		}
		byEvent := func(t *testing.T, eventID string) []notification.Notification {
			var out []notification.Notification
			for _, n := range list(t, admin, "?limit=500") {
				if n.EventID == eventID {
					out = append(out, n)
				}
			}
			return out
		}
		settled := func(t *testing.T, eventID string, n int) []notification.Notification {
			t.Helper()
			var got []notification.Notification
			waitUntil(t, "notifications of "+eventID, func() bool {
				got = byEvent(t, eventID)
				done := len(got) == n
				for _, x := range got {
					done = done && (x.Status == notification.Sent || x.Status == notification.Dead)
				}
				return done
			})
			return got
		}
		confirmed := func(orderID string) map[string]any {
			return map[string]any{"orderId": orderID, "userId": me.ID, "total": int64(12345), "currency": "EUR", "paymentId": "p-1",
				"reservationId": "r-1", "timestamp": time.Now().UTC().Truncate(time.Millisecond), "version": 1}
		}

		t.Run("welcome mail over SMTP", func(t *testing.T) {
			waitUntil(t, "the welcome mail", func() bool { return len(smtpd.Mails("customer@shop.test")) == 1 })
			m := smtpd.Mails("customer@shop.test")[0]
			if got := subject(t, m.Data); got != "Welcome to the shop, customer@shop.test" {
				t.Errorf("subject = %q", got)
			}
			if m.From != "shop@flotilla.test" {
				t.Errorf("from = %q", m.From)
			}
		})

		t.Run("a duplicated event is notified once", func(t *testing.T) {
			id := pub.publish(t, "OrderConfirmed", confirmed("order-dup-0001"), 3)
			// Then a sentinel: another event of the same order (same key),
			// for another amount. An order's events are consumed in order,
			// so once the sentinel's notification is there every copy
			// before it has been consumed; and a SENT row is never sent
			// again, so once both are SENT no mail of them is still to come.
			sentinel := confirmed("order-dup-0001")
			sentinel["total"] = int64(99900)
			settled(t, pub.publish(t, "OrderConfirmed", sentinel, 1), 1)
			if n := len(byEvent(t, id)); n != 1 {
				t.Fatalf("%d notifications of one event published 3 times, want 1", n)
			}
			got := settled(t, id, 1)
			var mails []received
			for _, m := range smtpd.Mails("customer@shop.test") {
				if strings.Contains(m.Data, "order-dup-0001") && !strings.Contains(m.Data, "999.00 EUR") {
					mails = append(mails, m)
				}
			}
			if len(mails) != 1 || got[0].Status != notification.Sent {
				t.Fatalf("%d mails, notification %+v; want one, sent", len(mails), got)
			}
			if s := subject(t, mails[0].Data); s != "Order order-du confirmed" {
				t.Errorf("subject = %q", s)
			}
			if !strings.Contains(mails[0].Data, "123.45 EUR") {
				t.Errorf("body lacks the amount:\n%s", mails[0].Data)
			}
		})

		t.Run("a refusing server is retried with backoff", func(t *testing.T) {
			smtpd.set(func() { smtpd.tempFail = 2 })
			id := pub.publish(t, "OrderConfirmed", confirmed("order-retry-01"), 1)
			got := settled(t, id, 1)
			if got[0].Status != notification.Sent || got[0].Attempts != 3 {
				t.Errorf("notification = %+v; want SENT after 3 attempts", got[0])
			}
		})

		t.Run("a permanent refusal is dead-lettered at once", func(t *testing.T) {
			r := kittest.Call(t, "POST", users.URL()+"/users", "", map[string]string{"email": "bounce@shop.test", "password": "correct horse", "name": "Bounce"})
			if r.Status != 201 {
				t.Fatalf("register: %d %s", r.Status, r.Body)
			}
			var u struct{ ID string }
			r.JSON(t, &u)
			var n notification.Notification
			waitUntil(t, "the dead welcome", func() bool {
				all := list(t, admin, "?userId="+u.ID)
				if len(all) == 1 {
					n = all[0]
				}
				return n.Status == notification.Dead
			})
			if n.Attempts != 1 || !strings.Contains(n.LastError, "550") {
				t.Errorf("dead notification = %+v; want one attempt and the 550 reason", n)
			}
			if dead := list(t, admin, "?status=DEAD"); len(dead) == 0 {
				t.Error("?status=DEAD lists nothing")
			}
		})

		t.Run("a template that fails to render is dead-lettered and the consumer goes on", func(t *testing.T) {
			ev := map[string]any{"orderId": "order-cancel-1", "userId": me.ID, "reason": "payment_failed", "total": int64(500), "currency": "EUR",
				"timestamp": time.Now().UTC().Truncate(time.Millisecond), "version": 1}
			id := pub.publish(t, "OrderCancelled", ev, 1)
			got := settled(t, id, 1)
			if got[0].Status != notification.Dead || !strings.Contains(got[0].LastError, "noSuchField") {
				t.Errorf("notification = %+v; want DEAD naming the missing field", got[0])
			}
			refund := map[string]any{"paymentId": "p-1", "orderId": "order-cancel-1", "userId": me.ID, "amount": int64(500), "currency": "EUR",
				"timestamp": time.Now().UTC().Truncate(time.Millisecond), "version": 1}
			if got := settled(t, pub.publish(t, "PaymentRefunded", refund, 1), 1); got[0].Status != notification.Sent {
				t.Errorf("refund notification = %+v; want SENT", got[0])
			}
		})

		t.Run("a poison event is dead-lettered with the reason and the consumer goes on", func(t *testing.T) {
			dead := make(chan bus.Message, 1)
			sub, err := pub.bus.Subscribe(context.Background(), bus.Subscription{Topic: bus.DeadLetterTopic("OrderConfirmed", notification.Service), Group: "test-deadletters",
				Handler: func(ctx context.Context, m bus.Message) error {
					select {
					case dead <- m:
					default:
					}
					return nil
				}})
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = sub.Close() }()
			poison := bus.Message{Topic: "OrderConfirmed", Key: "poison", Payload: []byte("\x00\x00\x00\x00\x00\xff\xff\xff"),
				Headers: map[string]string{bus.HeaderEventID: kit.NewID(), bus.HeaderEventType: "OrderConfirmed"}}
			if err := pub.bus.Publish(context.Background(), poison); err != nil {
				t.Fatal(err)
			}
			select {
			case m := <-dead:
				if m.ID() != poison.ID() || !strings.Contains(m.Headers[bus.HeaderDeadLetterReason], "undecodable") {
					t.Errorf("dead letter %s with reason %q", m.ID(), m.Headers[bus.HeaderDeadLetterReason])
				}
			case <-time.After(20 * time.Second):
				t.Fatal("the poison event was not dead-lettered")
			}
			if got := settled(t, pub.publish(t, "OrderConfirmed", confirmed("order-after-poison"), 1), 1); got[0].Status != notification.Sent {
				t.Errorf("next event's notification = %+v; want SENT", got[0])
			}
		})

		t.Run("an event that overtakes UserRegistered is held, then notified", func(t *testing.T) {
			late := "u-late-" + kit.NewID()[:8]
			ev := confirmed("order-late-001")
			ev["userId"] = late
			id := pub.publish(t, "OrderConfirmed", ev, 2)
			var held int
			waitUntil(t, "the event held", func() bool {
				_ = nm.App().DB.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM held_events WHERE event_id = $1`, id).Scan(&held)
				return held == 1
			})
			if got := byEvent(t, id); len(got) != 0 {
				t.Fatalf("notified before the user was known: %+v", got)
			}
			pub.publish(t, "UserRegistered", map[string]any{"userId": late, "email": "late@shop.test", "name": "Late", "role": "customer",
				"timestamp": time.Now().UTC().Truncate(time.Millisecond), "version": 1}, 1)
			if got := settled(t, id, 1); got[0].Status != notification.Sent || got[0].Recipient != "late@shop.test" {
				t.Errorf("held event's notification = %+v; want SENT to late@shop.test", got[0])
			}
			waitUntil(t, "both mails", func() bool { return len(smtpd.Mails("late@shop.test")) == 2 })
			_ = nm.App().DB.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM held_events`).Scan(&held)
			if held != 0 {
				t.Errorf("%d events still held", held)
			}
		})

		t.Run("sms where the user asked for it", func(t *testing.T) {
			for _, tc := range []struct {
				name string
				body any
				want int
			}{
				{"not E.164", map[string]any{"phone": "0151 123", "sms": true}, 400},
				{"sms without a phone", map[string]any{"sms": true}, 400},
				{"unknown field", map[string]any{"phone": "+4915112345678", "fax": "1"}, 400},
				{"ok", map[string]any{"phone": "+4915112345678", "sms": true}, 200},
			} {
				t.Run(tc.name, func(t *testing.T) {
					if r := kittest.Call(t, "PUT", nm.URL()+"/preferences", customer, tc.body); r.Status != tc.want {
						t.Errorf("PUT /preferences: %d %s, want %d", r.Status, r.Body, tc.want)
					}
				})
			}
			ev := map[string]any{"shipmentId": "s-1", "orderId": "order-ship-001", "userId": me.ID, "carrier": "DHL", "service": "paket",
				"trackingNumber": "DHL000000000042", "rate": int64(549), "currency": "EUR", "country": "DE",
				"timestamp": time.Now().UTC().Truncate(time.Millisecond), "version": 1}
			got := settled(t, pub.publish(t, "ShipmentCreated", ev, 2), 2)
			channels := map[string]string{}
			for _, n := range got {
				channels[n.Channel] = n.Status
			}
			if diff := cmp.Diff(map[string]string{"email": "SENT", "sms": "SENT"}, channels); diff != "" {
				t.Errorf("channels (-want +got):\n%s", diff)
			}
			texts := sms.All()
			if len(texts) != 1 || texts[0].To != "+4915112345678" || !strings.Contains(texts[0].Body, "DHL000000000042") {
				t.Errorf("texts = %+v; want one to +4915112345678 with the tracking number", texts)
			}
		})

		t.Run("the list is the user's own", func(t *testing.T) {
			mine := list(t, customer, "")
			if len(mine) < 5 {
				t.Errorf("customer sees %d notifications, want at least 5", len(mine))
			}
			for _, n := range mine {
				if n.UserID != me.ID {
					t.Errorf("customer sees %+v of another user", n)
				}
			}
			other := usertest.Token(t, users.URL(), "other@shop.test")
			if r := kittest.Call(t, "GET", nm.URL()+"/notifications?userId="+me.ID, other, nil); r.Status != 403 {
				t.Errorf("another user reads them: %d %s", r.Status, r.Body)
			}
			if r := kittest.Call(t, "GET", nm.URL()+"/notifications?limit=0", customer, nil); r.Status != 400 {
				t.Errorf("limit=0: %d", r.Status)
			}
		})

		t.Run("a send whose outcome was lost is sent again, same Message-ID", func(t *testing.T) {
			// As if the process died after the server accepted the mail and
			// before SENT was recorded: the lease expires, the row is resent.
			id := pub.publish(t, "OrderConfirmed", confirmed("order-lost-001"), 1)
			n := settled(t, id, 1)[0]
			if _, err := nm.App().DB.ExecContext(context.Background(), `UPDATE notifications SET status = 'SENDING', next_ms = 0 WHERE id = $1`, n.ID); err != nil {
				t.Fatal(err)
			}
			waitUntil(t, "the resend", func() bool {
				got := byEvent(t, id)
				return len(got) == 1 && got[0].Status == notification.Sent && got[0].Attempts == 2
			})
			var ids []string
			for _, m := range smtpd.Mails("customer@shop.test") {
				if strings.Contains(m.Data, "order-lost-001") {
					msg, _ := mail.ReadMessage(strings.NewReader(m.Data))
					ids = append(ids, msg.Header.Get("Message-Id"))
				}
			}
			if len(ids) != 2 || ids[0] != ids[1] {
				t.Errorf("Message-IDs of the copies = %v; want two equal", ids)
			}
		})
	})
}

func TestDirSink(t *testing.T) {
	dir := t.TempDir()
	d := notification.Dir{Path: dir}
	m := notification.Mail{ID: "n-1", From: "shop@flotilla.test", To: "ada@shop.test", Subject: "Grüße, Ada", Body: "line one\nline two = ünïcode\n", Date: time.Unix(0, 0).UTC()}
	for range 2 {
		if err := d.Send(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(files) != 1 || filepath.Base(files[0]) != "n-1.eml" {
		t.Fatalf("files = %v; want one n-1.eml", files)
	}
	raw, _ := os.ReadFile(files[0])
	msg, err := mail.ReadMessage(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	if got := subject(t, string(raw)); got != m.Subject {
		t.Errorf("subject = %q", got)
	}
	body, _ := io.ReadAll(msg.Body)
	if !strings.Contains(string(body), "=C3=BCn=C3=AFcode") {
		t.Errorf("body is not quoted-printable UTF-8:\n%s", body)
	}
	for _, bad := range []string{"", "a@b\r\nBcc: x@y"} {
		if err := d.Send(context.Background(), notification.Mail{ID: "n-2", From: "shop@flotilla.test", To: bad}); !bus.IsPermanent(err) {
			t.Errorf("to %q: err = %v; want a permanent error", bad, err)
		}
	}
}

func TestParseTemplates(t *testing.T) {
	for _, tc := range []struct {
		name, file, src, want string
	}{
		{"unknown event", "OrderShipped.email.tmpl", "Subject: x\n\n", "unknown event"},
		{"unknown channel", "OrderConfirmed.fax.tmpl", "x", "unknown channel"},
		{"email without subject", "OrderConfirmed.email.tmpl", "Hello", "Subject"},
		{"syntax error", "OrderConfirmed.sms.tmpl", "{{if}}", "missing value for if"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := notification.ParseTemplates(fstest.MapFS{tc.file: &fstest.MapFile{Data: []byte(tc.src)}})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.file) {
				t.Errorf("err = %v; want one naming %s and %q", err, tc.file, tc.want)
			}
		})
	}
	if _, err := notification.ParseTemplates(notification.DefaultTemplates()); err != nil {
		t.Errorf("default templates: %v", err)
	}
}

func TestWithoutUserService(t *testing.T) {
	env := kittest.SQLiteEnv(t)
	nm := &notification.Main{Config: notification.Config{Kit: env.Config(t, notification.Service), DataDir: t.TempDir()}}
	if err := nm.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nm.Close() })
	r := kittest.Call(t, "GET", nm.URL()+"/notifications", "x", nil)
	if r.Status != 503 || !strings.Contains(string(r.Body), "USER_URL") {
		t.Errorf("GET /notifications without USER_URL: %d %s; want 503 naming USER_URL", r.Status, r.Body)
	}
}
