package contract

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"net/url"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
	"time"
)

// GenContext is what generators may draw on: the values a provider-state
// handler returned (for ProviderState), and the mock server's base URL
// (for MockServerURL).
type GenContext struct {
	StateValues   map[string]any
	MockServerURL string
	Now           time.Time // zero: time.Now()
}

func randInt(lo, hi int64) int64 {
	if hi <= lo {
		return lo
	}
	n, err := rand.Int(rand.Reader, big.NewInt(hi-lo+1))
	if err != nil {
		return lo
	}
	return lo + n.Int64()
}

// maxGenerated bounds what one generator produces, whatever a pact asks.
const maxGenerated = 10000

const alphanumeric = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// Generate produces a value from the generator; current is the example
// value it replaces (kept when a generator cannot produce one).
func (g Generator) Generate(ctx GenContext, current any) (any, error) {
	m := Matcher(g)
	switch g.Type() {
	case "RandomInt":
		lo, ok := m.intAttr("min")
		if !ok {
			lo = 0
		}
		hi, ok := m.intAttr("max")
		if !ok {
			hi = 2147483647
		}
		return json.Number(strconv.FormatInt(randInt(int64(lo), int64(hi)), 10)), nil
	case "RandomDecimal":
		digits, ok := m.intAttr("digits")
		if !ok || digits < 2 {
			digits = 10
		}
		digits = min(digits, maxGenerated)
		var b strings.Builder
		b.WriteByte(byte('1' + randInt(0, 8)))
		point := int(randInt(1, int64(digits-1)))
		for i := 1; i < digits; i++ {
			if i == point {
				b.WriteByte('.')
			}
			b.WriteByte(byte('0' + randInt(0, 9)))
		}
		return json.Number(b.String()), nil
	case "RandomHexadecimal":
		digits, ok := m.intAttr("digits")
		if !ok || digits < 1 {
			digits = 10
		}
		digits = min(digits, maxGenerated)
		buf := make([]byte, (digits+1)/2)
		_, _ = rand.Read(buf)
		return hex.EncodeToString(buf)[:digits], nil
	case "RandomString":
		size, ok := m.intAttr("size")
		if !ok || size < 0 {
			size = 10
		}
		size = min(size, maxGenerated)
		b := make([]byte, size)
		for i := range b {
			b[i] = alphanumeric[randInt(0, int64(len(alphanumeric)-1))]
		}
		return string(b), nil
	case "RandomBoolean":
		return randInt(0, 1) == 1, nil
	case "Regex":
		return generateFromRegex(g.str("regex"))
	case "Uuid":
		u := newUUID()
		switch g.str("format") {
		case "simple":
			return strings.ReplaceAll(u, "-", ""), nil
		case "upper-case-hyphenated":
			return strings.ToUpper(u), nil
		case "URN":
			return "urn:uuid:" + u, nil
		}
		return u, nil
	case "Date", "Time", "DateTime":
		now := ctx.Now
		if now.IsZero() {
			now = time.Now()
		}
		if expr := g.str("expression"); expr != "" {
			t, err := applyDateExpression(now, expr)
			if err != nil {
				return current, err
			}
			now = t
		}
		return formatJavaTime(g.str("format"), g.Type(), now), nil
	case "ProviderState":
		return providerStateValue(g, ctx, current)
	case "MockServerURL":
		if ctx.MockServerURL == "" {
			return current, nil
		}
		ex := g.str("example")
		re, err := regexp.Compile(g.str("regex"))
		if err != nil {
			return current, fmt.Errorf("MockServerURL regex: %w", err)
		}
		sub := re.FindStringSubmatchIndex(ex)
		if len(sub) >= 4 && sub[2] >= 0 {
			return strings.TrimRight(ctx.MockServerURL, "/") + ex[sub[2]:sub[3]], nil
		}
		u, err := url.Parse(ex)
		if err == nil {
			return strings.TrimRight(ctx.MockServerURL, "/") + u.RequestURI(), nil
		}
		return current, nil
	}
	return current, fmt.Errorf("unknown generator %q", g.Type())
}

var stateExprRe = regexp.MustCompile(`\$\{([^}]+)\}`)

// providerStateValue evaluates an expression such as "/orders/${id}"
// against the provider state's values. A whole-value expression keeps the
// value's type (or the generator's dataType).
func providerStateValue(g Generator, ctx GenContext, current any) (any, error) {
	expr := g.str("expression")
	if m := stateExprRe.FindStringSubmatch(expr); m != nil && m[0] == expr {
		v, ok := ctx.StateValues[m[1]]
		if !ok {
			return current, nil
		}
		return convertDataType(g.str("dataType"), v), nil
	}
	missing := false
	out := stateExprRe.ReplaceAllStringFunc(expr, func(s string) string {
		v, ok := ctx.StateValues[s[2:len(s)-1]]
		if !ok {
			missing = true
			return s
		}
		str, _ := scalarString(v)
		return str
	})
	if missing {
		return current, nil
	}
	return convertDataType(g.str("dataType"), out), nil
}

