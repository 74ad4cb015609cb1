CREATE TABLE outbox (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	topic TEXT NOT NULL,
	msg_key TEXT NOT NULL,
	headers TEXT NOT NULL,
	payload BLOB NOT NULL,
	created_at TIMESTAMP NOT NULL,
	sent_at TIMESTAMP
);
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;
CREATE TABLE processed_messages (
	consumer TEXT NOT NULL,
	event_id TEXT NOT NULL,
	topic TEXT NOT NULL,
	processed_at TIMESTAMP NOT NULL,
	PRIMARY KEY (consumer, event_id)
);
