CREATE TABLE orders (
	id TEXT PRIMARY KEY,
	user_id TEXT NOT NULL,
	idempotency_key TEXT,
	status TEXT NOT NULL,
	step TEXT NOT NULL,
	reason TEXT NOT NULL,
	total BIGINT NOT NULL,
	currency TEXT NOT NULL,
	reservation_id TEXT NOT NULL,
	payment_id TEXT NOT NULL,
	token TEXT NOT NULL,
	attempts INTEGER NOT NULL,
	lease_until_ms BIGINT NOT NULL,
	next_ms BIGINT NOT NULL,
	created_ms BIGINT NOT NULL,
	updated_ms BIGINT NOT NULL,
	UNIQUE (user_id, idempotency_key)
);
CREATE INDEX orders_open ON orders (status, next_ms);
CREATE INDEX orders_user ON orders (user_id, created_ms);
CREATE TABLE order_items (
	order_id TEXT NOT NULL REFERENCES orders (id),
	sku TEXT NOT NULL,
	name TEXT NOT NULL,
	quantity BIGINT NOT NULL,
	unit_price BIGINT NOT NULL,
	PRIMARY KEY (order_id, sku)
);
CREATE TABLE saga_log (
	order_id TEXT NOT NULL,
	seq INTEGER NOT NULL,
	step TEXT NOT NULL,
	detail TEXT NOT NULL,
	at_ms BIGINT NOT NULL,
	PRIMARY KEY (order_id, seq)
);
