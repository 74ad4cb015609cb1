package broker

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

var matrixKey = regexp.MustCompile(`^(q|ignore)\[(\d*)\]\[([A-Za-z]+)\]$`)

// ParseMatrixQuery parses the query string of GET /matrix the way Rack
// does: `q[][pacticipant]=a&q[][version]=1&q[][pacticipant]=b` is two
// selectors, a new one starting whenever a key repeats. It returns a list
// of messages (the `errors` of a 400) when the query is malformed.
func ParseMatrixQuery(rawQuery string) (MatrixQuery, error) {
	var q MatrixQuery
	var errs []string
	type group struct {
		kind string
		idx  string
		kv   map[string]string
	}
	var groups []*group
	current := map[string]*group{}
	var topLatest bool
	for _, part := range strings.Split(rawQuery, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		key, err1 := url.QueryUnescape(k)
		val, err2 := url.QueryUnescape(v)
		if err1 != nil || err2 != nil {
			errs = append(errs, fmt.Sprintf("Invalid URL encoding in %q", part))
			continue
		}
		if m := matrixKey.FindStringSubmatch(key); m != nil {
			kind, idx, field := m[1], m[2], m[3]
			g := current[kind]
			if g == nil || (idx == "" && g.kv[field] != "") || (idx != "" && idx != g.idx) || g.kv[field] != "" {
				g = &group{kind: kind, idx: idx, kv: map[string]string{}}
				groups = append(groups, g)
				current[kind] = g
			}
			if val == "" {
				val = " " // present but empty: reported below
			}
			g.kv[field] = val
			continue
		}
		var err error
		switch key {
		case "latestby":
			if val != "cvpv" && val != "cvp" && val != "" {
				errs = append(errs, fmt.Sprintf("Invalid latestby %q: use cvpv or cvp", val))
			}
			q.LatestBy = val
		case "latest":
			topLatest, err = parseBool(key, val)
		case "tag":
			q.Target.Tag = val
		case "environment":
			q.Target.Environment = val
		case "mainBranch":
			q.Target.MainBranch, err = parseBool(key, val)
		case "limit", "success[]", "success":
			// Accepted for compatibility; rows are not limited or filtered.
		default:
			errs = append(errs, fmt.Sprintf("Unknown query parameter %q", key))
		}
		if err != nil {
			errs = append(errs, err.Error())
		}
	}
	for _, g := range groups {
		sel, problems := groupSelector(g.kind, g.kv)
		errs = append(errs, problems...)
		if g.kind == "q" {
			q.Selectors = append(q.Selectors, sel)
		} else {
			q.Ignore = append(q.Ignore, sel)
		}
	}
	if len(q.Selectors) == 0 && len(errs) == 0 {
		errs = append(errs, "Please provide 1 or more version selectors.")
	}
	targets := 0
	for _, b := range []bool{q.Target.Environment != "", q.Target.Tag != "", q.Target.MainBranch} {
		if b {
			targets++
		}
	}
	if targets > 1 {
		errs = append(errs, "Specify at most one of environment, tag and mainBranch")
	}
	q.Target.Latest = topLatest && targets == 0
	if len(errs) > 0 {
		return q, matrixErrors(errs)
	}
	return q, nil
}

// matrixErrors are the messages of a malformed matrix query.
type matrixErrors []string

func (m matrixErrors) Error() string { return strings.Join(m, "; ") }

