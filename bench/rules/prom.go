package main

import (
	"bufio"
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"
)

// ruleSet is one Prometheus server with one version of the rules.
type ruleSet struct {
	name  string
	dir   string
	data  string
	files []string

	url  string
	cmd  *exec.Cmd
	done chan struct{}

	// prometheus_rule_group_last_duration_seconds samples per group, by
	// phase ("side by side", "alone").
	durations map[string]map[string][]float64
	intervals map[string]float64
	missed    map[string]float64
	failures  map[string]float64
	rules     []ruleStat

	failedReads int
	// process_cpu_seconds_total at the first and last read of each phase:
	// how much CPU the server got, which on a busy machine is what its
	// durations mostly say.
	cpu map[string][2]cpuSample
}

type cpuSample struct {
	at      time.Time
	seconds float64
}

// cores is the share of a core the server got during phase.
func (s *ruleSet) cores(phase string) float64 {
	c := s.cpu[phase]
	if d := c[1].at.Sub(c[0].at).Seconds(); d > 0 {
		return (c[1].seconds - c[0].seconds) / d
	}
	return 0
}

type ruleStat struct {
	group, name, kind string
	seconds           float64
	firing, pending   int
}

var client = &http.Client{Timeout: 30 * time.Second}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// startPrometheus starts a server on loopback with config and data, in a
// process group of its own that dies with this process.
func startPrometheus(ctx context.Context, bin, dir, data, config string) (*exec.Cmd, string, chan struct{}, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, "", nil, err
	}
	cfg := filepath.Join(dir, "prometheus-"+strings.ReplaceAll(addr, ":", "_")+".yml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		return nil, "", nil, err
	}
	logf, err := os.Create(cfg + ".log")
	if err != nil {
		return nil, "", nil, err
	}
	cmd := exec.Command(bin, "--config.file="+cfg, "--storage.tsdb.path="+data,
		"--web.listen-address="+addr, "--storage.tsdb.retention.time=30d")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, "", nil, err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	url := "http://" + addr
	deadline := time.Now().Add(5 * time.Minute)
	for {
		resp, err := client.Get(url + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return cmd, url, done, nil
			}
		}
		select {
		case <-done:
			return nil, "", nil, fmt.Errorf("prometheus exited; see %s.log", cfg)
		case <-ctx.Done():
			stopProcess(cmd, done)
			return nil, "", nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stopProcess(cmd, done)
			return nil, "", nil, fmt.Errorf("prometheus not ready after 5 minutes; see %s.log", cfg)
		}
	}
}

func stopProcess(cmd *exec.Cmd, done chan struct{}) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

func (s *ruleSet) start(ctx context.Context, bin, target string, fl *fleet) error {
	var b strings.Builder
	b.WriteString("global:\n  scrape_interval: 15s\n  scrape_timeout: 10s\n  evaluation_interval: 15s\nrule_files:\n")
	for _, f := range s.files {
		fmt.Fprintf(&b, "  - %q\n", f)
	}
	fmt.Fprintf(&b, "scrape_configs:\n  - job_name: %s\n    static_configs:\n      - targets: [%q]\n        labels: {instance: %q}\n", fl.job, target, fl.instance)
	cmd, url, done, err := startPrometheus(ctx, bin, s.dir, s.data, b.String())
	if err != nil {
		return fmt.Errorf("%s: %v", s.name, err)
	}
	s.cmd, s.url, s.done = cmd, url, done
	s.durations = map[string]map[string][]float64{}
	s.intervals = map[string]float64{}
	s.missed = map[string]float64{}
	s.failures = map[string]float64{}
	s.cpu = map[string][2]cpuSample{}
	return nil
}

func (s *ruleSet) stop() {
	if s.cmd != nil {
		stopProcess(s.cmd, s.done)
		s.cmd = nil
	}
}

// slowRecords returns, for each recording rule of a group with an interval
// of its own that is a bare selector of a fleet family (the used fraction
// sampled every 5 minutes, which the forecast reads over [1h]), the series
// it would have recorded over the past hour at the group's interval. The
// other rules of such groups are read at their latest value only and start
// recording with the server.
func slowRecords(files []string, fams []family) ([]family, error) {
	var out []family
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var rf struct {
			Groups []struct {
				Name     string `yaml:"name"`
				Interval string `yaml:"interval"`
				Rules    []struct {
					Record string `yaml:"record"`
					Expr   string `yaml:"expr"`
				} `yaml:"rules"`
			} `yaml:"groups"`
		}
		if err := yaml.Unmarshal(b, &rf); err != nil {
			return nil, fmt.Errorf("%s: %v", f, err)
		}
		for _, g := range rf.Groups {
			if g.Interval == "" {
				continue
			}
			iv, err := time.ParseDuration(g.Interval)
			if err != nil {
				return nil, fmt.Errorf("group %s: %v", g.Name, err)
			}
			for _, r := range g.Rules {
				expr := strings.TrimSpace(r.Expr)
				i := slices.IndexFunc(fams, func(f family) bool { return f.name == expr })
				if r.Record == "" || i < 0 {
					continue
				}
				out = append(out, family{name: r.Record, typ: "gauge", series: fams[i].series, step: int64(iv.Seconds())})
			}
		}
	}
	return out, nil
}

