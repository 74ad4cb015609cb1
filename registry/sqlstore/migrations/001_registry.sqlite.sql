CREATE TABLE registry_schemas (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	hash TEXT NOT NULL UNIQUE,
	normalized TEXT NOT NULL,
	schema TEXT NOT NULL
);
CREATE TABLE registry_versions (
	subject TEXT NOT NULL,
	version INTEGER NOT NULL,
	schema_id INTEGER NOT NULL REFERENCES registry_schemas (id),
	deleted INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (subject, version)
);
CREATE INDEX registry_versions_schema ON registry_versions (schema_id);
CREATE TABLE registry_levels (
	subject TEXT PRIMARY KEY,
	level TEXT NOT NULL
);
