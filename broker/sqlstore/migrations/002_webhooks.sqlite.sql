CREATE TABLE broker_webhooks (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	uuid TEXT NOT NULL UNIQUE,
	description TEXT NOT NULL DEFAULT '',
	consumer TEXT NOT NULL DEFAULT '',
	provider TEXT NOT NULL DEFAULT '',
	events TEXT NOT NULL,
	method TEXT NOT NULL,
	url TEXT NOT NULL,
	headers TEXT NOT NULL DEFAULT '{}',
	body TEXT NOT NULL DEFAULT '',
	enabled INTEGER NOT NULL DEFAULT 1,
	created_at BIGINT NOT NULL
);
CREATE TABLE broker_webhook_deliveries (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	webhook_id BIGINT NOT NULL REFERENCES broker_webhooks(id) ON DELETE CASCADE,
	event TEXT NOT NULL,
	context TEXT NOT NULL,
	status TEXT NOT NULL DEFAULT 'pending',
	attempts INTEGER NOT NULL DEFAULT 0,
	next_at BIGINT NOT NULL,
	last_status INTEGER NOT NULL DEFAULT 0,
	last_error TEXT NOT NULL DEFAULT '',
	created_at BIGINT NOT NULL,
	updated_at BIGINT NOT NULL
);
CREATE INDEX broker_webhook_deliveries_due ON broker_webhook_deliveries (status, next_at);
CREATE INDEX broker_webhook_deliveries_webhook ON broker_webhook_deliveries (webhook_id, id);
