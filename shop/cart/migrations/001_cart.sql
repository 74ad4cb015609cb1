CREATE TABLE cart_items (
	user_id TEXT NOT NULL,
	sku TEXT NOT NULL,
	name TEXT NOT NULL,
	quantity BIGINT NOT NULL CHECK (quantity > 0),
	unit_price BIGINT NOT NULL CHECK (unit_price > 0),
	currency TEXT NOT NULL,
	added_ms BIGINT NOT NULL,
	PRIMARY KEY (user_id, sku)
);
