package alerts

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"go.uber.org/goleak"
	"gopkg.in/yaml.v3"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	alertsFile = "authbroker-alerts.yml"
	rulesFile  = "authbroker-rules.yml"
	// alertmanagerFile is an example Alertmanager configuration, not a
	// rule file: rule-file globs must not pick it up.
	alertmanagerFile = "alertmanager.example.yml"
	testsDir         = "tests"
	runbookPath      = "../docs/runbook.md"
)

// optInAlerts are alerts the mixin renders only when configured to
// (AuthBrokerExporterAbsent: absentAlertEnabled); the runbook documents
// them too, and tests/custom fires them.
var optInAlerts = []string{"AuthBrokerExporterAbsent"}

// runbookURL is where the default runbook_url links point: the runbook of
// this version (VERSION).
func runbookURL(t *testing.T) string {
	t.Helper()
	v, err := os.ReadFile("../VERSION")
	if err != nil {
		t.Fatal(err)
	}
	return "https://github.com/authbroker/authbroker_exporter/blob/v" + strings.TrimSpace(string(v)) + "/docs/runbook.md"
}

// The dashboards query these names, and the end-to-end suite waits for the
// expiring-soon alert; renaming either breaks them.
var (
	requiredRecords = []string{
		"provider_limit:authbroker_usage_limit_credentials:count",
		"provider_limit:authbroker_usage_limit_headroom_credentials:count",
	}
	requiredAlerts = []string{"AuthBrokerCredentialExpiringSoon"}
)

