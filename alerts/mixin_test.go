package alerts

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"

	"github.com/authbroker/authbroker_exporter/mixin"
)

const mixinDir = "../mixin"

// writeRuleFiles writes rendered rule files and a promtool test file into
// a new directory, and returns the test file's path there.
func writeRuleFiles(t *testing.T, alerts, rules []byte, testFile string) string {
	t.Helper()
	dir := t.TempDir()
	for name, b := range map[string][]byte{alertsFile: alerts, rulesFile: rules} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dst := filepath.Join(dir, filepath.Base(testFile))
	copyFile(t, testFile, dst)
	return dst
}

// TestMultiClusterRules: with showMultiCluster on, two clusters whose
// exporters share job and instance (and credential ids) stay apart: the
// promtool test of tests/multicluster passes. The same test fails on the
// rules rendered without the switch, so it does test the cluster label.
func TestMultiClusterRules(t *testing.T) {
	const testFile = "tests/multicluster/two_clusters_test.yml"
	for _, tc := range []struct {
		name, override string
		pass           bool
	}{
		{"multi-cluster", `{ _config+:: { showMultiCluster: true, widespreadCount: 2 } }`, true},
		{"single-cluster", `{ _config+:: { widespreadCount: 2 } }`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := mixin.Render(mixinDir, tc.override)
			if err != nil {
				t.Fatal(err)
			}
			if tc.pass {
				checkSelectors(t, out.Alerts, out.Rules, map[string]string{"job": "authbroker"}, "cluster")
			}
			res, err := runPromtool(t, "test", "rules", writeRuleFiles(t, out.Alerts, out.Rules, testFile))
			switch {
			case tc.pass && err != nil:
				t.Errorf("promtool test rules: %v\n%s", err, res)
			case !tc.pass && err == nil:
				t.Errorf("the single-cluster rules pass a test that needs the cluster label")
			case !tc.pass && !strings.Contains(res, "many-to-many"):
				t.Errorf("the single-cluster rules fail, but not on the identity join:\n%s", res)
			}
		})
	}
}

// TestJsonnetUser renders tests/custom/custom.jsonnet, which imports
// mixin.libsonnet and overrides _config as a jsonnet user would, then
// promtool-checks the result and runs tests/custom/custom_test.yml on it.
func TestJsonnetUser(t *testing.T) {
	const main = "tests/custom/custom.jsonnet"
	code, err := os.ReadFile(main)
	if err != nil {
		t.Fatal(err)
	}
	var files map[string]string
	if err := mixin.Evaluate([]string{mixinDir}, main, string(code), &files); err != nil {
		t.Fatal(err)
	}
	alerts, rules := []byte(files[alertsFile]), []byte(files[rulesFile])
	if len(alerts) == 0 || len(rules) == 0 {
		t.Fatalf("custom.jsonnet renders %d files, want %s and %s", len(files), alertsFile, rulesFile)
	}
	checkSelectors(t, alerts, rules, map[string]string{"job": "authbroker.*", "env": "prod"}, "region")

	var rf ruleFile
	if err := yaml.Unmarshal(alerts, &rf); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			names = append(names, r.Alert)
			if r.Labels["team"] != "llm-platform" {
				t.Errorf("%s: labels %v lack the additional label team", r.Alert, r.Labels)
			}
			if want := "https://runbooks.example.com/authbroker.html#" + strings.ToLower(r.Alert); r.Annotations["runbook_url"] != want {
				t.Errorf("%s: runbook_url %q, want %q", r.Alert, r.Annotations["runbook_url"], want)
			}
		}
	}
	if slices.Contains(names, "AuthBrokerStreamDegraded") {
		t.Error("AuthBrokerStreamDegraded is in disabledAlerts but rendered")
	}
	if !slices.Contains(names, "AuthBrokerExporterAbsent") {
		t.Error("absentAlertEnabled is on but AuthBrokerExporterAbsent is not rendered")
	}

	// The alerts only a configuration turns on have their firing and quiet
	// cases here, as every default alert has in tests/.
	var u unitTestFile
	decodeStrict(t, "tests/custom/custom_test.yml", &u)
	for _, name := range optInAlerts {
		fires, quiet := 0, 0
		for _, tc := range u.Tests {
			for _, at := range tc.AlertRuleTests {
				if at.Alertname != name {
					continue
				}
				if len(at.ExpAlerts) > 0 {
					fires++
				} else {
					quiet++
				}
			}
		}
		if fires == 0 || quiet == 0 {
			t.Errorf("%s: %d firing and %d quiet cases in tests/custom, want at least one of each", name, fires, quiet)
		}
	}

	dst := writeRuleFiles(t, alerts, rules, "tests/custom/custom_test.yml")
	dir := filepath.Dir(dst)
	if out, err := runPromtool(t, "check", "rules", filepath.Join(dir, alertsFile), filepath.Join(dir, rulesFile)); err != nil {
		t.Errorf("promtool check rules: %v\n%s", err, out)
	}
	if out, err := runPromtool(t, "test", "rules", dst); err != nil {
		t.Errorf("promtool test rules: %v\n%s", err, out)
	}
}

// TestDefaultSelector: every expression of the checked-in rules selects
// with the default authbrokerSelector, and no grouping carries a cluster
// label.
func TestDefaultSelector(t *testing.T) {
	alerts, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	rules, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	checkSelectors(t, alerts, rules, map[string]string{"job": "authbroker"}, "")
}

// checkSelectors checks every expression of two rule files: each vector
// selector carries the matchers of want (label -> value), and each
// aggregation or on() join that keeps job also keeps cluster (or, with
// cluster "", none keeps "cluster").
func checkSelectors(t *testing.T, alerts, rules []byte, want map[string]string, cluster string) {
	t.Helper()
	p := parser.NewParser(parser.Options{})
	n := 0
	for _, doc := range [][]byte{alerts, rules} {
		var rf ruleFile
		if err := yaml.Unmarshal(doc, &rf); err != nil {
			t.Fatal(err)
		}
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				name := r.Alert + r.Record
				expr, err := p.ParseExpr(r.Expr)
				if err != nil {
					t.Errorf("%s: %v", name, err)
					continue
				}
				checkGroupings := func(ls []string) {
					if cluster == "" && slices.Contains(ls, "cluster") {
						t.Errorf("%s: groups by cluster without the multi-cluster switch: %v", name, ls)
					}
					if cluster != "" && slices.Contains(ls, "job") && !slices.Contains(ls, cluster) {
						t.Errorf("%s: groups by %v without %s", name, ls, cluster)
					}
				}
				parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
					switch node := node.(type) {
					case *parser.VectorSelector:
						n++
						for l, v := range want {
							if !slices.ContainsFunc(node.LabelMatchers, func(m *labels.Matcher) bool {
								return m.Name == l && m.Value == v && m.Type != labels.MatchNotEqual && m.Type != labels.MatchNotRegexp
							}) {
								t.Errorf("%s: %s does not select %s=%q", name, node, l, v)
							}
						}
					case *parser.AggregateExpr:
						if !node.Without {
							checkGroupings(node.Grouping)
						}
					case *parser.BinaryExpr:
						if node.VectorMatching != nil && node.VectorMatching.On {
							checkGroupings(node.VectorMatching.MatchingLabels)
						}
					}
					return nil
				})
			}
		}
	}
	if n < 50 {
		t.Errorf("only %d selectors found", n)
	}
}
