CREATE TABLE recipients (
	user_id TEXT PRIMARY KEY,
	email TEXT NOT NULL,
	name TEXT NOT NULL,
	phone TEXT NOT NULL,
	sms BOOLEAN NOT NULL
);
CREATE TABLE notifications (
	id TEXT PRIMARY KEY,
	event_id TEXT NOT NULL,
	event TEXT NOT NULL,
	channel TEXT NOT NULL,
	user_id TEXT NOT NULL,
	recipient TEXT NOT NULL,
	subject TEXT NOT NULL,
	body TEXT NOT NULL,
	status TEXT NOT NULL,
	attempts INTEGER NOT NULL,
	next_ms BIGINT NOT NULL,
	last_error TEXT NOT NULL,
	created_ms BIGINT NOT NULL,
	sent_ms BIGINT NOT NULL,
	UNIQUE (event_id, channel)
);
CREATE INDEX notifications_due ON notifications (status, next_ms);
CREATE INDEX notifications_user ON notifications (user_id, created_ms);
