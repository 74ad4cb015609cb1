ALTER TABLE registry_schemas ADD COLUMN schema_type TEXT NOT NULL DEFAULT 'AVRO';
