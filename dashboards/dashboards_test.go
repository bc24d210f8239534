package dashboards

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"

	"github.com/authbroker/authbroker_exporter/collector"
	"github.com/authbroker/authbroker_exporter/mixin"
)

// clientGolang holds the families client_golang writes for the exporter
// (README's "From client_golang" table), with their labels.
var clientGolang = map[string][]string{
	"authbroker_exporter_build_info": {"version", "revision", "branch", "goversion", "goos", "goarch", "tags"},
}

// contract is every exporter metric a dashboard may query, with its labels
// (job and instance come from the scrape): the collector's one metric
// catalogue plus client_golang's families, so that the dashboards and what
// the exporter writes cannot drift apart.
var contract = func() map[string][]string {
	c := maps.Clone(clientGolang)
	for _, m := range collector.Catalogue() {
		if _, dup := c[m.Name]; dup {
			panic(m.Name + " is both in the catalogue and from client_golang")
		}
		c[m.Name] = m.Labels
	}
	return c
}()

// The project README documents the same contract (collector's
// TestREADMEMetricTable ties its generated table to the catalogue); this
// also covers the hand-kept client_golang rows.
func TestContractMatchesREADME(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `(authbroker_\\w+)` \\| \\w+ \\| ([^|]*) \\|")
	backticked := regexp.MustCompile("`(\\w+)`")
	documented := map[string][]string{}
	for _, sm := range row.FindAllStringSubmatch(string(readme), -1) {
		var ls []string
		for _, l := range backticked.FindAllStringSubmatch(sm[2], -1) {
			ls = append(ls, l[1])
		}
		documented[sm[1]] = ls
	}
	if len(documented) == 0 {
		t.Fatal("no metric table in README.md")
	}
	for name, want := range contract {
		got, ok := documented[name]
		if !ok {
			t.Errorf("%s is not in README's metric table", name)
			continue
		}
		if !sameSet(got, want) {
			t.Errorf("%s: README labels %v, test contract %v", name, got, want)
		}
	}
	for name := range documented {
		if _, ok := contract[name]; !ok {
			t.Errorf("README documents %s, missing from the test contract", name)
		}
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// Standard series scraped with the exporter (Prometheus' up, the Go and
// process collectors) that the dashboards may use too.
var standard = map[string][]string{
	"up":                            nil,
	"go_goroutines":                 nil,
	"process_cpu_seconds_total":     nil,
	"process_resident_memory_bytes": nil,
}

// Recording rules from alerts/authbroker-rules.yml that the dashboards
// read, with their labels. The provider_limit: rules aggregate instance
// away: their selectors carry the job matcher only.
var recording = map[string][]string{
	"provider_limit:authbroker_usage_limit_credentials:count":          {"provider", "limit"},
	"provider_limit:authbroker_usage_limit_headroom_credentials:count": {"provider", "limit"},
	"id:authbroker_credential_expiring_soon:expires_in_seconds":        {"id", "provider"},
	"id:authbroker_credential_expired:seconds_since_expiry":            {"id", "provider"},
	"id:authbroker_credential_rotation_overdue:seconds":                {"id", "provider"},
	"id:authbroker_credential_info:breaching":                          {"id", "provider", "type", "identity", "email", "account", "org"},
	"id_limit:authbroker_usage_limit_high:used_fraction":               {"id", "provider", "limit", "window"},
	"id_limit:authbroker_usage_limit_exhausted:used_fraction":          {"id", "provider", "limit", "window"},
	"id_limit:authbroker_usage_limit_forecast_exhausted:used_fraction": {"id", "provider", "limit", "window"},
	"id_limit:authbroker_usage_limit_reset_credits:exhausted":          {"id", "provider", "limit"},
}

// withoutInstance reports whether a recording rule aggregates instance away.
func withoutInstance(rule string) bool { return strings.HasPrefix(rule, "provider_limit:") }

// Every recording rule the dashboards read is recorded by the rules file.
func TestRecordingRulesExist(t *testing.T) {
	b, err := os.ReadFile("../alerts/authbroker-rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rf struct {
		Groups []struct {
			Rules []struct {
				Record string `yaml:"record"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &rf); err != nil {
		t.Fatal(err)
	}
	recorded := map[string]bool{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			recorded[r.Record] = true
		}
	}
	for name := range recording {
		if !recorded[name] {
			t.Errorf("%s is not recorded by alerts/authbroker-rules.yml", name)
		}
	}
}

// Closed label vocabularies from the contract, checked on = and != matchers.
var vocabulary = map[string][]string{
	"mode":  {"stream", "poll"},
	"state": {"matched", "unmatched"},
	"kind":  {"snapshot", "entry", "removed"},
	"cause": {"refresh_failed", "replaced", "manual", "other"},
	"type":  {"oauth", "api_key"},
}

// Label vocabularies that depend on the metric, checked instead of the
// label's general one.
var metricVocabulary = map[string]map[string][]string{
	"authbroker_usage_reset_credits": {"state": {"available", "redeemable"}},
	"authbroker_sync_requests_total": {"mode": {"stream", "poll", "reconcile"}},
}

var resultVocabulary = map[string][]string{
	"authbroker_stream_events_total":    {"applied", "stale"},
	"authbroker_sync_requests_total":    {"ok", "unchanged", "error"},
	"authbroker_refresh_requests_total": {"ok", "error"},
	"authbroker_disable_requests_total": {"ok", "error"},
}

// Distinct stand-ins let the checker tell that a matcher really uses the
// dashboard variable.
var testVars = map[string]string{
	"job":             "job-variable",
	"instance":        "instance-variable",
	"__rate_interval": "5m",
	"__interval":      "1m",
	"__range":         "6h",
	"provider":        "provider-variable",
}

func labelsOf(metric string) ([]string, bool) {
	for _, set := range []map[string][]string{contract, standard, recording} {
		if l, ok := set[metric]; ok {
			return l, true
		}
	}
	return nil, false
}

var legendRef = regexp.MustCompile(`\{\{\s*([^}\s]+)\s*\}\}`)

// checkQuery parses a dashboard query (Grafana variables expanded with
// testVars) and returns every way it breaks the rules, plus the metrics it
// reads.
func checkQuery(expr, legend string) (metrics []string, problems []error) {
	bad := func(format string, a ...any) { problems = append(problems, fmt.Errorf(format, a...)) }
	expanded, err := expand(expr, testVars)
	if err != nil {
		return nil, []error{err}
	}
	ast, err := parser.NewParser(parser.Options{}).ParseExpr(expanded)
	if err != nil {
		return nil, []error{fmt.Errorf("parse: %w", err)}
	}
	known := map[string]bool{"job": true, "instance": true}
	var referenced []string
	parser.Inspect(ast, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.VectorSelector:
			name := n.Name
			if name == "" {
				bad("selector %s has no metric name", n)
				return nil
			}
			ls, ok := labelsOf(name)
			if !ok {
				bad("metric %q is not in the contract", name)
				return nil
			}
			metrics = append(metrics, name)
			for _, l := range ls {
				known[l] = true
			}
			checkScope(n, withoutInstance(name), bad)
			for _, mt := range n.LabelMatchers {
				if mt.Name == labels.MetricName {
					continue
				}
				referenced = append(referenced, mt.Name)
				checkVocabulary(name, mt, bad)
			}
		case *parser.AggregateExpr:
			referenced = append(referenced, n.Grouping...)
		case *parser.BinaryExpr:
			if vm := n.VectorMatching; vm != nil {
				referenced = append(referenced, vm.MatchingLabels...)
				referenced = append(referenced, vm.Include...)
			}
		case *parser.Call:
			if n.Func.Name == "label_replace" || n.Func.Name == "label_join" {
				if s, ok := n.Args[1].(*parser.StringLiteral); ok {
					known[s.Val] = true
				}
			}
		}
		return nil
	})
	for _, sm := range legendRef.FindAllStringSubmatch(legend, -1) {
		referenced = append(referenced, sm[1])
	}
	for _, l := range referenced {
		if !known[l] {
			bad("label %q is not a label of any metric in the query", l)
		}
	}
	return metrics, problems
}

// checkScope insists on the dashboard variables: job and instance, job
// only for the recording rules that have no instance (instance=~".+" would
// select nothing).
func checkScope(vs *parser.VectorSelector, isRule bool, bad func(string, ...any)) {
	has := func(label, value string) bool {
		return slices.ContainsFunc(vs.LabelMatchers, func(mt *labels.Matcher) bool {
			return mt.Name == label && mt.Type == labels.MatchRegexp && mt.Value == value
		})
	}
	if !has("job", testVars["job"]) {
		bad("%s is not filtered by job=~\"$job\"", vs)
	}
	hasInstance := slices.ContainsFunc(vs.LabelMatchers, func(mt *labels.Matcher) bool { return mt.Name == "instance" })
	switch {
	case isRule && hasInstance:
		bad("recording rule %s has no instance label; drop the instance matcher", vs)
	case !isRule && !has("instance", testVars["instance"]):
		bad("%s is not filtered by instance=~\"$instance\"", vs)
	}
}

func checkVocabulary(metric string, mt *labels.Matcher, bad func(string, ...any)) {
	if mt.Type != labels.MatchEqual && mt.Type != labels.MatchNotEqual {
		return
	}
	allowed := vocabulary[mt.Name]
	if mt.Name == "result" {
		allowed = resultVocabulary[metric]
	}
	if v, ok := metricVocabulary[metric][mt.Name]; ok {
		allowed = v
	}
	if allowed != nil && !slices.Contains(allowed, mt.Value) {
		bad("%s: %s=%q is outside the contract's values %v", metric, mt.Name, mt.Value, allowed)
	}
}

// The checker itself must be able to fail; each case breaks one rule.
func TestCheckQueryRejects(t *testing.T) {
	for _, tc := range []struct{ name, expr, legend, want string }{
		{"unknown metric", `authbroker_nonexistent{job=~"$job", instance=~"$instance"}`, "", "not in the contract"},
		{"histogram bucket", `authbroker_up_bucket{job=~"$job", instance=~"$instance"}`, "", "not in the contract"},
		{"no job", `authbroker_up{instance=~"$instance"}`, "", "job=~"},
		{"no instance", `authbroker_up{job=~"$job"}`, "", "instance=~"},
		{"rule with instance", `provider_limit:authbroker_usage_limit_credentials:count{job=~"$job", instance=~"$instance"}`, "", "recording rule"},
		{"hard-coded job", `authbroker_up{job="authbroker", instance=~"$instance"}`, "", "job=~"},
		{"nameless", `{job=~"$job", instance=~"$instance", provider="x"}`, "", "no metric name"},
		{"bad grouping", `sum by (reasons) (authbroker_sync_errors_total{job=~"$job", instance=~"$instance"})`, "", `label "reasons"`},
		{"bad legend", `authbroker_sync_errors_total{job=~"$job", instance=~"$instance"}`, "{{ provider }}", `label "provider"`},
		{"bad on", `authbroker_up{job=~"$job", instance=~"$instance"} * on (id) authbroker_up{job=~"$job", instance=~"$instance"}`, "", `label "id"`},
		{"bad vocabulary", `authbroker_usage_match{job=~"$job", instance=~"$instance", state="missing"}`, "", "outside the contract"},
		{"usage_match state on saved resets", `authbroker_usage_reset_credits{job=~"$job", instance=~"$instance", state="matched"}`, "", "outside the contract"},
		{"saved-reset state on usage_match", `authbroker_usage_match{job=~"$job", instance=~"$instance", state="available"}`, "", "outside the contract"},
		{"limit is no label of the reset counts", `sum by (limit) (authbroker_usage_reset_credits{job=~"$job", instance=~"$instance"})`, "", `label "limit"`},
		{"bad result", `authbroker_stream_events_total{job=~"$job", instance=~"$instance", result="ok"}`, "", "outside the contract"},
		{"syntax", `rate(authbroker_up{job=~"$job", instance=~"$instance"}`, "", "parse"},
		{"unknown variable", `authbroker_up{job=~"$cluster", instance=~"$instance"}`, "", "unknown variable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, problems := checkQuery(tc.expr, tc.legend)
			if !strings.Contains(errors.Join(problems...).Error()+" ", tc.want) {
				t.Fatalf("checkQuery(%s) = %v, want a problem containing %q", tc.expr, problems, tc.want)
			}
		})
	}
	for _, valid := range []struct{ expr, legend string }{
		{`sum by (provider) (rate(authbroker_refresh_errors_total{job=~"$job", instance=~"$instance", reason="timeout"}[$__rate_interval]))`, "{{provider}}"},
		{`authbroker_usage_reset_credits{job=~"$job", instance=~"$instance", state="redeemable"}`, "{{provider}} {{id}} {{state}}"},
		{`authbroker_sync_requests_total{job=~"$job", instance=~"$instance", mode="reconcile", result="unchanged"}`, "{{mode}}"},
	} {
		if _, problems := checkQuery(valid.expr, valid.legend); len(problems) > 0 {
			t.Fatalf("a valid query was rejected: %s: %v", valid.expr, problems)
		}
	}
}

func TestExpand(t *testing.T) {
	vars := map[string]string{"job": ".+", "__rate_interval": "5m"}
	got, err := expand(`rate(x{job=~"$job"}[$__rate_interval]) + y{job=~"${job}"} + z{job=~"[[job]]"}`, vars)
	if want := `rate(x{job=~".+"}[5m]) + y{job=~".+"} + z{job=~".+"}`; err != nil || got != want {
		t.Fatalf("expand = %q, %v; want %q", got, err, want)
	}
	for _, in := range []string{`x{a=~"$nope"}`, `x{a=~"${job:regex}"}`} {
		if _, err := expand(in, vars); err == nil {
			t.Errorf("expand(%q) accepted it", in)
		}
	}
}

// The embedded files are exactly what the mixin renders (mixin/; the
// mixin's own test checks the files on disk, `make generate` writes them).
func TestRenderedFromMixin(t *testing.T) {
	out, err := mixin.Render("../mixin", "")
	if err != nil {
		t.Fatal(err)
	}
	names := slices.Sorted(maps.Keys(out.Dashboards))
	embedded, err := fs.Glob(files, "*.json")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(embedded, names) {
		t.Errorf("embedded files = %v, the mixin renders %v", embedded, names)
	}
	for _, name := range embedded {
		got, err := fs.ReadFile(files, name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, out.Dashboards[name]) {
			t.Errorf("%s differs from the mixin's rendering: run make generate", name)
		}
	}
}

func TestStructure(t *testing.T) {
	boards, err := load()
	if err != nil {
		t.Fatal(err)
	}
	if len(boards) != 4 {
		t.Fatalf("%d dashboards, want overview, credentials, usage and errors", len(boards))
	}
	uids := map[string]string{}
	titles := map[string]bool{}
	for _, b := range boards {
		d := b.Dashboard
		raw, err := files.ReadFile(b.Name)
		if err != nil {
			t.Fatal(err)
		}
		var generic map[string]any
		if err := json.Unmarshal(raw, &generic); err != nil {
			t.Fatalf("%s: %v", b.Name, err)
		}
		if _, ok := generic["__inputs"]; ok || bytes.Contains(raw, []byte("${DS_")) {
			t.Errorf("%s: uses __inputs; it must import as-is through the datasource variable", b.Name)
		}
		if d.UID == "" || len(d.UID) > 40 || d.Title == "" {
			t.Errorf("%s: uid %q / title %q", b.Name, d.UID, d.Title)
		}
		if d.SchemaVersion < 38 {
			t.Errorf("%s: schemaVersion %d < 38 (Grafana 10)", b.Name, d.SchemaVersion)
		}
		if prev, dup := uids[d.UID]; dup {
			t.Errorf("uid %q used by %s and %s", d.UID, prev, b.Name)
		}
		uids[d.UID] = b.Name
		if titles[d.Title] {
			t.Errorf("title %q used twice", d.Title)
		}
		titles[d.Title] = true
		checkVariables(t, b.Name, d)
		checkPanels(t, b.Name, d)
	}
}

func checkVariables(t *testing.T, file string, d *dashboard) {
	t.Helper()
	vars := map[string]variable{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v
	}
	if v := vars["datasource"]; v.Type != "datasource" || v.Query != "prometheus" {
		t.Errorf("%s: datasource variable = %+v, want type datasource, query prometheus", file, v)
	}
	labelValues := regexp.MustCompile(`^label_values\((.+),\s*(\w+)\)$`)
	for _, name := range []string{"job", "instance"} {
		v, ok := vars[name]
		if !ok || v.Type != "query" {
			t.Errorf("%s: variable %q missing or not a query", file, name)
			continue
		}
		if v.Datasource == nil || v.Datasource.UID != "${datasource}" {
			t.Errorf("%s: variable %q does not use ${datasource}", file, name)
		}
		sm := labelValues.FindStringSubmatch(v.Query)
		if sm == nil || sm[2] != name {
			t.Errorf("%s: variable %q query %q is not label_values(..., %s)", file, name, v.Query, name)
			continue
		}
		sel, err := expand(sm[1], testVars)
		if err != nil {
			t.Errorf("%s: variable %q: %v", file, name, err)
			continue
		}
		ms, err := parser.NewParser(parser.Options{}).ParseMetricSelector(sel)
		if err != nil {
			t.Errorf("%s: variable %q selector %q: %v", file, name, sm[1], err)
			continue
		}
		if !slices.ContainsFunc(ms, func(m *labels.Matcher) bool { return m.Name == labels.MetricName && m.Value == "authbroker_up" }) {
			t.Errorf("%s: variable %q does not read authbroker_up: %q", file, name, v.Query)
		}
	}
	if v, ok := vars["provider"]; !ok || v.Type != "query" || v.Query != `label_values(authbroker_credentials{job=~"$job", instance=~"$instance"}, provider)` {
		t.Errorf("%s: provider variable = %+v, want the providers of authbroker_credentials of the selected targets", file, v)
	}
}

func checkPanels(t *testing.T, file string, d *dashboard) {
	t.Helper()
	ids := map[int]bool{}
	var placed []*panel
	for _, p := range d.allPanels() {
		where := fmt.Sprintf("%s panel %q", file, p.Title)
		if p.ID == nil || p.Type == "" || p.Title == "" || p.GridPos == nil {
			t.Errorf("%s: missing id, type, title or gridPos", where)
			continue
		}
		if ids[*p.ID] {
			t.Errorf("%s: id %d used twice", where, *p.ID)
		}
		ids[*p.ID] = true
		if p.Datasource == nil || p.Datasource.Type != "prometheus" || p.Datasource.UID != "${datasource}" {
			t.Errorf("%s: datasource %+v, want prometheus / ${datasource}", where, p.Datasource)
		}
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
			t.Errorf("%s: gridPos %+v outside the 24-column grid", where, *g)
		}
		for _, o := range placed {
			if overlap(o.GridPos, g) {
				t.Errorf("%s: overlaps panel %q", where, o.Title)
			}
		}
		placed = append(placed, p)
		if p.Type == "row" || p.Type == "text" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s: no targets", where)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.Datasource == nil || tg.Datasource.UID != "${datasource}" {
				t.Errorf("%s: target %s does not use ${datasource}", where, tg.RefID)
			}
			if tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("%s: refId %q empty or repeated", where, tg.RefID)
			}
			refs[tg.RefID] = true
		}
		if p.Type == "table" {
			checkTable(t, where, p)
		}
	}
}

func overlap(a, b *gridPos) bool {
	return a.X < b.X+b.W && b.X < a.X+a.W && a.Y < b.Y+b.H && b.Y < a.Y+a.H
}

// Tables join instant queries with merge; merge can only join rows whose
// shared columns agree, so no query may keep __name__, and the sort column
// must be one the organize step produces.
func checkTable(t *testing.T, where string, p *panel) {
	t.Helper()
	var ids []string
	renamed := map[string]bool{}
	var sortField string
	for _, tr := range p.Transformations {
		ids = append(ids, tr.ID)
		switch tr.ID {
		case "organize":
			rn, _ := tr.Options["renameByName"].(map[string]any)
			for _, v := range rn {
				renamed[fmt.Sprint(v)] = true
			}
		case "sortBy":
			sorts, _ := tr.Options["sort"].([]any)
			if len(sorts) == 1 {
				s, _ := sorts[0].(map[string]any)
				sortField = fmt.Sprint(s["field"])
			}
		}
	}
	if !slices.Equal(ids, []string{"merge", "organize", "sortBy"}) {
		t.Errorf("%s: transformations %v, want merge, organize, sortBy", where, ids)
	}
	if !renamed[sortField] {
		t.Errorf("%s: sorts by %q, which is not a column", where, sortField)
	}
	for _, tg := range p.Targets {
		if tg.Format != "table" || !tg.Instant {
			t.Errorf("%s: target %s must be an instant table query", where, tg.RefID)
		}
		expanded, err := expand(tg.Expr, testVars)
		if err != nil {
			continue // reported by TestQueriesFollowTheContract
		}
		ast, err := parser.NewParser(parser.Options{}).ParseExpr(expanded)
		if err != nil {
			continue
		}
		if _, bare := ast.(*parser.VectorSelector); bare {
			t.Errorf("%s: target %s keeps __name__, so merge cannot join its rows", where, tg.RefID)
		}
	}
}

func TestQueriesFollowTheContract(t *testing.T) {
	boards, err := load()
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for _, b := range boards {
		for _, p := range b.Dashboard.allPanels() {
			for _, tg := range p.Targets {
				metrics, problems := checkQuery(tg.Expr, tg.LegendFormat)
				for _, err := range problems {
					t.Errorf("%s panel %q query %s: %v\n%s", b.Name, p.Title, tg.RefID, err, tg.Expr)
				}
				for _, m := range metrics {
					used[m] = true
				}
			}
		}
	}
	// Every contract metric is on some panel, and so are both recording
	// rules: a metric nobody can see is a dashboard gap.
	for _, set := range []map[string][]string{contract, recording} {
		for m := range set {
			if !used[m] {
				t.Errorf("no dashboard shows %s", m)
			}
		}
	}
}

func TestQueries(t *testing.T) {
	qs, err := Queries()
	if err != nil {
		t.Fatal(err)
	}
	boards, err := load()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	dashboardsSeen := map[string]bool{}
	for _, b := range boards {
		for _, p := range b.Dashboard.allPanels() {
			n += len(p.Targets)
		}
	}
	if len(qs) != n || n == 0 {
		t.Fatalf("Queries() returned %d queries, the dashboards hold %d", len(qs), n)
	}
	for _, q := range qs {
		dashboardsSeen[q.UID] = true
		if q.Dashboard == "" || q.Panel == "" || q.RefID == "" || q.Template == "" {
			t.Errorf("incomplete query %+v", q)
		}
		if strings.Contains(q.Expr, "$") {
			t.Errorf("%s / %s: unexpanded variable in %q", q.Dashboard, q.Panel, q.Expr)
		}
		if _, err := parser.NewParser(parser.Options{}).ParseExpr(q.Expr); err != nil {
			t.Errorf("%s / %s: %v", q.Dashboard, q.Panel, err)
		}
		if strings.Contains(q.Template, `"$job"`) && !strings.Contains(q.Expr, `job=~".+"`) {
			t.Errorf("%s / %s: $job not replaced by .+: %q", q.Dashboard, q.Panel, q.Expr)
		}
	}
	if len(dashboardsSeen) != len(boards) {
		t.Errorf("queries cover %d of %d dashboards", len(dashboardsSeen), len(boards))
	}
	t.Logf("%d dashboards, %d queries", len(boards), len(qs))
}