func convertDataType(dt string, v any) any {
	s, isScalar := scalarString(v)
	switch dt {
	case "STRING":
		if isScalar {
			return s
		}
	case "INTEGER":
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return json.Number(strconv.FormatInt(n, 10))
		}
	case "DECIMAL", "FLOAT":
		if _, err := strconv.ParseFloat(s, 64); err == nil {
			return json.Number(s)
		}
	case "BOOLEAN":
		if b, err := strconv.ParseBool(s); err == nil {
			return b
		}
	}
	if f, ok := v.(float64); ok {
		return json.Number(strconv.FormatFloat(f, 'f', -1, 64))
	}
	return v
}

// applyDateExpression applies expressions like "+ 1 day", "now - 2 hours",
// "tomorrow", "yesterday" (the subset of Pact's date expressions in use).
func applyDateExpression(now time.Time, expr string) (time.Time, error) {
	e := strings.ToLower(strings.TrimSpace(expr))
	e = strings.TrimPrefix(e, "now")
	e = strings.TrimPrefix(e, "today")
	switch strings.TrimSpace(e) {
	case "":
		return now, nil
	case "tomorrow":
		return now.AddDate(0, 0, 1), nil
	case "yesterday":
		return now.AddDate(0, 0, -1), nil
	}
	e = strings.NewReplacer("+", " + ", "-", " - ").Replace(e)
	fields := strings.Fields(e)
	if len(fields)%3 != 0 {
		return now, fmt.Errorf("date expression %q: want [+|-] N unit", expr)
	}
	t := now
	for i := 0; i < len(fields); i += 3 {
		sign, nstr, unit := fields[i], fields[i+1], strings.TrimSuffix(fields[i+2], "s")
		n, err := strconv.Atoi(nstr)
		if err != nil || (sign != "+" && sign != "-") {
			return now, fmt.Errorf("date expression %q: want [+|-] N unit", expr)
		}
		if sign == "-" {
			n = -n
		}
		switch unit {
		case "year":
			t = t.AddDate(n, 0, 0)
		case "month":
			t = t.AddDate(0, n, 0)
		case "week":
			t = t.AddDate(0, 0, 7*n)
		case "day":
			t = t.AddDate(0, 0, n)
		case "hour":
			t = t.Add(time.Duration(n) * time.Hour)
		case "minute":
			t = t.Add(time.Duration(n) * time.Minute)
		case "second":
			t = t.Add(time.Duration(n) * time.Second)
		case "millisecond":
			t = t.Add(time.Duration(n) * time.Millisecond)
		default:
			return now, fmt.Errorf("date expression %q: unknown unit %q", expr, unit)
		}
	}
	return t, nil
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// generateFromRegex produces a string the regex matches.
func generateFromRegex(expr string) (string, error) {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return "", fmt.Errorf("regex generator %q: %w", expr, err)
	}
	var b strings.Builder
	genRegex(&b, re.Simplify(), 0)
	return b.String(), nil
}

func genRegex(b *strings.Builder, re *syntax.Regexp, depth int) {
	if depth > 50 || b.Len() > maxGenerated {
		return
	}
	switch re.Op {
	case syntax.OpLiteral:
		for _, r := range re.Rune {
			b.WriteRune(r)
		}
	case syntax.OpCharClass:
		if len(re.Rune) < 2 {
			return
		}
		// prefer printable ASCII ranges
		var pairs [][2]rune
		for i := 0; i+1 < len(re.Rune); i += 2 {
			lo, hi := re.Rune[i], re.Rune[i+1]
			if lo < 0x21 {
				lo = 0x21
			}
			if hi > 0x7e {
				hi = 0x7e
			}
			if lo <= hi {
				pairs = append(pairs, [2]rune{lo, hi})
			}
		}
		if len(pairs) == 0 {
			b.WriteRune(re.Rune[0])
			return
		}
		p := pairs[randInt(0, int64(len(pairs)-1))]
		b.WriteRune(p[0] + rune(randInt(0, int64(p[1]-p[0]))))
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		b.WriteByte(alphanumeric[randInt(0, int64(len(alphanumeric)-1))])
	case syntax.OpCapture:
		for _, s := range re.Sub {
			genRegex(b, s, depth+1)
		}
	case syntax.OpConcat:
		for _, s := range re.Sub {
			genRegex(b, s, depth+1)
		}
	case syntax.OpAlternate:
		genRegex(b, re.Sub[randInt(0, int64(len(re.Sub)-1))], depth+1)
	case syntax.OpStar, syntax.OpPlus, syntax.OpQuest, syntax.OpRepeat:
		lo, hi := 0, 0
		switch re.Op {
		case syntax.OpStar:
			lo, hi = 0, 5
		case syntax.OpPlus:
			lo, hi = 1, 5
		case syntax.OpQuest:
			lo, hi = 0, 1
		default:
			lo, hi = re.Min, re.Max
			if hi < 0 {
				hi = lo + 5
			}
		}
		n := int(randInt(int64(lo), int64(hi)))
		for i := 0; i < n; i++ {
			for _, s := range re.Sub {
				genRegex(b, s, depth+1)
			}
		}
	}
}

