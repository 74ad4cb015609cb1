-- Every event of every service, append-only: inserted once (a redelivered
-- event id is ignored), never updated. The columns after data are pulled
-- out of the event for the aggregate queries; data is the whole event as
-- JSON, decoded with the schema it was written with (or, for an event no
-- schema could read, its payload in base64 and the reason).
CREATE TABLE analytics_events (
	event_id TEXT PRIMARY KEY,
	type TEXT NOT NULL,
	event_key TEXT NOT NULL,
	occurred_ms BIGINT NOT NULL,
	stored_ms BIGINT NOT NULL,
	schema_id BIGINT NOT NULL,
	decoded BOOLEAN NOT NULL,
	data TEXT NOT NULL,
	order_id TEXT NOT NULL,
	amount BIGINT NOT NULL,
	currency TEXT NOT NULL,
	reason TEXT NOT NULL
);
CREATE INDEX analytics_events_type ON analytics_events (type, occurred_ms);
CREATE INDEX analytics_events_order ON analytics_events (order_id, type);

-- The lines of every placed order (from OrderCreated), for top products.
CREATE TABLE analytics_order_lines (
	order_id TEXT NOT NULL,
	sku TEXT NOT NULL,
	quantity BIGINT NOT NULL,
	unit_price BIGINT NOT NULL,
	PRIMARY KEY (order_id, sku)
);
