// Package notification is notification-service: it tells customers what
// happened (UserRegistered, OrderConfirmed, OrderCancelled, ShipmentCreated,
// ShipmentDelivered, PaymentRefunded) by email, and by SMS where the user
// gave a phone number and asked for it. Each message is rendered from a
// template per event and channel (templates.go) when the event is
// consumed, and recorded in the same transaction as the event id, one row
// per (event, channel): a redelivered or duplicated event never makes a
// second notification.
//
// A sender then moves each row through a small state machine:
//
//	PENDING ─claim─► SENDING ─accepted─► SENT
//	   ▲                │
//	   └──transient─────┤ (backoff doubling from RetryBase up to RetryMax)
//	                    └──permanent, or MaxAttempts reached─► DEAD (the dead letter, with the reason)
//
// The claim (PENDING → SENDING, with a lease) commits before the send and
// the outcome after it, so two senders never send one row and a crash
// before the send loses nothing: the lease expires and the row is sent.
// The one edge left is a crash after the server accepted a message and
// before SENT committed: that row is sent again when its lease expires
// (at least once, never lost). The resend carries the same Message-ID, so
// mail clients and servers that collapse duplicates do; the file sink
// rewrites the same file; an SMS provider gets the same idempotency key.
// A template that fails to render is DEAD at once with the error. An event
// for a user the service has not heard of yet (after a backlog, topics are
// consumed in parallel, so OrderConfirmed can overtake UserRegistered) is
// held in the same transaction and handled when UserRegistered arrives.
//
// API (bearer token):
//
//	GET /notifications?userId=&status=&limit=   what was sent to the caller (admins: anyone, or all)
//	GET /preferences                            the caller's contact preferences
//	PUT /preferences {phone, sms}               a phone number (E.164) and whether to text it
package notification

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/flotilla-ci/flotilla/bus"
	"github.com/flotilla-ci/flotilla/internal/sqldb"
	"github.com/flotilla-ci/flotilla/shop/kit"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

//go:embed templates/*.tmpl
var templateFS embed.FS

// readerFS holds the schemas of the events notification-service consumes,
// copied from their producers: used to decode, never registered.
//
//go:embed readers/*.avsc
var readerFS embed.FS

// DefaultTemplates are the shop's message templates.
func DefaultTemplates() fs.FS { s, _ := fs.Sub(templateFS, "templates"); return s }

// Service is the service's name in flotilla.yaml.
const Service = "notification-service"

// Notification statuses.
const (
	Pending = "PENDING"
	Sending = "SENDING"
	Sent    = "SENT"
	Dead    = "DEAD"
)

