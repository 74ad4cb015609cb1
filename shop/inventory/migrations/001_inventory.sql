CREATE TABLE stock (
	sku TEXT PRIMARY KEY,
	received BIGINT NOT NULL,
	available BIGINT NOT NULL CHECK (available >= 0),
	reserved BIGINT NOT NULL CHECK (reserved >= 0),
	committed BIGINT NOT NULL CHECK (committed >= 0),
	CHECK (available + reserved + committed = received)
);
CREATE TABLE reservations (
	id TEXT PRIMARY KEY,
	order_id TEXT NOT NULL UNIQUE,
	user_id TEXT NOT NULL,
	status TEXT NOT NULL,
	reason TEXT NOT NULL,
	expires_ms BIGINT NOT NULL,
	created_ms BIGINT NOT NULL,
	updated_ms BIGINT NOT NULL
);
CREATE INDEX reservations_open ON reservations (status, expires_ms);
CREATE TABLE reservation_items (
	reservation_id TEXT NOT NULL REFERENCES reservations (id),
	sku TEXT NOT NULL,
	quantity BIGINT NOT NULL,
	PRIMARY KEY (reservation_id, sku)
);
