// Package payment is payment-service: a simulated payment processor (no
// card network). A charge authorises and captures in one call, is
// idempotent by its Idempotency-Key, and can be refunded; its status can be
// queried, which is how a caller whose charge timed out learns what
// happened. Fault flags make it decline a fraction of charges
// (payment.failure_rate; decided by a hash of the order id and Config.Seed,
// so a retried charge gets the same answer) and answer slowly
// (payment.latency). It publishes PaymentCompleted, PaymentFailed and
// PaymentRefunded.
//
// API (amounts in minor units; charges, the lookup by order and refunds
// are internal, for order-service, which names the order's user in
// X-Shop-User; a user reads their own payment with a bearer token):
//
//	POST /payments               Idempotency-Key: K; {orderId, amount, currency} → 201 {status: CAPTURED|FAILED}
//	                             (the same K and body again → 200 with the stored payment)
//	GET  /payments/{id}          and GET /payments?orderId=
//	POST /payments/{id}/refund   refunds the whole capture (idempotent)
package payment

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"io/fs"
	"net/http"
	"regexp"
	"time"

	"github.com/flotilla-ci/flotilla/internal/sqldb"
	"github.com/flotilla-ci/flotilla/shop/kit"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

//go:embed schemas/*.avsc
var schemaFS embed.FS

// Schemas are the event schemas payment-service publishes.
func Schemas() fs.FS { s, _ := fs.Sub(schemaFS, "schemas"); return s }

// Service is the service's name in flotilla.yaml.
const Service = "payment-service"

// Deps are the synchronous dependencies (short names).
var Deps = []string{"user"}

// Payment statuses.
const (
	Pending  = "PENDING"
	Captured = "CAPTURED"
	Failed   = "FAILED"
	Refunded = "REFUNDED"
)

// Config is payment-service's configuration.
type Config struct {
	Kit  kit.Config
	Seed uint64 // PAYMENT_SEED: varies which orders the failure rate declines
}

// Main runs payment-service.
type Main struct {
	Config Config
	app    *kit.App
}

// Payment is a charge and what became of it.
type Payment struct {
	ID       string `json:"id"`
	OrderID  string `json:"orderId"`
	UserID   string `json:"userId"`
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
	Status   string `json:"status"`
	Reason   string `json:"reason,omitempty"`
	Refunded int64  `json:"refunded"`
}

