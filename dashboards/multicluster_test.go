package dashboards

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/authbroker/authbroker_exporter/mixin"
)

// With the multi-cluster switch on, every selector filters by the cluster
// variable and every grouping and join keeps the cluster label, so two
// clusters with the same job and instance never merge.
func TestMultiCluster(t *testing.T) {
	const label = "k8s_cluster"
	out, err := mixin.Render("../mixin", `{ _config+:: { showMultiCluster: true, clusterLabel: '`+label+`' } }`)
	if err != nil {
		t.Fatal(err)
	}
	boards := map[string]*dashboard{}
	for name, raw := range out.Dashboards {
		var d dashboard
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		boards[name] = &d
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
