package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMirrorAndClientKnowNoPrometheus: the broker client and the mirror
// hand observers plain Go values; neither may depend on a Prometheus
// package, directly or through another package (docs/design.md).
func TestMirrorAndClientKnowNoPrometheus(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", "./store", "./store/broker").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 20 {
		t.Fatalf("go list gave only %d packages: %q", len(deps), deps)
	}
	for _, d := range deps {
		if strings.HasPrefix(d, "github.com/prometheus/") {
			t.Errorf("store or store/broker depends on %s", d)
		}
	}
}

// connectors are the ways Go code reaches out over the network.
var connectors = map[string]map[string]bool{
	"http":   {"Get": true, "Head": true, "Post": true, "PostForm": true, "NewRequest": true, "NewRequestWithContext": true, "Client": true, "DefaultClient": true, "Transport": true, "DefaultTransport": true},
	"net":    {"Dial": true, "DialTimeout": true, "Dialer": true, "DialTCP": true, "DialUDP": true, "DialUnix": true, "DialIP": true},
	"broker": {"Client": true, "NewClient": true},
}

// TestCollectorsOpenNoConnection: collectors read the store and the
// monitor at scrape time; a scrape never makes a request of its own.
func TestCollectorsOpenNoConnection(t *testing.T) {
	files, err := filepath.Glob("collector/*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("no collector sources: %v", err)
	}
	fset := token.NewFileSet()
	checked := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		ast.Inspect(file, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if pkg, ok := sel.X.(*ast.Ident); ok && connectors[pkg.Name][sel.Sel.Name] {
				t.Errorf("%s: %s.%s: a collector must not open connections", fset.Position(sel.Pos()), pkg.Name, sel.Sel.Name)
			}
			return true
		})
	}
	if checked < 5 {
		t.Fatalf("checked only %d collector files", checked)
	}
}
