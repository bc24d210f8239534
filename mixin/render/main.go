// Command render writes the files rendered from the monitoring mixin
// (mixin/) into the repository: alerts/authbroker-*.yml, dashboards/*.json
// and the Helm chart's copies of both. Run it from the repository root
// (`make generate`); -check only reports files that differ.
//
// With -out, it renders the mixin with -override merged in (jsonnet, e.g.
// '{ _config+:: { authbrokerSelector: "job=\"llm-auth\"" } }') into that
// directory instead: authbroker-alerts.yml, authbroker-rules.yml and the
// dashboards.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/authbroker/authbroker_exporter/mixin"
)

func main() {
	root := flag.String("root", ".", "repository root")
	check := flag.Bool("check", false, "report files that differ from a fresh render instead of writing them")
	out := flag.String("out", "", "render into this directory instead of the repository")
	override := flag.String("override", "", "jsonnet merged into the mixin (with -out)")
	flag.Parse()
	var err error
	if *out != "" {
		err = renderTo(*root, *out, *override)
	} else {
		err = run(*root, *check)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "render:", err)
		os.Exit(1)
	}
}

func run(root string, check bool) error {
	out, err := mixin.Render(filepath.Join(root, "mixin"), "")
	if err != nil {
		return err
	}
	files := out.Files()
	stale, err := mixin.Stale(root, files)
	if err != nil {
		return err
	}
	if check {
		if len(stale) > 0 {
			return fmt.Errorf("differ from a fresh render of mixin/ (run make generate): %v", stale)
		}
		return nil
	}
	// Removals first: a symlinked directory goes before files are written
	// where it was.
	for _, p := range stale {
		if _, ok := files[p]; !ok {
			if err := os.Remove(filepath.Join(root, filepath.FromSlash(p))); err != nil {
				return err
			}
			fmt.Println("removed", p)
		}
	}
	for _, p := range stale {
		b, ok := files[p]
		full := filepath.Join(root, filepath.FromSlash(p))
		if !ok {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		// A symlink left from before is replaced by a real file.
		if fi, err := os.Lstat(full); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			if err := os.Remove(full); err != nil {
				return err
			}
		}
		if err := os.WriteFile(full, b, 0o644); err != nil {
			return err
		}
		fmt.Println("wrote", p)
	}
	return nil
}

func renderTo(root, dir, override string) error {
	out, err := mixin.Render(filepath.Join(root, "mixin"), override)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	files := map[string][]byte{
		filepath.Base(mixin.AlertsFile): out.Alerts,
		filepath.Base(mixin.RulesFile):  out.Rules,
	}
	for name, b := range out.Dashboards {
		files[name] = b
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
