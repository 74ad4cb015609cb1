package ui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/flotilla-ci/flotilla/broker"
	"github.com/flotilla-ci/flotilla/schema"
	"github.com/flotilla-ci/flotilla/schema/serde"
)

// The contracts page: the broker's matrix per integration, what is
// deployed in each environment, can-i-deploy, the pacts' interactions.

type matrixGrid struct {
	Consumer, Provider string
	SHA                string // the latest pact's
	ProviderVersions   []string
	Rows               []matrixGridRow
}

type matrixGridRow struct {
	ConsumerVersion string
	Cells           []matrixCell
	Unverified      bool // no provider version verified its pact
	SHA             string
}

type matrixCell struct {
	State string // verified, failed, not-verified
	At    time.Time
}

type envView struct {
	broker.Environment
	Deployed []broker.Deployment
}

type canIDeployView struct {
	Pacticipant, Version, Environment string
	Asked                             bool
	Summary                           broker.Summary
	Answer                            string // yes, no, unknown
	Err                               string
}

type contractsData struct {
	Enabled      bool
	Grids        []matrixGrid
	Envs         []envView
	Pacticipants []string
	Can          canIDeployView
	Err          string
}

func (s *Server) contracts(w http.ResponseWriter, r *http.Request) {
	d := contractsData{Enabled: s.cfg.Broker != nil}
	if !d.Enabled {
		s.render(w, r, http.StatusOK, "contracts", "Contracts", d)
		return
	}
	ctx := r.Context()
	b := s.cfg.Broker
	ps, err := b.Pacticipants(ctx)
	if err != nil {
		s.failed(w, r, fmt.Errorf("the broker's pacticipants: %w", err))
		return
	}
	for _, p := range ps {
		d.Pacticipants = append(d.Pacticipants, p.Name)
	}
	sort.Strings(d.Pacticipants)
	q := r.URL.Query()
	d.Can = canIDeployView{Pacticipant: q.Get("pacticipant"), Version: q.Get("version"), Environment: q.Get("environment")}
	if d.Can.Pacticipant != "" && !slices.Contains(d.Pacticipants, d.Can.Pacticipant) {
		s.notFound(w, r, "pacticipant", d.Can.Pacticipant, d.Pacticipants)
		return
	}
	pacts, err := b.LatestPacts(ctx, "")
	if err != nil {
		s.failed(w, r, fmt.Errorf("the broker's pacts: %w", err))
		return
	}
	sort.Slice(pacts, func(i, j int) bool {
		if pacts[i].Consumer != pacts[j].Consumer {
			return pacts[i].Consumer < pacts[j].Consumer
		}
		return pacts[i].Provider < pacts[j].Provider
	})
	for _, p := range pacts {
		g, err := s.grid(ctx, p)
		if err != nil {
			d.Err = err.Error()
			continue
		}
		d.Grids = append(d.Grids, g)
	}
	envs, err := b.Environments(ctx)
	if err == nil {
		for _, e := range envs {
			ev := envView{Environment: e}
			ev.Deployed, _ = b.CurrentDeployments(ctx, e.UUID, "")
			sort.Slice(ev.Deployed, func(i, j int) bool { return ev.Deployed[i].Pacticipant < ev.Deployed[j].Pacticipant })
			d.Envs = append(d.Envs, ev)
		}
	}
	if d.Can.Pacticipant != "" && d.Can.Version != "" && d.Can.Environment != "" {
		d.Can.Asked = true
		mq := broker.MatrixQuery{
			Selectors: []broker.Selector{{Pacticipant: d.Can.Pacticipant, Version: d.Can.Version}},
			Target:    broker.Target{Environment: d.Can.Environment}, LatestBy: "cvpv",
		}
		res, err := b.Matrix(ctx, mq)
		if err != nil {
			d.Can.Err = err.Error()
		} else {
			d.Can.Summary = broker.Summarize(mq, res)
			switch {
			case d.Can.Summary.Deployable == nil:
				d.Can.Answer = "unknown"
			case *d.Can.Summary.Deployable:
				d.Can.Answer = "yes"
			default:
				d.Can.Answer = "no"
			}
		}
	}
	s.render(w, r, http.StatusOK, "contracts", "Contracts", d)
}

