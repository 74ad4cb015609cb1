package graph

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
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
	sc := &jsonScanner{data: data, file: file, lineNo: 1, sym: make(map[string]int32, len(data)/256)}
	if !utf8.Valid(data) || bytes.IndexByte(data, 0) >= 0 {
		return nil, nil, sc.fail(0, "is not a text file (binary or not UTF-8); a dependency graph is JSON")
	}
	m := &Manifest{File: file, Root: root}
	if err := sc.object("the file", func(key string, keyOff, _ int) error {
		if key != "services" {
			return sc.fail(keyOff, "unknown field %q (known: services)", key)
		}
		if m.Services != nil {
			return sc.fail(keyOff, "services is defined twice")
		}
		m.Services = []*Service{}
		seen := []int{} // by symbol: the line a service is defined on
		var slab []Service
		return sc.object("services", func(name string, nameOff, line int) error {
			if err := checkName(name); err != nil {
				return sc.fail(nameOff, "services: service name %v", err)
			}
			sym := sc.symbol(name)
			for int(sym) >= len(seen) {
				seen = append(seen, 0)
			}
			if prev := seen[sym]; prev != 0 {
				return sc.fail(nameOff, "services.%s: is defined twice (first on line %d)", name, prev)
			}
			seen[sym] = line
			// Services come from slabs: one allocation per 256, not one each.
			if len(slab) == 0 {
				slab = make([]Service, 256)
			}
			s := &slab[0]
			slab = slab[1:]
			s.Name, s.Line, s.sym = name, line, sym
			var sawDeps, sawCons bool
			err := sc.object("services."+name, func(field string, fieldOff, _ int) error {
				var list *[]string
				var syms *[]int32
				switch {
				case field == "dependencies" && !sawDeps:
					sawDeps, list, syms = true, &s.DependsOn, &s.depIdx
				case field == "consumers" && !sawCons:
					sawCons, list, syms = true, &s.Consumers, &s.consIdx
				case field == "dependencies" || field == "consumers":
					return sc.fail(fieldOff, "services.%s.%s: is defined twice", name, field)
				default:
					return sc.fail(fieldOff, "services.%s: unknown field %q (known: dependencies, consumers)", name, field)
				}
				var err error
				*list, *syms, err = sc.names("services." + name + "." + field)
				return err
			})
			if err != nil {
				return err
			}
			m.Services = append(m.Services, s)
			return nil
		})
	}); err != nil {
		return nil, nil, err
	}
	sc.ws()
	if sc.pos < len(data) {
		return nil, nil, sc.fail(sc.pos, "invalid JSON: more after the top-level object")
	}
	if m.Services == nil {
		return nil, nil, sc.fail(0, "has no \"services\" object")
	}
	if err := m.finish(); err != nil {
		return nil, nil, err
	}
	// Turn symbols into service indexes (services are sorted now), so the
	// graph is built without looking names up again.
	toService := make([]int32, len(sc.syms))
	for i := range toService {
		toService[i] = -1
	}
	for i, s := range m.Services {
		toService[s.sym] = int32(i)
	}
	for _, s := range m.Services {
		for _, list := range [][]int32{s.depIdx, s.consIdx} {
			for k, sym := range list {
				list[k] = toService[sym]
			}
		}
		s.indexed = true
	}
	return m, consumerWarnings(m), nil
}

// jsonScanner is a strict reader of exactly the scenario's JSON shape
// (objects of objects of lists of strings). It is several times faster
// than encoding/json on it, and every error knows its line.
type jsonScanner struct {
	data   []byte
	pos    int
	lineNo int // the line at pos (JSON has newlines only between tokens)
	file   string
	lines  *lineIndex
	// Service names repeat in every list: each distinct one is a symbol.
	sym  map[string]int32
	syms []string
	// Lists are gathered here and copied out at their exact size.
	scratch    []string
	scratchSym []int32
	nameChunk  []string
	symChunk   []int32
	// listMark[sym] == listGen when sym is already in the list being read.
	listMark []uint32
	listGen  uint32
}

// symbol returns the symbol of an already interned name.
func (s *jsonScanner) symbol(name string) int32 { return s.sym[name] }

func (s *jsonScanner) line(off int) int {
	if s.lines == nil {
		s.lines = newLineIndex(s.data)
	}
	return s.lines.line(int64(off))
}

func (s *jsonScanner) fail(off int, format string, args ...any) error {
	return errors.New(locate(s.file, s.line(off)) + fmt.Sprintf(format, args...))
}

