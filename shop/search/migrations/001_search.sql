-- search-service's own record of the catalog: what the index is built
-- from, and the popularity no other service keeps. details_ms and
-- price_ms are the product's update times of each group of fields, so
-- events applied out of order (or a rebuild racing them) keep the newest;
-- -1 means not yet known.
CREATE TABLE search_products (
	sku TEXT PRIMARY KEY,
	name TEXT NOT NULL,
	description TEXT NOT NULL,
	category TEXT NOT NULL,
	active BOOLEAN NOT NULL,
	details_ms BIGINT NOT NULL,
	price BIGINT NOT NULL,
	currency TEXT NOT NULL,
	price_ms BIGINT NOT NULL,
	popularity BIGINT NOT NULL DEFAULT 0,
	listed BIGINT NOT NULL DEFAULT 0
);

-- Orders as far as popularity needs them: the lines from OrderCreated and
-- whether OrderConfirmed has arrived (either may come first); counted once.
CREATE TABLE search_orders (
	order_id TEXT PRIMARY KEY,
	lines TEXT,
	confirmed BOOLEAN NOT NULL DEFAULT FALSE,
	counted BOOLEAN NOT NULL DEFAULT FALSE
);