// Config is notification-service's configuration.
type Config struct {
	Kit kit.Config
	// Users is user-service's base URL, for the JWKS only (USER_URL);
	// without it the API answers 503 and notifications are still sent.
	Users string
	// DataDir holds the default sinks: mail/<id>.eml and sms/<id>.sms.
	DataDir string
	// Mailer sends email; default Dir{DataDir/mail}.
	Mailer Mailer
	// SMS sends text messages; default SMSDir{DataDir/sms}.
	SMS SMSProvider
	// From is the sender address; default shop@flotilla.test.
	From string
	// Templates default to DefaultTemplates().
	Templates fs.FS
	// MaxAttempts before a notification is dead; default 8.
	MaxAttempts int
	// RetryBase is the first retry's delay, doubling up to RetryMax;
	// defaults 1s and 5m.
	RetryBase, RetryMax time.Duration
	// Lease is how long a send may take before it is presumed lost and
	// sent again; default 1m.
	Lease time.Duration
	// Tick is how often the sender looks for due notifications; default 100ms.
	Tick time.Duration
	// Workers send in parallel; default 4.
	Workers int
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Main runs notification-service.
type Main struct {
	Config Config

	app  *kit.App
	tmpl *Templates
	wake chan struct{}
}

// Start opens everything and serves.
func (m *Main) Start(ctx context.Context) error {
	c := &m.Config
	if c.DataDir == "" {
		c.DataDir = "data"
	}
	if c.Mailer == nil {
		c.Mailer = Dir{Path: filepath.Join(c.DataDir, "mail")}
	}
	if c.SMS == nil {
		c.SMS = SMSDir{Path: filepath.Join(c.DataDir, "sms")}
	}
	if c.From == "" {
		c.From = "shop@flotilla.test"
	}
	if c.Templates == nil {
		c.Templates = DefaultTemplates()
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 8
	}
	if c.RetryBase <= 0 {
		c.RetryBase = time.Second
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 5 * time.Minute
	}
	if c.Lease <= 0 {
		c.Lease = time.Minute
	}
	if c.Tick <= 0 {
		c.Tick = 100 * time.Millisecond
	}
	if c.Workers <= 0 {
		c.Workers = 4
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	tmpl, err := ParseTemplates(c.Templates)
	if err != nil {
		return fmt.Errorf("start %s: %w", Service, err)
	}
	m.tmpl = tmpl
	mig, _ := fs.Sub(migrationFS, "migrations")
	app, err := kit.Start(ctx, c.Kit, mig, nil)
	if err != nil {
		return err
	}
	m.app = app
	m.wake = make(chan struct{}, 1)
	fail := func(err error) error {
		_ = app.Close()
		return fmt.Errorf("start %s: %w", Service, err)
	}
	for _, ev := range Events {
		src, err := readerFS.ReadFile("readers/" + ev + ".avsc")
		if err != nil {
			return fail(err)
		}
		if err := app.Codec.AddReader(ev, string(src)); err != nil {
			return fail(err)
		}
	}
	for _, ev := range Events {
		if err := app.Consume(ctx, ev, m.consumer(ev)); err != nil {
			return fail(err)
		}
	}
	auth := func(h kit.HandlerFunc) kit.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) error {
			return kit.Errorf(http.StatusServiceUnavailable, "auth_unavailable", "USER_URL is not set: %s cannot verify tokens (notifications are still sent)", Service)
		}
	}
	if c.Users != "" {
		auth = func(h kit.HandlerFunc) kit.HandlerFunc { return kit.NewVerifier(c.Users).Auth(h) }
	} else {
		app.Log.Warn("USER_URL is not set: the API answers 503; notifications are still sent")
	}
	app.Mux.Handle("GET /notifications", kit.Handle(auth(m.list)))
	app.Mux.Handle("GET /preferences", kit.Handle(auth(m.getPrefs)))
	app.Mux.Handle("PUT /preferences", kit.Handle(auth(m.putPrefs)))
	app.Go(m.sender)
	app.Serve()
	return nil
}

// Run starts the service and stops it when ctx is done.
func (m *Main) Run(ctx context.Context) error {
	if err := m.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	return m.Close()
}

// URL is the service's base URL.
func (m *Main) URL() string { return m.app.URL() }

// App is the running kit.App.
func (m *Main) App() *kit.App { return m.app }

// Close drains and stops the service.
func (m *Main) Close() error {
	if m.app == nil {
		return nil
	}
	return m.app.Close()
}

// Recipient is what the service knows of a user.
type Recipient struct {
	UserID string `json:"userId"`
	Email  string `json:"email"`
	Name   string `json:"name"`
	Phone  string `json:"phone"`
	SMS    bool   `json:"sms"`
}

// Notification is one message to one user on one channel.
type Notification struct {
	ID        string     `json:"id"`
	EventID   string     `json:"eventId"`
	Event     string     `json:"event"`
	Channel   string     `json:"channel"`
	UserID    string     `json:"userId"`
	Recipient string     `json:"recipient"`
	Subject   string     `json:"subject,omitempty"`
	Body      string     `json:"body"`
	Status    string     `json:"status"`
	Attempts  int        `json:"attempts"`
	LastError string     `json:"lastError,omitempty"`
	CreatedAt time.Time  `json:"createdAt"`
	SentAt    *time.Time `json:"sentAt,omitempty"`
}

func (m *Main) consumer(event string) kit.ConsumeFunc {
	return func(ctx context.Context, tx *sqldb.Tx, msg bus.Message) error {
		if err := m.handle(ctx, tx, event, msg.ID(), msg.Payload); err != nil {
			return err
		}
		select {
		case m.wake <- struct{}{}:
		default:
		}
		return nil
	}
}