func (s *jsonScanner) ws() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case '\n':
			s.lineNo++
			s.pos++
		case ' ', '\t', '\r':
			s.pos++
		default:
			return
		}
	}
}

// found describes what is at the current position, for errors.
func (s *jsonScanner) found() string {
	if s.pos >= len(s.data) {
		return "the end of the file"
	}
	switch c := s.data[s.pos]; c {
	case '{':
		return "an object"
	case '[':
		return "a list"
	case '"':
		return "a string"
	case 'n':
		return "null"
	case 't', 'f':
		return "a boolean"
	default:
		if c == '-' || c >= '0' && c <= '9' {
			return "a number"
		}
		return fmt.Sprintf("%q", rune(c))
	}
}

func (s *jsonScanner) unexpected(want string) error {
	if s.pos >= len(s.data) {
		return s.fail(len(s.data), "invalid JSON: unexpected end of file")
	}
	return s.fail(s.pos, "invalid JSON: expected %s, found %s", want, s.found())
}

// object reads {"key": value, ...}, calling each for every key with the
// scanner positioned at the value.
func (s *jsonScanner) object(what string, each func(key string, keyOff, keyLine int) error) error {
	s.ws()
	if s.pos >= len(s.data) || s.data[s.pos] != '{' {
		if s.pos < len(s.data) && strings.IndexByte(`["tfn-0123456789`, s.data[s.pos]) >= 0 {
			return s.fail(s.pos, "%s must be a JSON object, got %s", what, s.found())
		}
		return s.unexpected("an object for " + what)
	}
	s.pos++
	s.ws()
	if s.pos < len(s.data) && s.data[s.pos] == '}' {
		s.pos++
		return nil
	}
	for {
		s.ws()
		off, line := s.pos, s.lineNo
		if s.pos >= len(s.data) || s.data[s.pos] != '"' {
			return s.unexpected("a field name in " + what)
		}
		key, _, err := s.str()
		if err != nil {
			return err
		}
		s.ws()
		if s.pos >= len(s.data) || s.data[s.pos] != ':' {
			return s.unexpected("':' after " + strconv.Quote(key))
		}
		s.pos++
		s.ws()
		if err := each(key, off, line); err != nil {
			return err
		}
		s.ws()
		if s.pos >= len(s.data) {
			return s.unexpected("',' or '}'")
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
		case '}':
			s.pos++
			return nil
		default:
			return s.unexpected("',' or '}' in " + what)
		}
	}
}

// names reads a list of non-empty, distinct strings (null is empty), and
// their symbols.
func (s *jsonScanner) names(field string) ([]string, []int32, error) {
	s.ws()
	if bytes.HasPrefix(s.data[s.pos:], []byte("null")) {
		s.pos += 4
		return nil, nil, nil
	}
	if s.pos >= len(s.data) || s.data[s.pos] != '[' {
		if s.pos >= len(s.data) {
			return nil, nil, s.unexpected("a list")
		}
		return nil, nil, s.fail(s.pos, "%s: must be a list of names, got %s", field, s.found())
	}
	s.pos++
	out, syms := s.scratch[:0], s.scratchSym[:0]
	s.listGen++
	s.ws()
	if s.pos < len(s.data) && s.data[s.pos] == ']' {
		s.pos++
		return []string{}, []int32{}, nil
	}
	for {
		s.ws()
		off := s.pos
		if s.pos >= len(s.data) || s.data[s.pos] != '"' {
			if s.pos >= len(s.data) {
				return nil, nil, s.unexpected("a name")
			}
			return nil, nil, s.fail(s.pos, "%s: must be a list of names, found %s in it", field, s.found())
		}
		v, sym, err := s.str()
		if err != nil {
			return nil, nil, err
		}
		if strings.TrimSpace(v) == "" {
			return nil, nil, s.fail(off, "%s: holds an empty name", field)
		}
		// A name listed twice is a symbol seen twice in this list.
		for int(sym) >= len(s.listMark) {
			s.listMark = append(s.listMark, 0)
		}
		dup := s.listMark[sym] == s.listGen
		s.listMark[sym] = s.listGen
		if dup {
			return nil, nil, s.fail(off, "%s: %q is listed twice", field, v)
		}
		out = append(out, v)
		syms = append(syms, sym)
		s.ws()
		if s.pos >= len(s.data) {
			return nil, nil, s.unexpected("',' or ']'")
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
		case ']':
			s.pos++
			s.scratch, s.scratchSym = out, syms
			return s.keep(out, syms)
		default:
			return nil, nil, s.unexpected("',' or ']' in " + field)
		}
	}
}