// grid is an integration's matrix: consumer versions by provider
// versions.
func (s *Server) grid(ctx context.Context, p broker.Pact) (matrixGrid, error) {
	g := matrixGrid{Consumer: p.Consumer, Provider: p.Provider, SHA: p.SHA}
	res, err := s.cfg.Broker.Matrix(ctx, broker.MatrixQuery{Selectors: []broker.Selector{{Pacticipant: p.Consumer}, {Pacticipant: p.Provider}}})
	if err != nil {
		return g, fmt.Errorf("matrix of %s and %s: %w", p.Consumer, p.Provider, err)
	}
	type key struct{ cv, pv string }
	cells := map[key]matrixCell{}
	var cvs []string
	cvAt := map[string]time.Time{}
	cvSHA := map[string]string{}
	for _, row := range res.Rows {
		if row.Consumer != p.Consumer || row.Provider != p.Provider {
			continue
		}
		cv := row.ConsumerVersion.Number
		if !slices.Contains(cvs, cv) {
			cvs = append(cvs, cv)
			cvAt[cv] = row.PactCreatedAt
			cvSHA[cv] = row.PactSHA
		}
		if row.ProviderVersion == nil {
			continue
		}
		pv := row.ProviderVersion.Number
		if !slices.Contains(g.ProviderVersions, pv) {
			g.ProviderVersions = append(g.ProviderVersions, pv)
		}
		c := matrixCell{State: "not-verified"}
		if v := row.Verification; v != nil {
			c.At = v.VerifiedAt
			c.State = "failed"
			if v.Success {
				c.State = "verified"
			}
		}
		cells[key{cv, pv}] = c
	}
	sort.SliceStable(cvs, func(i, j int) bool { return cvAt[cvs[i]].After(cvAt[cvs[j]]) })
	const most = 12
	if len(cvs) > most {
		cvs = cvs[:most]
	}
	if len(g.ProviderVersions) > most {
		g.ProviderVersions = g.ProviderVersions[len(g.ProviderVersions)-most:]
	}
	for _, cv := range cvs {
		row := matrixGridRow{ConsumerVersion: cv, Unverified: true, SHA: cvSHA[cv]}
		for _, pv := range g.ProviderVersions {
			c, ok := cells[key{cv, pv}]
			if !ok {
				c = matrixCell{State: "not-verified"}
			}
			if c.State != "not-verified" {
				row.Unverified = false
			}
			row.Cells = append(row.Cells, c)
		}
		g.Rows = append(g.Rows, row)
	}
	return g, nil
}

// interaction is one interaction of a pact, as the page lists it.
type interaction struct {
	Description   string
	ProviderState string
	Method, Path  string
	Status        int
	Request       string
	Response      string
}