// handle records the notifications of one event inside tx. An event for a
// user the service has not heard of yet (its UserRegistered still on the
// way) is held, and handled when UserRegistered arrives.
func (m *Main) handle(ctx context.Context, tx *sqldb.Tx, event, eventID string, payload []byte) error {
	e := map[string]any{}
	if err := m.app.Codec.Decode(ctx, event, payload, &e); err != nil {
		return err
	}
	userID, _ := e["userId"].(string)
	if userID == "" {
		return fmt.Errorf("%s %s: %w: no userId", event, eventID, kit.ErrPoison)
	}
	if event == "UserRegistered" {
		email, _ := e["email"].(string)
		name, _ := e["name"].(string)
		if _, err := tx.ExecContext(ctx, `INSERT INTO recipients (user_id, email, name, phone, sms) VALUES ($1, $2, $3, '', FALSE)
			ON CONFLICT (user_id) DO UPDATE SET email = excluded.email, name = excluded.name`, userID, email, name); err != nil {
			return fmt.Errorf("record recipient %s: %w", userID, err)
		}
	}
	var r Recipient
	err := tx.QueryRowContext(ctx, `SELECT user_id, email, name, phone, sms FROM recipients WHERE user_id = $1`, userID).Scan(&r.UserID, &r.Email, &r.Name, &r.Phone, &r.SMS)
	if sqldb.IsNoRows(err) {
		m.app.Log.InfoContext(ctx, "event held until its user is known", "event", event, "event_id", eventID, "user_id", userID)
		_, err := tx.ExecContext(ctx, `INSERT INTO held_events (event_id, event, user_id, payload, held_ms) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING`,
			eventID, event, userID, payload, m.Config.Now().UnixMilli())
		return err
	}
	if err != nil {
		return err
	}
	now := m.Config.Now().UnixMilli()
	for _, ch := range []string{Email, SMS} {
		to := r.Email
		if ch == SMS {
			to = r.Phone
			if !r.SMS {
				to = ""
			}
		}
		if to == "" || !m.tmpl.Has(event, ch) {
			continue
		}
		status, lastErr := Pending, ""
		out, err := m.tmpl.Render(event, ch, Data{Event: event, User: r, E: e})
		if err != nil {
			status, lastErr = Dead, err.Error()
			m.app.Log.ErrorContext(ctx, "notification dead", "event", event, "event_id", eventID, "channel", ch, "err", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO notifications (id, event_id, event, channel, user_id, recipient, subject, body, status, attempts, next_ms, last_error, created_ms, sent_ms)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $10, $11, $10, 0) ON CONFLICT (event_id, channel) DO NOTHING`,
			kit.NewID(), eventID, event, ch, userID, to, out.Subject, out.Body, status, now, lastErr); err != nil {
			return fmt.Errorf("record notification: %w", err)
		}
	}
	if event != "UserRegistered" {
		return nil
	}
	// Release what waited for this user.
	rs, err := tx.QueryContext(ctx, `SELECT event_id, event, payload FROM held_events WHERE user_id = $1 ORDER BY held_ms, event_id`, userID)
	if err != nil {
		return err
	}
	type held struct {
		id, event string
		payload   []byte
	}
	var list []held
	for rs.Next() {
		var h held
		if err := rs.Scan(&h.id, &h.event, &h.payload); err != nil {
			_ = rs.Close()
			return err
		}
		list = append(list, h)
	}
	_ = rs.Close()
	for _, h := range list {
		if err := m.handle(ctx, tx, h.event, h.id, h.payload); err != nil {
			return fmt.Errorf("release held %s %s: %w", h.event, h.id, err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM held_events WHERE event_id = $1`, h.id); err != nil {
			return err
		}
	}
	return nil
}

// sender sends due notifications until ctx ends.
func (m *Main) sender(ctx context.Context) {
	t := time.NewTicker(m.Config.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-m.wake:
		}
		if _, err := m.Pass(ctx); err != nil && ctx.Err() == nil {
			m.app.Log.WarnContext(ctx, "notification pass", "err", err)
		}
	}
}

