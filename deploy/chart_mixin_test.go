package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// customRuleValues: another job name, one alert disabled, an extra label
// on every alert, runbook links elsewhere.
const customRuleValues = `
serviceMonitor:
  enabled: true
  jobName: llm-auth
prometheusRule:
  enabled: true
  disabled:
    AuthBrokerStreamDegraded: true
  additionalLabels:
    team: llm-platform
  runbookURLPattern: https://wiki.example.com/authbroker#%s
`

// chartRules is the rules of the rendered PrometheusRule, by name.
func chartRules(t *testing.T, r rendered) (groups []monitoringv1.RuleGroup, byName map[string]monitoringv1.Rule) {
	t.Helper()
	pr := r.one(t, "PrometheusRule").typed.(*monitoringv1.PrometheusRule)
	byName = map[string]monitoringv1.Rule{}
	for _, g := range pr.Spec.Groups {
		for _, rule := range g.Rules {
			byName[rule.Alert+rule.Record] = rule
		}
	}
	return pr.Spec.Groups, byName
}

// TestPrometheusRuleValues: serviceMonitor.jobName reaches every
// expression, exactly as the mixin renders it with that selector;
// prometheusRule.disabled drops one alert and nothing else;
// additionalLabels and runbookURLPattern reach every alert; the rendered
// group passes promtool check and the unit tests of
// testdata/chart_rules_test.yml.
func TestPrometheusRuleValues(t *testing.T) {
	_, defaults := chartRules(t, renderChart(t, readValues(t, withRequired("prometheusRule: {enabled: true}"))))
	groups, custom := chartRules(t, renderChart(t, readValues(t, withRequired(customRuleValues))))

	// What the mixin itself renders with authbrokerSelector job="llm-auth".
	want := mixinRender(t, `{ _config+:: { authbrokerSelector: 'job="llm-auth"' } }`)
	for name, rule := range defaults {
		got, ok := custom[name]
		if name == "AuthBrokerStreamDegraded" {
			if ok {
				t.Errorf("%s is disabled but in the PrometheusRule", name)
			}
			continue
		}
		if !ok {
			t.Errorf("%s is missing from the PrometheusRule", name)
			continue
		}
		expr := got.Expr.String()
		if strings.Contains(expr, `job="authbroker"`) || !strings.Contains(expr, `job="llm-auth"`) {
			t.Errorf("%s does not select job=\"llm-auth\":\n%s", name, expr)
		}
		if expr != want[name] {
			t.Errorf("%s: the chart's expression differs from the mixin's with job=\"llm-auth\":\n%s\nmixin:\n%s", name, expr, want[name])
		}
		if rule.Alert == "" {
			continue
		}
		if got.Labels["team"] != "llm-platform" || got.Labels["severity"] != rule.Labels["severity"] {
			t.Errorf("%s: labels %v, want %v plus team=llm-platform", name, got.Labels, rule.Labels)
		}
		if u := got.Annotations["runbook_url"]; u != "https://wiki.example.com/authbroker#"+strings.ToLower(name) {
			t.Errorf("%s: runbook_url %q", name, u)
		}
		if got.For == nil || rule.For == nil || *got.For != *rule.For {
			t.Errorf("%s: for %v, the defaults have %v", name, got.For, rule.For)
		}
	}
	if len(custom) != len(defaults)-1 || len(defaults) < 30 {
		t.Errorf("%d rules with one alert disabled, %d by default", len(custom), len(defaults))
	}

	dir := t.TempDir()
	b, err := yaml.Marshal(map[string]any{"groups": groups})
	if err != nil {
		t.Fatal(err)
	}
	rules := filepath.Join(dir, "chart-rules.yml")
	if err := os.WriteFile(rules, b, 0o644); err != nil {
		t.Fatal(err)
	}
	test, err := os.ReadFile(filepath.Join("testdata", "chart_rules_test.yml"))
	if err != nil {
		t.Fatal(err)
	}
	testFile := filepath.Join(dir, "chart_rules_test.yml")
	if err := os.WriteFile(testFile, test, 0o644); err != nil {
		t.Fatal(err)
	}
	promtool := tool(t, "promtool", "PROMTOOL")
	for _, args := range [][]string{{"check", "rules", rules}, {"test", "rules", testFile}} {
		if out, err := exec.CommandContext(t.Context(), promtool, args...).CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args[:2], " "), err, out)
		}
	}
}

// mixinRender renders the mixin with override (go run ./mixin/render in
// the repository's module) and returns every rule's expression by name.
func mixinRender(t *testing.T, override string) map[string]string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.CommandContext(t.Context(), "go", "run", "./mixin/render", "-out", dir, "-override", override)
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go run ./mixin/render: %v\n%s", err, out)
	}
	exprs := map[string]string{}
	for _, f := range []string{"authbroker-alerts.yml", "authbroker-rules.yml"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Groups []struct {
				Rules []struct{ Alert, Record, Expr string }
			}
		}
		if err := yaml.Unmarshal(b, &doc); err != nil {
			t.Fatal(err)
		}
		for _, g := range doc.Groups {
			for _, r := range g.Rules {
				exprs[r.Alert+r.Record] = r.Expr
			}
		}
	}
	return exprs
}

