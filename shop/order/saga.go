package order

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/flotilla-ci/flotilla/bus"
	"github.com/flotilla-ci/flotilla/internal/sqldb"
	"github.com/flotilla-ci/flotilla/shop/kit"
)

// transition is what a step decided: the next step (and, for the last
// ones, the final status), with what to record.
type transition struct {
	step          string
	status        string // set with StepDone
	reason        string
	reservationID string
	paymentID     string
	detail        string
}

// errRetry marks a step that could not decide now (a service down, a
// payment still settling); the saga tries again later.
type errRetry struct{ err error }

func (e errRetry) Error() string { return e.err.Error() }
func (e errRetry) Unwrap() error { return e.err }

func retry(format string, args ...any) error { return errRetry{fmt.Errorf(format, args...)} }

// drive runs the order's saga until it settles or a step must wait. With
// leased, the caller already holds the order's lease (a fresh order);
// otherwise drive takes it or returns the order as it stands.
func (m *Main) drive(ctx context.Context, id string, leased bool) (Order, error) {
	if _, busy := m.driving.LoadOrStore(id, struct{}{}); busy {
		return m.load(ctx, m.app.DB, id)
	}
	defer m.driving.Delete(id)
	ctx, end := m.sagaContext(ctx, id)
	defer end()
	if !leased {
		ok, err := m.takeLease(ctx, id)
		if err != nil || !ok {
			o, lerr := m.load(ctx, m.app.DB, id)
			return o, errors.Join(err, lerr)
		}
	}
	inline := 0
	for {
		o, err := m.load(ctx, m.app.DB, id)
		if err != nil {
			return o, err
		}
		if o.Status != Pending {
			return o, nil
		}
		sctx, span := startStep(ctx, o)
		tr, err := m.step(sctx, o)
		endStep(span, tr, err)
		var r errRetry
		if errors.As(err, &r) {
			if o.attempts+1 >= m.Config.MaxAttempts && (o.Step == StepReserve || o.Step == StepCharge) {
				// Give up going forward; compensation checks what really
				// happened. The reason's code is lowercase like every
				// other (reserve_unavailable, charge_unavailable).
				tr, err = transition{step: StepRelease, reason: strings.ToLower(o.Step) + "_unavailable: " + r.err.Error(), detail: "gave up: " + r.err.Error()}, nil
			} else {
				if inline < 2 {
					inline++
					time.Sleep(time.Duration(inline) * 50 * time.Millisecond)
					if err := m.bumpAttempts(ctx, o, 0, r.err); err != nil {
						return o, err
					}
					continue
				}
				backoff := time.Duration(min(o.attempts+1, 20)) * 200 * time.Millisecond
				if err := m.bumpAttempts(ctx, o, backoff, r.err); err != nil {
					return o, err
				}
				m.app.Log.WarnContext(ctx, "saga step will retry", "order_id", o.ID, "step", o.Step, "attempt", o.attempts+1, "err", r.err)
				return m.load(ctx, m.app.DB, id)
			}
		}
		if err != nil {
			return o, err
		}
		if tr.step == StepConfirm && o.Step == StepCharge {
			m.app.Crash.At("saga.after_charge")
		}
		if tr.step == StepRefund && o.Step == StepRelease {
			m.app.Crash.At("saga.between_compensations")
		}
		if err := m.advance(ctx, o, tr); err != nil {
			return o, err
		}
		if tr.status == Confirmed {
			// Best effort: a cart left full is harmless, the order stands.
			_ = m.carts.Do(ctx, "DELETE", "/carts/"+url.PathEscape(o.UserID), "", m.forUser(o), nil, nil)
		}
	}
}

// forUser is the header of the saga's calls to inventory-service and
// payment-service: internal endpoints that take order-service's identity
// (from the mesh) and the user it acts for. The saga keeps no token of
// the user's: it acts as itself.
func (m *Main) forUser(o Order) map[string]string {
	return map[string]string{kit.OnBehalfOfHeader: o.UserID}
}

// step runs the order's current step.
func (m *Main) step(ctx context.Context, o Order) (transition, error) {
	switch o.Step {
	case StepReserve:
		return m.reserve(ctx, o)
	case StepCharge:
		return m.charge(ctx, o)
	case StepConfirm:
		return m.confirm(ctx, o)
	case StepRelease:
		return m.release(ctx, o)
	case StepRefund:
		return m.refund(ctx, o)
	case StepReturn:
		return m.returnStock(ctx, o)
	}
	return transition{}, fmt.Errorf("order %s: unknown saga step %q", o.ID, o.Step)
}

