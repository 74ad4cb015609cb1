CREATE TABLE payments (
	id TEXT PRIMARY KEY,
	idempotency_key TEXT NOT NULL UNIQUE,
	request_hash TEXT NOT NULL,
	order_id TEXT NOT NULL,
	user_id TEXT NOT NULL,
	amount BIGINT NOT NULL CHECK (amount > 0),
	currency TEXT NOT NULL,
	status TEXT NOT NULL,
	reason TEXT NOT NULL,
	refunded BIGINT NOT NULL DEFAULT 0 CHECK (refunded >= 0 AND refunded <= amount),
	created_ms BIGINT NOT NULL,
	updated_ms BIGINT NOT NULL
);
CREATE INDEX payments_order ON payments (order_id);
