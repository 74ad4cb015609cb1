package store

import (
	"encoding/json"
	"sort"
	"time"
)

// Span is one span as the store keeps it: the fields a waterfall, a
// query and the graph's drift check need, decoded from OTLP.
type Span struct {
	TraceID      string `json:"trace_id"` // 32 hex digits
	SpanID       string `json:"span_id"`  // 16 hex digits
	ParentSpanID string `json:"parent_span_id,omitempty"`
	// Service is the resource's service.name; Version its service.version
	// (or the span's own service.version attribute).
	Service string    `json:"service"`
	Version string    `json:"version,omitempty"`
	Name    string    `json:"name"`
	Kind    string    `json:"kind"` // internal, server, client, producer, consumer
	Start   time.Time `json:"start"`
	End     time.Time `json:"end"`
	// Status is unset, ok or error; StatusMessage the error's description.
	Status        string  `json:"status"`
	StatusMessage string  `json:"status_message,omitempty"`
	Attributes    Attrs   `json:"attributes,omitempty"`
	Events        []Event `json:"events,omitempty"`
	Links         []Link  `json:"links,omitempty"`
}

// Duration is the span's end minus its start (0 when it ends before it
// starts).
func (s *Span) Duration() time.Duration {
	if s.End.Before(s.Start) {
		return 0
	}
	return s.End.Sub(s.Start)
}

// Error reports whether the span's status is an error.
func (s *Span) Error() bool { return s.Status == StatusError }

// The span kinds and statuses, as OTLP names them, lowercase.
const (
	KindInternal = "internal"
	KindServer   = "server"
	KindClient   = "client"
	KindProducer = "producer"
	KindConsumer = "consumer"

	StatusUnset = "unset"
	StatusOK    = "ok"
	StatusError = "error"
)

// Event is a span's event (an exception, a retry).
type Event struct {
	Name       string    `json:"name"`
	Time       time.Time `json:"time"`
	Attributes Attrs     `json:"attributes,omitempty"`
}

// Link is a span's link to another span: a bus consumer's to the
// producer whose message it handles.
type Link struct {
	TraceID    string `json:"trace_id"`
	SpanID     string `json:"span_id"`
	Attributes Attrs  `json:"attributes,omitempty"`
}

// Attr is one attribute, its value rendered as text.
type Attr struct{ Key, Value string }

// Attrs are attributes sorted by key (a slice is smaller than a map); they
// read and write as a JSON object.
type Attrs []Attr

// Get returns the value of key and whether it is there.
func (a Attrs) Get(key string) (string, bool) {
	i := sort.Search(len(a), func(i int) bool { return a[i].Key >= key })
	if i < len(a) && a[i].Key == key {
		return a[i].Value, true
	}
	return "", false
}

// MarshalJSON writes the attributes as an object.
func (a Attrs) MarshalJSON() ([]byte, error) {
	m := make(map[string]string, len(a))
	for _, kv := range a {
		m[kv.Key] = kv.Value
	}
	return json.Marshal(m)
}

// UnmarshalJSON reads an object of strings.
func (a *Attrs) UnmarshalJSON(b []byte) error {
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	out := make(Attrs, 0, len(m))
	for k, v := range m {
		out = append(out, Attr{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	*a = out
	return nil
}

// Trace is the spans of one trace, in start order, and the spans of the
// traces that link to it (a consumer that started a trace of its own,
// linked to the producer).
type Trace struct {
	TraceID string `json:"trace_id"`
	Spans   []Span `json:"spans"`
}

// Summary is a trace in a list.
type Summary struct {
	TraceID string `json:"trace_id"`
	// Service and Name are the root span's (the first span when the root
	// has not arrived).
	Service string    `json:"service"`
	Name    string    `json:"name"`
	Start   time.Time `json:"start"`
	// Duration is the root span's; Extent from the first span's start to
	// the last one's end, async branches included.
	Duration time.Duration `json:"duration"`
	Extent   time.Duration `json:"extent"`
	Spans    int           `json:"spans"`
	Errors   int           `json:"errors"`
	// Services are the services with spans in it, sorted; Versions the
	// service@version pairs.
	Services []string `json:"services"`
	Versions []string `json:"versions,omitempty"`
}
