CREATE TABLE deploy_releases (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	who TEXT NOT NULL,
	services TEXT NOT NULL,
	started_ns BIGINT NOT NULL
);

CREATE TABLE deploy_history (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	release_id BIGINT NOT NULL,
	service TEXT NOT NULL,
	version TEXT NOT NULL,
	previous TEXT NOT NULL,
	action TEXT NOT NULL,
	result TEXT NOT NULL,
	reason TEXT NOT NULL,
	who TEXT NOT NULL,
	started_ns BIGINT NOT NULL,
	duration_ns BIGINT NOT NULL,
	spec TEXT NOT NULL
);

CREATE INDEX deploy_history_service ON deploy_history (service, id);
