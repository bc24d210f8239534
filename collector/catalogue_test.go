package collector

import (
	"flag"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

var updateREADME = flag.Bool("update-readme", false, "rewrite README's metric table from the catalogue")

const (
	tableStart = "<!-- metric table: generated from collector/metrics.go by `go test ./collector -run TestREADMEMetricTable -update-readme` -->"
	tableEnd   = "<!-- end of the generated metric table -->"
)

// readmeTable renders the catalogue as README's metric table.
func readmeTable() string {
	var b strings.Builder
	b.WriteString(tableStart + "\n\n| metric | type | labels | help |\n|---|---|---|---|\n")
	for _, m := range Catalogue() {
		labels := "–"
		if len(m.Labels) > 0 {
			labels = "`" + strings.Join(m.Labels, "`, `") + "`"
		}
		b.WriteString("| `" + m.Name + "` | " + m.Type + " | " + labels + " | " + strings.ReplaceAll(m.Help, "|", `\|`) + " |\n")
	}
	b.WriteString("\n" + tableEnd)
	return b.String()
}

// TestREADMEMetricTable: README's metric table is the catalogue, row for
// row; -update-readme rewrites it.
func TestREADMEMetricTable(t *testing.T) {
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)
	i, j := strings.Index(readme, tableStart), strings.Index(readme, tableEnd)
	if i < 0 || j < i {
		t.Fatal("README has no generated metric table (its start and end markers)")
	}
	want := readmeTable()
	got := readme[i : j+len(tableEnd)]
	if got == want {
		return
	}
	if *updateREADME {
		if err := os.WriteFile("../README.md", []byte(readme[:i]+want+readme[j+len(tableEnd):]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("README's metric table differs from collector/metrics.go; run go test ./collector -run TestREADMEMetricTable -update-readme\n--- README\n%s\n--- catalogue\n%s", got, want)
}

// TestDescribeIsCatalogue: the collectors describe exactly the catalogue's
// families, each once.
func TestDescribeIsCatalogue(t *testing.T) {
	cs := New(Options{Source: &benchSource{}, Broker: benchBroker{}, Usage: true})
	ch := make(chan *prometheus.Desc, 100)
	for _, c := range cs.All() {
		c.Describe(ch)
	}
	close(ch)
	var described []string
	for d := range ch {
		described = append(described, d.String())
	}
	var want []string
	for _, f := range catalogue {
		want = append(want, f.desc.String())
	}
	slices.Sort(described)
	slices.Sort(want)
	if !slices.Equal(described, want) {
		t.Fatalf("Describe:\n%s\ncatalogue:\n%s", strings.Join(described, "\n"), strings.Join(want, "\n"))
	}
}