func status(err error) (int, string) {
	var ue *kit.UpstreamError
	if errors.As(err, &ue) {
		return ue.Status, ue.Err.Code
	}
	return 0, ""
}

func (m *Main) reserve(ctx context.Context, o Order) (transition, error) {
	type line struct {
		SKU      string `json:"sku"`
		Quantity int64  `json:"quantity"`
	}
	body := struct {
		OrderID    string `json:"orderId"`
		Items      []line `json:"items"`
		TTLSeconds int    `json:"ttlSeconds"`
	}{OrderID: o.ID, TTLSeconds: int(m.Config.ReservationTTL / time.Second)}
	for _, it := range o.Items {
		body.Items = append(body.Items, line{it.SKU, it.Quantity})
	}
	var res struct {
		ID string `json:"id"`
	}
	err := m.inventory.Do(ctx, "POST", "/reservations", "", m.forUser(o), body, &res)
	switch st, code := status(err); {
	case err == nil:
		return transition{step: StepCharge, reservationID: res.ID, detail: "reserved " + res.ID}, nil
	case st == http.StatusConflict && code == "out_of_stock", st == http.StatusUnprocessableEntity, st == http.StatusBadRequest:
		var ue *kit.UpstreamError
		errors.As(err, &ue)
		return transition{step: StepRelease, reason: code + ": " + ue.Err.Message, detail: "reserve refused"}, nil
	default:
		return transition{}, retry("reserve: %w", err)
	}
}

type payment struct {
	ID       string `json:"id"`
	Status   string `json:"status"`
	Reason   string `json:"reason"`
	Amount   int64  `json:"amount"`
	Refunded int64  `json:"refunded"`
}

func (m *Main) charge(ctx context.Context, o Order) (transition, error) {
	var p payment
	err := m.payments.Do(ctx, "POST", "/payments", "", map[string]string{"Idempotency-Key": "order-" + o.ID, kit.OnBehalfOfHeader: o.UserID},
		map[string]any{"orderId": o.ID, "amount": o.Total, "currency": o.Currency}, &p)
	if err != nil {
		st, code := status(err)
		switch {
		case st == http.StatusConflict && code == "in_progress":
			return transition{}, retry("charge in progress")
		case st >= 400 && st < 500:
			return transition{step: StepRelease, reason: "payment_rejected: " + err.Error(), detail: "charge refused"}, nil
		}
		// The answer was lost (timeout, connection reset, 5xx): ask what happened.
		q, qerr := m.paymentOf(ctx, o)
		if qerr != nil || q == nil {
			return transition{}, retry("charge: %v; status query: %v", err, qerr)
		}
		p = *q
	}
	switch p.Status {
	case "CAPTURED":
		return transition{step: StepConfirm, paymentID: p.ID, detail: "captured " + p.ID}, nil
	case "FAILED":
		return transition{step: StepRelease, paymentID: p.ID, reason: "payment_failed: " + p.Reason, detail: "charge declined"}, nil
	default:
		return transition{}, retry("payment %s is %s", p.ID, p.Status)
	}
}

// paymentOf asks payment-service for the order's payment; nil when there
// is none.
func (m *Main) paymentOf(ctx context.Context, o Order) (*payment, error) {
	var p payment
	err := m.payments.Do(ctx, "GET", "/payments?orderId="+url.QueryEscape(o.ID), "", m.forUser(o), nil, &p)
	if st, _ := status(err); st == http.StatusNotFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &p, nil
}

func (m *Main) confirm(ctx context.Context, o Order) (transition, error) {
	err := m.inventory.Do(ctx, "POST", "/reservations/"+url.PathEscape(o.ReservationID)+"/commit", "", m.forUser(o), nil, nil)
	switch st, code := status(err); {
	case err == nil:
		return transition{step: StepDone, status: Confirmed, detail: "stock committed"}, nil
	case st == http.StatusConflict:
		return transition{step: StepRelease, reason: code + ": stock reservation lapsed before the order was confirmed", detail: "commit refused"}, nil
	default:
		return transition{}, retry("commit reservation: %w", err)
	}
}

