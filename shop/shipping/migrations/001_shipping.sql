CREATE TABLE shipments (
	id TEXT PRIMARY KEY,
	order_id TEXT NOT NULL UNIQUE,
	user_id TEXT NOT NULL,
	status TEXT NOT NULL,
	reason TEXT NOT NULL,
	carrier TEXT NOT NULL,
	service TEXT NOT NULL,
	tracking_number TEXT NOT NULL,
	rate BIGINT NOT NULL,
	currency TEXT NOT NULL,
	weight_g BIGINT NOT NULL,
	address TEXT NOT NULL,
	attempts INTEGER NOT NULL,
	next_ms BIGINT NOT NULL,
	created_ms BIGINT NOT NULL,
	updated_ms BIGINT NOT NULL
);
CREATE INDEX shipments_due ON shipments (status, next_ms);
CREATE TABLE shipment_history (
	shipment_id TEXT NOT NULL,
	seq INTEGER NOT NULL,
	status TEXT NOT NULL,
	note TEXT NOT NULL,
	at_ms BIGINT NOT NULL,
	PRIMARY KEY (shipment_id, seq)
);
