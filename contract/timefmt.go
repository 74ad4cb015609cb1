package contract

import (
	"fmt"
	"strings"
	"sync"
	"time"
)

// dateFormat is the format of a date/time/timestamp matcher, or the
// default ISO-8601 one for its kind.
func dateFormat(m Matcher, kind string) string {
	for _, k := range []string{"format", kind, "date", "time", "timestamp", "datetime"} {
		if s, ok := m[k].(string); ok && s != "" && k != "match" {
			return s
		}
	}
	return ""
}

var isoDateTimeLayouts = []string{
	time.RFC3339Nano, time.RFC3339, "2006-01-02T15:04:05", "2006-01-02T15:04:05.999999999",
	"2006-01-02T15:04:05Z0700", "2006-01-02T15:04:05.999999999Z0700", "2006-01-02 15:04:05",
	"2006-01-02T15:04", "2006-01-02T15:04Z07:00",
}

// parseJavaTime parses s with a Java DateTimeFormatter pattern (the
// formats Pact files carry); an empty pattern is ISO 8601 for the kind.
func parseJavaTime(pattern, kind, s string) error {
	if pattern == "" {
		var layouts []string
		switch kind {
		case "date":
			layouts = []string{"2006-01-02"}
		case "time":
			layouts = []string{"15:04:05", "15:04:05.999999999", "15:04", "15:04:05Z07:00", "15:04:05.999999999Z07:00"}
		default:
			layouts = isoDateTimeLayouts
		}
		for _, l := range layouts {
			if _, err := time.Parse(l, s); err == nil {
				return nil
			}
		}
		return fmt.Errorf("%q is not an ISO 8601 %s", s, kind)
	}
	layout, err := javaLayout(pattern)
	if err != nil {
		return err
	}
	_, err = time.Parse(layout, s)
	return err
}

// formatJavaTime formats t with a Java pattern (ISO 8601 when empty).
func formatJavaTime(pattern, kind string, t time.Time) string {
	if pattern == "" {
		switch kind {
		case "Date", "date":
			return t.Format("2006-01-02")
		case "Time", "time":
			return t.Format("15:04:05")
		}
		return t.Format("2006-01-02T15:04:05.000Z07:00")
	}
	layout, err := javaLayout(pattern)
	if err != nil {
		return t.Format(time.RFC3339)
	}
	return t.Format(layout)
}

var layoutCache sync.Map // Java pattern -> Go layout

// javaLayout converts a Java DateTimeFormatter / SimpleDateFormat pattern
// into a Go time layout.
func javaLayout(p string) (string, error) {
	if l, ok := layoutCache.Load(p); ok {
		return l.(string), nil
	}
	l, err := convertJavaLayout(p)
	if err == nil {
		layoutCache.Store(p, l)
	}
	return l, err
}

func convertJavaLayout(p string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(p); {
		c := p[i]
		if c == '\'' {
			end := strings.IndexByte(p[i+1:], '\'')
			if end < 0 {
				return "", fmt.Errorf("date format %q: unterminated quote", p)
			}
			if end == 0 {
				b.WriteByte('\'')
			} else {
				b.WriteString(p[i+1 : i+1+end])
			}
			i += end + 2
			continue
		}
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') {
			b.WriteByte(c)
			i++
			continue
		}
		n := 1
		for i+n < len(p) && p[i+n] == c {
			n++
		}
		i += n
		var s string
		switch c {
		case 'y', 'u':
			s = "2006"
			if n == 2 {
				s = "06"
			}
		case 'M', 'L':
			switch {
			case n >= 4:
				s = "January"
			case n == 3:
				s = "Jan"
			case n == 2:
				s = "01"
			default:
				s = "1"
			}
		case 'd':
			s = "2"
			if n >= 2 {
				s = "02"
			}
		case 'D':
			s = "002"
		case 'H', 'k':
			s = "15"
		case 'h', 'K':
			s = "3"
			if n >= 2 {
				s = "03"
			}
		case 'm':
			s = "4"
			if n >= 2 {
				s = "04"
			}
		case 's':
			s = "5"
			if n >= 2 {
				s = "05"
			}
		case 'S', 'n':
			s = strings.Repeat("0", min(n, 9))
		case 'a':
			s = "PM"
		case 'E':
			s = "Mon"
			if n >= 4 {
				s = "Monday"
			}
		case 'X':
			switch n {
			case 1:
				s = "Z07"
			case 2, 4:
				s = "Z0700"
			default:
				s = "Z07:00"
			}
		case 'x':
			switch n {
			case 1:
				s = "-07"
			case 2, 4:
				s = "-0700"
			default:
				s = "-07:00"
			}
		case 'Z':
			s = "-0700"
			if n >= 5 {
				s = "Z07:00"
			}
		case 'z', 'O', 'V':
			s = "MST"
		default:
			return "", fmt.Errorf("date format %q: pattern letter %q is not supported", p, string(c))
		}
		b.WriteString(s)
	}
	return b.String(), nil
}
