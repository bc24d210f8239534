package board

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// Tag groups the dashboards: the "dashboards" link on each one lists every
// dashboard carrying it, so the four link to one another with no uid wiring.
const Tag = "authbroker"

const docsURL = "https://github.com/authbroker/authbroker_exporter/tree/HEAD/dashboards#readme"

// File is one dashboard file as committed in dashboards/.
type File struct {
	Name string
	JSON []byte
}

// Files renders every dashboard, in a stable order.
func Files() ([]File, error) {
	var out []File
	for _, d := range []*Dashboard{overview(), credentials(), usage(), errorsBoard()} {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		// PromQL is full of < > &; escaped it would be unreadable in review.
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		if err := enc.Encode(d); err != nil {
			return nil, fmt.Errorf("dashboard %s: %w", d.UID, err)
		}
		out = append(out, File{Name: d.UID + ".json", JSON: buf.Bytes()})
	}
	return out, nil
}

// Matchers every exporter query carries. Recording rules aggregate instance
// away, so their selectors carry only the job matcher (see rule()).
const scope = `job=~"$job", instance=~"$instance"`

// m returns a selector for an exporter metric, scoped to the dashboard's
// variables, with optional extra matchers.
func m(name string, extra ...string) string {
	return name + "{" + strings.Join(append([]string{scope}, extra...), ", ") + "}"
}

// rule returns a selector for a recording rule (labels job, provider, limit).
func rule(name string) string {
	return name + `{job=~"$job"}`
}

func newDashboard(uid, title, description string) *dashboardBuilder {
	d := &Dashboard{
		Annotations: Annotations{List: []Annotation{{
			BuiltIn:    1,
			Datasource: DSRef{Type: "grafana", UID: "-- Grafana --"},
			Enable:     true,
			Hide:       true,
			IconColor:  "rgba(0, 211, 255, 1)",
			Name:       "Annotations & Alerts",
			Type:       "dashboard",
		}}},
		Description:  description,
		Editable:     true,
		GraphTooltip: 1,
		Links: []Link{
			{
				AsDropdown: false, Icon: "external link", IncludeVars: true, KeepTime: true,
				Tags: []string{Tag}, Title: "Auth broker", Type: "dashboards",
			},
			{
				Icon: "doc", Tags: []string{}, TargetBlank: true, Title: "Dashboards README",
				Tooltip: "What each panel shows", Type: "link", URL: docsURL,
			},
		},
		Refresh:       "30s",
		SchemaVersion: schemaVersion,
		Tags:          []string{Tag},
		Templating: Templating{List: []Variable{
			{
				// "default" selects Grafana's default data source.
				Current: map[string]any{"selected": false, "text": "default", "value": "default"}, Label: "Data source", Name: "datasource",
				Options: []any{}, Query: "prometheus", Refresh: 1, Type: "datasource",
			},
			queryVariable("job", "Job", "label_values(authbroker_up, job)"),
			queryVariable("instance", "Instance", `label_values(authbroker_up{job=~"$job"}, instance)`),
		}},
		Time:    TimeRange{From: "now-6h", To: "now"},
		Title:   title,
		UID:     uid,
		Version: 1,
	}
	return &dashboardBuilder{d: d}
}

func queryVariable(name, label, query string) Variable {
	return Variable{
		AllValue:   ".+",
		Current:    map[string]any{"selected": true, "text": []string{"All"}, "value": []string{"$__all"}},
		Datasource: dsRef,
		Definition: query,
		IncludeAll: true,
		Label:      label,
		Multi:      true,
		Name:       name,
		Options:    []any{},
		Query:      query,
		Refresh:    2, // on time range change: instances come and go
		Sort:       1,
		Type:       "query",
	}
}

// dashboardBuilder lays panels out left to right in 24 grid columns,
// wrapping to a new line when a panel does not fit, and numbers them.
type dashboardBuilder struct {
	d          *Dashboard
	x, y, rowH int
}

func (b *dashboardBuilder) newline() {
	if b.x > 0 {
		b.y += b.rowH
	}
	b.x, b.rowH = 0, 0
}

func (b *dashboardBuilder) row(title string) {
	b.newline()
	b.place(&Panel{Collapsed: new(false), Type: "row", Title: title, Datasource: dsRef, Panels: []*Panel{}}, 24, 1)
	b.newline()
}

func (b *dashboardBuilder) add(w, h int, panels ...*Panel) {
	for _, p := range panels {
		b.place(p, w, h)
	}
}

