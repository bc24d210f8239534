package deploy

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

var registerPlugins sync.Once

// sdkErr undoes a quirk of the SDK's generated decoders: they return their
// error list as an error even when it is empty (a non-nil interface holding
// a nil cog.BuildErrors).
func sdkErr(err error) error {
	var be cog.BuildErrors
	if errors.As(err, &be) && len(be) == 0 {
		return nil
	}
	return err
}

// checkDashboard decodes a dashboard strictly into the Grafana foundation
// SDK's types: unknown fields, wrong types and missing required fields are
// errors, panel options and field config are checked against the panel
// plugin's own types, and queries against the Prometheus data source's.
// It returns the number of panels (rows included) it checked.
//
// The SDK's dashboard decoder drops every panel from its result (the quirk
// sdkErr undoes, inside the SDK), leaves fieldConfig loose, and accepts a
// panel or query type it does not know without checking it; so each panel
// is decoded and checked here on its own too.
func checkDashboard(raw []byte) (int, error) {
	registerPlugins.Do(plugins.RegisterDefaultPlugins)
	var errs []error
	var d dashboard.Dashboard
	if err := sdkErr(d.UnmarshalJSONStrict(raw)); err != nil {
		errs = append(errs, err)
	}
	if err := sdkErr(d.Validate()); err != nil {
		errs = append(errs, fmt.Errorf("validate: %w", err))
	}
	var doc struct {
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return 0, err
	}
	n := 0
	var checkPanel func(where string, rp json.RawMessage)
	checkPanel = func(where string, rp json.RawMessage) {
		n++
		var head struct {
			Type        string            `json:"type"`
			Title       string            `json:"title"`
			FieldConfig json.RawMessage   `json:"fieldConfig"`
			Panels      []json.RawMessage `json:"panels"`
		}
		if err := json.Unmarshal(rp, &head); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
			return
		}
		where = fmt.Sprintf("%s (%s %q)", where, head.Type, head.Title)
		if head.Type == "row" {
			var row dashboard.RowPanel
			if err := sdkErr(row.UnmarshalJSONStrict(rp)); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", where, err))
			}
			for i, inner := range head.Panels {
				checkPanel(fmt.Sprintf("%s.panels[%d]", where, i), inner)
			}
			return
		}
		var p dashboard.Panel
		if err := sdkErr(p.UnmarshalJSONStrict(rp)); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
			return
		}
		if err := sdkErr(p.Validate()); err != nil {
			errs = append(errs, fmt.Errorf("%s: validate: %w", where, err))
		}
		if _, ok := cog.ConfigForPanelcfgVariant(p.Type); !ok {
			errs = append(errs, fmt.Errorf("%s: type %q is not a panel Grafana's schema defines", where, p.Type))
		}
		for i, q := range p.Targets {
			if _, ok := q.(variants.UnknownDataquery); ok {
				errs = append(errs, fmt.Errorf("%s: target %d has no data source type, so it cannot be checked", where, i))
			}
		}
		if head.FieldConfig != nil {
			var src dashboard.FieldConfigSource
			if err := sdkErr(src.UnmarshalJSONStrict(head.FieldConfig)); err != nil {
				errs = append(errs, fmt.Errorf("%s: fieldConfig: %w", where, err))
			}
		}
	}
	for i, rp := range doc.Panels {
		checkPanel(fmt.Sprintf("panels[%d]", i), rp)
	}
	return n, errors.Join(errs...)
}

// TestDashboardsMatchGrafanaSchema decodes every dashboards/*.json into the
// dashboard types of github.com/grafana/grafana-foundation-sdk/go.
func TestDashboardsMatchGrafanaSchema(t *testing.T) {
	for _, f := range repoFiles(t, "dashboards/*.json") {
		t.Run(filepath.Base(f), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			n, err := checkDashboard(raw)
			if err != nil {
				t.Fatalf("%s does not match Grafana's dashboard schema:\n%v", f, err)
			}
			if n == 0 {
				t.Fatalf("%s: no panel checked", f)
			}
			t.Logf("%s: %d panels and rows checked", filepath.Base(f), n)
		})
	}
}

// TestDashboardSchemaCheckFails proves the check above can fail: a field or
// type Grafana does not define, at each level, is reported.
func TestDashboardSchemaCheckFails(t *testing.T) {
	raw, err := os.ReadFile(repoFiles(t, "dashboards/*.json")[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := checkDashboard(raw); err != nil {
		t.Fatalf("the unmodified dashboard must pass first: %v", err)
	}
	firstPanel := func(d map[string]any) map[string]any {
		for _, p := range d["panels"].([]any) {
			if pm := p.(map[string]any); pm["type"] != "row" {
				return pm
			}
		}
		t.Fatal("no panel")
		return nil
	}
	for name, mutate := range map[string]func(d map[string]any){
		"unknown top-level field": func(d map[string]any) { d["refreshInterval"] = "5s" },
		"wrong type":              func(d map[string]any) { d["editable"] = "yes" },
		"unknown panel field":     func(d map[string]any) { firstPanel(d)["span"] = 4 },
		"unknown panel option":    func(d map[string]any) { firstPanel(d)["options"].(map[string]any)["colour"] = "red" },
		"unknown query field": func(d map[string]any) {
			firstPanel(d)["targets"].([]any)[0].(map[string]any)["expression"] = "up"
		},
		"unknown field config default": func(d map[string]any) {
			firstPanel(d)["fieldConfig"].(map[string]any)["defaults"].(map[string]any)["colour"] = "red"
		},
		"unknown panel type": func(d map[string]any) { firstPanel(d)["type"] = "graph-old" },
		"query without data source type": func(d map[string]any) {
			p := firstPanel(d)
			delete(p, "datasource")
			delete(p["targets"].([]any)[0].(map[string]any), "datasource")
		},
	} {
		var d map[string]any
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatal(err)
		}
		mutate(d)
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := checkDashboard(b); err != nil {
			t.Logf("%s: %.200v", name, err)
		} else {
			t.Errorf("%s: accepted", name)
		}
	}
}