func (m *Main) release(ctx context.Context, o Order) (transition, error) {
	// Look the reservation up by order: a reserve whose answer was lost may
	// still have taken stock.
	var res struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	err := m.inventory.Do(ctx, "GET", "/reservations?orderId="+url.QueryEscape(o.ID), "", m.forUser(o), nil, &res)
	if st, _ := status(err); st == http.StatusNotFound {
		return transition{step: StepRefund, detail: "no reservation to release"}, nil
	}
	if err != nil {
		return transition{}, retry("find reservation: %w", err)
	}
	switch res.Status {
	case "RELEASED", "EXPIRED":
		return transition{step: StepRefund, reservationID: res.ID, detail: "reservation already " + res.Status}, nil
	case "COMMITTED":
		return transition{}, fmt.Errorf("order %s: reservation %s is committed but the order is being cancelled (%s)", o.ID, res.ID, o.Reason)
	}
	if err := m.inventory.Do(ctx, "POST", "/reservations/"+url.PathEscape(res.ID)+"/release", "", m.forUser(o), nil, nil); err != nil {
		return transition{}, retry("release reservation %s: %w", res.ID, err)
	}
	return transition{step: StepRefund, reservationID: res.ID, detail: "released " + res.ID}, nil
}

// returnStock brings a cancelled order's sold stock back.
func (m *Main) returnStock(ctx context.Context, o Order) (transition, error) {
	err := m.inventory.Do(ctx, "POST", "/reservations/"+url.PathEscape(o.ReservationID)+"/return", "", m.forUser(o), nil, nil)
	switch st, code := status(err); {
	case err == nil:
		return transition{step: StepRefund, detail: "stock returned"}, nil
	case st == http.StatusConflict:
		return transition{step: StepRefund, detail: "nothing to return: " + code}, nil
	default:
		return transition{}, retry("return stock: %w", err)
	}
}

type shipmentFailed struct {
	OrderID string `avro:"orderId"`
	Reason  string `avro:"reason"`
	Detail  string `avro:"detail"`
}

// shipmentFailed puts a confirmed order whose shipment failed for good back
// in flight towards CANCELLED (the resumer drives it): in the consumer's
// transaction, so a redelivered event changes nothing.
func (m *Main) shipmentFailed(ctx context.Context, tx *sqldb.Tx, msg bus.Message) error {
	var e shipmentFailed
	if err := m.app.Codec.Decode(ctx, msg.Topic, msg.Payload, &e); err != nil {
		return err
	}
	now := time.Now().UnixMilli()
	res, err := tx.ExecContext(ctx, `UPDATE orders SET status = $1, step = $2, reason = $3, attempts = 0, next_ms = $4, lease_until_ms = 0, updated_ms = $4
		WHERE id = $5 AND status = $6`, Pending, StepReturn, "shipment_failed: "+e.Reason, now, e.OrderID, Confirmed)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		m.app.Log.WarnContext(ctx, "ShipmentFailed for an order that is not confirmed; ignored", "order_id", e.OrderID, "reason", e.Reason)
		return nil
	}
	return logStep(ctx, tx, e.OrderID, StepReturn, "shipment failed: "+e.Reason+" "+e.Detail)
}

// chargeGrace is how long after the last charge attempt a missing payment
// is taken to mean "never charged": a charge request still in flight at
// payment-service lands within the call timeout plus the processor latency.
func (m *Main) chargeGrace() time.Duration { return 2*m.Config.CallTimeout + time.Second }

func (m *Main) refund(ctx context.Context, o Order) (transition, error) {
	cancel := transition{step: StepDone, status: Cancelled}
	p, err := m.paymentOf(ctx, o)
	if err != nil {
		return transition{}, retry("payment status: %w", err)
	}
	if p == nil {
		if o.PaymentID == "" && time.Since(o.updated) < m.chargeGrace() && o.Reason != "" && !refusedBeforeCharge(o) {
			return transition{}, retry("no payment yet; waiting out the charge grace period")
		}
		cancel.detail = "nothing charged"
		return cancel, nil
	}
	switch p.Status {
	case "FAILED":
		cancel.detail = "payment declined; nothing to refund"
		return cancel, nil
	case "REFUNDED":
		cancel.detail, cancel.paymentID = "already refunded", p.ID
		return cancel, nil
	case "PENDING":
		return transition{}, retry("payment %s still settling", p.ID)
	}
	if err := m.payments.Do(ctx, "POST", "/payments/"+url.PathEscape(p.ID)+"/refund", "", m.forUser(o), nil, nil); err != nil {
		return transition{}, retry("refund %s: %w", p.ID, err)
	}
	cancel.detail, cancel.paymentID = "refunded "+p.ID, p.ID
	return cancel, nil
}