func (b *dashboardBuilder) place(p *Panel, w, h int) {
	if b.x+w > 24 {
		b.newline()
	}
	p.ID = len(b.d.Panels) + 1
	p.GridPos = GridPos{H: h, W: w, X: b.x, Y: b.y}
	b.d.Panels = append(b.d.Panels, p)
	b.x += w
	b.rowH = max(b.rowH, h)
}

// q is a query: an expression and its legend.
type q struct{ expr, legend string }

func targets(format string, instant bool, qs []q) []Target {
	out := make([]Target, len(qs))
	for i, x := range qs {
		out[i] = Target{
			Datasource: dsRef, EditorMode: "code", Expr: x.expr, Format: format,
			Instant: instant, Range: !instant, LegendFormat: x.legend, RefID: refID(i),
		}
	}
	return out
}

func refID(i int) string { return string(rune('A' + i)) }

// Table columns from instant table queries are named "Value #<refId>".
func valueCol(i int) string { return "Value #" + refID(i) }

func basePanel(typ, title, desc, unit string) *Panel {
	return &Panel{
		Datasource:  dsRef,
		Description: desc,
		FieldConfig: &FieldConfig{Defaults: FieldDefaults{
			Color:      &Color{Mode: "thresholds"},
			Mappings:   []Mapping{},
			Thresholds: steps("green"),
			Unit:       unit,
		}, Overrides: []Override{}},
		Title: title,
		Type:  typ,
	}
}

// stat is a single-value panel evaluated instantly.
func stat(title, desc, unit string, qs ...q) *Panel {
	p := basePanel("stat", title, desc, unit)
	p.Options = map[string]any{
		"colorMode":              "value",
		"graphMode":              "none",
		"justifyMode":            "auto",
		"orientation":            "auto",
		"reduceOptions":          map[string]any{"calcs": []string{"lastNotNull"}, "fields": "", "values": false},
		"showPercentChange":      false,
		"percentChangeColorMode": "standard",
		"textMode":               "auto",
		"wideLayout":             true,
	}
	p.Targets = targets("time_series", true, qs)
	return p
}

// nameStat shows the series' legend (a label such as the version) instead of
// its value.
func nameStat(title, desc string, qs ...q) *Panel {
	p := stat(title, desc, "", qs...)
	p.Options["textMode"] = "name"
	p.Options["colorMode"] = "none"
	return p
}

func timeseries(title, desc, unit string, qs ...q) *Panel {
	p := basePanel("timeseries", title, desc, unit)
	p.FieldConfig.Defaults.Color = &Color{Mode: "palette-classic"}
	p.FieldConfig.Defaults.Custom = map[string]any{
		"drawStyle":   "line",
		"fillOpacity": 10,
		"lineWidth":   1,
		"showPoints":  "never",
		"spanNulls":   false,
		"stacking":    map[string]any{"group": "A", "mode": "none"},
	}
	p.Options = map[string]any{
		"legend":  map[string]any{"calcs": []string{}, "displayMode": "list", "placement": "bottom", "showLegend": true},
		"tooltip": map[string]any{"mode": "multi", "sort": "desc"},
	}
	p.Targets = targets("time_series", false, qs)
	return p
}

func stacked(p *Panel) *Panel {
	p.FieldConfig.Defaults.Custom["stacking"] = map[string]any{"group": "A", "mode": "normal"}
	p.FieldConfig.Defaults.Custom["fillOpacity"] = 30
	return p
}

func bargauge(title, desc, unit string, qs ...q) *Panel {
	p := basePanel("bargauge", title, desc, unit)
	p.Options = map[string]any{
		"displayMode":   "gradient",
		"legend":        map[string]any{"calcs": []string{}, "displayMode": "list", "placement": "bottom", "showLegend": false},
		"maxVizHeight":  300,
		"minVizHeight":  16,
		"minVizWidth":   8,
		"namePlacement": "auto",
		"orientation":   "horizontal",
		"reduceOptions": map[string]any{"calcs": []string{"lastNotNull"}, "fields": "", "values": false},
		"showUnfilled":  true,
		"sizing":        "auto",
		"valueMode":     "color",
	}
	p.Targets = targets("time_series", true, qs)
	return p
}

// column is one table column: a query whose value becomes the column.
type column struct {
	name, expr string
	props      []Property
}