// Pass sends every notification due now (PENDING ones whose retry time
// came, SENDING ones whose lease expired), and returns how many it tried.
func (m *Main) Pass(ctx context.Context) (int, error) {
	now := m.Config.Now().UnixMilli()
	rs, err := m.app.DB.QueryContext(ctx, `SELECT id, status FROM notifications WHERE status IN ($1, $2) AND next_ms <= $3 ORDER BY next_ms LIMIT 64`, Pending, Sending, now)
	if err != nil {
		return 0, fmt.Errorf("due notifications: %w", err)
	}
	type due struct{ id, status string }
	var list []due
	for rs.Next() {
		var d due
		if err := rs.Scan(&d.id, &d.status); err != nil {
			_ = rs.Close()
			return 0, err
		}
		list = append(list, d)
	}
	_ = rs.Close()
	var wg sync.WaitGroup
	sem := make(chan struct{}, m.Config.Workers)
	errs := make([]error, len(list))
	for i, d := range list {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			errs[i] = m.send(ctx, d.id, d.status, now)
		}()
	}
	wg.Wait()
	return len(list), errors.Join(errs...)
}

// send claims one notification, sends it and records the outcome.
func (m *Main) send(ctx context.Context, id, from string, now int64) error {
	res, err := m.app.DB.ExecContext(ctx, `UPDATE notifications SET status = $1, attempts = attempts + 1, next_ms = $2 WHERE id = $3 AND status = $4 AND next_ms <= $5`,
		Sending, now+m.Config.Lease.Milliseconds(), id, from, now)
	if err != nil {
		return fmt.Errorf("claim notification %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil // another sender has it
	}
	n, err := m.load(ctx, id)
	if err != nil {
		return err
	}
	if from == Sending {
		m.app.Log.WarnContext(ctx, "resending notification whose send outcome was lost", "notification_id", id, "attempt", n.Attempts)
	}
	sendCtx, cancel := context.WithTimeout(ctx, m.Config.Lease/2)
	switch n.Channel {
	case Email:
		err = m.Config.Mailer.Send(sendCtx, Mail{ID: n.ID, From: m.Config.From, To: n.Recipient, Subject: n.Subject, Body: n.Body, Date: m.Config.Now()})
	case SMS:
		err = m.Config.SMS.Send(sendCtx, SMSMessage{ID: n.ID, To: n.Recipient, Body: n.Body})
	default:
		err = bus.Permanent(fmt.Errorf("unknown channel %q", n.Channel))
	}
	cancel()
	done := m.Config.Now().UnixMilli()
	if err == nil {
		_, err = m.app.DB.ExecContext(ctx, `UPDATE notifications SET status = $1, sent_ms = $2, last_error = '' WHERE id = $3 AND status = $4`, Sent, done, id, Sending)
		if err != nil {
			return fmt.Errorf("record notification %s sent: %w", id, err)
		}
		return nil
	}
	if ctx.Err() != nil {
		return nil // shutting down: the lease expires and the next run sends it
	}
	status, next := Pending, done+m.backoff(n.Attempts).Milliseconds()
	if bus.IsPermanent(err) || n.Attempts >= m.Config.MaxAttempts {
		status = Dead
		m.app.Log.ErrorContext(ctx, "notification dead", "notification_id", id, "event", n.Event, "channel", n.Channel, "attempts", n.Attempts, "err", err)
	} else {
		m.app.Log.WarnContext(ctx, "notification send failed; will retry", "notification_id", id, "channel", n.Channel, "attempt", n.Attempts, "err", err)
	}
	if _, uerr := m.app.DB.ExecContext(ctx, `UPDATE notifications SET status = $1, next_ms = $2, last_error = $3 WHERE id = $4 AND status = $5`,
		status, next, truncate(err.Error(), 1000), id, Sending); uerr != nil {
		return fmt.Errorf("record notification %s failure: %w", id, uerr)
	}
	return nil
}

// backoff is the delay before retry number attempt (1-based).
func (m *Main) backoff(attempt int) time.Duration {
	d := m.Config.RetryBase << min(max(attempt-1, 0), 20)
	return min(d, m.Config.RetryMax)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

const cols = `id, event_id, event, channel, user_id, recipient, subject, body, status, attempts, last_error, created_ms, sent_ms`

func scan(row interface{ Scan(...any) error }) (Notification, error) {
	var n Notification
	var created, sent int64
	err := row.Scan(&n.ID, &n.EventID, &n.Event, &n.Channel, &n.UserID, &n.Recipient, &n.Subject, &n.Body, &n.Status, &n.Attempts, &n.LastError, &created, &sent)
	n.CreatedAt = time.UnixMilli(created).UTC()
	if sent > 0 {
		t := time.UnixMilli(sent).UTC()
		n.SentAt = &t
	}
	return n, err
}

func (m *Main) load(ctx context.Context, id string) (Notification, error) {
	return scan(m.app.DB.QueryRowContext(ctx, `SELECT `+cols+` FROM notifications WHERE id = $1`, id))
}

func (m *Main) list(w http.ResponseWriter, r *http.Request) error {
	c := kit.ClaimsFrom(r.Context())
	q := r.URL.Query()
	userID := q.Get("userId")
	switch {
	case userID == "" && c.Role != kit.RoleAdmin:
		userID = c.UserID()
	case userID != "" && userID != c.UserID() && c.Role != kit.RoleAdmin:
		return kit.Forbidden("user %s may not read the notifications of user %s", c.UserID(), userID)
	}
	limit := 50
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 500 {
			return kit.BadRequest("limit=%q: want 1 to 500", s)
		}
		limit = n
	}
	where, args := `WHERE 1 = 1`, []any{}
	if userID != "" {
		args = append(args, userID)
		where += fmt.Sprintf(" AND user_id = $%d", len(args))
	}
	if s := q.Get("status"); s != "" {
		if s != Pending && s != Sending && s != Sent && s != Dead {
			return kit.BadRequest("status=%q: want PENDING, SENDING, SENT or DEAD", s)
		}
		args = append(args, s)
		where += fmt.Sprintf(" AND status = $%d", len(args))
	}
	args = append(args, limit)
	rs, err := m.app.DB.QueryContext(r.Context(), `SELECT `+cols+` FROM notifications `+where+fmt.Sprintf(` ORDER BY created_ms DESC, id LIMIT $%d`, len(args)), args...)
	if err != nil {
		return err
	}
	defer func() { _ = rs.Close() }()
	out := []Notification{}
	for rs.Next() {
		n, err := scan(rs)
		if err != nil {
			return err
		}
		out = append(out, n)
	}
	if err := rs.Err(); err != nil {
		return err
	}
	kit.WriteJSON(w, http.StatusOK, map[string]any{"notifications": out})
	return nil
}

var e164 = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)

