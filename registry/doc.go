// Package registry is a schema registry that speaks the Confluent Schema
// Registry REST API, so Confluent serializers, franz-go's sr client and
// hamba's registry client work against it unchanged.
//
// Server is an http.Handler built from a Store (registry/sqlstore keeps it
// in SQLite or PostgreSQL) and a Config. Schemas are Avro; compatibility is
// decided by the schema package under the subject's level (subject, then
// global, then Config.DefaultLevel). Schema ids are global and stable: a
// schema that normalises to one already registered gets its id back.
// Schema references (named types from other subjects) are resolved before
// parsing and checking, pinned to version numbers, and protect the versions
// they name from deletion (42206). Modes READWRITE, READONLY,
// READONLY_OVERRIDE and IMPORT apply globally or per subject; IMPORT takes
// the id and version a registration names, without a compatibility check,
// so subjects move from another registry with the ids their events carry. Unlike Confluent's, an
// id stays resolvable after its versions are hard-deleted, so events
// already written with it still decode.
//
// Errors are Confluent's bodies, {"error_code": 40401, "message": "..."},
// with the HTTP status in the code's first three digits; an incompatible
// registration answers 409 with error_code 40901.
package registry