// table joins instant table queries into one row per shared label set
// (Grafana's merge), keeps and orders the given label columns, renames the
// value columns and sorts by sortCol. Every column query must drop the metric
// name (aggregate or compute), or __name__ differs between frames and merge
// cannot join the rows.
func table(title, desc string, labelCols []string, cols []column, sortCol string, desc2 bool) *Panel {
	p := basePanel("table", title, desc, "")
	p.FieldConfig.Defaults.Custom = map[string]any{
		"align":       "auto",
		"cellOptions": map[string]any{"type": "auto"},
		"filterable":  true,
		"inspect":     false,
	}
	p.Options = map[string]any{
		"cellHeight": "sm",
		"frameIndex": 0,
		"footer":     map[string]any{"countRows": false, "fields": "", "reducer": []string{"sum"}, "show": false},
		"showHeader": true,
	}
	qs := make([]q, len(cols))
	rename := map[string]any{}
	index := map[string]any{}
	keep := map[string]bool{}
	for i, l := range labelCols {
		index[l] = i
		keep[l] = true
	}
	for i, c := range cols {
		qs[i] = q{expr: c.expr}
		if c.name == "" {
			continue // a query that only contributes label columns
		}
		rename[valueCol(i)] = c.name
		index[valueCol(i)] = len(labelCols) + i
		keep[valueCol(i)] = true
		if len(c.props) > 0 {
			p.FieldConfig.Overrides = append(p.FieldConfig.Overrides, Override{
				Matcher: Matcher{ID: "byName", Options: c.name}, Properties: c.props,
			})
		}
	}
	p.Targets = targets("table", true, qs)
	// Everything the queries return that is not asked for is hidden: Time,
	// job/instance when not listed, and label-only queries' values.
	exclude := map[string]any{"Time": true, "__name__": true}
	for _, l := range []string{"job", "instance", "id", "provider", "type", "identity", "email", "account", "org", "limit", "window", "scope", "unit"} {
		if !keep[l] {
			exclude[l] = true
		}
	}
	for i, c := range cols {
		if c.name == "" {
			exclude[valueCol(i)] = true
		}
	}
	p.Transformations = []Transformation{
		{ID: "merge", Options: map[string]any{}},
		{ID: "organize", Options: map[string]any{
			"excludeByName": exclude, "includeByName": map[string]any{},
			"indexByName": index, "renameByName": rename,
		}},
		{ID: "sortBy", Options: map[string]any{
			"fields": map[string]any{}, "sort": []map[string]any{{"desc": desc2, "field": sortCol}},
		}},
	}
	return p
}

// Field-config helpers.

func (p *Panel) withMappings(ms ...Mapping) *Panel {
	p.FieldConfig.Defaults.Mappings = append(p.FieldConfig.Defaults.Mappings, ms...)
	return p
}

func (p *Panel) withThresholds(t *Thresholds) *Panel {
	p.FieldConfig.Defaults.Thresholds = t
	return p
}

func (p *Panel) withMinMax(min, max *float64) *Panel {
	p.FieldConfig.Defaults.Min, p.FieldConfig.Defaults.Max = min, max
	return p
}

func (p *Panel) withNoValue(s string) *Panel {
	p.FieldConfig.Defaults.NoValue = s
	return p
}

func (p *Panel) withColorMode(mode string) *Panel {
	p.Options["colorMode"] = mode
	return p
}

// steps builds absolute thresholds: a base colour, then value/colour pairs.
func steps(base string, pairs ...any) *Thresholds {
	t := &Thresholds{Mode: "absolute", Steps: []Step{{Color: base}}}
	for i := 0; i+1 < len(pairs); i += 2 {
		v := toFloat(pairs[i])
		t.Steps = append(t.Steps, Step{Value: &v, Color: pairs[i+1].(string)})
	}
	return t
}

func toFloat(v any) float64 {
	switch x := v.(type) {
	case int:
		return float64(x)
	case float64:
		return x
	}
	panic(fmt.Sprintf("threshold value %v is not a number", v))
}

// valueMap maps exact values to text and colour: value, text, colour, ...
func valueMap(triples ...any) Mapping {
	opts := map[string]MappingResult{}
	for i := 0; i+2 < len(triples); i += 3 {
		opts[fmt.Sprint(triples[i])] = MappingResult{Text: triples[i+1].(string), Color: triples[i+2].(string), Index: i / 3}
	}
	return Mapping{Type: "value", Options: opts}
}

func f64(v float64) *float64 { return &v }

func prop(id string, v any) Property { return Property{ID: id, Value: v} }

func cellColor(mode string) Property {
	return prop("custom.cellOptions", map[string]any{"type": mode})
}
