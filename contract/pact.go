package contract

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Spec is a Pact specification version.
type Spec int

// The specification versions flotilla reads; it writes V4 (or V3 on request).
const (
	V2 Spec = 2
	V3 Spec = 3
	V4 Spec = 4
)

func (s Spec) String() string {
	switch s {
	case V2:
		return "2.0.0"
	case V3:
		return "3.0.0"
	default:
		return "4.0"
	}
}

// Kind is the type of a V4 interaction.
type Kind string

// The interaction kinds of Pact specification V4.
const (
	HTTP         Kind = "Synchronous/HTTP"
	AsyncMessage Kind = "Asynchronous/Messages"
	SyncMessage  Kind = "Synchronous/Messages"
)

// Pact is a contract between one consumer and one provider.
type Pact struct {
	Consumer     string
	Provider     string
	Spec         Spec // the version the file was read as
	Interactions []*Interaction
	// Metadata holds metadata entries other than the specification version.
	Metadata map[string]any
}

// ProviderState is a state the provider must be in for an interaction.
type ProviderState struct {
	Name   string
	Params map[string]any
}

// Interaction is one request/response pair or one message.
type Interaction struct {
	Kind        Kind
	ID          string // _id, as a broker injects it
	Key         string
	Description string
	States      []ProviderState
	Pending     bool
	Comments    map[string]any

	Request  Request  // Kind HTTP
	Response Response // Kind HTTP

	Message   Message   // Kind AsyncMessage, or the request of a SyncMessage
	Responses []Message // Kind SyncMessage

	// Extra keeps a V4 interaction's other fields (transport,
	// pluginConfiguration, interactionMarkup, ...) so rewriting keeps them.
	Extra map[string]any
}

// v4Known are the interaction fields the model holds.
var v4Known = map[string]bool{
	"type": true, "key": true, "description": true, "pending": true, "providerStates": true, "providerState": true,
	"comments": true, "request": true, "response": true, "contents": true, "metadata": true, "metaData": true,
	"matchingRules": true, "generators": true, "_id": true,
}

// Request is the expected HTTP request of an interaction.
type Request struct {
	Method     string
	Path       string
	Query      url.Values // nil: no query expected
	Headers    map[string][]string
	Body       Body
	Rules      Rules
	Generators Generators
}

// Response is the HTTP response the provider must give.
type Response struct {
	Status     int
	Headers    map[string][]string
	Body       Body
	Rules      Rules
	Generators Generators
}

// Message is a message's contents and metadata.
type Message struct {
	Contents   Body
	Metadata   map[string]any
	Rules      Rules // categories "content" and "metadata"
	Generators Generators
}

// Body is a payload: its bytes and content type. As the specification
// says, an absent body (Present false) is not compared, while an empty one
// or a null one (Null: the pact wrote "body": null) matches only a message
// or request or response without a body.
type Body struct {
	Present     bool
	Null        bool
	ContentType string
	Content     []byte
}

// JSONBody returns a present JSON body of v.
func JSONBody(v any) Body {
	b, _ := json.Marshal(v)
	return Body{Present: true, ContentType: "application/json", Content: b}
}

// IsJSON reports whether the body's content type is JSON.
func (b Body) IsJSON() bool { return isJSONType(b.ContentType) }

func isJSONType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		mt = strings.ToLower(strings.TrimSpace(strings.Split(ct, ";")[0]))
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json") || mt == "text/json"
}

func baseType(ct string) string {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return strings.ToLower(strings.TrimSpace(strings.Split(ct, ";")[0]))
	}
	return mt
}

// ParseError is a problem in a pact file, naming the file and the place.
type ParseError struct {
	File  string // file name or URL; may be empty
	Where string // e.g. interactions[2].request.matchingRules
	Err   error
}

