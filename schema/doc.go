// Package schema decides whether Avro schemas can read each other's data,
// by the Avro specification's schema-resolution rules, and reports every
// incompatibility with a location in the reader schema and a reason in the
// vocabulary of Avro's reference checker and the Confluent registry
// (READER_FIELD_MISSING_DEFAULT_VALUE, TYPE_MISMATCH, MISSING_ENUM_SYMBOLS,
// MISSING_UNION_BRANCH, NAME_MISMATCH, FIXED_SIZE_MISMATCH).
//
// Parsing and encoding use github.com/hamba/avro/v2; compatibility is
// decided here, because hamba's checker caches answers under a fingerprint
// that ignores defaults and stops at the first problem.
//
// A Mode applies one of Confluent's seven compatibility levels to a
// candidate and the earlier versions of a subject. Schema also gives the
// Parsing Canonical Form with its CRC-64-AVRO fingerprint (the wire shape)
// and the normalised form the registry uses as a schema's identity.
//
// The Confluent wire format lives in the serde subpackage.
package schema
