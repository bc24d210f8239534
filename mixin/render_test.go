package mixin

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestCheckedInFilesAreRendered: alerts/, dashboards/ and the chart's
// files/ hold exactly what a fresh render of the default configuration
// writes (`make generate`), and nothing else.
func TestCheckedInFilesAreRendered(t *testing.T) {
	out, err := Render(".", "")
	if err != nil {
		t.Fatal(err)
	}
	stale, err := Stale("..", out.Files())
	if err != nil {
		t.Fatal(err)
	}
	if len(stale) > 0 {
		t.Errorf("differ from a fresh render of mixin/; run make generate: %v", stale)
	}
	if len(out.Dashboards) < 4 {
		t.Errorf("%d dashboards rendered", len(out.Dashboards))
	}
}

// TestStale reports a changed file, a missing one, an extra dashboard and
// a symlinked chart directory.
func TestStale(t *testing.T) {
	files := map[string][]byte{
		AlertsFile:                      []byte("groups: []\n"),
		RulesFile:                       []byte("groups: []\n"),
		"dashboards/a.json":             []byte("{}\n"),
		ChartFilesDir + "/" + RulesFile: []byte("groups: []\n"),
	}
	root := t.TempDir()
	write := func(p, s string) {
		t.Helper()
		full := filepath.Join(root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for p, b := range files {
		write(p, string(b))
	}
	if stale, err := Stale(root, files); err != nil || len(stale) > 0 {
		t.Fatalf("fresh copy: stale %v, %v", stale, err)
	}
	write(AlertsFile, "groups: [x]\n")
	write("dashboards/old.json", "{}\n")
	if err := os.Remove(filepath.Join(root, RulesFile)); err != nil {
		t.Fatal(err)
	}
	stale, err := Stale(root, files)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{AlertsFile, RulesFile, "dashboards/old.json"}; !slices.Equal(stale, want) {
		t.Errorf("stale %v, want %v", stale, want)
	}

	link := filepath.Join(root, filepath.FromSlash(ChartFilesDir), "dashboards")
	if err := os.Symlink("../../../../dashboards", link); err != nil {
		t.Fatal(err)
	}
	stale, err = Stale(root, files)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(stale, ChartFilesDir+"/dashboards") {
		t.Errorf("a symlinked chart directory is not reported: %v", stale)
	}
}

// TestVersion: the default runbook links point at this version's runbook.
func TestVersion(t *testing.T) {
	v, err := os.ReadFile("../VERSION")
	if err != nil {
		t.Fatal(err)
	}
	var got string
	if err := Evaluate([]string{"."}, "version.jsonnet", "(import 'config.libsonnet')._config.runbookURLPattern", &got); err != nil {
		t.Fatal(err)
	}
	want := "https://github.com/authbroker/authbroker_exporter/blob/v" + strings.TrimSpace(string(v)) + "/docs/runbook.md#%s"
	if got != want {
		t.Errorf("runbookURLPattern %q, want %q (VERSION)", got, want)
	}
}