func parseBool(key, val string) (bool, error) {
	switch val {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("%s must be true or false, got %q", key, val)
}

func groupSelector(kind string, kv map[string]string) (Selector, []string) {
	var sel Selector
	var errs []string
	for k, v := range kv {
		if strings.TrimSpace(v) == "" {
			errs = append(errs, fmt.Sprintf("%s[][%s] cannot be empty", kind, k))
			continue
		}
		var err error
		switch k {
		case "pacticipant":
			sel.Pacticipant = v
		case "version":
			sel.Version = v
		case "latest":
			sel.Latest, err = parseBool(kind+"[][latest]", v)
		case "tag":
			sel.Tag = v
		case "branch":
			sel.Branch = v
		case "mainBranch":
			sel.MainBranch, err = parseBool(kind+"[][mainBranch]", v)
		case "environment":
			sel.Environment = v
		default:
			err = fmt.Errorf("unknown selector key %s[][%s]", kind, k)
		}
		if err != nil {
			errs = append(errs, err.Error())
		}
	}
	if sel.Pacticipant == "" && len(errs) == 0 {
		errs = append(errs, "Please specify the pacticipant name")
	}
	if sel.Version != "" && (sel.Latest || sel.Branch != "" || sel.MainBranch || sel.Environment != "") {
		errs = append(errs, fmt.Sprintf("A version number cannot be combined with latest, branch, mainBranch or environment for %s", sel.Pacticipant))
	}
	return sel, errs
}

// Summary is the matrix's answer: is the selection deployable to the
// target, why, and the counts of rows that succeeded, failed, are
// unknown (no verification, or no provider version), and were ignored.
type Summary struct {
	Deployable *bool    `json:"deployable"`
	Reason     string   `json:"reason"`
	Success    int      `json:"success"`
	Failed     int      `json:"failed"`
	Unknown    int      `json:"unknown"`
	Ignored    int      `json:"ignored,omitempty"`
	Reasons    []string `json:"-"`
}

// Summarize decides deployability as the Pact Broker does: false when a
// selected version does not exist, a verification failed, or no version
// of a provider the selection depends on is in the target (waiting will
// not change that); unknown (nil) when a pact has not yet been verified by
// the version it must work with; true otherwise. Rows without a provider
// version count as unknown, as in the Pact Broker's summary.
func Summarize(q MatrixQuery, res MatrixResult) Summary {
	var s Summary
	var failed, missing, unknown []string
	for _, sel := range res.Unresolved {
		failed = append(failed, "No version found for "+describeSelector(sel))
	}
	in := "a version of %s"
	if t := q.Target; t.Environment != "" {
		in = "a version of %s currently in " + t.Environment
	} else if t.Tag != "" {
		in = "the latest version of %s with tag " + t.Tag
	} else if t.MainBranch {
		in = "the latest version of %s from the main branch"
	}
	for _, r := range res.Rows {
		if r.Ignored {
			s.Ignored++
			continue
		}
		pv := fmt.Sprintf(in, r.Provider)
		if r.ProviderVersion != nil {
			pv = fmt.Sprintf("version %s of %s", r.ProviderVersion.Number, r.Provider)
		}
		between := fmt.Sprintf("the pact between version %s of %s and %s", r.ConsumerVersion.Number, r.Consumer, pv)
		switch {
		case r.Verification == nil:
			s.Unknown++
			if r.ProviderVersion == nil {
				missing = append(missing, fmt.Sprintf("There is no verified pact between version %s of %s and %s (no such version exists)", r.ConsumerVersion.Number, r.Consumer, pv))
			} else {
				unknown = append(unknown, "There is no verified pact between"+strings.TrimPrefix(between, "the pact between"))
			}
		case r.Verification.Success:
			s.Success++
		default:
			s.Failed++
			failed = append(failed, "The verification for "+between+" failed")
		}
	}
	var d *bool
	switch {
	case len(failed) > 0 || len(missing) > 0:
		d = new(bool)
		s.Reasons = append(append(failed, missing...), unknown...)
	case len(unknown) > 0:
		s.Reasons = unknown
	default:
		t := true
		d = &t
		if len(res.Rows) == 0 {
			s.Reasons = []string{"There are no missing dependencies"}
		} else {
			s.Reasons = []string{"All required verification results are published and successful"}
		}
	}
	s.Deployable = d
	s.Reason = strings.Join(s.Reasons, "\n")
	return s
}

func describeSelector(sel Selector) string {
	switch {
	case sel.Version != "":
		return fmt.Sprintf("version %s of %s", sel.Version, sel.Pacticipant)
	case sel.Environment != "":
		return fmt.Sprintf("the version of %s currently in %s", sel.Pacticipant, sel.Environment)
	case sel.Branch != "":
		return fmt.Sprintf("the latest version of %s from branch %s", sel.Pacticipant, sel.Branch)
	case sel.MainBranch:
		return fmt.Sprintf("the latest version of %s from the main branch", sel.Pacticipant)
	case sel.Tag != "":
		return fmt.Sprintf("the latest version of %s with tag %s", sel.Pacticipant, sel.Tag)
	default:
		return fmt.Sprintf("the latest version of %s", sel.Pacticipant)
	}
}

func (s *Server) matrix(w http.ResponseWriter, r *http.Request) error {
	q, err := ParseMatrixQuery(r.URL.RawQuery)
	if err != nil {
		var me matrixErrors
		if errors.As(err, &me) {
			return badRequest([]string(me))
		}
		return err
	}
	return s.answerMatrix(w, r, q)
}

func (s *Server) answerMatrix(w http.ResponseWriter, r *http.Request, q MatrixQuery) error {
	var errs []string
	if env := q.Target.Environment; env != "" {
		if _, err := s.store.Environment(r.Context(), env); err != nil {
			errs = append(errs, fmt.Sprintf("Environment with name '%s' does not exist", env))
		}
	}
	for _, sel := range q.Selectors {
		if _, err := s.store.Pacticipant(r.Context(), sel.Pacticipant); err != nil {
			errs = append(errs, fmt.Sprintf("Pacticipant %s not found", sel.Pacticipant))
		}
	}
	if len(errs) > 0 {
		return badRequest(errs)
	}
	res, err := s.store.Matrix(r.Context(), q)
	if err != nil {
		return err
	}
	sum := Summarize(q, res)
	b := s.base(r)
	rows := []any{}
	for _, row := range res.Rows {
		rows = append(rows, s.matrixRow(b, row))
	}
	notices := []notice{}
	for _, reason := range sum.Reasons {
		typ := "info"
		switch {
		case sum.Deployable == nil:
			typ = "warning"
		case !*sum.Deployable:
			typ = "error"
		case *sum.Deployable:
			typ = "success"
		}
		notices = append(notices, notice{Type: typ, Text: reason})
	}
	writeJSON(w, http.StatusOK, map[string]any{"summary": sum, "notices": notices, "matrix": rows})
	return nil
}

func (s *Server) matrixRow(b string, row MatrixRow) map[string]any {
	ver := func(p string, v Version) map[string]any {
		var branch any
		if len(v.Branches) > 0 {
			branch = v.Branches[len(v.Branches)-1]
		}
		return map[string]any{"number": v.Number, "branch": branch, "branches": v.Branches, "tags": []any{}, "createdAt": ts(v.CreatedAt),
			"_links": map[string]any{"self": href(link(b, "pacticipants", p, "versions", v.Number))}}
	}
	provider := map[string]any{"name": row.Provider, "_links": map[string]any{"self": href(link(b, "pacticipants", row.Provider))}, "version": nil}
	if row.ProviderVersion != nil {
		provider["version"] = ver(row.Provider, *row.ProviderVersion)
	}
	out := map[string]any{
		"consumer": map[string]any{"name": row.Consumer, "_links": map[string]any{"self": href(link(b, "pacticipants", row.Consumer))}, "version": ver(row.Consumer, row.ConsumerVersion)},
		"provider": provider,
		"pact": map[string]any{"createdAt": ts(row.PactCreatedAt), "_links": map[string]any{
			"self": href(link(b, "pacts", "provider", row.Provider, "consumer", row.Consumer, "pact-version", row.PactSHA))}},
		"verificationResult": nil,
	}
	if v := row.Verification; v != nil {
		out["verificationResult"] = map[string]any{"success": v.Success, "verifiedAt": ts(v.VerifiedAt), "_links": map[string]any{
			"self": href(link(b, "pacts", "provider", row.Provider, "consumer", row.Consumer, "pact-version", row.PactSHA, "verification-results", strconv.FormatInt(v.ID, 10)))}}
	}
	if row.Ignored {
		out["ignored"] = true
	}
	return out
}

// canIDeploy answers /can-i-deploy?pacticipant=&version=&environment=.
func (s *Server) canIDeploy(w http.ResponseWriter, r *http.Request) error {
	v := r.URL.Query()
	var errs []string
	for _, k := range []string{"pacticipant", "version", "environment"} {
		if v.Get(k) == "" {
			errs = append(errs, "Missing required parameter "+k)
		}
	}
	if len(errs) > 0 {
		return badRequest(errs)
	}
	return s.answerMatrix(w, r, MatrixQuery{
		Selectors: []Selector{{Pacticipant: v.Get("pacticipant"), Version: v.Get("version")}},
		Target:    Target{Environment: v.Get("environment")},
		LatestBy:  "cvpv",
	})
}
