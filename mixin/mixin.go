// Package mixin renders the monitoring mixin in this directory (jsonnet,
// see mixin.libsonnet) with go-jsonnet: the Prometheus rule files of
// alerts/, the Grafana dashboards of dashboards/ and the Helm chart's
// copies of both. `make generate` writes them (go run ./mixin/render); a
// test fails when the checked-in files differ from a fresh render.
package mixin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path"
	"sort"

	"github.com/google/go-jsonnet"
)

// Rule files, dashboards and the chart's copies, by path from the
// repository root.
const (
	AlertsFile = "alerts/authbroker-alerts.yml"
	RulesFile  = "alerts/authbroker-rules.yml"
	// DashboardsDir holds one JSON file per dashboard.
	DashboardsDir = "dashboards"
	// ChartFilesDir is the Helm chart's files/: its rules/ and dashboards/
	// are real copies of the rendered files (a chart must not hold
	// symlinks: Flux and some packagers drop them).
	ChartFilesDir = "deploy/helm/authbroker-exporter/files"
)

// Output is one rendering of the mixin.
type Output struct {
	Alerts, Rules []byte            // Prometheus rule files
	Dashboards    map[string][]byte // file name -> dashboard JSON
}

// Render evaluates mixin.libsonnet in dir with override (jsonnet, e.g.
// `{ _config+:: { showMultiCluster: true } }`, or "" for none) merged
// into it.
func Render(dir, override string) (*Output, error) {
	if override == "" {
		override = "{}"
	}
	snippet := "local m = (import 'mixin.libsonnet') + (" + override + ");\n" +
		"{ alerts: m.prometheusAlerts, rules: m.prometheusRules, dashboards: m.grafanaDashboards }\n"
	var doc struct {
		Alerts, Rules json.RawMessage
		Dashboards    map[string]json.RawMessage
	}
	if err := Evaluate([]string{dir}, "render.jsonnet", snippet, &doc); err != nil {
		return nil, err
	}
	out := &Output{Dashboards: map[string][]byte{}}
	var err error
	if out.Alerts, err = RuleFileYAML(doc.Alerts, alertsHeader); err != nil {
		return nil, fmt.Errorf("prometheusAlerts: %w", err)
	}
	if out.Rules, err = RuleFileYAML(doc.Rules, rulesHeader); err != nil {
		return nil, fmt.Errorf("prometheusRules: %w", err)
	}
	for name, raw := range doc.Dashboards {
		if path.Ext(name) != ".json" || path.Base(name) != name {
			return nil, fmt.Errorf("grafanaDashboards: %q is not a file name ending in .json", name)
		}
		if out.Dashboards[name], err = DashboardJSON(raw); err != nil {
			return nil, fmt.Errorf("grafanaDashboards %s: %w", name, err)
		}
	}
	return out, nil
}

// Files is what `make generate` writes for the default configuration:
// path from the repository root -> content.
func (o *Output) Files() map[string][]byte {
	files := map[string][]byte{
		AlertsFile:                           o.Alerts,
		RulesFile:                            o.Rules,
		path.Join(ChartFilesDir, AlertsFile): o.Alerts,
		path.Join(ChartFilesDir, RulesFile):  o.Rules,
	}
	for name, b := range o.Dashboards {
		files[path.Join(DashboardsDir, name)] = b
		files[path.Join(ChartFilesDir, DashboardsDir, name)] = b
	}
	return files
}

// Evaluate runs jsonnet code (named filename in errors) with jpath as the
// library search path, and decodes its JSON result into v.
func Evaluate(jpath []string, filename, code string, v any) error {
	vm := jsonnet.MakeVM()
	vm.Importer(&jsonnet.FileImporter{JPaths: jpath})
	js, err := vm.EvaluateAnonymousSnippet(filename, code)
	if err != nil {
		return err
	}
	return json.Unmarshal([]byte(js), v)
}

// DashboardJSON formats a dashboard as the files of dashboards/ are: keys
// sorted, two-space indent, no HTML escaping, a final newline.
func DashboardJSON(raw json.RawMessage) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, ok := v.(map[string]any); !ok {
		return nil, fmt.Errorf("a dashboard is a JSON object, got %s", bytes.TrimSpace(raw)[:1])
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// sortedKeys returns m's keys: those in order first, in that order, then
// the rest sorted.
func sortedKeys(m map[string]any, order []string) []string {
	var keys, rest []string
	for _, k := range order {
		if _, ok := m[k]; ok {
			keys = append(keys, k)
		}
	}
	for k := range m {
		known := false
		for _, o := range order {
			known = known || k == o
		}
		if !known {
			rest = append(rest, k)
		}
	}
	sort.Strings(rest)
	return append(keys, rest...)
}