// keep copies a finished list out of the scratch buffers into chunks
// shared by many lists (each list's capacity ends at its length, so an
// append to one never writes into the next).
func (s *jsonScanner) keep(names []string, syms []int32) ([]string, []int32, error) {
	n := len(names)
	if n > cap(s.nameChunk)-len(s.nameChunk) {
		s.nameChunk = make([]string, 0, max(n, 4096))
		s.symChunk = make([]int32, 0, max(n, 4096))
	}
	a := len(s.nameChunk)
	s.nameChunk = append(s.nameChunk, names...)
	s.symChunk = append(s.symChunk, syms...)
	return s.nameChunk[a : a+n : a+n], s.symChunk[a : a+n : a+n], nil
}

// str reads a JSON string at the current position (a '"') and interns it.
func (s *jsonScanner) str() (string, int32, error) {
	start := s.pos
	s.pos++
	plain := true
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		switch {
		case c == '"':
			raw := s.data[start+1 : s.pos]
			s.pos++
			if plain {
				if sym, ok := s.sym[string(raw)]; ok {
					return s.syms[sym], sym, nil
				}
				return s.intern(string(raw))
			}
			var v string
			if err := json.Unmarshal(s.data[start:s.pos], &v); err != nil {
				return "", 0, s.fail(start, "invalid JSON: bad escape in string %s", s.data[start:s.pos])
			}
			if sym, ok := s.sym[v]; ok {
				return s.syms[sym], sym, nil
			}
			return s.intern(v)
		case c == '\\':
			plain = false
			s.pos = min(s.pos+2, len(s.data))
		case c < 0x20:
			return "", 0, s.fail(s.pos, "invalid JSON: control character in a string")
		default:
			s.pos++
		}
	}
	return "", 0, s.fail(len(s.data), "invalid JSON: unexpected end of file in a string")
}

func (s *jsonScanner) intern(v string) (string, int32, error) {
	if len(s.syms) >= 1<<30 {
		return "", 0, s.fail(s.pos, "too many distinct names")
	}
	sym := int32(len(s.syms))
	s.sym[v] = sym
	s.syms = append(s.syms, v)
	return v, sym, nil
}

// consumerWarnings compares each consumers list with the dependencies that
// point at the service.
func consumerWarnings(m *Manifest) []Warning {
	n := len(m.Services)
	deps := make([][]int32, n)
	cons := make([][]int32, n)
	for i, s := range m.Services {
		deps[i], cons[i] = s.depIdx, s.consIdx
		if !s.indexed {
			deps[i], cons[i] = m.resolve(s.DependsOn), m.resolve(s.Consumers)
		}
	}
	// Short lists are scanned; long ones (hubs) get a sorted copy, made
	// once, for binary search.
	sortedOf := func(cache map[int32][]int32, lists [][]int32, k int32) []int32 {
		if s, ok := cache[k]; ok {
			return s
		}
		s := slices.Clone(lists[k])
		slices.Sort(s)
		cache[k] = s
		return s
	}
	sortedDeps, sortedCons := map[int32][]int32{}, map[int32][]int32{}
	inList := func(lists [][]int32, cache map[int32][]int32, k int32, v int) bool {
		if len(lists[k]) <= 32 {
			return slices.Contains(lists[k], int32(v))
		}
		_, ok := slices.BinarySearch(sortedOf(cache, lists, k), int32(v))
		return ok
	}
	var out []Warning
	for i, s := range m.Services {
		for _, d := range deps[i] {
			if d < 0 || int(d) == i {
				continue // an unknown or self dependency is Validate's error
			}
			if p := m.Services[d]; !inList(cons, sortedCons, d, i) {
				out = append(out, Warning{File: m.File, Line: p.Line, Service: p.Name,
					Msg: fmt.Sprintf("%s depends on %s, but %s's consumers list omits %s", s.Name, p.Name, p.Name, s.Name)})
			}
		}
		for k, c := range cons[i] {
			switch {
			case c < 0:
				name := s.Consumers[k]
				out = append(out, Warning{File: m.File, Line: s.Line, Service: s.Name,
					Msg: fmt.Sprintf("%s lists %s as a consumer, but there is no service %s", s.Name, name, name)})
			case !inList(deps, sortedDeps, c, i):
				name := m.Services[c].Name
				out = append(out, Warning{File: m.File, Line: s.Line, Service: s.Name,
					Msg: fmt.Sprintf("%s lists %s as a consumer, but %s's dependencies omit %s", s.Name, name, name, s.Name)})
			}
		}
	}
	return out
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
