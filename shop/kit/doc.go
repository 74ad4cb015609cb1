// Package kit is what every shop service shares, kept small: an HTTP server
// with /health and /ready, graceful SIGTERM drain, JSON errors of one shape,
// slog request logging, 12-factor configuration, the database by DSN with
// embedded migrations, and the event plumbing: a transactional outbox with
// its relay, idempotent consumers, and Avro events in the Confluent wire
// format. Fault flags and named crash points let tests and demos make a
// service misbehave on purpose.
//
// A service builds an App with Start, registers its routes and consumers,
// and calls Serve; its Main in shop/<service> wraps that so tests run the
// real service on port 0.
//
// The bus backend is picked by BUS_URL's scheme in Dial, the one switch for
// the shop's processes (nats://; a Kafka backend will add kafka://).
package kit
