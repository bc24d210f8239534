package dashboards

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-jsonnet"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

var update = flag.Bool("update", false, "rewrite dashboards/*.json from the mixin")

// renderMixin evaluates ../mixin/mixin.libsonnet with the default config
// and returns its grafanaDashboards, one JSON document per file name.
func renderMixin(t *testing.T) map[string]json.RawMessage {
	t.Helper()
	vm := jsonnet.MakeVM()
	vm.Importer(&jsonnet.FileImporter{JPaths: []string{filepath.Join("..", "mixin")}})
	out, err := vm.EvaluateAnonymousSnippet("render.jsonnet", "(import 'mixin.libsonnet').grafanaDashboards")
	if err != nil {
		t.Fatal(err)
	}
	var boards map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &boards); err != nil {
		t.Fatal(err)
	}
	return boards
}

// The committed files hold what the mixin renders for the default config
// (compared as JSON values, so the layout of the files is free).
func TestRenderedFromMixin(t *testing.T) {
	boards := renderMixin(t)
	var names []string
	for name, raw := range boards {
		names = append(names, name)
		if *update {
			var buf bytes.Buffer
			if err := json.Indent(&buf, raw, "", "  "); err != nil {
				t.Fatal(err)
			}
			buf.WriteByte('\n')
			if err := os.WriteFile(name, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(name)
		if err != nil {
			t.Errorf("%s: %v (run go test ./dashboards -run TestRenderedFromMixin -update)", name, err)
			continue
		}
		var a, b any
		if err := json.Unmarshal(got, &a); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := json.Unmarshal(raw, &b); err != nil {
			t.Fatal(err)
		}
		aj, _ := json.Marshal(a)
		bj, _ := json.Marshal(b)
		if !bytes.Equal(aj, bj) {
			t.Errorf("%s differs from the mixin's rendering: run go test ./dashboards -run TestRenderedFromMixin -update", name)
		}
	}
	sort.Strings(names)
	onDisk, err := fs.Glob(os.DirFS("."), "*.json")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(onDisk, names) {
		t.Errorf("JSON files in dashboards/ = %v, the mixin renders %v", onDisk, names)
	}
	embedded, err := fs.Glob(files, "*.json")
	if err != nil {
		t.Fatal(err)
	}
	if !*update && !slices.Equal(embedded, names) {
		t.Errorf("embedded files = %v, want %v", embedded, names)
	}
}

// With the multi-cluster switch on, every selector filters by the cluster
// variable and every grouping and join keeps the cluster label, so two
// clusters with the same job and instance never merge.
func TestMultiCluster(t *testing.T) {
	const label = "k8s_cluster"
	vm := jsonnet.MakeVM()
	vm.Importer(&jsonnet.FileImporter{JPaths: []string{filepath.Join("..", "mixin")}})
	out, err := vm.EvaluateAnonymousSnippet("multi.jsonnet",
		`((import 'mixin.libsonnet') + { _config+:: { showMultiCluster: true, clusterLabel: '`+label+`' } }).grafanaDashboards`)
	if err != nil {
		t.Fatal(err)
	}
	var boards map[string]*dashboard
	if err := json.Unmarshal([]byte(out), &boards); err != nil {
		t.Fatal(err)
	}
	vars := maps.Clone(testVars)
	vars["cluster"] = "cluster-variable"
	checked := 0
	for name, d := range boards {
		var cluster *variable
		for i, v := range d.Templating.List {
			if v.Name == "cluster" {
				cluster = &d.Templating.List[i]
			}
			if v.Name == "job" && !strings.Contains(v.Query, label+`=~"$cluster"`) {
				t.Errorf("%s: job variable %q does not filter by the cluster", name, v.Query)
			}
		}
		if cluster == nil || !strings.HasSuffix(cluster.Query, ", "+label+")") {
			t.Errorf("%s: cluster variable %+v, want label_values(..., %s)", name, cluster, label)
		}
		for _, p := range d.allPanels() {
			for _, tg := range p.Targets {
				where := fmt.Sprintf("%s panel %q query %s", name, p.Title, tg.RefID)
				expanded, err := expand(tg.Expr, vars)
				if err != nil {
					t.Errorf("%s: %v", where, err)
					continue
				}
				ast, err := parser.NewParser(parser.Options{}).ParseExpr(expanded)
				if err != nil {
					t.Errorf("%s: %v", where, err)
					continue
				}
				checked++
				parser.Inspect(ast, func(n parser.Node, _ []parser.Node) error {
					switch n := n.(type) {
					case *parser.VectorSelector:
						if !slices.ContainsFunc(n.LabelMatchers, func(m *labels.Matcher) bool {
							return m.Name == label && m.Type == labels.MatchRegexp && m.Value == vars["cluster"]
						}) {
							t.Errorf("%s: %s is not filtered by the cluster variable", where, n)
						}
					case *parser.AggregateExpr:
						if len(n.Grouping) > 0 && !n.Without && !slices.Contains(n.Grouping, label) {
							t.Errorf("%s: %s by %v drops the cluster label", where, n.Op, n.Grouping)
						}
					case *parser.BinaryExpr:
						if vm := n.VectorMatching; vm != nil && vm.On && len(vm.MatchingLabels) > 0 && !slices.Contains(vm.MatchingLabels, label) {
							t.Errorf("%s: on %v drops the cluster label", where, vm.MatchingLabels)
						}
					}
					return nil
				})
			}
		}
	}
	if checked == 0 {
		t.Fatal("no queries checked")
	}
}
