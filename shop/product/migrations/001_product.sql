CREATE TABLE products (
	sku TEXT PRIMARY KEY,
	name TEXT NOT NULL,
	description TEXT NOT NULL,
	category TEXT NOT NULL,
	price BIGINT NOT NULL,
	currency TEXT NOT NULL,
	seller_id TEXT NOT NULL,
	seller_name TEXT NOT NULL,
	active BOOLEAN NOT NULL,
	created_ms BIGINT NOT NULL,
	updated_ms BIGINT NOT NULL
);
CREATE INDEX products_category ON products (category, sku);
CREATE INDEX products_price ON products (price, sku);
