package schema

import (
	"fmt"
	"strings"
)

// Mode is a compatibility level, with the Confluent registry's definitions.
type Mode string

// The seven compatibility levels.
const (
	None               Mode = "NONE"
	Backward           Mode = "BACKWARD" // the new schema reads data written with the latest
	BackwardTransitive Mode = "BACKWARD_TRANSITIVE"
	Forward            Mode = "FORWARD" // the latest schema reads data written with the new
	ForwardTransitive  Mode = "FORWARD_TRANSITIVE"
	Full               Mode = "FULL" // both
	FullTransitive     Mode = "FULL_TRANSITIVE"
)

// Modes lists every level.
var Modes = []Mode{None, Backward, BackwardTransitive, Forward, ForwardTransitive, Full, FullTransitive}

// ParseMode parses a level name, ignoring case.
func ParseMode(s string) (Mode, error) {
	m := Mode(strings.ToUpper(strings.TrimSpace(s)))
	for _, k := range Modes {
		if k == m {
			return m, nil
		}
	}
	return "", fmt.Errorf("unknown compatibility level %q (want one of NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE)", s)
}

// Transitive reports whether the level checks every earlier version rather
// than only the latest.
func (m Mode) Transitive() bool { return strings.HasSuffix(string(m), "_TRANSITIVE") }

func (m Mode) backward() bool { return m != None && !strings.HasPrefix(string(m), "FORWARD") }
func (m Mode) forward() bool  { return m != None && !strings.HasPrefix(string(m), "BACKWARD") }

// Direction says which schema read which in a Problem.
type Direction string

// The directions.
const (
	NewReadsOld Direction = "new schema reading data written with the old" // backward
	OldReadsNew Direction = "old schema reading data written with the new" // forward
)

// Version is an earlier version of a subject.
type Version struct {
	Version int
	Schema  *Schema
}

// Problem is one incompatibility between a candidate and an earlier version.
type Problem struct {
	Version   int
	Direction Direction
	Incompatibility
}

func (p Problem) String() string {
	return fmt.Sprintf("version %d (%s): %s", p.Version, p.Direction, p.Incompatibility)
}

// Check checks candidate against the earlier versions (oldest first) under
// the level, as the Confluent registry does: the latest version only, or
// every version when transitive, newest first, stopping at the first version
// that has problems. No problems means the candidate may be registered.
func (m Mode) Check(candidate *Schema, previous []Version) []Problem {
	if m == None || len(previous) == 0 {
		return nil
	}
	check := previous[len(previous)-1:]
	if m.Transitive() {
		check = previous
	}
	for i := len(check) - 1; i >= 0; i-- {
		v := check[i]
		var out []Problem
		if m.backward() {
			for _, inc := range ReaderCanRead(candidate, v.Schema) {
				out = append(out, Problem{Version: v.Version, Direction: NewReadsOld, Incompatibility: inc})
			}
		}
		if m.forward() {
			for _, inc := range ReaderCanRead(v.Schema, candidate) {
				out = append(out, Problem{Version: v.Version, Direction: OldReadsNew, Incompatibility: inc})
			}
		}
		if len(out) > 0 {
			return out
		}
	}
	return nil
}

// Description renders the problem as the Confluent registry words it in
// verbose compatibility messages, naming which schema lacks what.
func (p Problem) Description() string {
	reader, writer := "new", "old"
	if p.Direction == OldReadsNew {
		reader, writer = "old", "new"
	}
	switch p.Reason {
	case ReaderFieldMissingDefaultValue:
		return fmt.Sprintf("The field '%s' at path '%s' in the %s schema has no default value and is missing in the %s schema", p.Detail, p.Location, reader, writer)
	case TypeMismatch:
		return fmt.Sprintf("The type (path '%s') of a field in the %s schema does not match with the %s schema", p.Location, reader, writer)
	case NameMismatch:
		return fmt.Sprintf("The name of the schema has changed (path '%s')", p.Location)
	case FixedSizeMismatch:
		return fmt.Sprintf("The size of FIXED type field at path '%s' in the %s schema does not match with the %s schema", p.Location, reader, writer)
	case MissingEnumSymbols:
		return fmt.Sprintf("The %s schema is missing enum symbols '%s' at path '%s' in the %s schema", reader, p.Detail, p.Location, writer)
	case MissingUnionBranch:
		return fmt.Sprintf("The %s schema is missing a type inside a union field at path '%s' in the %s schema", reader, p.Location, writer)
	}
	return p.Detail
}
