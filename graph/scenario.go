package graph

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// ParseScenarioJSON decodes the scenario's own dependency-graph format:
//
//	{"services": {"order-service": {"dependencies": ["user-service"], "consumers": ["shipping-service"]}}}
//
// strictly (unknown fields and duplicate services are errors naming the
// line). Its consumers lists repeat the dependencies from the other side;
// every disagreement is returned as a Warning naming both services. The
// format has no folders, events or health paths: those services own no
// files.
func ParseScenarioJSON(file, root string, data []byte) (*Manifest, []Warning, error) {
	lines := newLineIndex(data)
	fail := func(off int64, format string, args ...any) error {
		return errors.New(locate(file, lines.line(off)) + fmt.Sprintf(format, args...))
	}
	if !utf8.Valid(data) || bytes.IndexByte(data, 0) >= 0 {
		return nil, nil, fail(0, "is not a text file (binary or not UTF-8); a dependency graph is JSON")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	jsonErr := func(err error) error {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return fail(se.Offset, "invalid JSON: %v", se)
		case errors.As(err, &te):
			field := te.Field
			if field == "" {
				field = "value"
			}
			return fail(te.Offset, "invalid JSON: %s must be %s, got %s", field, jsonKind(te.Type.String()), te.Value)
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return fail(int64(len(data)), "invalid JSON: unexpected end of file")
		}
		return fail(dec.InputOffset(), "invalid JSON: %v", strings.TrimPrefix(err.Error(), "json: "))
	}
	expectDelim := func(want json.Delim, what string) error {
		off := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			return jsonErr(err)
		}
		if d, ok := tok.(json.Delim); !ok || d != want {
			return fail(off, "%s must be a JSON object, got %v", what, describeToken(tok))
		}
		return nil
	}
	if err := expectDelim('{', "the file"); err != nil {
		return nil, nil, err
	}
	m := &Manifest{File: file, Root: root}
	sawServices := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, jsonErr(err)
		}
		off := dec.InputOffset() - 1
		key, _ := tok.(string)
		if key != "services" {
			return nil, nil, fail(off, "unknown field %q (known: services)", key)
		}
		if sawServices {
			return nil, nil, fail(off, "services is defined twice")
		}
		sawServices = true
		if err := expectDelim('{', "services"); err != nil {
			return nil, nil, err
		}
		seen := map[string]int{}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return nil, nil, jsonErr(err)
			}
			off := dec.InputOffset() - 1 // the end of the name, on its line
			name, _ := tok.(string)
			line := lines.line(off)
			if err := checkName(name); err != nil {
				return nil, nil, fail(off, "services: service name %v", err)
			}
			if prev, dup := seen[name]; dup {
				return nil, nil, fail(off, "services.%s: is defined twice (first on line %d)", name, prev)
			}
			seen[name] = line
			var raw struct {
				Dependencies []string `json:"dependencies"`
				Consumers    []string `json:"consumers"`
			}
			// A strict decoder per service, so unknown fields are caught
			// and named with the service.
			var body json.RawMessage
			if err := dec.Decode(&body); err != nil {
				return nil, nil, jsonErr(err)
			}
			sd := json.NewDecoder(bytes.NewReader(body))
			sd.DisallowUnknownFields()
			if err := sd.Decode(&raw); err != nil {
				var te *json.UnmarshalTypeError
				if errors.As(err, &te) {
					return nil, nil, fail(off, "services.%s.%s: must be %s, got %s", name, te.Field, jsonKind(te.Type.String()), te.Value)
				}
				msg := strings.TrimPrefix(err.Error(), "json: ")
				if rest, ok := strings.CutPrefix(msg, "unknown field "); ok {
					msg = "unknown field " + rest + " (known: dependencies, consumers)"
				}
				return nil, nil, fail(off, "services.%s: %s", name, msg)
			}
			s := &Service{Name: name, Line: line, refLines: map[string]int{}}
			for i, list := range [][]string{raw.Dependencies, raw.Consumers} {
				field := [...]string{"dependencies", "consumers"}[i]
				dup := map[string]bool{}
				for _, v := range list {
					if strings.TrimSpace(v) == "" {
						return nil, nil, fail(off, "services.%s.%s: holds an empty name", name, field)
					}
					if dup[v] {
						return nil, nil, fail(off, "services.%s.%s: %q is listed twice", name, field, v)
					}
					dup[v] = true
				}
			}
			s.DependsOn = raw.Dependencies
			s.Consumers = raw.Consumers
			m.Services = append(m.Services, s)
		}
		if _, err := dec.Token(); err != nil { // the services object's }
			return nil, nil, jsonErr(err)
		}
	}
	if _, err := dec.Token(); err != nil { // the file's }
		return nil, nil, jsonErr(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, nil, fail(dec.InputOffset(), "invalid JSON: more after the top-level object")
	}
	if !sawServices {
		return nil, nil, fail(0, "has no \"services\" object")
	}
	if err := m.finish(); err != nil {
		return nil, nil, err
	}
	return m, consumerWarnings(m), nil
}

// consumerWarnings compares each consumers list with the dependencies that
// point at the service.
func consumerWarnings(m *Manifest) []Warning {
	var out []Warning
	for _, s := range m.Services {
		for _, dep := range s.DependsOn {
			p := m.Service(dep)
			if p == nil || dep == s.Name {
				continue // an unknown or self dependency is Validate's error
			}
			if !contains(p.Consumers, s.Name) {
				out = append(out, Warning{File: m.File, Line: p.Line, Service: p.Name,
					Msg: fmt.Sprintf("%s depends on %s, but %s's consumers list omits %s", s.Name, p.Name, p.Name, s.Name)})
			}
		}
		for _, c := range s.Consumers {
			cs := m.Service(c)
			switch {
			case cs == nil:
				out = append(out, Warning{File: m.File, Line: s.Line, Service: s.Name,
					Msg: fmt.Sprintf("%s lists %s as a consumer, but there is no service %s", s.Name, c, c)})
			case !contains(cs.DependsOn, s.Name):
				out = append(out, Warning{File: m.File, Line: s.Line, Service: s.Name,
					Msg: fmt.Sprintf("%s lists %s as a consumer, but %s's dependencies omit %s", s.Name, c, c, s.Name)})
			}
		}
	}
	return out
}

func jsonKind(goType string) string {
	switch {
	case strings.HasPrefix(goType, "[]"):
		return "a list of names"
	case goType == "string":
		return "a name (text)"
	}
	return goType
}

func describeToken(tok any) string {
	switch v := tok.(type) {
	case json.Delim:
		if v == '[' {
			return "a list"
		}
		return string(v)
	case string:
		return fmt.Sprintf("the text %q", v)
	case nil:
		return "null"
	}
	return fmt.Sprintf("%v", tok)
}

// lineIndex maps byte offsets to 1-based line numbers.
type lineIndex struct{ starts []int64 }

func newLineIndex(data []byte) *lineIndex {
	li := &lineIndex{starts: []int64{0}}
	for i, b := range data {
		if b == '\n' {
			li.starts = append(li.starts, int64(i+1))
		}
	}
	return li
}

func (li *lineIndex) line(off int64) int {
	lo, hi := 0, len(li.starts)
	for lo+1 < hi {
		mid := (lo + hi) / 2
		if li.starts[mid] <= off {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo + 1
}
