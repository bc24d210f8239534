package mixin

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
)

// outputGlobs are where rendered files go: a file there that a render does
// not produce is stale (a dashboard that was removed or renamed).
var outputGlobs = []string{
	"alerts/authbroker-*.yml",
	DashboardsDir + "/*.json",
	ChartFilesDir + "/alerts/*",
	ChartFilesDir + "/" + DashboardsDir + "/*",
}

// Stale returns, sorted, the paths under root that differ from files: a
// file missing or with other content, a file in an output directory that
// files does not hold, and a symlink where a rendered file or directory
// belongs.
func Stale(root string, files map[string][]byte) ([]string, error) {
	var out []string
	for _, dir := range []string{path.Join(ChartFilesDir, "alerts"), path.Join(ChartFilesDir, DashboardsDir)} {
		fi, err := os.Lstat(filepath.Join(root, filepath.FromSlash(dir)))
		if err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			out = append(out, dir)
		}
	}
	if len(out) > 0 {
		// Whatever the links point at is not the chart's.
		for p := range files {
			out = append(out, p)
		}
		sort.Strings(out)
		return out, nil
	}
	for p, want := range files {
		full := filepath.Join(root, filepath.FromSlash(p))
		fi, err := os.Lstat(full)
		if errors.Is(err, fs.ErrNotExist) {
			out = append(out, p)
			continue
		}
		if err != nil {
			return nil, err
		}
		if !fi.Mode().IsRegular() {
			out = append(out, p)
			continue
		}
		got, err := os.ReadFile(full)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(got, want) {
			out = append(out, p)
		}
	}
	for _, g := range outputGlobs {
		matches, err := filepath.Glob(filepath.Join(root, filepath.FromSlash(g)))
		if err != nil {
			return nil, err
		}
		for _, m := range matches {
			rel, err := filepath.Rel(root, m)
			if err != nil {
				return nil, err
			}
			if _, ok := files[filepath.ToSlash(rel)]; !ok {
				out = append(out, filepath.ToSlash(rel))
			}
		}
	}
	sort.Strings(out)
	return out, nil
}
