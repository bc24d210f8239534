package dashboards

import (
	"bytes"
	"encoding/json"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"

	"github.com/google/go-jsonnet"
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