type ruleFile struct {
	Groups []struct {
		Name     string `yaml:"name"`
		Interval string `yaml:"interval"`
		Rules    []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type unitTestFile struct {
	RuleFiles          []string `yaml:"rule_files"`
	EvaluationInterval string   `yaml:"evaluation_interval"`
	GroupEvalOrder     []string `yaml:"group_eval_order"`
	Tests              []struct {
		Name        string `yaml:"name"`
		Interval    string `yaml:"interval"`
		InputSeries []struct {
			Series string `yaml:"series"`
			Values string `yaml:"values"`
		} `yaml:"input_series"`
		AlertRuleTests []struct {
			EvalTime  string `yaml:"eval_time"`
			Alertname string `yaml:"alertname"`
			ExpAlerts []struct {
				ExpLabels      map[string]string `yaml:"exp_labels"`
				ExpAnnotations map[string]string `yaml:"exp_annotations"`
			} `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
		PromQLExprTests []struct {
			Expr       string `yaml:"expr"`
			EvalTime   string `yaml:"eval_time"`
			ExpSamples []struct {
				Labels string  `yaml:"labels"`
				Value  float64 `yaml:"value"`
			} `yaml:"exp_samples"`
		} `yaml:"promql_expr_test"`
	} `yaml:"tests"`
}

// decodeStrict rejects unknown keys, so a misspelt field (e.g.
// "anotations") fails here instead of being silently ignored.
func decodeStrict(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func loadRules(t *testing.T) (alerts, records []rule) {
	t.Helper()
	for _, f := range []string{alertsFile, rulesFile} {
		var rf ruleFile
		decodeStrict(t, f, &rf)
		if len(rf.Groups) == 0 {
			t.Fatalf("%s: no groups", f)
		}
		for _, g := range rf.Groups {
			// Only a recording group of the rules file may run on its own
			// interval, and its name says which (authbroker-usage.5m).
			if g.Interval != "" && (f != rulesFile || !strings.HasSuffix(g.Name, "."+g.Interval)) {
				t.Errorf("%s: group %s sets interval %s; only recording groups named *.%s may, the rest follow the global evaluation_interval", f, g.Name, g.Interval, g.Interval)
			}
			for _, r := range g.Rules {
				switch {
				case r.Alert != "" && f == alertsFile:
					alerts = append(alerts, r)
				case r.Record != "" && f == rulesFile:
					records = append(records, r)
				default:
					t.Errorf("%s: rule %q%q is in the wrong file", f, r.Alert, r.Record)
				}
			}
		}
	}
	return alerts, records
}

func loadUnitTests(t *testing.T) map[string]unitTestFile {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(testsDir, "*.yml"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no unit tests in %s (%v)", testsDir, err)
	}
	out := map[string]unitTestFile{}
	for _, p := range paths {
		var u unitTestFile
		decodeStrict(t, p, &u)
		out[p] = u
	}
	return out
}

var (
	alertName   = regexp.MustCompile(`^AuthBroker(?:[A-Z][a-z0-9]+)+$`)
	alertAnchor = regexp.MustCompile(`^authbroker[a-z0-9]+$`)
	recordName  = regexp.MustCompile(`^[a-z_]+:authbroker_[a-z0-9_]+:[a-z0-9_]+$`)
)

func TestAlertRules(t *testing.T) {
	alerts, _ := loadRules(t)
	anchors := markdownAnchors(t, runbookPath)
	seen := map[string]bool{}
	for _, a := range alerts {
		if !alertName.MatchString(a.Alert) {
			t.Errorf("%s: alert names are CamelCase with the AuthBroker prefix", a.Alert)
		}
		if seen[a.Alert] {
			t.Errorf("%s: defined twice", a.Alert)
		}
		seen[a.Alert] = true
		if a.For == "" {
			t.Errorf("%s: no for", a.Alert)
		} else if d, err := model.ParseDuration(a.For); err != nil || d <= 0 {
			t.Errorf("%s: for %q is not a positive duration (%v)", a.Alert, a.For, err)
		}
		if s := a.Labels["severity"]; s != "info" && s != "warning" && s != "critical" {
			t.Errorf("%s: severity %q, want info, warning or critical", a.Alert, s)
		}
		for _, k := range []string{"summary", "description", "runbook_url"} {
			if strings.TrimSpace(a.Annotations[k]) == "" {
				t.Errorf("%s: annotation %s missing", a.Alert, k)
			}
		}
		// One headline for every alert of a name: a grouped notification
		// shows it once; the values are in the description.
		if sum := a.Annotations["summary"]; strings.Contains(sum, "{{") || !strings.HasSuffix(sum, ".") {
			t.Errorf("%s: summary %q is not static text ending with a period", a.Alert, sum)
		}
		want := runbookURL(t) + "#" + strings.ToLower(a.Alert)
		if got := a.Annotations["runbook_url"]; got != want {
			t.Errorf("%s: runbook_url %q, want %q", a.Alert, got, want)
		}
		if !anchors[strings.ToLower(a.Alert)] {
			t.Errorf("%s: docs/runbook.md has no section with anchor #%s", a.Alert, strings.ToLower(a.Alert))
		}
	}
	for _, name := range requiredAlerts {
		if !seen[name] {
			t.Errorf("alert %s is missing", name)
		}
	}
	// Every alert section of the runbook belongs to an existing alert.
	for anchor := range anchors {
		optIn := slices.ContainsFunc(optInAlerts, func(a string) bool { return strings.ToLower(a) == anchor })
		if alertAnchor.MatchString(anchor) && !optIn && !slices.ContainsFunc(alerts, func(r rule) bool { return strings.ToLower(r.Alert) == anchor }) {
			t.Errorf("docs/runbook.md has a section #%s for an alert that does not exist", anchor)
		}
	}
}

func TestRecordingRules(t *testing.T) {
	_, records := loadRules(t)
	var names []string
	for _, r := range records {
		if !recordName.MatchString(r.Record) {
			t.Errorf("%s: recording rule names follow level:metric:operations", r.Record)
		}
		if len(r.Labels) > 0 || len(r.Annotations) > 0 || r.For != "" {
			t.Errorf("%s: recording rules take no labels, annotations or for", r.Record)
		}
		names = append(names, r.Record)
	}
	for _, want := range requiredRecords {
		if !slices.Contains(names, want) {
			t.Errorf("recording rule %s is missing", want)
		}
	}
}

// contractFromREADME reads the metric table of the project README, which
// another test ties to the collector: the rules may only use those metrics
// and their labels.
func contractFromREADME(t *testing.T) map[string][]string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `(authbroker_\\w+)` \\| \\w+ \\| ([^|]*) \\|")
	backticked := regexp.MustCompile("`(\\w+)`")
	out := map[string][]string{}
	for _, sm := range row.FindAllStringSubmatch(string(b), -1) {
		var ls []string
		for _, l := range backticked.FindAllStringSubmatch(sm[2], -1) {
			ls = append(ls, l[1])
		}
		out[sm[1]] = ls
	}
	if len(out) == 0 {
		t.Fatal("no metric table in README.md")
	}
	return out
}

// newFamilies are families the rules read that README.md's table
// (generated from collector/metrics.go) may not list yet; once it does,
// the labels must agree.
var newFamilies = map[string][]string{
	"authbroker_usage_limit_reset_credits": {"id", "provider", "limit"},
}

// recordLabels are the labels a recording rule keeps besides job and
// instance, from its level: id = a credential (id, provider), limit = a
// usage limit (limit, and window when it is per credential).
func recordLabels(name string) []string {
	level, _, _ := strings.Cut(name, ":")
	parts := strings.Split(level, "_")
	var out []string
	for _, l := range parts {
		switch {
		case l == "id":
			out = append(out, "id", "provider")
		case l == "limit" && slices.Contains(parts, "id"):
			out = append(out, "limit", "window")
		default:
			out = append(out, l)
		}
	}
	return out
}

// TestExpressionsUseTheContract parses every expression with the current
// PromQL parser (promtool may be older) and checks each metric and label
// against the contract, so a typo cannot hide behind a test that repeats it.
func TestExpressionsUseTheContract(t *testing.T) {
	alerts, records := loadRules(t)
	contract := contractFromREADME(t)
	// Not authbroker_ families, so not in README's table: Prometheus' own
	// up, and client_golang's counter of the exporter's /metrics handler.
	contract["up"] = nil
	contract["promhttp_metric_handler_requests_total"] = []string{"code"}
	for name, labels := range newFamilies {
		if got, ok := contract[name]; ok {
			if !slices.Equal(got, labels) {
				t.Errorf("%s: README.md gives labels %v, the rules expect %v", name, got, labels)
			}
			continue
		}
		t.Logf("%s is not in README.md's metric table yet; checking against %v", name, labels)
		contract[name] = labels
	}
	for _, r := range records {
		// A breaching set of one family keeps that family's labels.
		if labels, ok := contract[strings.Split(r.Record, ":")[1]]; ok {
			contract[r.Record] = labels
			continue
		}
		contract[r.Record] = recordLabels(r.Record)
	}
	targetLabels := []string{"job", "instance"}
	p := parser.NewParser(parser.Options{})
	for _, r := range append(alerts, records...) {
		name := r.Alert + r.Record
		expr, err := p.ParseExpr(r.Expr)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		known := slices.Clone(targetLabels)
		var grouping []string
		parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
			switch n := n.(type) {
			case *parser.VectorSelector:
				labels, ok := contract[n.Name]
				if !ok {
					t.Errorf("%s: metric %q is not in the exporter's contract", name, n.Name)
					return nil
				}
				known = append(known, labels...)
				for _, m := range n.LabelMatchers {
					if m.Name != model.MetricNameLabel && !slices.Contains(labels, m.Name) && !slices.Contains(targetLabels, m.Name) {
						t.Errorf("%s: %s has no label %q", name, n.Name, m.Name)
					}
				}
			case *parser.AggregateExpr:
				grouping = append(grouping, n.Grouping...)
			case *parser.BinaryExpr:
				if n.VectorMatching != nil {
					grouping = append(grouping, n.VectorMatching.MatchingLabels...)
					grouping = append(grouping, n.VectorMatching.Include...)
				}
			}
			return nil
		})
		for _, l := range grouping {
			if !slices.Contains(known, l) {
				t.Errorf("%s: label %q appears in a grouping but on none of the expression's metrics", name, l)
			}
		}
	}
}

// TestUnitTestCoverage: every alert has a case where it fires with its
// labels and all annotations spelled out, and one where it stays quiet;
// every recording rule is evaluated by a promql_expr_test.
func TestUnitTestCoverage(t *testing.T) {
	alerts, records := loadRules(t)
	fires, quiet := map[string]int{}, map[string]int{}
	exprs := ""
	for path, u := range loadUnitTests(t) {
		for _, rf := range u.RuleFiles {
			if _, err := os.Stat(filepath.Join(testsDir, rf)); err != nil {
				t.Errorf("%s: rule file %s: %v", path, rf, err)
			}
		}
		for _, tc := range u.Tests {
			for _, at := range tc.AlertRuleTests {
				if len(at.ExpAlerts) == 0 {
					quiet[at.Alertname]++
					continue
				}
				fires[at.Alertname]++
				i := slices.IndexFunc(alerts, func(r rule) bool { return r.Alert == at.Alertname })
				if i < 0 {
					t.Errorf("%s: %q tests an alert that does not exist", path, at.Alertname)
					continue
				}
				for _, ea := range at.ExpAlerts {
					if ea.ExpLabels["severity"] != alerts[i].Labels["severity"] {
						t.Errorf("%s %q at %s: expected severity %q, the rule has %q", path, tc.Name, at.EvalTime, ea.ExpLabels["severity"], alerts[i].Labels["severity"])
					}
					for k := range alerts[i].Annotations {
						if ea.ExpAnnotations[k] == "" {
							t.Errorf("%s %q at %s: annotation %s of %s is not checked", path, tc.Name, at.EvalTime, k, at.Alertname)
						}
					}
				}
			}
			for _, pt := range tc.PromQLExprTests {
				exprs += pt.Expr + "\n"
			}
		}
	}
	for _, a := range alerts {
		if fires[a.Alert] == 0 {
			t.Errorf("%s: no unit test where it fires", a.Alert)
		}
		if quiet[a.Alert] == 0 {
			t.Errorf("%s: no unit test where it stays quiet", a.Alert)
		}
	}
	for _, r := range records {
		if !strings.Contains(exprs, r.Record) {
			t.Errorf("%s: no promql_expr_test evaluates it", r.Record)
		}
	}
}

// stormThreshold is the number of breaching credentials of one provider up
// to which per-credential alerts fire; beyond it the *Widespread sibling
// fires instead (alerts/README.md, "Alert storms").
const stormThreshold = 10

// countComparisons returns the thresholds an expression compares a
// count(...) aggregation with, by operator.
func countComparisons(t *testing.T, expr string) map[parser.ItemType][]float64 {
	t.Helper()
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		t.Fatal(err)
	}
	out := map[parser.ItemType][]float64{}
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		b, ok := n.(*parser.BinaryExpr)
		if !ok {
			return nil
		}
		lhs := b.LHS
		for {
			p, ok := lhs.(*parser.ParenExpr)
			if !ok {
				break
			}
			lhs = p.Expr
		}
		agg, ok := lhs.(*parser.AggregateExpr)
		num, isNum := b.RHS.(*parser.NumberLiteral)
		if ok && isNum && agg.Op == parser.COUNT {
			out[b.Op] = append(out[b.Op], num.Val)
		}
		return nil
	})
	return out
}

// TestStormGuard: every per-credential alert (one that adds the identity
// label) fires only while its provider has at most stormThreshold breaching
// credentials, and has a <name>Widespread sibling with the same for and
// severity that fires beyond, without id labels; both documents name the
// threshold.
func TestStormGuard(t *testing.T) {
	alerts, _ := loadRules(t)
	byName := map[string]rule{}
	for _, a := range alerts {
		byName[a.Alert] = a
	}
	perCredential := 0
	for _, a := range alerts {
		if strings.HasSuffix(a.Alert, "Widespread") {
			base, ok := byName[strings.TrimSuffix(a.Alert, "Widespread")]
			if !ok {
				t.Errorf("%s: no per-credential alert %s", a.Alert, strings.TrimSuffix(a.Alert, "Widespread"))
				continue
			}
			if a.For != base.For || a.Labels["severity"] != base.Labels["severity"] {
				t.Errorf("%s: for %s, severity %s; %s has %s, %s", a.Alert, a.For, a.Labels["severity"], base.Alert, base.For, base.Labels["severity"])
			}
			if got := countComparisons(t, a.Expr)[parser.GTR]; !slices.Equal(got, []float64{stormThreshold}) {
				t.Errorf("%s: compares a count with > %v, want > %d", a.Alert, got, stormThreshold)
			}
			if strings.Contains(a.Expr, "authbroker_credential_info") {
				t.Errorf("%s: a provider-wide alert has no identity to join", a.Alert)
			}
			continue
		}
		if !strings.Contains(a.Expr, "group_left(identity)") {
			continue
		}
		perCredential++
		if got := countComparisons(t, a.Expr)[parser.LTE]; !slices.Equal(got, []float64{stormThreshold}) {
			t.Errorf("%s: compares a count with <= %v, want <= %d", a.Alert, got, stormThreshold)
		}
		if _, ok := byName[a.Alert+"Widespread"]; !ok {
			t.Errorf("%s: no %sWidespread sibling", a.Alert, a.Alert)
		}
	}
	if perCredential < 7 {
		t.Errorf("only %d per-credential alerts found", perCredential)
	}
	phrase := fmt.Sprintf("more than %d credentials", stormThreshold)
	for _, doc := range []string{"README.md", runbookPath} {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte(phrase)) {
			t.Errorf("%s does not name the threshold (%q)", doc, phrase)
		}
	}
}

// externalAlerts are other projects' alerts the example Alertmanager
// configuration inhibits with: kube-prometheus' TargetDown.
var externalAlerts = []string{"TargetDown"}

// TestAlertmanagerExample checks that every alert name the example
// Alertmanager configuration matches on exists, and that every regular
// expression on alertname matches at least one alert.
func TestAlertmanagerExample(t *testing.T) {
	alerts, _ := loadRules(t)
	var cfg struct {
		Route struct {
			GroupBy []string `yaml:"group_by"`
		} `yaml:"route"`
		InhibitRules []struct {
			SourceMatchers []string `yaml:"source_matchers"`
			TargetMatchers []string `yaml:"target_matchers"`
			Equal          []string `yaml:"equal"`
		} `yaml:"inhibit_rules"`
	}
	b, err := os.ReadFile(alertmanagerFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{"alertname", "provider", "instance"} {
		if !slices.Contains(cfg.Route.GroupBy, l) {
			t.Errorf("route does not group by %s", l)
		}
	}
	if len(cfg.InhibitRules) < 2 {
		t.Fatalf("%d inhibit rules", len(cfg.InhibitRules))
	}
	matcher := regexp.MustCompile(`^alertname\s*(=~|!~|=|!=)\s*"?([^"]*)"?$`)
	for i, ir := range cfg.InhibitRules {
		for _, m := range append(slices.Clone(ir.SourceMatchers), ir.TargetMatchers...) {
			sm := matcher.FindStringSubmatch(strings.TrimSpace(m))
			if sm == nil {
				continue
			}
			re, err := regexp.Compile("^(?:" + sm[2] + ")$")
			if err != nil {
				t.Errorf("inhibit rule %d: %s: %v", i, m, err)
				continue
			}
			n := 0
			for _, a := range alerts {
				if re.MatchString(a.Alert) {
					n++
				}
			}
			if slices.Contains(externalAlerts, sm[2]) {
				continue
			}
			if sm[1] == "=~" || sm[1] == "=" {
				if n == 0 {
					t.Errorf("inhibit rule %d: %s matches no alert", i, m)
				}
			}
			if sm[1] == "=" || sm[1] == "!=" {
				if !slices.ContainsFunc(alerts, func(r rule) bool { return r.Alert == sm[2] }) {
					t.Errorf("inhibit rule %d: %s names no alert", i, m)
				}
			}
		}
		if len(ir.Equal) == 0 {
			t.Errorf("inhibit rule %d has no equal labels: one instance would silence every other", i)
		}
	}
}

// TestMarkdownLinks checks the anchors of the links between the runbook and
// the rules' README, and that the README lists every alert.
func TestMarkdownLinks(t *testing.T) {
	for _, doc := range []string{runbookPath, "README.md"} {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		link := regexp.MustCompile(`\]\(([^)\s]*)#([^)\s]+)\)`)
		for _, m := range link.FindAllStringSubmatch(string(b), -1) {
			target := doc
			if m[1] != "" {
				if strings.Contains(m[1], "://") {
					continue
				}
				target = filepath.Join(filepath.Dir(doc), m[1])
			}
			if !markdownAnchors(t, target)[m[2]] {
				t.Errorf("%s: link to %s#%s: no such anchor", doc, m[1], m[2])
			}
		}
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	alerts, _ := loadRules(t)
	for _, a := range alerts {
		if !bytes.Contains(readme, []byte("`"+a.Alert+"`")) {
			t.Errorf("alerts/README.md does not document %s", a.Alert)
		}
	}
}

// markdownAnchors returns the anchors GitHub generates for a file's
// headings: lower case, punctuation other than - and _ dropped, spaces
// turned into hyphens.
func markdownAnchors(t *testing.T, path string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	heading := regexp.MustCompile(`(?m)^#{1,6}\s+(.+?)\s*$`)
	drop := regexp.MustCompile(`[^\p{L}\p{N} _-]`)
	out := map[string]bool{}
	inFence := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "```") {
			inFence = !inFence
			continue
		}
		if m := heading.FindStringSubmatch(line); m != nil && !inFence {
			slug := strings.ReplaceAll(drop.ReplaceAllString(strings.ToLower(m[1]), ""), " ", "-")
			out[slug] = true
		}
	}
	return out
}

// promtool returns the promtool binary: $PROMTOOL, else the one on PATH.
// Without one the promtool tests fail in CI and are skipped elsewhere.
func promtool(t *testing.T) string { return tool(t, "promtool", "PROMTOOL") }

// tool returns the binary named by $env, else name on PATH; without one
// the test fails in CI and is skipped elsewhere.
func tool(t *testing.T, name, env string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		return p
	}
	p, err := exec.LookPath(name)
	if err != nil {
		msg := fmt.Sprintf("%s not found (scripts/install-deps.sh prometheus, or set %s)", name, env)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return p
}

func runPromtool(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), promtool(t), args...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestPromtool(t *testing.T) {
	tests, err := filepath.Glob(filepath.Join(testsDir, "*.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := runPromtool(t, "check", "rules", alertsFile, rulesFile); err != nil {
		t.Errorf("promtool check rules: %v\n%s", err, out)
	}
	if out, err := runPromtool(t, append([]string{"test", "rules"}, tests...)...); err != nil {
		t.Errorf("promtool test rules: %v\n%s", err, out)
	}
}

// TestAmtool: amtool check-config accepts the example Alertmanager
// configuration. Like promtool, amtool is required when CI=true.
func TestAmtool(t *testing.T) {
	out, err := exec.CommandContext(t.Context(), tool(t, "amtool", "AMTOOL"), "check-config", alertmanagerFile).CombinedOutput()
	if err != nil {
		t.Errorf("amtool check-config: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("SUCCESS")) {
		t.Errorf("amtool check-config did not report success:\n%s", out)
	}
}

// TestUnitTestsCatchMutations proves the unit tests can fail: each mutant
// of the rule files (an alert's `for` doubled or removed, a non-zero number
// in an alert's or a recording rule's expression doubled) must make
// promtool test rules fail. The unmutated copy must pass, so a failure is
// the mutation's doing.
func TestUnitTestsCatchMutations(t *testing.T) {
	bin := promtool(t)
	tests, err := filepath.Glob(filepath.Join(testsDir, "*.yml"))
	if err != nil {
		t.Fatal(err)
	}
	// Only the test files that name an alert can notice its mutation; a
	// recording rule may feed any of them.
	filesFor := func(alert string) []string {
		var out []string
		for _, p := range tests {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if alert == "" || bytes.Contains(b, []byte("alertname: "+alert+"\n")) {
				out = append(out, p)
			}
		}
		return out
	}
	run := func(t *testing.T, file string, content []byte, files []string) (string, error) {
		dir := t.TempDir()
		for _, f := range []string{alertsFile, rulesFile} {
			if f != file {
				copyFile(t, f, filepath.Join(dir, f))
			}
		}
		if err := os.WriteFile(filepath.Join(dir, file), content, 0o644); err != nil {
			t.Fatal(err)
		}
		args := []string{"test", "rules"}
		for _, p := range files {
			dst := filepath.Join(dir, p)
			copyFile(t, p, dst)
			args = append(args, dst)
		}
		out, err := exec.CommandContext(t.Context(), bin, args...).CombinedOutput()
		return string(out), err
	}
	var ms []mutant
	for _, f := range []string{alertsFile, rulesFile} {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// The control goes through the same decode/encode path as the mutants.
		if out, err := run(t, f, mutate(t, src, "", nil), filesFor("")); err != nil {
			t.Fatalf("unmutated copy of %s fails: %v\n%s", f, err, out)
		}
		ms = append(ms, mutants(t, f, src)...)
	}
	if len(ms) < 60 {
		t.Fatalf("only %d mutants", len(ms))
	}
	t.Logf("%d mutants", len(ms))
	for _, m := range ms {
		files := filesFor(m.alert)
		if len(files) == 0 {
			t.Fatalf("no unit test names %s", m.alert)
		}
		t.Run(m.desc, func(t *testing.T) {
			t.Parallel()
			if _, err := run(t, m.file, m.content, files); err == nil {
				t.Errorf("mutant survived the unit tests")
			}
		})
	}
}

type mutant struct {
	alert, desc string // alert is empty for a recording rule
	file        string
	content     []byte
}

// mutants lists one-change variants of a rule file: per alert, its `for`
// doubled and set to 0s; per alert or recording rule, each non-zero number
// of its expression doubled.
func mutants(t *testing.T, file string, src []byte) []mutant {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		t.Fatal(err)
	}
	var out []mutant
	p := parser.NewParser(parser.Options{})
	walkRules(&doc, func(name string, fields map[string]*yaml.Node) {
		alert := ""
		if _, ok := fields["alert"]; ok {
			alert = name
		}
		add := func(desc string, edit func(map[string]*yaml.Node)) {
			out = append(out, mutant{alert: alert, desc: name + ": " + desc, file: file, content: mutate(t, src, name, edit)})
		}
		if alert != "" {
			add("for doubled", func(f map[string]*yaml.Node) {
				d, err := model.ParseDuration(f["for"].Value)
				if err != nil {
					t.Fatal(err)
				}
				f["for"].Value = (2 * d).String()
			})
			add("for set to 0s", func(f map[string]*yaml.Node) { f["for"].Value = "0s" })
		}
		expr, err := p.ParseExpr(fields["expr"].Value)
		if err != nil {
			t.Fatal(err)
		}
		parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
			num, ok := n.(*parser.NumberLiteral)
			if !ok || num.Val == 0 {
				return nil
			}
			pos := num.PosRange
			add(fmt.Sprintf("%v doubled at offset %d of expr", num.Val, pos.Start), func(f map[string]*yaml.Node) {
				e := f["expr"].Value
				f["expr"].Value = e[:pos.Start] + strconv.FormatFloat(2*num.Val, 'g', -1, 64) + e[pos.End:]
			})
			return nil
		})
	})
	return out
}

// mutate decodes src afresh, applies edit to the rule named target (an
// alert or a recording rule) and encodes the result.
func mutate(t *testing.T, src []byte, target string, edit func(map[string]*yaml.Node)) []byte {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		t.Fatal(err)
	}
	walkRules(&doc, func(name string, fields map[string]*yaml.Node) {
		if name == target && edit != nil {
			edit(fields)
		}
	})
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// walkRules calls fn for every alert and recording rule, with its name.
func walkRules(n *yaml.Node, fn func(string, map[string]*yaml.Node)) {
	if n.Kind == yaml.MappingNode {
		fields := map[string]*yaml.Node{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			fields[n.Content[i].Value] = n.Content[i+1]
		}
		for _, k := range []string{"alert", "record"} {
			if a, ok := fields[k]; ok {
				fn(a.Value, fields)
				return
			}
		}
	}
	for _, c := range n.Content {
		walkRules(c, fn)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