// refusedBeforeCharge reports whether the saga stopped before any charge
// was sent (inventory refused the reservation).
func refusedBeforeCharge(o Order) bool {
	return o.ReservationID == "" && o.PaymentID == "" && len(o.Reason) > 0 && (hasPrefix(o.Reason, "out_of_stock") || hasPrefix(o.Reason, "unknown_sku") || hasPrefix(o.Reason, "unavailable_sku") || hasPrefix(o.Reason, "bad_request"))
}

func hasPrefix(s, p string) bool { return len(s) >= len(p) && s[:len(p)] == p }

// advance records a transition, with its events, in one transaction; it is
// a no-op if another driver moved the order first.
func (m *Main) advance(ctx context.Context, o Order, tr transition) error {
	now := time.Now().UTC().Truncate(time.Millisecond)
	return m.app.Tx(ctx, func(tx *sqldb.Tx) error {
		reason := o.Reason
		if tr.reason != "" {
			reason = tr.reason
		}
		resID, payID := o.ReservationID, o.PaymentID
		if tr.reservationID != "" {
			resID = tr.reservationID
		}
		if tr.paymentID != "" {
			payID = tr.paymentID
		}
		st := Pending
		if tr.step == StepDone {
			st = tr.status
		}
		res, err := tx.ExecContext(ctx, `UPDATE orders SET step = $1, status = $2, reason = $3, reservation_id = $4, payment_id = $5, attempts = 0,
			next_ms = $6, lease_until_ms = $7, updated_ms = $6 WHERE id = $8 AND step = $9 AND status = $10`,
			tr.step, st, reason, resID, payID, now.UnixMilli(), now.Add(m.Config.Lease).UnixMilli(), o.ID, o.Step, Pending)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil // someone else advanced it
		}
		label := tr.step
		if tr.step == StepDone {
			label = st
		}
		if err := logStep(ctx, tx, o.ID, label, tr.detail); err != nil {
			return err
		}
		switch st {
		case Confirmed:
			return m.app.Emit(ctx, tx, "OrderConfirmed", o.ID, confirmedEvent{OrderID: o.ID, UserID: o.UserID, Total: o.Total, Currency: o.Currency,
				PaymentID: payID, ReservationID: resID, Timestamp: now, Version: 1})
		case Cancelled:
			return m.app.Emit(ctx, tx, "OrderCancelled", o.ID, cancelledEvent{OrderID: o.ID, UserID: o.UserID, Reason: reason, Total: o.Total, Currency: o.Currency, Timestamp: now, Version: 1})
		}
		return nil
	})
}

func (m *Main) bumpAttempts(ctx context.Context, o Order, backoff time.Duration, cause error) error {
	now := time.Now()
	_, err := m.app.DB.ExecContext(ctx, `UPDATE orders SET attempts = attempts + 1, next_ms = $1, lease_until_ms = $2 WHERE id = $3 AND step = $4`,
		now.Add(backoff).UnixMilli(), now.Add(backoff).UnixMilli(), o.ID, o.Step)
	return err
}

func logStep(ctx context.Context, tx *sqldb.Tx, id, step, detail string) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO saga_log (order_id, seq, step, detail, at_ms)
		VALUES ($1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM saga_log WHERE order_id = $1), $2, $3, $4)`, id, step, detail, time.Now().UnixMilli())
	return err
}

// takeLease claims an in-flight order whose lease has lapsed.
func (m *Main) takeLease(ctx context.Context, id string) (bool, error) {
	now := time.Now()
	res, err := m.app.DB.ExecContext(ctx, `UPDATE orders SET lease_until_ms = $1 WHERE id = $2 AND status = $3 AND lease_until_ms <= $4`,
		now.Add(m.Config.Lease).UnixMilli(), id, Pending, now.UnixMilli())
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// resumeLoop finds sagas left in flight (by a crash, or waiting to retry)
// and drives them.
func (m *Main) resumeLoop(ctx context.Context) {
	t := time.NewTicker(m.Config.ResumeInterval)
	defer t.Stop()
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now().UnixMilli()
		rows, err := m.app.DB.QueryContext(ctx, `SELECT id FROM orders WHERE status = $1 AND next_ms <= $2 AND lease_until_ms <= $2 ORDER BY next_ms LIMIT 64`, Pending, now)
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
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				if _, err := m.drive(ctx, id, false); err != nil && ctx.Err() == nil {
					m.app.Log.WarnContext(ctx, "resume saga", "order_id", id, "err", err)
				}
			}()
		}
	}
}

// Unsettled counts orders still PENDING (tests, the consistency checker).
func (m *Main) Unsettled(ctx context.Context) (int, error) {
	var n int
	err := m.app.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM orders WHERE status = $1`, Pending).Scan(&n)
	return n, err
}
