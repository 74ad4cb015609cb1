CREATE TABLE outbox (
	id BIGSERIAL PRIMARY KEY,
	topic TEXT NOT NULL,
	msg_key TEXT NOT NULL,
	headers TEXT NOT NULL,
	payload BYTEA NOT NULL,
	created_at TIMESTAMPTZ NOT NULL,
	sent_at TIMESTAMPTZ
);
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;
CREATE TABLE processed_messages (
	consumer TEXT NOT NULL,
	event_id TEXT NOT NULL,
	topic TEXT NOT NULL,
	processed_at TIMESTAMPTZ NOT NULL,
	PRIMARY KEY (consumer, event_id)
);