// Start opens everything and serves.
func (m *Main) Start(ctx context.Context) error {
	mig, _ := fs.Sub(migrationFS, "migrations")
	app, err := kit.Start(ctx, m.Config.Kit, mig, Schemas())
	if err != nil {
		return err
	}
	m.app = app
	v := kit.NewVerifier(m.Config.Kit.Deps["user"])
	// Charging, finding an order's payment and refunding are the order
	// saga's steps: internal, for order-service only. A user reads their
	// own payment.
	saga := func(h kit.HandlerFunc) http.Handler { return kit.Handle(kit.Internal(h, "order-service")) }
	app.Mux.Handle("POST /payments", saga(m.charge))
	app.Mux.Handle("GET /payments", saga(m.byOrder))
	app.Mux.Handle("GET /payments/{id}", kit.Handle(v.AuthOrService(m.get, "order-service")))
	app.Mux.Handle("POST /payments/{id}/refund", saga(m.refund))
	app.Go(m.resolveLoop)
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

type paymentEvent struct {
	PaymentID string    `avro:"paymentId"`
	OrderID   string    `avro:"orderId"`
	UserID    string    `avro:"userId"`
	Amount    int64     `avro:"amount"`
	Currency  string    `avro:"currency"`
	Reason    string    `avro:"reason"`
	Timestamp time.Time `avro:"timestamp"`
	Version   int       `avro:"version"`
}

var currencyRE = regexp.MustCompile(`^[A-Z]{3}$`)

// MaxAmount bounds one charge (minor units).
const MaxAmount = 100_000_000_00

// ChargeRequest is the body of POST /payments.
type ChargeRequest struct {
	OrderID  string `json:"orderId"`
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
}

func (m *Main) charge(w http.ResponseWriter, r *http.Request) error {
	key := r.Header.Get("Idempotency-Key")
	if key == "" || len(key) > 255 {
		return kit.BadRequest("Idempotency-Key header is required (at most 255 characters): send the same key when retrying a charge")
	}
	var in ChargeRequest
	if err := kit.Decode(r, &in); err != nil {
		return err
	}
	switch {
	case in.OrderID == "" || len(in.OrderID) > 64:
		return kit.BadRequest("orderId is required (at most 64 characters)")
	case kit.ClaimsFrom(r.Context()).UserID() == "":
		return kit.BadRequest("%s header is required: the user the charge is for", kit.OnBehalfOfHeader)
	case in.Amount <= 0 || in.Amount > MaxAmount:
		return kit.BadRequest("amount %d: want minor units from 1 to %d", in.Amount, int64(MaxAmount))
	case !currencyRE.MatchString(in.Currency):
		return kit.BadRequest("currency %q: want an ISO 4217 code such as EUR", in.Currency)
	}
	ctx := r.Context()
	c := kit.ClaimsFrom(ctx)
	h := sha256.Sum256(fmt.Appendf(nil, "%s|%d|%s|%s", in.OrderID, in.Amount, in.Currency, c.UserID()))
	hash := hex.EncodeToString(h[:])
	now := time.Now().UTC()
	p := Payment{ID: kit.NewID(), OrderID: in.OrderID, UserID: c.UserID(), Amount: in.Amount, Currency: in.Currency, Status: Pending}
	fresh := true
	latency := m.app.Config.Faults.PaymentLatency
	err := m.app.Tx(ctx, func(tx *sqldb.Tx) error {
		prev, prevHash, err := load(ctx, tx, "idempotency_key", key)
		if err == nil {
			if prevHash != hash {
				return kit.Errorf(http.StatusUnprocessableEntity, "idempotency_key_reused", "Idempotency-Key %q was used for a different charge; use a new key", key)
			}
			p, fresh = prev, false
			return nil
		}
		if !sqldb.IsNoRows(err) {
			return err
		}
		// No simulated latency: the processor answers within the
		// transaction, so the row is written settled (one statement, where
		// writing it PENDING and settling it would take three).
		p.Status, p.Reason = Pending, ""
		event := ""
		if latency <= 0 {
			event = m.decide(&p)
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO payments (id, idempotency_key, request_hash, order_id, user_id, amount, currency, status, reason, refunded, created_ms, updated_ms)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $10, $10)`, p.ID, key, hash, p.OrderID, p.UserID, p.Amount, p.Currency, p.Status, p.Reason, now.UnixMilli())
		if sqldb.IsUniqueViolation(err) {
			return kit.Conflict("in_progress", "a charge with Idempotency-Key %q is in progress; retry", key)
		}
		if err != nil || event == "" {
			return err
		}
		return m.emit(ctx, tx, event, p, now.Truncate(time.Millisecond))
	})
	if err != nil {
		return err
	}
	if p.Status == Pending {
		if latency > 0 && fresh {
			select {
			case <-time.After(latency):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if p, err = m.settle(context.WithoutCancel(ctx), p.ID); err != nil {
			return err
		}
	}
	m.app.Crash.At("payment.after_capture")
	status := http.StatusCreated
	if !fresh {
		status = http.StatusOK
	}
	w.Header().Set("Location", "/payments/"+p.ID)
	kit.WriteJSON(w, status, p)
	return nil
}

// declines decides the simulated processor's answer: deterministic per
// order, so a retried or resumed charge gets the same one.
func (m *Main) declines(orderID string) bool {
	rate := m.app.Config.Faults.PaymentFailureRate
	if rate <= 0 {
		return false
	}
	h := fnv.New64a()
	var seed [8]byte
	binary.BigEndian.PutUint64(seed[:], m.Config.Seed)
	_, _ = h.Write(seed[:])
	_, _ = h.Write([]byte(orderID))
	return float64(h.Sum64()%1_000_000)/1_000_000 < rate
}

// settle finishes a PENDING payment: captured or declined, with its event,
// in one transaction. Settling a settled payment returns it unchanged.
func (m *Main) settle(ctx context.Context, id string) (Payment, error) {
	var p Payment
	err := m.app.Tx(ctx, func(tx *sqldb.Tx) error {
		var err error
		p, err = m.settleTx(ctx, tx, id)
		return err
	})
	return p, err
}

func (m *Main) settleTx(ctx context.Context, tx *sqldb.Tx, id string) (Payment, error) {
	p, _, err := load(ctx, tx, "id", id)
	if err != nil || p.Status != Pending {
		return p, err
	}
	event := m.decide(&p)
	now := time.Now().UTC().Truncate(time.Millisecond)
	if _, err := tx.ExecContext(ctx, `UPDATE payments SET status = $1, reason = $2, updated_ms = $3 WHERE id = $4 AND status = $5`,
		p.Status, p.Reason, now.UnixMilli(), p.ID, Pending); err != nil {
		return p, err
	}
	return p, m.emit(ctx, tx, event, p, now)
}

// decide is the simulated processor's answer for a PENDING payment: it
// sets p's status and reason and returns the event to publish.
func (m *Main) decide(p *Payment) string {
	if m.declines(p.OrderID) {
		p.Status, p.Reason = Failed, "card_declined"
		return "PaymentFailed"
	}
	p.Status = Captured
	return "PaymentCompleted"
}

func (m *Main) emit(ctx context.Context, tx *sqldb.Tx, event string, p Payment, now time.Time) error {
	return m.app.Emit(ctx, tx, event, p.OrderID, paymentEvent{PaymentID: p.ID, OrderID: p.OrderID, UserID: p.UserID,
		Amount: p.Amount, Currency: p.Currency, Reason: p.Reason, Timestamp: now, Version: 1})
}

// resolveLoop settles payments left PENDING by a crash mid-charge.
func (m *Main) resolveLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cutoff := time.Now().Add(-m.app.Config.Faults.PaymentLatency - 5*time.Second).UnixMilli()
		rows, err := m.app.DB.QueryContext(ctx, `SELECT id FROM payments WHERE status = $1 AND created_ms < $2 LIMIT 100`, Pending, cutoff)
		if err != nil {
			continue
		}
		var ids []string
		for rows.Next() {
			var id string
			if rows.Scan(&id) == nil {
				ids = append(ids, id)
			}
		}
		_ = rows.Close()
		for _, id := range ids {
			if _, err := m.settle(ctx, id); err != nil && ctx.Err() == nil {
				m.app.Log.WarnContext(ctx, "settle stale payment", "payment_id", id, "err", err)
			}
		}
	}
}

func load(ctx context.Context, tx *sqldb.Tx, col, val string) (Payment, string, error) {
	var p Payment
	var hash string
	q := `SELECT id, order_id, user_id, amount, currency, status, reason, refunded, request_hash FROM payments WHERE ` + col + ` = $1`
	if tx.Dialect() == sqldb.Postgres {
		q += ` FOR UPDATE`
	}
	err := tx.QueryRowContext(ctx, q, val).Scan(&p.ID, &p.OrderID, &p.UserID, &p.Amount, &p.Currency, &p.Status, &p.Reason, &p.Refunded, &hash)
	return p, hash, err
}

func (m *Main) owned(ctx context.Context, tx *sqldb.Tx, col, val string) (Payment, error) {
	p, _, err := load(ctx, tx, col, val)
	if sqldb.IsNoRows(err) {
		return p, kit.NotFound("no payment with %s %s", map[string]string{"id": "id", "order_id": "orderId"}[col], val)
	}
	if err != nil {
		return p, err
	}
	if c := kit.ClaimsFrom(ctx); !c.MayActFor(p.UserID) {
		return p, kit.Forbidden("payment %s belongs to another user", p.ID)
	}
	return p, nil
}

func (m *Main) get(w http.ResponseWriter, r *http.Request) error {
	return m.read(w, r, "id", r.PathValue("id"))
}

func (m *Main) byOrder(w http.ResponseWriter, r *http.Request) error {
	id := r.URL.Query().Get("orderId")
	if id == "" {
		return kit.BadRequest("orderId query parameter is required")
	}
	return m.read(w, r, "order_id", id)
}

func (m *Main) read(w http.ResponseWriter, r *http.Request, col, val string) error {
	var p Payment
	err := m.app.DB.InTx(r.Context(), func(tx *sqldb.Tx) error {
		var err error
		p, err = m.owned(r.Context(), tx, col, val)
		return err
	})
	if err != nil {
		return err
	}
	kit.WriteJSON(w, http.StatusOK, p)
	return nil
}

func (m *Main) refund(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	var p Payment
	err := m.app.Tx(ctx, func(tx *sqldb.Tx) error {
		var err error
		if p, err = m.owned(ctx, tx, "id", r.PathValue("id")); err != nil {
			return err
		}
		switch p.Status {
		case Refunded:
			return nil
		case Pending, Failed:
			return kit.Conflict("not_captured", "payment %s is %s: nothing was captured to refund", p.ID, p.Status)
		}
		now := time.Now().UTC().Truncate(time.Millisecond)
		p.Status, p.Refunded = Refunded, p.Amount
		if _, err := tx.ExecContext(ctx, `UPDATE payments SET status = $1, refunded = amount, updated_ms = $2 WHERE id = $3`, Refunded, now.UnixMilli(), p.ID); err != nil {
			return err
		}
		return m.app.Emit(ctx, tx, "PaymentRefunded", p.OrderID, paymentEvent{PaymentID: p.ID, OrderID: p.OrderID, UserID: p.UserID,
			Amount: p.Amount, Currency: p.Currency, Timestamp: now, Version: 1})
	})
	if err != nil {
		return err
	}
	kit.WriteJSON(w, http.StatusOK, p)
	return nil
}
