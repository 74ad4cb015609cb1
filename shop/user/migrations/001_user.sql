CREATE TABLE users (
	id TEXT PRIMARY KEY,
	email TEXT NOT NULL UNIQUE,
	name TEXT NOT NULL,
	password_hash TEXT NOT NULL,
	role TEXT NOT NULL,
	created_ms BIGINT NOT NULL
);
CREATE TABLE addresses (
	id TEXT PRIMARY KEY,
	user_id TEXT NOT NULL REFERENCES users (id),
	line1 TEXT NOT NULL,
	city TEXT NOT NULL,
	postal_code TEXT NOT NULL,
	country TEXT NOT NULL,
	created_ms BIGINT NOT NULL
);
CREATE INDEX addresses_user ON addresses (user_id);
CREATE TABLE signing_keys (
	kid TEXT PRIMARY KEY,
	seed TEXT NOT NULL,
	created_ms BIGINT NOT NULL
);