func (e *ParseError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(": ")
	}
	if e.Where != "" {
		b.WriteString(e.Where)
		b.WriteString(": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *ParseError) Unwrap() error { return e.Err }

// ReadFile reads and parses the pact file at path.
func ReadFile(path string) (*Pact, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read pact: %w", err)
	}
	p, err := Parse(data)
	if err != nil {
		var pe *ParseError
		if errors.As(err, &pe) {
			pe.File = path
			return nil, pe
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// Parse reads a pact file of specification v1–v4.
func Parse(data []byte) (*Pact, error) {
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return nil, &ParseError{Err: fmt.Errorf("not a JSON object: %w", jsonErrAt(data, err))}
	}
	if dec.More() {
		return nil, &ParseError{Err: errors.New("trailing data after the JSON object")}
	}
	if doc == nil {
		return nil, &ParseError{Err: errors.New("not a JSON object")}
	}
	p := &Pact{Metadata: map[string]any{}}
	p.Consumer = nameOf(doc["consumer"])
	p.Provider = nameOf(doc["provider"])
	if p.Consumer == "" {
		return nil, &ParseError{Where: "consumer.name", Err: errors.New("missing: a pact names its consumer")}
	}
	if p.Provider == "" {
		return nil, &ParseError{Where: "provider.name", Err: errors.New("missing: a pact names its provider")}
	}
	spec, err := specOf(doc["metadata"])
	if err != nil {
		return nil, &ParseError{Where: "metadata.pactSpecification.version", Err: err}
	}
	p.Spec = spec
	if md, ok := doc["metadata"].(map[string]any); ok {
		for k, v := range md {
			switch k {
			case "pactSpecification", "pact-specification", "pactSpecificationVersion":
			default:
				p.Metadata[k] = v
			}
		}
	}
	if raw, ok := doc["interactions"]; ok && raw != nil {
		list, ok := raw.([]any)
		if !ok {
			return nil, &ParseError{Where: "interactions", Err: errors.New("must be an array")}
		}
		for i, v := range list {
			where := fmt.Sprintf("interactions[%d]", i)
			obj, ok := v.(map[string]any)
			if !ok {
				return nil, &ParseError{Where: where, Err: errors.New("must be an object")}
			}
			in, err := parseInteraction(obj, spec, where)
			if err != nil {
				return nil, err
			}
			p.Interactions = append(p.Interactions, in)
		}
	}
	if raw, ok := doc["messages"]; ok && raw != nil {
		list, ok := raw.([]any)
		if !ok {
			return nil, &ParseError{Where: "messages", Err: errors.New("must be an array")}
		}
		for i, v := range list {
			where := fmt.Sprintf("messages[%d]", i)
			obj, ok := v.(map[string]any)
			if !ok {
				return nil, &ParseError{Where: where, Err: errors.New("must be an object")}
			}
			in, err := parseV3Message(obj, spec, where)
			if err != nil {
				return nil, err
			}
			p.Interactions = append(p.Interactions, in)
		}
	}
	return p, nil
}

func jsonErrAt(data []byte, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line := 1 + bytes.Count(data[:min(int(se.Offset), len(data))], []byte("\n"))
		return fmt.Errorf("line %d: %w", line, err)
	}
	return err
}

func nameOf(v any) string {
	if m, ok := v.(map[string]any); ok {
		s, _ := m["name"].(string)
		return s
	}
	return ""
}

func specOf(md any) (Spec, error) {
	m, _ := md.(map[string]any)
	var v string
	for _, k := range []string{"pactSpecification", "pact-specification"} {
		if o, ok := m[k].(map[string]any); ok {
			v, _ = o["version"].(string)
		}
	}
	if s, ok := m["pactSpecificationVersion"].(string); ok && v == "" {
		v = s
	}
	if v == "" {
		return V2, nil // pacts before v2 carried no version
	}
	major, _, _ := strings.Cut(strings.TrimPrefix(strings.ToLower(v), "v"), ".")
	switch major {
	case "1", "2":
		return V2, nil
	case "3":
		return V3, nil
	case "4":
		return V4, nil
	}
	return 0, fmt.Errorf("unknown specification version %q (want 1.x, 2.x, 3.x or 4.x)", v)
}

func parseStates(obj map[string]any, where string) ([]ProviderState, error) {
	var out []ProviderState
	if s, ok := obj["providerState"].(string); ok && s != "" {
		out = append(out, ProviderState{Name: s})
	}
	if s, ok := obj["provider_state"].(string); ok && s != "" {
		out = append(out, ProviderState{Name: s})
	}
	if raw, ok := obj["providerStates"]; ok && raw != nil {
		list, ok := raw.([]any)
		if !ok {
			return nil, &ParseError{Where: where + ".providerStates", Err: errors.New("must be an array")}
		}
		for i, v := range list {
			m, ok := v.(map[string]any)
			name, _ := m["name"].(string)
			if !ok || name == "" {
				return nil, &ParseError{Where: fmt.Sprintf("%s.providerStates[%d]", where, i), Err: errors.New("must be an object with a name")}
			}
			ps := ProviderState{Name: name}
			if pm, ok := m["params"].(map[string]any); ok {
				ps.Params = pm
			}
			out = append(out, ps)
		}
	}
	return out, nil
}

func parseInteraction(obj map[string]any, spec Spec, where string) (*Interaction, error) {
	in := &Interaction{Kind: HTTP}
	in.Description, _ = obj["description"].(string)
	if in.Description == "" {
		return nil, &ParseError{Where: where + ".description", Err: errors.New("missing: every interaction has a description")}
	}
	where = fmt.Sprintf("%s (%q)", where, in.Description)
	in.ID, _ = obj["_id"].(string)
	in.Key, _ = obj["key"].(string)
	in.Pending, _ = obj["pending"].(bool)
	in.Comments, _ = obj["comments"].(map[string]any)
	states, err := parseStates(obj, where)
	if err != nil {
		return nil, err
	}
	in.States = states
	if spec == V4 {
		if t, ok := obj["type"].(string); ok {
			in.Kind = Kind(t)
		}
		for k, v := range obj {
			if !v4Known[k] {
				if in.Extra == nil {
					in.Extra = map[string]any{}
				}
				in.Extra[k] = v
			}
		}
	}
	switch in.Kind {
	case HTTP:
		req, _ := obj["request"].(map[string]any)
		if req == nil {
			return nil, &ParseError{Where: where + ".request", Err: errors.New("missing")}
		}
		resp, _ := obj["response"].(map[string]any)
		if resp == nil {
			return nil, &ParseError{Where: where + ".response", Err: errors.New("missing")}
		}
		if in.Request, err = parseRequest(req, spec, where+".request"); err != nil {
			return nil, err
		}
		if in.Response, err = parseResponse(resp, spec, where+".response"); err != nil {
			return nil, err
		}
	case AsyncMessage:
		if in.Message, err = parseMessage(obj, spec, where); err != nil {
			return nil, err
		}
	case SyncMessage:
		req, _ := obj["request"].(map[string]any)
		if req == nil {
			return nil, &ParseError{Where: where + ".request", Err: errors.New("missing")}
		}
		if in.Message, err = parseMessage(req, spec, where+".request"); err != nil {
			return nil, err
		}
		list, _ := obj["response"].([]any)
		for i, r := range list {
			rm, _ := r.(map[string]any)
			if rm == nil {
				return nil, &ParseError{Where: fmt.Sprintf("%s.response[%d]", where, i), Err: errors.New("must be an object")}
			}
			m, err := parseMessage(rm, spec, fmt.Sprintf("%s.response[%d]", where, i))
			if err != nil {
				return nil, err
			}
			in.Responses = append(in.Responses, m)
		}
	default:
		return nil, &ParseError{Where: where + ".type", Err: fmt.Errorf("unknown interaction type %q (want %s, %s or %s)", in.Kind, HTTP, AsyncMessage, SyncMessage)}
	}
	return in, nil
}

func parseV3Message(obj map[string]any, spec Spec, where string) (*Interaction, error) {
	in := &Interaction{Kind: AsyncMessage}
	in.Description, _ = obj["description"].(string)
	if in.Description == "" {
		return nil, &ParseError{Where: where + ".description", Err: errors.New("missing: every message has a description")}
	}
	where = fmt.Sprintf("%s (%q)", where, in.Description)
	in.ID, _ = obj["_id"].(string)
	states, err := parseStates(obj, where)
	if err != nil {
		return nil, err
	}
	in.States = states
	in.Message, err = parseMessage(obj, spec, where)
	return in, err
}

func parseMessage(obj map[string]any, spec Spec, where string) (Message, error) {
	var m Message
	md, _ := obj["metadata"].(map[string]any)
	if md == nil {
		md, _ = obj["metaData"].(map[string]any)
	}
	m.Metadata = md
	ct := ""
	for _, k := range []string{"contentType", "content-type", "content_type", "Content-Type"} {
		if s, ok := md[k].(string); ok {
			ct = s
		}
	}
	var err error
	if spec == V4 {
		m.Contents, err = parseV4Body(obj, "contents", where+".contents")
	} else {
		m.Contents, err = parseV3Body(obj, "contents", ct, where+".contents")
	}
	if err != nil {
		return m, err
	}
	if ct != "" && m.Contents.Present && m.Contents.ContentType == "" {
		m.Contents.ContentType = ct
	}
	if m.Rules, err = parseRules(obj["matchingRules"], spec, true, where+".matchingRules"); err != nil {
		return m, err
	}
	if m.Generators, err = parseGenerators(obj["generators"], true, where+".generators"); err != nil {
		return m, err
	}
	return m, nil
}

func parseRequest(obj map[string]any, spec Spec, where string) (Request, error) {
	var r Request
	if m, has := obj["method"]; has {
		s, ok := m.(string)
		if !ok || strings.TrimSpace(s) == "" {
			return r, &ParseError{Where: where + ".method", Err: fmt.Errorf("must be an HTTP method such as \"GET\", not %s", show(m))}
		}
		r.Method = strings.ToUpper(s)
	}
	if r.Method == "" {
		r.Method = "GET"
	}
	if p, has := obj["path"]; has {
		s, ok := p.(string)
		if !ok {
			return r, &ParseError{Where: where + ".path", Err: fmt.Errorf("must be a string such as \"/orders\", not %s", show(p))}
		}
		r.Path = s
	}
	if r.Path == "" {
		r.Path = "/"
	}
	var err error
	if r.Query, err = parseQuery(obj["query"], where+".query"); err != nil {
		return r, err
	}
	if r.Headers, err = parseHeaders(obj["headers"], where+".headers"); err != nil {
		return r, err
	}
	if r.Body, err = parseBodyFor(obj, spec, r.Headers, where+".body"); err != nil {
		return r, err
	}
	if r.Rules, err = parseRules(obj["matchingRules"], spec, false, where+".matchingRules"); err != nil {
		return r, err
	}
	if r.Generators, err = parseGenerators(obj["generators"], false, where+".generators"); err != nil {
		return r, err
	}
	return r, nil
}

func parseResponse(obj map[string]any, spec Spec, where string) (Response, error) {
	var r Response
	// A response without a usable status is refused, never defaulted: a
	// default would let the pact pass against a provider it says nothing
	// about.
	switch s := obj["status"].(type) {
	case json.Number:
		n, err := strconv.Atoi(s.String())
		if err != nil || n < 100 || n > 599 {
			return r, &ParseError{Where: where + ".status", Err: fmt.Errorf("%s is not an HTTP status (want an integer 100-599)", s)}
		}
		r.Status = n
	case nil:
		if _, has := obj["status"]; has {
			return r, &ParseError{Where: where + ".status", Err: errors.New("is null: want an integer HTTP status such as 200")}
		}
		return r, &ParseError{Where: where + ".status", Err: errors.New("missing: every HTTP response has an integer status such as 200")}
	default:
		return r, &ParseError{Where: where + ".status", Err: fmt.Errorf("must be an integer HTTP status such as 200, not the %s %s", jsonType(s), show(s))}
	}
	var err error
	if r.Headers, err = parseHeaders(obj["headers"], where+".headers"); err != nil {
		return r, err
	}
	if r.Body, err = parseBodyFor(obj, spec, r.Headers, where+".body"); err != nil {
		return r, err
	}
	if r.Rules, err = parseRules(obj["matchingRules"], spec, false, where+".matchingRules"); err != nil {
		return r, err
	}
	if r.Generators, err = parseGenerators(obj["generators"], false, where+".generators"); err != nil {
		return r, err
	}
	return r, nil
}

func parseQuery(v any, where string) (url.Values, error) {
	switch q := v.(type) {
	case nil:
		return nil, nil
	case string:
		vals, err := url.ParseQuery(q)
		if err != nil {
			return nil, &ParseError{Where: where, Err: fmt.Errorf("query string %q does not parse: %w", q, err)}
		}
		return vals, nil
	case map[string]any:
		vals := url.Values{}
		for k, x := range q {
			switch xv := x.(type) {
			case string:
				vals[k] = append(vals[k], xv)
			case []any:
				for _, e := range xv {
					s, ok := e.(string)
					if !ok {
						s = fmt.Sprint(e)
					}
					vals[k] = append(vals[k], s)
				}
			default:
				return nil, &ParseError{Where: where + "." + k, Err: errors.New("must be a string or an array of strings")}
			}
		}
		return vals, nil
	}
	return nil, &ParseError{Where: where, Err: errors.New("must be a string or an object")}
}

func parseHeaders(v any, where string) (map[string][]string, error) {
	if v == nil {
		return nil, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, &ParseError{Where: where, Err: errors.New("must be an object")}
	}
	h := map[string][]string{}
	for k, x := range m {
		switch xv := x.(type) {
		case string:
			h[k] = []string{xv}
		case []any:
			for _, e := range xv {
				s, ok := e.(string)
				if !ok {
					return nil, &ParseError{Where: where + "." + k, Err: errors.New("must be strings")}
				}
				h[k] = append(h[k], s)
			}
		default:
			return nil, &ParseError{Where: where + "." + k, Err: errors.New("must be a string or an array of strings")}
		}
	}
	return h, nil
}

func headerValue(h map[string][]string, name string) string {
	for k, v := range h {
		if strings.EqualFold(k, name) {
			return strings.Join(v, ", ")
		}
	}
	return ""
}

func parseBodyFor(obj map[string]any, spec Spec, headers map[string][]string, where string) (Body, error) {
	if spec == V4 {
		b, err := parseV4Body(obj, "body", where)
		if err == nil && b.Present && !b.Null && (b.ContentType == "" || b.ContentType == "*/*") {
			// pact's mock server writes "*/*": the header or the content says more
			b.ContentType = headerValue(headers, "Content-Type")
			if b.ContentType == "" {
				b.ContentType = detectContentType("", b.Content)
			}
		}
		return b, err
	}
	return parseV3Body(obj, "body", headerValue(headers, "Content-Type"), where)
}

// parseV3Body reads a v2/v3 body: any JSON value, a string being text
// unless the content type says JSON.
func parseV3Body(obj map[string]any, key, ct, where string) (Body, error) {
	v, ok := obj[key]
	if !ok {
		return Body{}, nil
	}
	if v == nil {
		return Body{Present: true, Null: true, ContentType: ct}, nil
	}
	if s, isStr := v.(string); isStr {
		switch {
		case s == "":
			return Body{Present: true, ContentType: ct}, nil
		case ct == "":
			return Body{Present: true, ContentType: "text/plain", Content: []byte(s)}, nil
		case !isJSONType(ct):
			return Body{Present: true, ContentType: ct, Content: []byte(s)}, nil
		case json.Valid([]byte(s)):
			// JSON given as a string, as pact_models reads it
			return Body{Present: true, ContentType: ct, Content: []byte(s)}, nil
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return Body{}, &ParseError{Where: where, Err: err}
	}
	if ct == "" {
		ct = "application/json"
	}
	return Body{Present: true, ContentType: ct, Content: b}, nil
}

// parseV4Body reads obj[key] as {content, contentType, encoded}.
func parseV4Body(obj map[string]any, key, where string) (Body, error) {
	v, has := obj[key]
	if !has {
		return Body{}, nil
	}
	if v == nil {
		return Body{Present: true, Null: true}, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return Body{}, &ParseError{Where: where, Err: errors.New("must be an object {content, contentType, encoded}")}
	}
	b := Body{Present: true}
	b.ContentType, _ = m["contentType"].(string)
	content, has := m["content"]
	if !has {
		return b, nil
	}
	enc := m["encoded"]
	if s, ok := enc.(string); ok {
		switch strings.ToLower(s) {
		case "base64":
			str, _ := content.(string)
			raw, err := base64.StdEncoding.DecodeString(str)
			if err != nil {
				raw, err = base64.RawStdEncoding.DecodeString(str)
			}
			if err != nil {
				return b, &ParseError{Where: where + ".content", Err: fmt.Errorf("base64 content does not decode: %w", err)}
			}
			b.Content = raw
			return b, nil
		case "json":
			if str, ok := content.(string); ok {
				b.Content = []byte(str)
				return b, nil
			}
		default:
			return b, &ParseError{Where: where + ".encoded", Err: fmt.Errorf("unknown encoding %q (want false, \"base64\" or \"JSON\")", s)}
		}
	}
	if str, ok := content.(string); ok && str == "" {
		return b, nil // an empty body
	}
	if str, ok := content.(string); ok && !isJSONType(b.ContentType) {
		b.Content = []byte(str)
		if b.ContentType == "" {
			b.ContentType = "text/plain"
		}
		return b, nil
	}
	raw, err := json.Marshal(content)
	if err != nil {
		return b, &ParseError{Where: where + ".content", Err: err}
	}
	b.Content = raw
	if b.ContentType == "" {
		b.ContentType = "application/json"
	}
	return b, nil
}

// --- writing ---------------------------------------------------------------

// Marshal renders the pact as specification spec (V4 or V3), with sorted
// keys and stable indentation so files do not churn in version control.
func (p *Pact) Marshal(spec Spec) ([]byte, error) {
	doc := map[string]any{
		"consumer": map[string]any{"name": p.Consumer},
		"provider": map[string]any{"name": p.Provider},
	}
	md := map[string]any{}
	for k, v := range p.Metadata {
		md[k] = v
	}
	md["pactSpecification"] = map[string]any{"version": spec.String()}
	doc["metadata"] = md
	switch spec {
	case V4:
		list := []any{}
		for _, in := range p.Interactions {
			list = append(list, in.v4())
		}
		doc["interactions"] = list
	case V3:
		var http, msgs []any
		for _, in := range p.Interactions {
			switch in.Kind {
			case HTTP:
				http = append(http, in.v3HTTP())
			case AsyncMessage:
				msgs = append(msgs, in.v3Message())
			default:
				return nil, fmt.Errorf("interaction %q: %s cannot be written as specification 3; write V4", in.Description, in.Kind)
			}
		}
		if len(http) > 0 || len(msgs) == 0 {
			doc["interactions"] = orEmpty(http)
		}
		if len(msgs) > 0 {
			doc["messages"] = msgs
		}
	default:
		return nil, fmt.Errorf("writing specification %s is not supported; write V4 or V3", spec)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("encode pact: %w", err)
	}
	return buf.Bytes(), nil
}

func orEmpty(l []any) []any {
	if l == nil {
		return []any{}
	}
	return l
}

func statesJSON(states []ProviderState) []any {
	var out []any
	for _, s := range states {
		m := map[string]any{"name": s.Name}
		if len(s.Params) > 0 {
			m["params"] = s.Params
		}
		out = append(out, m)
	}
	return out
}

func (in *Interaction) v4() map[string]any {
	m := map[string]any{}
	for k, v := range in.Extra {
		m[k] = v
	}
	for k, v := range map[string]any{
		"type":        string(in.Kind),
		"description": in.Description,
		"pending":     in.Pending,
	} {
		m[k] = v
	}
	if len(in.States) > 0 {
		m["providerStates"] = statesJSON(in.States)
	}
	if len(in.Comments) > 0 {
		m["comments"] = in.Comments
	}
	if in.ID != "" {
		m["_id"] = in.ID
	}
	switch in.Kind {
	case HTTP:
		req := map[string]any{"method": in.Request.Method, "path": in.Request.Path}
		if in.Request.Query != nil {
			q := map[string]any{}
			for k, v := range in.Request.Query {
				q[k] = v
			}
			req["query"] = q
		}
		writeHTTPParts(req, in.Request.Headers, in.Request.Body, in.Request.Rules, in.Request.Generators, V4)
		resp := map[string]any{"status": in.Response.Status}
		writeHTTPParts(resp, in.Response.Headers, in.Response.Body, in.Response.Rules, in.Response.Generators, V4)
		m["request"] = req
		m["response"] = resp
	case AsyncMessage:
		for k, v := range in.Message.v4() {
			m[k] = v
		}
	case SyncMessage:
		m["request"] = in.Message.v4()
		var rs []any
		for _, r := range in.Responses {
			rs = append(rs, r.v4())
		}
		m["response"] = orEmpty(rs)
	}
	m["key"] = in.computeKey(m)
	return m
}

// computeKey is a stable digest of the interaction's content, as V4's key.
func (in *Interaction) computeKey(m map[string]any) string {
	if in.Key != "" {
		return in.Key
	}
	b, _ := json.Marshal(m)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

func (msg Message) v4() map[string]any {
	m := map[string]any{}
	if msg.Contents.Null {
		m["contents"] = nil
	} else if msg.Contents.Present {
		m["contents"] = v4Body(msg.Contents)
	}
	md := map[string]any{}
	for k, v := range msg.Metadata {
		md[k] = v
	}
	if msg.Contents.ContentType != "" {
		if _, ok := md["contentType"]; !ok {
			md["contentType"] = msg.Contents.ContentType
		}
	}
	if len(md) > 0 {
		m["metadata"] = md
	}
	if len(msg.Rules) > 0 {
		m["matchingRules"] = msg.Rules.toJSON(V4, true)
	}
	if len(msg.Generators) > 0 {
		m["generators"] = msg.Generators.toJSON(V4, true)
	}
	return m
}

func v4Body(b Body) map[string]any {
	out := map[string]any{"contentType": b.ContentType}
	if b.ContentType == "" {
		out["contentType"] = "application/octet-stream"
	}
	switch {
	case b.IsJSON() && json.Valid(b.Content):
		out["content"] = json.RawMessage(b.Content)
		out["encoded"] = false
	case isText(b):
		out["content"] = string(b.Content)
		out["encoded"] = false
	default:
		out["content"] = base64.StdEncoding.EncodeToString(b.Content)
		out["encoded"] = "base64"
	}
	return out
}

func isText(b Body) bool {
	mt := baseType(b.ContentType)
	if !strings.HasPrefix(mt, "text/") && mt != "application/x-www-form-urlencoded" && !strings.HasSuffix(mt, "xml") && !isJSONType(mt) {
		return false
	}
	return isUTF8Text(b.Content)
}

func isUTF8Text(p []byte) bool {
	s := string(p)
	for _, r := range s {
		if r == '\uFFFD' || (r < 0x20 && r != '\n' && r != '\r' && r != '\t') {
			return false
		}
	}
	return true
}

func writeHTTPParts(m map[string]any, headers map[string][]string, body Body, rules Rules, gens Generators, spec Spec) {
	if len(headers) > 0 {
		h := map[string]any{}
		for k, v := range headers {
			if spec == V3 && len(v) == 1 {
				h[k] = v[0]
			} else {
				h[k] = v
			}
		}
		m["headers"] = h
	}
	switch {
	case body.Null:
		m["body"] = nil
	case body.Present && spec == V4:
		m["body"] = v4Body(body)
	case body.Present:
		m["body"] = v3Body(body)
	}
	if len(rules) > 0 {
		m["matchingRules"] = rules.toJSON(spec, false)
	}
	if len(gens) > 0 {
		m["generators"] = gens.toJSON(spec, false)
	}
}

func v3Body(b Body) any {
	if b.Null {
		return nil
	}
	if b.IsJSON() && json.Valid(b.Content) {
		return json.RawMessage(b.Content)
	}
	return string(b.Content)
}

func (in *Interaction) v3HTTP() map[string]any {
	m := map[string]any{"description": in.Description}
	if len(in.States) > 0 {
		m["providerStates"] = statesJSON(in.States)
	}
	req := map[string]any{"method": in.Request.Method, "path": in.Request.Path}
	if in.Request.Query != nil {
		q := map[string]any{}
		for k, v := range in.Request.Query {
			q[k] = v
		}
		req["query"] = q
	}
	writeHTTPParts(req, in.Request.Headers, in.Request.Body, in.Request.Rules, in.Request.Generators, V3)
	resp := map[string]any{"status": in.Response.Status}
	writeHTTPParts(resp, in.Response.Headers, in.Response.Body, in.Response.Rules, in.Response.Generators, V3)
	m["request"] = req
	m["response"] = resp
	return m
}

func (in *Interaction) v3Message() map[string]any {
	m := map[string]any{"description": in.Description}
	if len(in.States) > 0 {
		m["providerStates"] = statesJSON(in.States)
	}
	msg := in.Message
	if msg.Contents.Present {
		m["contents"] = v3Body(msg.Contents)
	}
	md := map[string]any{}
	for k, v := range msg.Metadata {
		md[k] = v
	}
	if msg.Contents.ContentType != "" {
		if _, ok := md["contentType"]; !ok {
			md["contentType"] = msg.Contents.ContentType
		}
	}
	m["metaData"] = md
	if len(msg.Rules) > 0 {
		m["matchingRules"] = msg.Rules.toJSON(V3, true)
	}
	if len(msg.Generators) > 0 {
		m["generators"] = msg.Generators.toJSON(V3, true)
	}
	return m
}

// identity is what makes two interactions "the same" when merging.
func (in *Interaction) identity() string {
	var b strings.Builder
	b.WriteString(string(in.Kind))
	b.WriteByte(0)
	b.WriteString(in.Description)
	for _, s := range in.States {
		b.WriteByte(0)
		b.WriteString(s.Name)
		pb, _ := json.Marshal(s.Params)
		b.Write(pb)
	}
	return b.String()
}

// Merge adds the interactions of other to p, as Pact's "merge" write
// mode does: an interaction of other with the kind, description and
// provider states of one already in p must be that same interaction (the
// tests of a run may declare it more than once); with other content it is
// a conflict, since which of the two a pact kept would depend on the order
// the tests ran in. Conflicts are returned together, each naming the
// interaction, and leave p unchanged. The result is sorted by kind,
// description and states, so merging is order-independent.
//
// Merge never removes an interaction: a pact that must hold only what one
// run declared is written by that run into an empty directory (see
// EnvPactDir), not merged into an earlier run's file.
func (p *Pact) Merge(other *Pact) error {
	idx := map[string]*Interaction{}
	for _, in := range p.Interactions {
		idx[in.identity()] = in
	}
	var added []*Interaction
	var errs []error
	for _, in := range other.Interactions {
		id := in.identity()
		prev, ok := idx[id]
		if !ok {
			idx[id] = in
			added = append(added, in)
			continue
		}
		if !sameContent(prev, in) {
			errs = append(errs, fmt.Errorf("interaction %q%s is declared twice with different content: give one of them its own description or provider state", in.Description, statesText(in.States)))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	p.Interactions = append(p.Interactions, added...)
	p.sort()
	return nil
}

// sameContent reports whether a and b render the same, leaving out the
// key and the broker's _id, which are derived from the content.
func sameContent(a, b *Interaction) bool {
	render := func(in *Interaction) []byte {
		m := in.v4()
		delete(m, "key")
		delete(m, "_id")
		out, _ := json.Marshal(m)
		return out
	}
	return bytes.Equal(render(a), render(b))
}

func statesText(states []ProviderState) string {
	if len(states) == 0 {
		return ""
	}
	names := make([]string, len(states))
	for i, s := range states {
		names[i] = strconv.Quote(s.Name)
	}
	return " (given " + strings.Join(names, ", ") + ")"
}

func (p *Pact) sort() {
	sort.SliceStable(p.Interactions, func(i, j int) bool {
		return p.Interactions[i].identity() < p.Interactions[j].identity()
	})
}

// FileName is the conventional file name of a pact: consumer-provider.json.
func (p *Pact) FileName() string {
	return sanitize(p.Consumer) + "-" + sanitize(p.Provider) + ".json"
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r == ':' || r == ' ' {
			return '_'
		}
		return r
	}, s)
}

// WriteMerged merges p into the pact file for its consumer and provider in
// dir (creating both), and writes it as spec; it returns the file's path.
// It is how the tests of one run, in one process or several, build a
// consumer-provider pact together, so dir should start the run empty: an
// interaction already in the file is kept, and the same interaction with
// other content is an error (see Merge). WriteMerged holds a lock file
// while it works, so concurrent writers of the same file lose nothing.
func WriteMerged(dir string, p *Pact, spec Spec) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("write pact: %w", err)
	}
	path := filepath.Join(dir, p.FileName())
	unlock, err := lockFile(path + ".lock")
	if err != nil {
		return "", err
	}
	defer unlock()
	merged := &Pact{Consumer: p.Consumer, Provider: p.Provider, Metadata: map[string]any{}}
	if _, err := os.Stat(path); err == nil {
		old, err := ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("merge into existing pact: %w", err)
		}
		merged = old
	}
	if err := merged.Merge(p); err != nil {
		return "", fmt.Errorf("pact %s: %w", path, err)
	}
	data, err := merged.Marshal(spec)
	if err != nil {
		return "", err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return "", fmt.Errorf("write pact: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("write pact: %w", err)
	}
	return path, nil
}
