package contract

import (
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// decodeJSON decodes one JSON value into the shapes encoding/json gives an
// interface with UseNumber (map[string]any, []any, string, json.Number,
// bool, nil), about three times faster: matching decodes every actual body.
func decodeJSON(b []byte) (any, error) {
	d := jsonDecoder{b: b}
	d.skip()
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	d.skip()
	if d.i < len(d.b) {
		return nil, fmt.Errorf("trailing data after JSON value at offset %d", d.i)
	}
	return v, nil
}

type jsonDecoder struct {
	b       []byte
	i       int
	members []kv // a stack of the members of the objects being read
}

const maxJSONDepth = 10000

func (d *jsonDecoder) skip() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *jsonDecoder) errAt(what string) error {
	if d.i >= len(d.b) {
		return fmt.Errorf("unexpected end of JSON input (%s)", what)
	}
	return fmt.Errorf("invalid character %q at offset %d (%s)", d.b[d.i], d.i, what)
}

func (d *jsonDecoder) value(depth int) (any, error) {
	if depth > maxJSONDepth {
		return nil, fmt.Errorf("JSON nested too deeply at offset %d", d.i)
	}
	if d.i >= len(d.b) {
		return nil, d.errAt("looking for a value")
	}
	switch c := d.b[d.i]; {
	case c == '{':
		return d.object(depth)
	case c == '[':
		return d.array(depth)
	case c == '"':
		return d.str()
	case c == 't':
		return true, d.literal("true")
	case c == 'f':
		return false, d.literal("false")
	case c == 'n':
		return nil, d.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return d.number()
	}
	return nil, d.errAt("looking for a value")
}

func (d *jsonDecoder) literal(lit string) error {
	if len(d.b)-d.i < len(lit) || string(d.b[d.i:d.i+len(lit)]) != lit {
		return d.errAt("in literal " + lit)
	}
	d.i += len(lit)
	return nil
}

// kv is an object member, collected before the map is made at its size.
type kv struct {
	k string
	v any
}

func (d *jsonDecoder) object(depth int) (any, error) {
	d.i++ // {
	d.skip()
	if d.i < len(d.b) && d.b[d.i] == '}' {
		d.i++
		return map[string]any{}, nil
	}
	base := len(d.members)
	defer func() { d.members = d.members[:base] }()
	for {
		d.skip()
		if d.i >= len(d.b) || d.b[d.i] != '"' {
			return nil, d.errAt("looking for an object key")
		}
		k, err := d.str()
		if err != nil {
			return nil, err
		}
		d.skip()
		if d.i >= len(d.b) || d.b[d.i] != ':' {
			return nil, d.errAt("after an object key")
		}
		d.i++
		d.skip()
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		d.members = append(d.members, kv{k, v})
		d.skip()
		if d.i >= len(d.b) {
			return nil, d.errAt("in an object")
		}
		switch d.b[d.i] {
		case ',':
			d.i++
		case '}':
			d.i++
			m := make(map[string]any, len(d.members)-base)
			for _, e := range d.members[base:] {
				m[e.k] = e.v // a repeated key: the last wins, as in encoding/json
			}
			return m, nil
		default:
			return nil, d.errAt("after an object value")
		}
	}
}

func (d *jsonDecoder) array(depth int) (any, error) {
	d.i++ // [
	a := []any{}
	d.skip()
	if d.i < len(d.b) && d.b[d.i] == ']' {
		d.i++
		return a, nil
	}
	for {
		d.skip()
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		a = append(a, v)
		d.skip()
		if d.i >= len(d.b) {
			return nil, d.errAt("in an array")
		}
		switch d.b[d.i] {
		case ',':
			d.i++
		case ']':
			d.i++
			return a, nil
		default:
			return nil, d.errAt("after an array element")
		}
	}
}

func (d *jsonDecoder) str() (string, error) {
	d.i++ // "
	start := d.i
	plain := true
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			s := d.b[start:d.i]
			d.i++
			if plain && utf8.Valid(s) {
				return string(s), nil
			}
			return unescape(s)
		case c == '\\':
			plain = false
			d.i += 2
		case c < 0x20:
			return "", d.errAt("in a string")
		default:
			d.i++
		}
	}
	d.i = len(d.b)
	return "", d.errAt("in a string")
}

// unescape decodes a string's escapes, replacing invalid UTF-8 and lone
// surrogates with U+FFFD as encoding/json does.
func unescape(s []byte) (string, error) {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); {
		c := s[i]
		if c != '\\' {
			if c < utf8.RuneSelf {
				out = append(out, c)
				i++
				continue
			}
			r, size := utf8.DecodeRune(s[i:])
			out = utf8.AppendRune(out, r)
			i += size
			continue
		}
		if i+1 >= len(s) {
			return "", fmt.Errorf("invalid escape at the end of a string")
		}
		switch s[i+1] {
		case '"', '\\', '/':
			out = append(out, s[i+1])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := hex4(s, i+2)
			if !ok {
				return "", fmt.Errorf("invalid \\u escape in a string")
			}
			i += 6
			if utf16.IsSurrogate(r) {
				if r2, ok := hex4(s, i+2); ok && i+1 < len(s) && s[i] == '\\' && s[i+1] == 'u' {
					if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
						out = utf8.AppendRune(out, dec)
						i += 6
						continue
					}
				}
				r = utf8.RuneError
			}
			out = utf8.AppendRune(out, r)
			continue
		default:
			return "", fmt.Errorf("invalid escape \\%c in a string", s[i+1])
		}
		i += 2
	}
	return string(out), nil
}

func hex4(s []byte, at int) (rune, bool) {
	if at+4 > len(s) {
		return 0, false
	}
	n, err := strconv.ParseUint(string(s[at:at+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	return rune(n), true
}

func (d *jsonDecoder) number() (any, error) {
	start := d.i
	if d.b[d.i] == '-' {
		d.i++
	}
	digits := func() int {
		n := 0
		for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
			d.i++
			n++
		}
		return n
	}
	if d.i < len(d.b) && d.b[d.i] == '0' {
		d.i++
	} else if digits() == 0 {
		return nil, d.errAt("in a number")
	}
	if d.i < len(d.b) && d.b[d.i] == '.' {
		d.i++
		if digits() == 0 {
			return nil, d.errAt("after a decimal point")
		}
	}
	if d.i < len(d.b) && (d.b[d.i] == 'e' || d.b[d.i] == 'E') {
		d.i++
		if d.i < len(d.b) && (d.b[d.i] == '+' || d.b[d.i] == '-') {
			d.i++
		}
		if digits() == 0 {
			return nil, d.errAt("in an exponent")
		}
	}
	return json.Number(d.b[start:d.i]), nil
}
