package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// benchRun is one `go test -bench` invocation.
type benchRun struct {
	pkg       string
	pattern   string
	benchtime string
}

// results holds every sample of every benchmark, by name (without the
// -GOMAXPROCS suffix) and unit.
type results map[string]map[string][]float64

// median of a benchmark's unit; ok is false when it never ran.
func (r results) median(name, unit string) (float64, bool) {
	vs := r[name][unit]
	if len(vs) == 0 {
		return 0, false
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2], true
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2, true
}

var procsSuffix = regexp.MustCompile(`-\d+$`)

// parseBench reads `go test -bench` output lines into r.
func parseBench(out []byte, r results) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := procsSuffix.ReplaceAllString(strings.TrimPrefix(f[0], "Benchmark"), "")
		if r[name] == nil {
			r[name] = map[string][]float64{}
		}
		// f[1] is the iteration count; then value/unit pairs.
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			r[name][f[i+1]] = append(r[name][f[i+1]], v)
		}
	}
}

// runBenchmarks runs the Go benchmarks count times each and keeps the raw
// output in outDir (benchstat reads it as is).
func runBenchmarks(root, outDir string, count int, runs []benchRun, logf func(string, ...any)) (results, error) {
	r := results{}
	for _, b := range runs {
		args := []string{"test", "-run", "^$", "-bench", b.pattern, "-benchmem", "-count", strconv.Itoa(count)}
		if b.benchtime != "" {
			args = append(args, "-benchtime", b.benchtime)
		}
		args = append(args, b.pkg)
		logf("go %s", strings.Join(args, " "))
		cmd := exec.Command("go", args...)
		cmd.Dir = root
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("go test %s: %v\n%s%s", b.pkg, err, out, stderr.Bytes())
		}
		parseBench(out, r)
		if outDir != "" {
			name := strings.NewReplacer("./", "", "/", "_").Replace(b.pkg) + "_" + sanitize(b.pattern) + ".txt"
			if err := os.WriteFile(filepath.Join(outDir, name), out, 0o644); err != nil {
				return nil, err
			}
		}
	}
	return r, nil
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, s)
}
