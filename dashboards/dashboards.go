// Package dashboards ships the exporter's Grafana dashboards. The JSON files
// beside this file are rendered from the monitoring mixin (mixin/, `make
// generate`) and committed so they can be imported or provisioned as-is;
// tests keep them equal to a fresh render.
package dashboards

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
)

//go:embed *.json
var files embed.FS

// Query is one panel query of a shipped dashboard.
type Query struct {
	Dashboard string // dashboard title
	UID       string // dashboard uid
	Panel     string // panel title
	PanelType string // stat, timeseries, table, ...
	RefID     string
	Instant   bool   // an instant query; else a range query over the dashboard's time range
	MinStep   string // the panel's minimum step (Grafana's "Min interval"), if it sets one
	Template  string // PromQL as stored, with Grafana variables
	// Expr is Template with the variables Grafana would fill in replaced by
	// values that select everything: $job, $instance and $provider by ".+",
	// $__rate_interval by 5m, $__interval by 1m, $__range by 1h. It is
	// ready for Prometheus' /api/v1/query.
	Expr string
}

// liveVars stand in for what Grafana substitutes, for running queries
// against a real Prometheus.
func liveVars() map[string]string {
	return map[string]string{
		"job":             ".+",
		"instance":        ".+",
		"__rate_interval": "5m",
		"__interval":      "1m",
		"__range":         "1h",
		"provider":        ".+",
	}
}

// Queries returns every panel query of every shipped dashboard, in file and
// panel order.
func Queries() ([]Query, error) { return QueriesWith(liveVars()) }

// QueriesWith is Queries with Expr made from the given variable values
// (names without the $).
func QueriesWith(vars map[string]string) ([]Query, error) {
	boards, err := load()
	if err != nil {
		return nil, err
	}
	var out []Query
	for _, b := range boards {
		for _, p := range b.Dashboard.allPanels() {
			for _, t := range p.Targets {
				expr, err := expand(t.Expr, vars)
				if err != nil {
					return nil, fmt.Errorf("%s: panel %q query %s: %w", b.Name, p.Title, t.RefID, err)
				}
				out = append(out, Query{
					Dashboard: b.Dashboard.Title, UID: b.Dashboard.UID, Panel: p.Title, PanelType: p.Type,
					RefID: t.RefID, Instant: t.Instant, MinStep: p.Interval, Template: t.Expr, Expr: expr,
				})
			}
		}
	}
	return out, nil
}

// The subset of Grafana's dashboard JSON that Queries and the tests read.
type dashboard struct {
	UID           string   `json:"uid"`
	Title         string   `json:"title"`
	SchemaVersion int      `json:"schemaVersion"`
	Panels        []*panel `json:"panels"`
	Templating    struct {
		List []variable `json:"list"`
	} `json:"templating"`
}

type variable struct {
	Name       string `json:"name"`
	Type       string `json:"type"`
	Query      string `json:"query"`
	Datasource *dsRef `json:"datasource"`
}

type dsRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID              *int     `json:"id"`
	Type            string   `json:"type"`
	Title           string   `json:"title"`
	GridPos         *gridPos `json:"gridPos"`
	Datasource      *dsRef   `json:"datasource"`
	Panels          []*panel `json:"panels"`
	Interval        string   `json:"interval"`
	Targets         []target `json:"targets"`
	Transformations []struct {
		ID      string         `json:"id"`
		Options map[string]any `json:"options"`
	} `json:"transformations"`
}

type gridPos struct {
	H int `json:"h"`
	W int `json:"w"`
	X int `json:"x"`
	Y int `json:"y"`
}

type target struct {
	Datasource   *dsRef `json:"datasource"`
	Expr         string `json:"expr"`
	Format       string `json:"format"`
	Instant      bool   `json:"instant"`
	LegendFormat string `json:"legendFormat"`
	RefID        string `json:"refId"`
}

// allPanels flattens collapsed rows, whose panels nest inside the row.
func (d *dashboard) allPanels() []*panel {
	var out []*panel
	var walk func([]*panel)
	walk = func(ps []*panel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

type namedBoard struct {
	Name      string
	Dashboard *dashboard
}

func load() ([]namedBoard, error) {
	names, err := fs.Glob(files, "*.json")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var out []namedBoard
	for _, n := range names {
		b, err := files.ReadFile(n)
		if err != nil {
			return nil, err
		}
		var d dashboard
		if err := json.Unmarshal(b, &d); err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		out = append(out, namedBoard{Name: n, Dashboard: &d})
	}
	return out, nil
}

// Grafana's variable syntaxes: $name, ${name}, ${name:format}, [[name]].
var varRef = regexp.MustCompile(`\$([A-Za-z_]\w*)|\$\{([A-Za-z_]\w*)(:[^}]*)?\}|\[\[([A-Za-z_]\w*)\]\]`)

// expand replaces Grafana variables in a query. A variable not in vars, or
// one with a format suffix, is an error rather than left in place: an
// unexpanded "$x" would otherwise surface as a confusing PromQL parse error.
func expand(expr string, vars map[string]string) (string, error) {
	var bad error
	out := varRef.ReplaceAllStringFunc(expr, func(ref string) string {
		sm := varRef.FindStringSubmatch(ref)
		name := sm[1] + sm[2] + sm[4]
		if sm[3] != "" {
			bad = fmt.Errorf("variable format %q not supported", ref)
			return ref
		}
		v, ok := vars[name]
		if !ok {
			bad = fmt.Errorf("unknown variable %q", ref)
			return ref
		}
		return v
	})
	return out, bad
}