func (m *Main) getPrefs(w http.ResponseWriter, r *http.Request) error {
	c := kit.ClaimsFrom(r.Context())
	p := Recipient{UserID: c.UserID(), Email: c.Email}
	err := m.app.DB.QueryRowContext(r.Context(), `SELECT user_id, email, name, phone, sms FROM recipients WHERE user_id = $1`, c.UserID()).Scan(&p.UserID, &p.Email, &p.Name, &p.Phone, &p.SMS)
	if err != nil && !sqldb.IsNoRows(err) {
		return err
	}
	kit.WriteJSON(w, http.StatusOK, p)
	return nil
}

func (m *Main) putPrefs(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Phone string `json:"phone"`
		SMS   bool   `json:"sms"`
	}
	if err := kit.Decode(r, &in); err != nil {
		return err
	}
	if in.Phone != "" && !e164.MatchString(in.Phone) {
		return kit.BadRequest("phone %q: want E.164, such as +4915112345678", in.Phone)
	}
	if in.SMS && in.Phone == "" {
		return kit.BadRequest("sms needs a phone number")
	}
	c := kit.ClaimsFrom(r.Context())
	if _, err := m.app.DB.ExecContext(r.Context(), `INSERT INTO recipients (user_id, email, name, phone, sms) VALUES ($1, $2, '', $3, $4)
		ON CONFLICT (user_id) DO UPDATE SET phone = excluded.phone, sms = excluded.sms`, c.UserID(), c.Email, in.Phone, in.SMS); err != nil {
		return err
	}
	return m.getPrefs(w, r)
}