// applyBodyGenerators rewrites a JSON body at the generators' paths.
func applyBodyGenerators(body Body, gens map[string]Generator, ctx GenContext) (Body, error) {
	if len(gens) == 0 || !body.Present || len(body.Content) == 0 {
		return body, nil
	}
	if !body.IsJSON() {
		if g, ok := gens["$"]; ok {
			v, err := g.Generate(ctx, string(body.Content))
			if err != nil {
				return body, err
			}
			s, _ := scalarString(v)
			body.Content = []byte(s)
		}
		return body, nil
	}
	doc, err := decodeJSON(body.Content)
	if err != nil {
		return body, nil
	}
	for _, k := range sortedKeys(gens) {
		toks, err := parsePath(k)
		if err != nil {
			continue
		}
		doc, err = setAtPath(doc, toks[1:], func(cur any) (any, error) { return gens[k].Generate(ctx, cur) })
		if err != nil {
			return body, fmt.Errorf("generator at %s: %w", k, err)
		}
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return body, err
	}
	body.Content = out
	return body, nil
}

// setAtPath replaces the values at toks (with * matching every key or
// element) using f; paths that do not exist are left alone.
func setAtPath(doc any, toks []pathToken, f func(any) (any, error)) (any, error) {
	if len(toks) == 0 {
		return f(doc)
	}
	t := toks[0]
	switch d := doc.(type) {
	case map[string]any:
		for _, k := range sortedKeys(d) {
			if t.kind == tokStar || (t.kind == tokField && t.name == k) {
				v, err := setAtPath(d[k], toks[1:], f)
				if err != nil {
					return doc, err
				}
				d[k] = v
			}
		}
	case []any:
		for i := range d {
			if t.kind == tokStar || (t.kind == tokIndex && t.index == i) {
				v, err := setAtPath(d[i], toks[1:], f)
				if err != nil {
					return doc, err
				}
				d[i] = v
			}
		}
	}
	return doc, nil
}

// generateRequest returns the request with its generators applied, as the
// verifier sends it.
func generateRequest(r Request, ctx GenContext) (Request, error) {
	out := r
	if g, ok := r.Generators["path"][""]; ok {
		v, err := g.Generate(ctx, r.Path)
		if err != nil {
			return r, err
		}
		out.Path, _ = scalarString(v)
	}
	if gs := r.Generators["query"]; len(gs) > 0 {
		q := url.Values{}
		for k, v := range r.Query {
			q[k] = append([]string(nil), v...)
		}
		for name, g := range gs {
			v, err := g.Generate(ctx, q.Get(name))
			if err != nil {
				return r, err
			}
			s, _ := scalarString(v)
			q.Set(name, s)
		}
		out.Query = q
	}
	out.Headers = generateHeaders(r.Headers, r.Generators["header"], ctx)
	b, err := applyBodyGenerators(r.Body, r.Generators["body"], ctx)
	if err != nil {
		return r, err
	}
	out.Body = b
	return out, nil
}

// generateResponse returns the response with its generators applied, as
// the mock and stub servers serve it.
func generateResponse(r Response, ctx GenContext) (Response, error) {
	out := r
	if g, ok := r.Generators["status"][""]; ok {
		v, err := g.Generate(ctx, r.Status)
		if err == nil {
			if s, ok := scalarString(v); ok {
				if n, err := strconv.Atoi(s); err == nil {
					out.Status = n
				}
			}
		}
	}
	out.Headers = generateHeaders(r.Headers, r.Generators["header"], ctx)
	b, err := applyBodyGenerators(r.Body, r.Generators["body"], ctx)
	if err != nil {
		return r, err
	}
	out.Body = b
	return out, nil
}

func generateHeaders(h map[string][]string, gens map[string]Generator, ctx GenContext) map[string][]string {
	if len(gens) == 0 {
		return h
	}
	out := map[string][]string{}
	for k, v := range h {
		out[k] = v
	}
	for name, g := range gens {
		cur := ""
		if v, ok := lookupFold(out, name); ok && len(v) > 0 {
			cur = v[0]
		}
		v, err := g.Generate(ctx, cur)
		if err != nil {
			continue
		}
		s, _ := scalarString(v)
		for k := range out {
			if strings.EqualFold(k, name) {
				delete(out, k)
			}
		}
		out[name] = []string{s}
	}
	return out
}

// generateMessage returns the message with its generators applied.
func generateMessage(m Message, ctx GenContext) (Message, error) {
	out := m
	b, err := applyBodyGenerators(m.Contents, m.Generators["content"], ctx)
	if err != nil {
		return m, err
	}
	out.Contents = b
	if gs := m.Generators["metadata"]; len(gs) > 0 {
		md := map[string]any{}
		for k, v := range m.Metadata {
			md[k] = v
		}
		for k, g := range gs {
			v, err := g.Generate(ctx, md[k])
			if err != nil {
				return m, err
			}
			md[k] = v
		}
		out.Metadata = md
	}
	return out, nil
}
