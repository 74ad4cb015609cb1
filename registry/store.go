package registry

import (
	"context"
	"errors"

	"github.com/flotilla-ci/flotilla/schema"
)

// Store keeps subjects, versions, schemas and compatibility levels. Ids are
// global: one normalised schema has one id whatever subject holds it.
//
// Methods return ErrSubjectNotFound, ErrVersionNotFound, ErrSchemaNotFound
// and the soft-delete errors below where they apply; anything else is a
// storage failure.
type Store interface {
	// Register adds s to subject unless a live version already holds it
	// (then it returns that version, Created false). While it holds the
	// subject's write lock it calls check with the subject's live versions,
	// oldest first, and the configured levels; an error from check aborts
	// the registration and is returned as is. Racing registrations of one
	// subject are serialised, so none skips the check and one schema never
	// gets two ids.
	// A schema's identity is its normalised form with its references.
	Register(ctx context.Context, subject string, s Parsed, refs []Reference, check CheckFunc) (Registered, error)
	// Import adds s to subject with a chosen id and version (0: pick as
	// Register does), without a compatibility check: moving subjects from
	// another registry with their ids, so events already written still
	// decode. An id that holds another schema, or a version of subject that
	// holds another schema, is ErrConflict; ids assigned later continue
	// after the largest imported one.
	Import(ctx context.Context, subject string, s Parsed, refs []Reference, id, version int) (Registered, error)
	// MaxID returns the largest schema id (0 when there is none).
	MaxID(ctx context.Context) (int, error)
	// SchemaByID returns the text, references and type of the schema with
	// the id.
	SchemaByID(ctx context.Context, id int) (Stored, error)
	// Usages lists the subject versions that hold the schema id, deleted
	// ones included when deleted is set.
	Usages(ctx context.Context, id int, deleted bool) ([]SubjectVersion, error)
	// Lookup finds the live version of subject holding the normalised schema.
	Lookup(ctx context.Context, subject string, s Parsed, refs []Reference, deleted bool) (SubjectVersion, error)
	// ReferencedBy returns the ids of the schemas (held by a version, even a
	// soft-deleted one) that reference the subject's version.
	ReferencedBy(ctx context.Context, subject string, version int) ([]int, error)
	// Subjects lists subject names with at least one version (live, or any
	// when deleted is set), sorted.
	Subjects(ctx context.Context, deleted bool) ([]string, error)
	// Versions lists a subject's versions, oldest first.
	Versions(ctx context.Context, subject string, deleted bool) ([]SubjectVersion, error)
	// Version returns one version; Latest asks for the newest live one.
	Version(ctx context.Context, subject string, version int, deleted bool) (SubjectVersion, error)
	// DeleteSubject soft-deletes every version of subject, or removes the
	// subject's (already soft-deleted) versions when permanent, and returns
	// the version numbers it affected. A version another schema references
	// is not deleted: ErrReferenceExists.
	DeleteSubject(ctx context.Context, subject string, permanent bool) ([]int, error)
	// DeleteVersion soft-deletes one version, or removes a soft-deleted one
	// when permanent; ErrReferenceExists when another schema references it.
	DeleteVersion(ctx context.Context, subject string, version int, permanent bool) error
	// Level returns the compatibility level set for subject ("" for the
	// global level); "" and ErrNoLevel when none is set.
	Level(ctx context.Context, subject string) (schema.Mode, error)
	// SetLevel sets the level of subject ("" for the global level).
	SetLevel(ctx context.Context, subject string, m schema.Mode) error
	// DeleteLevel removes subject's level and returns what it was;
	// ErrNoLevel when none was set.
	DeleteLevel(ctx context.Context, subject string) (schema.Mode, error)
	// Mode returns the mode (READWRITE, READONLY, ...) set for subject ("" for
	// the global mode); ErrNoMode when none is set.
	Mode(ctx context.Context, subject string) (string, error)
	// SetMode sets the mode of subject ("" for the global mode).
	SetMode(ctx context.Context, subject, mode string) error
	// DeleteMode removes subject's mode and returns what it was; ErrNoMode
	// when none was set.
	DeleteMode(ctx context.Context, subject string) (string, error)
}

// The schema types served (Confluent's schemaType names).
const (
	Avro     = "AVRO"
	JSON     = "JSON"
	Protobuf = "PROTOBUF"
)

// Parsed is a parsed schema of any type the registry serves
// (*schema.Schema for Avro, *jsonschema.Schema for JSON Schema).
type Parsed interface {
	// String returns the text as registered.
	String() string
	// Normalized returns the form that decides two registrations are the
	// same schema.
	Normalized() string
	// SchemaType returns AVRO, JSON or PROTOBUF.
	SchemaType() string
}

// Stored is a schema as kept under its id.
type Stored struct {
	Schema     string
	References []Reference
	SchemaType string // AVRO, JSON or PROTOBUF
}

// Latest as a version number means the newest live version.
const Latest = -1

// CheckFunc decides whether a schema may join a subject, given the live
// versions (oldest first) and the levels configured for the subject and
// globally ("" when not set).
type CheckFunc func(previous []SubjectVersion, subjectLevel, globalLevel schema.Mode) error

// Registered is the outcome of Register.
type Registered struct {
	ID, Version int
	Created     bool
}

// SubjectVersion is one version of a subject.
type SubjectVersion struct {
	Subject    string
	Version    int
	ID         int
	Schema     string
	References []Reference
	Deleted    bool
	SchemaType string // AVRO, JSON or PROTOBUF
}

// Reference names a schema another one uses: for Avro, Name is the full
// name of the named type the referencing schema uses, defined in the
// schema registered as Version of Subject.
type Reference struct {
	Name    string `json:"name"`
	Subject string `json:"subject"`
	Version int    `json:"version"`
}

// Errors the store returns.
var (
	ErrSubjectNotFound       = errors.New("subject not found")
	ErrVersionNotFound       = errors.New("version not found")
	ErrSchemaNotFound        = errors.New("schema not found")
	ErrSubjectSoftDeleted    = errors.New("subject was soft deleted; set permanent=true to delete permanently")
	ErrSubjectNotSoftDeleted = errors.New("subject was not deleted first before being permanently deleted")
	ErrVersionSoftDeleted    = errors.New("version was soft deleted; set permanent=true to delete permanently")
	ErrVersionNotSoftDeleted = errors.New("version was not deleted first before being permanently deleted")
	ErrNoLevel               = errors.New("no compatibility level is set")
	ErrNoMode                = errors.New("no mode is set")
	ErrReferenceExists       = errors.New("another schema references this version")
	ErrConflict              = errors.New("already holds another schema")
)