func (s *Server) pact(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Broker == nil {
		s.notFound(w, r, "broker", "", nil)
		return
	}
	provider, consumer, sha := r.PathValue("provider"), r.PathValue("consumer"), r.PathValue("sha")
	p, err := s.cfg.Broker.Pact(r.Context(), provider, consumer, sha)
	if errors.Is(err, broker.ErrNotFound) {
		var exist []string
		if ps, err := s.cfg.Broker.LatestPacts(r.Context(), ""); err == nil {
			for _, p := range ps {
				exist = append(exist, fmt.Sprintf("%s → %s (%s)", p.Consumer, p.Provider, p.SHA))
			}
		}
		s.notFound(w, r, "pact", consumer+" → "+provider+" "+sha, exist)
		return
	}
	if err != nil {
		s.failed(w, r, err)
		return
	}
	var doc struct {
		Interactions []struct {
			Description    string            `json:"description"`
			ProviderState  string            `json:"providerState"`
			ProviderStates []json.RawMessage `json:"providerStates"`
			Request        json.RawMessage   `json:"request"`
			Response       json.RawMessage   `json:"response"`
			Contents       json.RawMessage   `json:"contents"`
		} `json:"interactions"`
		Messages []struct {
			Description string          `json:"description"`
			Contents    json.RawMessage `json:"contents"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(p.Content, &doc); err != nil {
		s.failed(w, r, fmt.Errorf("pact %s: %w", sha, err))
		return
	}
	var list []interaction
	for _, it := range doc.Interactions {
		in := interaction{Description: it.Description, ProviderState: it.ProviderState, Request: pretty(it.Request), Response: pretty(it.Response)}
		for _, ps := range it.ProviderStates {
			var st struct {
				Name string `json:"name"`
			}
			if json.Unmarshal(ps, &st) == nil && st.Name != "" {
				in.ProviderState = strings.TrimPrefix(in.ProviderState+"; "+st.Name, "; ")
			}
		}
		var rq struct {
			Method string `json:"method"`
			Path   string `json:"path"`
		}
		_ = json.Unmarshal(it.Request, &rq)
		var rs struct {
			Status int `json:"status"`
		}
		_ = json.Unmarshal(it.Response, &rs)
		in.Method, in.Path, in.Status = rq.Method, rq.Path, rs.Status
		if in.Method == "" && len(it.Contents) > 0 {
			in.Method, in.Request = "message", pretty(it.Contents)
		}
		list = append(list, in)
	}
	for _, m := range doc.Messages {
		list = append(list, interaction{Description: m.Description, Method: "message", Request: pretty(m.Contents)})
	}
	s.render(w, r, http.StatusOK, "pact", consumer+" → "+provider, map[string]any{
		"Consumer": consumer, "Provider": provider, "SHA": sha, "Version": p.ConsumerVersion, "Interactions": list})
}

func pretty(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return string(raw)
	}
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b)
}

// The schemas page: subjects, versions, compatibility, a diff of two
// versions with the incompatibilities named, each event's subscribers.

type subjectView struct {
	Name        string
	Versions    []serde.Version
	Level       string
	Event       string
	Publishers  []string
	Subscribers []string
}

type diffView struct {
	Subject    string
	A, B       int
	Lines      []diffLine
	Backward   []string // what B (reader) cannot read of A's data
	Forward    []string // what A (reader) cannot read of B's data
	Err        string
	Compatible bool
}

type diffLine struct {
	Op   string // " ", "+", "-"
	Text string
}

func (s *Server) schemas(w http.ResponseWriter, r *http.Request) {
	d := map[string]any{"Enabled": s.cfg.Registry != ""}
	if s.cfg.Registry == "" {
		s.render(w, r, http.StatusOK, "schemas", "Schemas", d)
		return
	}
	ctx := r.Context()
	names, err := s.subjects(ctx)
	if err != nil {
		s.failed(w, r, fmt.Errorf("the schema registry: %w", err))
		return
	}
	cl := serde.NewClient(s.cfg.Registry, "", "")
	m := s.cfg.Deployer.Graph().Manifest()
	var subs []subjectView
	events := map[string]string{}
	for _, ev := range m.Events() {
		events[serde.SubjectFor(ev)] = ev
	}
	for _, n := range names {
		sv := subjectView{Name: n, Event: events[n]}
		sv.Versions, err = cl.Versions(ctx, n)
		if err != nil {
			s.failed(w, r, fmt.Errorf("versions of %s: %w", n, err))
			return
		}
		sv.Level, _ = cl.Level(ctx, n)
		if sv.Event != "" {
			for _, p := range m.Publishers(sv.Event) {
				sv.Publishers = append(sv.Publishers, p.Name)
			}
			for _, p := range m.Subscribers(sv.Event) {
				sv.Subscribers = append(sv.Subscribers, p.Name)
			}
		}
		subs = append(subs, sv)
	}
	d["Subjects"] = subs
	// Events the manifest names that have no subject yet.
	var missing []string
	for subj, ev := range events {
		if !slices.Contains(names, subj) {
			missing = append(missing, ev)
		}
	}
	sort.Strings(missing)
	d["Unregistered"] = missing
	q := r.URL.Query()
	if subj := q.Get("subject"); subj != "" {
		var sv *subjectView
		for i := range subs {
			if subs[i].Name == subj {
				sv = &subs[i]
			}
		}
		if sv == nil {
			s.notFound(w, r, "subject", subj, names)
			return
		}
		a, errA := strconv.Atoi(q.Get("a"))
		b, errB := strconv.Atoi(q.Get("b"))
		if errA != nil || errB != nil {
			if n := len(sv.Versions); n > 0 {
				a, b = sv.Versions[max(0, n-2)].Version, sv.Versions[n-1].Version
			}
		}
		dv, ok := diffOf(*sv, a, b)
		if !ok {
			var vs []string
			for _, v := range sv.Versions {
				vs = append(vs, subj+" version "+strconv.Itoa(v.Version))
			}
			s.notFound(w, r, "version", fmt.Sprintf("%s %d or %d", subj, a, b), vs)
			return
		}
		d["Diff"] = dv
		d["Selected"] = sv
	}
	s.render(w, r, http.StatusOK, "schemas", "Schemas", d)
}

func (s *Server) subjects(ctx context.Context) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(s.cfg.Registry, "/")+"/subjects", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /subjects: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	var names []string
	if err := json.Unmarshal(b, &names); err != nil {
		return nil, fmt.Errorf("GET /subjects: %w", err)
	}
	sort.Strings(names)
	return names, nil
}

func diffOf(sv subjectView, a, b int) (diffView, bool) {
	dv := diffView{Subject: sv.Name, A: a, B: b}
	var va, vb *serde.Version
	for i := range sv.Versions {
		switch sv.Versions[i].Version {
		case a:
			va = &sv.Versions[i]
		}
		if sv.Versions[i].Version == b {
			vb = &sv.Versions[i]
		}
	}
	if va == nil || vb == nil {
		return dv, false
	}
	ta, tb := pretty(json.RawMessage(va.Schema)), pretty(json.RawMessage(vb.Schema))
	dv.Lines = lineDiff(strings.Split(ta, "\n"), strings.Split(tb, "\n"))
	sa, errA := schema.ParseWithReferences(va.Schema, va.Refs)
	sb, errB := schema.ParseWithReferences(vb.Schema, vb.Refs)
	if err := errors.Join(errA, errB); err != nil {
		dv.Err = "not compared as Avro: " + err.Error()
		return dv, true
	}
	for _, in := range schema.ReaderCanRead(sb, sa) {
		dv.Backward = append(dv.Backward, in.String())
	}
	for _, in := range schema.ReaderCanRead(sa, sb) {
		dv.Forward = append(dv.Forward, in.String())
	}
	dv.Compatible = len(dv.Backward) == 0 && len(dv.Forward) == 0
	return dv, true
}

// lineDiff is a longest-common-subsequence diff of two texts' lines.
func lineDiff(a, b []string) []diffLine {
	n, m := len(a), len(b)
	if n*m > 4_000_000 {
		var out []diffLine
		for _, l := range a {
			out = append(out, diffLine{"-", l})
		}
		for _, l := range b {
			out = append(out, diffLine{"+", l})
		}
		return out
	}
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out []diffLine
	i, j := 0, 0
	for i < n && j < m {
		switch {
		case a[i] == b[j]:
			out = append(out, diffLine{" ", a[i]})
			i++
			j++
		case lcs[i+1][j] >= lcs[i][j+1]:
			out = append(out, diffLine{"-", a[i]})
			i++
		default:
			out = append(out, diffLine{"+", b[j]})
			j++
		}
	}
	for ; i < n; i++ {
		out = append(out, diffLine{"-", a[i]})
	}
	for ; j < m; j++ {
		out = append(out, diffLine{"+", b[j]})
	}
	return out
}

// callAPIWith asks an in-process handler for a path, for the page's
// reader (no token: loopback reads of the handler's own).
func (s *Server) callAPIWith(r *http.Request, h http.Handler, path string) (int, []byte) {
	u, _ := url.Parse(path)
	req := r.Clone(r.Context())
	req.Method, req.URL, req.RequestURI, req.Body = http.MethodGet, u, "", http.NoBody
	rec := &recorder{header: http.Header{}, code: http.StatusOK}
	h.ServeHTTP(rec, req)
	return rec.code, rec.body
}

type recorder struct {
	header http.Header
	code   int
	body   []byte
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) WriteHeader(code int)        { r.code = code }
func (r *recorder) Write(b []byte) (int, error) { r.body = append(r.body, b...); return len(b), nil }
