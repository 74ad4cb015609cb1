CREATE TABLE registry_modes (
	subject TEXT PRIMARY KEY,
	mode TEXT NOT NULL
);
