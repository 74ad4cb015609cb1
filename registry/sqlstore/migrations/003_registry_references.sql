ALTER TABLE registry_schemas ADD COLUMN refs TEXT NOT NULL DEFAULT '[]';
CREATE TABLE registry_references (
	schema_id INTEGER NOT NULL REFERENCES registry_schemas (id),
	name TEXT NOT NULL,
	subject TEXT NOT NULL,
	version INTEGER NOT NULL,
	PRIMARY KEY (schema_id, name)
);
CREATE INDEX registry_references_target ON registry_references (subject, version);
