CREATE TABLE held_events (
	event_id TEXT PRIMARY KEY,
	event TEXT NOT NULL,
	user_id TEXT NOT NULL,
	payload BLOB NOT NULL,
	held_ms BIGINT NOT NULL
);
CREATE INDEX held_events_user ON held_events (user_id);
