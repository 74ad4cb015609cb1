package contract

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
)

// Stub serves the responses of pacts' HTTP interactions to requests that
// match them (method, path, query and body; headers are not required), as
// `pact stub` does: a provider stand-in for developing a
// consumer. Requests matching nothing get 404 with a JSON body describing
// the nearest interaction's mismatches.
type Stub struct {
	interactions []*Interaction
	// StateHeader names a request header carrying the provider state to
	// choose when several interactions match (pact stub's
	// --provider-state-header-name).
	StateHeader string
	// State, when set, keeps only interactions with a provider state
	// matching it (pact stub's --provider-state); EmptyState also keeps
	// interactions without one.
	State      *regexp.Regexp
	EmptyState bool
	// CORS answers OPTIONS pre-flight requests and adds
	// Access-Control-Allow-Origin: * to responses.
	CORS bool
}

// NewStub returns a stub serving the HTTP interactions of the pacts.
func NewStub(pacts []*Pact) *Stub {
	s := &Stub{}
	for _, p := range pacts {
		for _, in := range p.Interactions {
			if in.Kind == HTTP {
				s.interactions = append(s.interactions, in)
			}
		}
	}
	return s
}

// Interactions is the number of HTTP interactions served.
func (s *Stub) Interactions() int { return len(s.interactions) }

func (s *Stub) eligible(in *Interaction) bool {
	if s.State == nil {
		return true
	}
	if len(in.States) == 0 {
		return s.EmptyState
	}
	for _, st := range in.States {
		if s.State.MatchString(st.Name) {
			return true
		}
	}
	return false
}

func (s *Stub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Access-Control-Allow-Origin", "*") // as pact stub does
	if s.CORS {
		if r.Method == http.MethodOptions {
			w.Header().Set("Access-Control-Allow-Methods", "GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH")
			w.Header().Set("Access-Control-Allow-Headers", "*")
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
	body, _ := io.ReadAll(r.Body)
	// Headers are not required, the Content-Type included: the body's type
	// comes from its content, as with pact stub.
	hdr := r.Header.Clone()
	hdr.Del("Content-Type")
	act := HTTPRequest{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Headers: hdr, Body: body}
	if r.URL.RawQuery == "" {
		act.Query = url.Values{}
	}
	var matches []*Interaction
	var nearest *Interaction
	var nearestMM []Mismatch
	for _, in := range s.interactions {
		if !s.eligible(in) {
			continue
		}
		mm := withoutHeaders(MatchRequest(in.Request, act))
		if len(mm) == 0 {
			matches = append(matches, in)
			continue
		}
		if nearest == nil || distance(mm) < distance(nearestMM) {
			nearest, nearestMM = in, mm
		}
	}
	if len(matches) == 0 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		out := map[string]any{"error": "no interaction matches " + r.Method + " " + r.URL.RequestURI()}
		if nearest != nil {
			var ms []string
			for _, m := range nearestMM {
				ms = append(ms, m.String())
			}
			out["nearest"] = map[string]any{"description": nearest.Description, "mismatches": ms}
		}
		_ = json.NewEncoder(w).Encode(out)
		return
	}
	chosen := s.choose(matches, r)
	resp, err := generateResponse(chosen.Response, GenContext{MockServerURL: "http://" + r.Host})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeResponse(w, resp)
}

// withoutHeaders drops header mismatches: like pact stub, the stub does
// not require the pact's request headers.
func withoutHeaders(mm []Mismatch) []Mismatch {
	out := mm[:0:0]
	for _, m := range mm {
		if m.Part != "header" {
			out = append(out, m)
		}
	}
	return out
}

// choose picks among matching interactions by the state header, if any.
func (s *Stub) choose(matches []*Interaction, r *http.Request) *Interaction {
	if len(matches) == 1 {
		return matches[0]
	}
	want := ""
	if s.StateHeader != "" {
		want = r.Header.Get(s.StateHeader)
	}
	if want == "" {
		for _, in := range matches { // an exact example beats a matcher
			if in.Request.Path == r.URL.Path {
				return in
			}
		}
		return matches[0]
	}
	for _, in := range matches {
		for _, st := range in.States {
			if strings.EqualFold(st.Name, want) {
				return in
			}
		}
	}
	return matches[0]
}
