package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/flotilla-ci/flotilla/broker"
	"github.com/flotilla-ci/flotilla/internal/sqldb"
)

// enqueue queues a delivery of event for every enabled webhook matching
// the consumer and provider, inside the caller's transaction.
func enqueue(ctx context.Context, tx *sqldb.Tx, event, consumer, provider string, vars map[string]string) error {
	data, err := json.Marshal(vars)
	if err != nil {
		return err
	}
	now := nowMS()
	_, err = tx.ExecContext(ctx, `INSERT INTO broker_webhook_deliveries (webhook_id, event, context, status, attempts, next_at, created_at, updated_at)
		SELECT id, $1, $2, 'pending', 0, $3, $3, $3 FROM broker_webhooks
		WHERE enabled = 1 AND (consumer = '' OR consumer = $4) AND (provider = '' OR provider = $5) AND (',' || events || ',') LIKE $6`,
		event, string(data), now, consumer, provider, "%,"+event+",%")
	if err != nil {
		return fmt.Errorf("queue webhook deliveries for %s: %w", event, err)
	}
	return nil
}

func pactPath(consumer, provider, sha string) string {
	return "/pacts/provider/" + url.PathEscape(provider) + "/consumer/" + url.PathEscape(consumer) + "/pact-version/" + sha
}

const webhookColumns = `uuid, description, consumer, provider, events, method, url, headers, body, enabled, created_at`

func scanWebhook(sc interface{ Scan(...any) error }) (broker.Webhook, error) {
	var (
		w              broker.Webhook
		events, header string
		enabled        int
		ms             int64
	)
	err := sc.Scan(&w.UUID, &w.Description, &w.Consumer, &w.Provider, &events, &w.Method, &w.URL, &header, &w.Body, &enabled, &ms)
	if err != nil {
		return w, err
	}
	w.Events = strings.Split(events, ",")
	w.Enabled, w.CreatedAt = enabled == 1, fromMS(ms)
	_ = json.Unmarshal([]byte(header), &w.Headers)
	return w, nil
}

// CreateWebhook implements broker.Store.
func (s *Store) CreateWebhook(ctx context.Context, w broker.Webhook) (broker.Webhook, error) {
	if w.UUID == "" {
		w.UUID = newUUID()
	}
	headers, _ := json.Marshal(w.Headers)
	_, err := s.db.ExecContext(ctx, `INSERT INTO broker_webhooks (uuid, description, consumer, provider, events, method, url, headers, body, enabled, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`, w.UUID, w.Description, w.Consumer, w.Provider, strings.Join(w.Events, ","),
		w.Method, w.URL, string(headers), w.Body, b2i(w.Enabled), nowMS())
	if sqldb.IsUniqueViolation(err) {
		return w, fmt.Errorf("%w: a webhook with uuid %s already exists", broker.ErrConflict, w.UUID)
	}
	if err != nil {
		return w, err
	}
	return s.Webhook(ctx, w.UUID)
}