// sample reads each server's rule group metrics every 15 s for d.
func sample(ctx context.Context, sets []*ruleSet, d time.Duration, rep *report) error {
	phase := "side by side"
	if len(sets) == 1 {
		phase = "alone"
	}
	stop := time.Now().Add(d)
	for time.Now().Before(stop) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(15 * time.Second):
		}
		for _, s := range sets {
			// A busy server may miss a read; the run goes on and the
			// report counts them.
			if err := s.readMetrics(phase, time.Until(stop) < d/2); err != nil {
				log.Printf("%s: %v", s.name, err)
				s.failedReads++
			}
		}
	}
	return nil
}

// readMetrics keeps prometheus_rule_group_last_duration_seconds samples
// (only in the second half of a phase, once ranges and rules have settled).
func (s *ruleSet) readMetrics(phase string, keep bool) error {
	resp, err := client.Get(s.url + "/metrics")
	if err != nil {
		return fmt.Errorf("%s: %v", s.name, err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "process_cpu_seconds_total "); ok {
			if v, err := strconv.ParseFloat(rest, 64); err == nil {
				c, now := s.cpu[phase], cpuSample{time.Now(), v}
				if c[0].at.IsZero() {
					c[0] = now
				}
				c[1] = now
				s.cpu[phase] = c
			}
			continue
		}
		name, group, v, ok := groupSample(line)
		if !ok {
			continue
		}
		switch name {
		case "prometheus_rule_group_last_duration_seconds":
			if keep && v > 0 {
				if s.durations[phase] == nil {
					s.durations[phase] = map[string][]float64{}
				}
				s.durations[phase][group] = append(s.durations[phase][group], v)
			}
		case "prometheus_rule_group_interval_seconds":
			s.intervals[group] = v
		case "prometheus_rule_group_iterations_missed_total":
			s.missed[group] = v
		}
		if name, _, ok := strings.Cut(line, "{"); ok && name == "prometheus_rule_evaluation_failures_total" {
			if g, ok := ruleGroupLabel(line); ok {
				v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
				if err == nil {
					s.failures[g] = v
				}
			}
		}
	}
	return sc.Err()
}

// groupSample parses `name{rule_group="file;group"} value`.
func groupSample(line string) (name, group string, v float64, ok bool) {
	name, rest, found := strings.Cut(line, `{rule_group="`)
	if !found {
		return "", "", 0, false
	}
	g, val, found := strings.Cut(rest, `"} `)
	if !found {
		return "", "", 0, false
	}
	if i := strings.LastIndexByte(g, ';'); i >= 0 {
		g = g[i+1:]
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
	return name, g, v, err == nil
}

// ruleGroupLabel returns the group name of a rule_group="file;group" label.
func ruleGroupLabel(line string) (string, bool) {
	_, rest, ok := strings.Cut(line, `rule_group="`)
	if !ok {
		return "", false
	}
	g, _, ok := strings.Cut(rest, `"`)
	if i := strings.LastIndexByte(g, ';'); i >= 0 {
		g = g[i+1:]
	}
	return g, ok
}

// snapshot reads per-rule evaluation times and active alerts.
func (s *ruleSet) snapshot(ctx context.Context) error {
	var r struct {
		Data struct {
			Groups []struct {
				Name  string `json:"name"`
				Rules []struct {
					Name           string  `json:"name"`
					Type           string  `json:"type"`
					EvaluationTime float64 `json:"evaluationTime"`
					Alerts         []struct {
						State string `json:"state"`
					} `json:"alerts"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := getJSON(ctx, s.url+"/api/v1/rules", &r); err != nil {
		return fmt.Errorf("%s /api/v1/rules: %v", s.name, err)
	}
	s.rules = nil
	for _, g := range r.Data.Groups {
		for _, ru := range g.Rules {
			st := ruleStat{group: g.Name, name: ru.Name, kind: ru.Type, seconds: ru.EvaluationTime}
			for _, a := range ru.Alerts {
				switch a.State {
				case "firing":
					st.firing++
				case "pending":
					st.pending++
				}
			}
			s.rules = append(s.rules, st)
		}
	}
	return nil
}
