// Package broker is flotilla's contract broker: one Go server speaking the
// Pact Broker HTTP API (HAL JSON with absolute links), so the real `pact`
// CLI and flotilla's own commands both work against it.
//
// It stores pacticipants, their versions, branches and tags; pacts as
// content-addressed pact versions (the same interactions give the same pact
// version whatever the metadata or key order); verification results, with
// each served interaction carrying an injected `_id` so failures are tied
// to interactions; environments (test and production are seeded),
// deployments and releases. On top of those it answers the two questions a
// pipeline asks:
//
//   - pacts for verification: which pacts a provider build must verify,
//     chosen by consumer version selectors (mainBranch, branch,
//     matchingBranch, deployedOrReleased, deployed, released, environment,
//     tag/latest, consumer), with pending and work-in-progress pacts and
//     their notices;
//   - the matrix and can-i-deploy: is this set of versions compatible with
//     what runs in an environment (or carries a tag, or heads the main
//     branch)? The summary says deployable true, false or unknown (null),
//     with the reason and the counts.
//
// Webhooks fire on the Pact Broker's events; the store queues each
// delivery in the transaction that causes it, and a Deliverer sends them
// with retries.
//
// The Server is an http.Handler over a Store; broker/sqlstore implements
// the Store on SQLite or PostgreSQL, and broker/client is the client
// flotilla's commands use.
package broker
