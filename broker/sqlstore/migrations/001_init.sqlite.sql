CREATE TABLE broker_pacticipants (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	name TEXT NOT NULL UNIQUE,
	main_branch TEXT NOT NULL DEFAULT '',
	created_at BIGINT NOT NULL
);
CREATE TABLE broker_versions (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	pacticipant_id BIGINT NOT NULL REFERENCES broker_pacticipants(id),
	number TEXT NOT NULL,
	build_url TEXT NOT NULL DEFAULT '',
	created_at BIGINT NOT NULL,
	UNIQUE (pacticipant_id, number)
);
CREATE INDEX broker_versions_latest ON broker_versions (pacticipant_id, id);
CREATE TABLE broker_branch_versions (
	version_id BIGINT NOT NULL REFERENCES broker_versions(id),
	pacticipant_id BIGINT NOT NULL,
	branch TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	PRIMARY KEY (version_id, branch)
);
CREATE INDEX broker_branch_versions_latest ON broker_branch_versions (pacticipant_id, branch, version_id);
CREATE TABLE broker_tags (
	version_id BIGINT NOT NULL REFERENCES broker_versions(id),
	pacticipant_id BIGINT NOT NULL,
	name TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	PRIMARY KEY (version_id, name)
);
CREATE INDEX broker_tags_latest ON broker_tags (pacticipant_id, name, version_id);
CREATE TABLE broker_pact_versions (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	consumer_id BIGINT NOT NULL REFERENCES broker_pacticipants(id),
	provider_id BIGINT NOT NULL REFERENCES broker_pacticipants(id),
	sha TEXT NOT NULL,
	content TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	UNIQUE (consumer_id, provider_id, sha)
);
CREATE TABLE broker_pact_publications (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	consumer_version_id BIGINT NOT NULL REFERENCES broker_versions(id),
	consumer_id BIGINT NOT NULL,
	provider_id BIGINT NOT NULL,
	pact_version_id BIGINT NOT NULL REFERENCES broker_pact_versions(id),
	created_at BIGINT NOT NULL,
	UNIQUE (consumer_version_id, provider_id)
);
CREATE INDEX broker_pact_publications_provider ON broker_pact_publications (provider_id, consumer_id, consumer_version_id);
CREATE INDEX broker_pact_publications_pact ON broker_pact_publications (pact_version_id, consumer_version_id);
CREATE TABLE broker_verifications (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	pact_version_id BIGINT NOT NULL REFERENCES broker_pact_versions(id),
	provider_version_id BIGINT NOT NULL REFERENCES broker_versions(id),
	success INTEGER NOT NULL,
	build_url TEXT NOT NULL DEFAULT '',
	test_results TEXT NOT NULL DEFAULT '',
	verified_by TEXT NOT NULL DEFAULT '',
	created_at BIGINT NOT NULL
);
CREATE INDEX broker_verifications_pair ON broker_verifications (pact_version_id, provider_version_id, id);
CREATE INDEX broker_verifications_success ON broker_verifications (pact_version_id, success, provider_version_id);
CREATE TABLE broker_environments (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	uuid TEXT NOT NULL UNIQUE,
	name TEXT NOT NULL UNIQUE,
	display_name TEXT NOT NULL DEFAULT '',
	production INTEGER NOT NULL DEFAULT 0,
	created_at BIGINT NOT NULL
);
CREATE TABLE broker_deployments (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	uuid TEXT NOT NULL UNIQUE,
	version_id BIGINT NOT NULL REFERENCES broker_versions(id),
	pacticipant_id BIGINT NOT NULL,
	environment_id BIGINT NOT NULL REFERENCES broker_environments(id),
	application_instance TEXT NOT NULL DEFAULT '',
	is_release INTEGER NOT NULL DEFAULT 0,
	active INTEGER NOT NULL DEFAULT 1,
	created_at BIGINT NOT NULL,
	ended_at BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX broker_deployments_env ON broker_deployments (environment_id, active, pacticipant_id);
CREATE INDEX broker_deployments_version ON broker_deployments (version_id);
