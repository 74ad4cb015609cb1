CREATE TABLE deploy_releases (
	id BIGSERIAL PRIMARY KEY,
	who TEXT NOT NULL,
	services TEXT NOT NULL,
	started_ns BIGINT NOT NULL
);

CREATE TABLE deploy_history (
	id BIGSERIAL PRIMARY KEY,
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