// Webhooks implements broker.Store.
func (s *Store) Webhooks(ctx context.Context) ([]broker.Webhook, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+webhookColumns+` FROM broker_webhooks ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var out []broker.Webhook
	for rows.Next() {
		w, err := scanWebhook(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, rows.Err()
}

// Webhook implements broker.Store.
func (s *Store) Webhook(ctx context.Context, id string) (broker.Webhook, error) {
	w, err := scanWebhook(s.db.QueryRowContext(ctx, `SELECT `+webhookColumns+` FROM broker_webhooks WHERE uuid = $1`, id))
	if sqldb.IsNoRows(err) {
		return w, notFound("webhook %s", id)
	}
	return w, err
}

// DeleteWebhook implements broker.Store.
func (s *Store) DeleteWebhook(ctx context.Context, id string) error {
	return s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM broker_webhook_deliveries WHERE webhook_id IN (SELECT id FROM broker_webhooks WHERE uuid = $1)`, id); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM broker_webhooks WHERE uuid = $1`, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return notFound("webhook %s", id)
		}
		return nil
	})
}

const deliveryQuery = `SELECT d.id, d.event, d.context, d.status, d.attempts, d.last_status, d.last_error, d.created_at,
	w.uuid, w.description, w.consumer, w.provider, w.events, w.method, w.url, w.headers, w.body, w.enabled, w.created_at
	FROM broker_webhook_deliveries d JOIN broker_webhooks w ON w.id = d.webhook_id `

func (s *Store) deliveries(ctx context.Context, q querier, where string, args ...any) ([]broker.WebhookDelivery, error) {
	rows, err := q.QueryContext(ctx, deliveryQuery+where, args...)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var out []broker.WebhookDelivery
	for rows.Next() {
		var (
			d       broker.WebhookDelivery
			context string
			ms      int64
			wh      = &d.Webhook
			events  string
			headers string
			enabled int
			wms     int64
		)
		if err := rows.Scan(&d.ID, &d.Event, &context, &d.Status, &d.Attempts, &d.LastStatus, &d.LastError, &ms,
			&wh.UUID, &wh.Description, &wh.Consumer, &wh.Provider, &events, &wh.Method, &wh.URL, &headers, &wh.Body, &enabled, &wms); err != nil {
			return nil, err
		}
		_ = json.Unmarshal([]byte(context), &d.Context)
		_ = json.Unmarshal([]byte(headers), &wh.Headers)
		wh.Events, wh.Enabled, wh.CreatedAt = strings.Split(events, ","), enabled == 1, fromMS(wms)
		d.CreatedAt = fromMS(ms)
		out = append(out, d)
	}
	return out, rows.Err()
}

// Deliveries implements broker.Store.
func (s *Store) Deliveries(ctx context.Context, webhookUUID string) ([]broker.WebhookDelivery, error) {
	if _, err := s.Webhook(ctx, webhookUUID); err != nil {
		return nil, err
	}
	return s.deliveries(ctx, s.db, `WHERE w.uuid = $1 ORDER BY d.id DESC LIMIT 100`, webhookUUID)
}

// ClaimDeliveries implements broker.DeliveryQueue. A claim moves next_at
// to the end of the lease; the outer condition is re-checked against the
// row a concurrent claimer may have just leased, so two claimers never
// take the same delivery.
func (s *Store) ClaimDeliveries(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]broker.WebhookDelivery, error) {
	var out []broker.WebhookDelivery
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		ids, err := int64s(ctx, tx, `UPDATE broker_webhook_deliveries SET next_at = $1, updated_at = $2
			WHERE status = 'pending' AND next_at <= $2 AND id IN (SELECT id FROM broker_webhook_deliveries WHERE status = 'pending' AND next_at <= $2 ORDER BY id LIMIT $3)
			RETURNING id`, now.Add(lease).UnixMilli(), now.UnixMilli(), limit)
		if err != nil || len(ids) == 0 {
			return err
		}
		ph, args := in(1, ids)
		out, err = s.deliveries(ctx, tx, `WHERE d.id IN (`+ph+`) ORDER BY d.id`, args...)
		return err
	})
	return out, err
}

// FinishDelivery implements broker.DeliveryQueue.
func (s *Store) FinishDelivery(ctx context.Context, id int64, delivered bool, status int, errText string, retryAt time.Time, giveUp bool) error {
	state := "pending"
	switch {
	case delivered:
		state = "succeeded"
	case giveUp:
		state = "failed"
	}
	_, err := s.db.ExecContext(ctx, `UPDATE broker_webhook_deliveries SET status = $1, attempts = attempts + 1, last_status = $2, last_error = $3,
		next_at = $4, updated_at = $5 WHERE id = $6`, state, status, errText, retryAt.UnixMilli(), nowMS(), id)
	return err
}