// TestPrometheusRuleRejectsBadValues: a disabled name that is no alert,
// and a runbook pattern without %s, fail the install.
func TestPrometheusRuleRejectsBadValues(t *testing.T) {
	for values, want := range map[string]string{
		"prometheusRule: {enabled: true, disabled: {AuthBrokerNoSuchAlert: true}}":         "no such alert",
		"prometheusRule: {enabled: true, runbookURLPattern: 'https://wiki.example.com/x'}": "must hold %s",
	} {
		_, err := renderChartErr(readValues(t, withRequired(values)))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one saying %q", values, err, want)
		}
	}
}

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

// TestDashboardConfigMaps: every dashboards/*.json is in one ConfigMap,
// labelled for Grafana's sidecar, equal to the file but for its uid and
// title: two releases get different uids and titles, and one release the
// same on every render.
func TestDashboardConfigMaps(t *testing.T) {
	type board struct{ uid, title string }
	boards := func(t *testing.T, values, label, value string) map[string]board {
		t.Helper()
		out := map[string]board{}
		for _, o := range renderChart(t, readValues(t, withRequired(values))).byKind("ConfigMap") {
			cm := o.typed.(*corev1.ConfigMap)
			if got := cm.Labels[label]; got != value {
				t.Errorf("ConfigMap %s: label %s=%q, want %q", cm.Name, label, got, value)
			}
			for k, v := range cm.Data {
				if _, dup := out[k]; dup {
					t.Errorf("%s is in two ConfigMaps", k)
				}
				b, err := os.ReadFile(filepath.Join("..", "dashboards", k))
				if err != nil {
					t.Errorf("ConfigMap %s holds %s, which is not a dashboard in dashboards/", cm.Name, k)
					continue
				}
				var got, file map[string]any
				if err := json.Unmarshal([]byte(v), &got); err != nil {
					t.Fatalf("ConfigMap %s: %s: %v", cm.Name, k, err)
				}
				if err := json.Unmarshal(b, &file); err != nil {
					t.Fatal(err)
				}
				out[k] = board{uid: fmt.Sprint(got["uid"]), title: fmt.Sprint(got["title"])}
				if !strings.HasPrefix(out[k].uid, fmt.Sprint(file["uid"])+"-") || len(out[k].uid) > 40 {
					t.Errorf("%s: uid %q is not %q plus a release suffix, within 40 characters", k, out[k].uid, file["uid"])
				}
				if !strings.HasPrefix(out[k].title, fmt.Sprint(file["title"])+" (") {
					t.Errorf("%s: title %q does not start with %q", k, out[k].title, file["title"])
				}
				delete(got, "uid")
				delete(got, "title")
				delete(file, "uid")
				delete(file, "title")
				g, _ := json.Marshal(got)
				f, _ := json.Marshal(file)
				if !bytes.Equal(g, f) {
					t.Errorf("ConfigMap %s: %s differs from dashboards/%s beyond uid and title", cm.Name, k, k)
				}
			}
		}
		for _, f := range repoFiles(t, "dashboards/*.json") {
			if _, ok := out[filepath.Base(f)]; !ok {
				t.Errorf("%s is in no ConfigMap", f)
			}
		}
		return out
	}
	first := boards(t, "", "grafana_dashboard", "1")
	again := boards(t, "", "grafana_dashboard", "1")
	custom := boards(t, allOnValues, "grafana_dashboard_custom", "yes")
	other := boards(t, "fullnameOverride: prod-authbroker-exporter", "grafana_dashboard", "1")
	for name, b := range first {
		if again[name] != b || custom[name] != b {
			t.Errorf("%s: uid and title change between renders of one release: %v, %v, %v", name, b, again[name], custom[name])
		}
		if o := other[name]; o.uid == b.uid || o.title == b.title {
			t.Errorf("%s: two releases share uid or title: %v, %v", name, b, o)
		}
	}
}

// TestChartFilesAreRendered: the chart's files/ are real files (no
// symlink anywhere under deploy/: Flux drops them), equal byte for byte to
// the repository's rendered alerts/authbroker-*.yml and dashboards/*.json.
func TestChartFilesAreRendered(t *testing.T) {
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			t.Errorf("deploy/%s is a symlink", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for dir, pattern := range map[string]string{"alerts": ruleFiles, "dashboards": "dashboards/*.json"} {
		want := repoFiles(t, pattern)
		got, err := filepath.Glob(filepath.Join(chartDir, "files", dir, "*"))
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, f := range got {
			names = append(names, filepath.Base(f))
		}
		for _, f := range want {
			if !slices.Contains(names, filepath.Base(f)) {
				t.Errorf("files/%s lacks %s", dir, filepath.Base(f))
				continue
			}
			a, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(filepath.Join(chartDir, "files", dir, filepath.Base(f)))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a, b) {
				t.Errorf("files/%s/%s differs from %s: run make generate", dir, filepath.Base(f), f)
			}
		}
		if len(got) != len(want) {
			t.Errorf("files/%s holds %v, the repository %v", dir, names, want)
		}
	}
}

// withRequired adds the values the chart has no default for (requiredValues)
// to a document that does not set them itself.
func withRequired(doc string) string {
	if strings.Contains(doc, "image:") {
		return doc
	}
	return requiredValues + "\n" + doc
}
