//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDemo runs `make demo`'s script headless, as a newcomer would start
// it: it must come up with a live status page, /metrics and a firing
// near-expiry alert (the shipped rule, unchanged) in Prometheus and
// Alertmanager, and SIGINT must end every process it started and remove
// its temporary directory.
func TestDemo(t *testing.T) {
	began := time.Now()
	t.Cleanup(func() { t.Logf("demo test wall time: %s", time.Since(began).Round(100*time.Millisecond)) })
	deadline, ok := t.Deadline()
	if !ok {
		deadline = time.Now().Add(10 * time.Minute)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline.Add(-45*time.Second))
	defer cancel()
	root := repoRoot(t)
	tmp := t.TempDir() // the script's TMPDIR: it must leave it empty
	logDir := t.TempDir()
	stderrPath := filepath.Join(logDir, "demo.stderr")
	stderr, err := os.Create(stderrPath)
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()

	cmd := exec.Command(filepath.Join(root, "scripts/demo.sh"))
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	cmd.Stderr = stderr
	// Through an io.Pipe, Wait returns only once all output was copied.
	stdout, stdoutW := io.Pipe()
	cmd.Stdout = stdoutW
	// SIGTERM, not SIGKILL, if the test binary dies: the script's trap then
	// still stops what it started (its children run in their own sessions).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	script := cmd.Process.Pid
	lines := make(chan string, 64)
	var output strings.Builder // the whole stdout, for the leak check
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	exited := make(chan struct{})
	var exitErr error
	go func() {
		exitErr = cmd.Wait()
		stdoutW.Close()
		close(exited)
	}()
	stopped := false
	t.Cleanup(func() {
		if stopped {
			return
		}
		// A failed run: the script's own trap still cleans up on SIGTERM.
		_ = syscall.Kill(script, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-script, syscall.SIGKILL)
		}
		logTail(t, "demo.sh stderr", stderrPath, 40)
	})

	// The URLs, printed once everything answers.
	urls := map[string]string{}
	urlLine := regexp.MustCompile(`^\s+([A-Za-z][A-Za-z ]*?):\s+(http://127\.0\.0\.1:\d+\S*)`)
	running := regexp.MustCompile(`demo is running \(Ctrl-C stops it and removes (\S+)\):`)
	var demoDir string
	for banner := false; !banner; {
		select {
		case line, ok := <-lines:
			if !ok {
				<-exited
				t.Fatalf("demo.sh ended its output before printing the URLs (exit: %v)", exitErr)
			}
			output.WriteString(line + "\n")
			if m := running.FindStringSubmatch(line); m != nil {
				demoDir = m[1]
			}
			if m := urlLine.FindStringSubmatch(line); m != nil {
				urls[m[1]] = m[2]
			}
			banner = strings.Contains(line, "Logs are in") // its last line
		case <-ctx.Done():
			t.Fatalf("demo.sh printed no URLs before the deadline; got %v", urls)
		}
	}
	drained := make(chan struct{})
	go func() { // keep reading so the script never blocks on its stdout
		defer close(drained)
		for line := range lines {
			output.WriteString(line + "\n")
		}
	}()
	if demoDir == "" || !strings.HasPrefix(demoDir, tmp+string(os.PathSeparator)) {
		t.Fatalf("demo directory %q is not under TMPDIR %s", demoDir, tmp)
	}
	for _, k := range []string{"status page", "metrics", "health API", "alerts", "prometheus", "alertmanager", "broker"} {
		if urls[k] == "" {
			t.Fatalf("no %q URL in the demo's output: %v", k, urls)
		}
	}
	tokenFile := filepath.Join(demoDir, "broker/home/.omp/auth-broker.token")
	if tok, err := os.ReadFile(tokenFile); err != nil || strings.TrimSpace(string(tok)) == "" {
		t.Fatalf("broker token file %s: %v", tokenFile, err)
	} else {
		canaries.add("demo broker bearer token", strings.TrimSpace(string(tok)))
	}

	raw, err := os.ReadFile(filepath.Join(root, "VERSION"))
	if err != nil {
		t.Fatal(err)
	}
	version := strings.TrimSpace(string(raw)) // scripts/build.sh stamps it
	hc := newHTTPClient()
	alive := func() error {
		select {
		case <-exited:
			return backoffStop{fmt.Errorf("demo.sh exited: %v", exitErr)}
		default:
			return nil
		}
	}
	eventually := func(what string, timeout time.Duration, f func() error) {
		t.Helper()
		if err := poll(ctx, timeout, func() error {
			if err := alive(); err != nil {
				return err
			}
			return f()
		}); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	eventually("status page", 30*time.Second, func() error {
		body, err := get(ctx, hc, urls["status page"], nil)
		if err != nil {
			return err
		}
		for _, want := range []string{"soon@demo.example", "expired@demo.example", "exporter " + version} {
			if !strings.Contains(string(body), want) {
				return fmt.Errorf("status page lacks %q", want)
			}
		}
		return nil
	})
	var soonID string
	eventually("/metrics", 30*time.Second, func() error {
		m, _, err := scrape(ctx, hc, urls["metrics"])
		if err != nil {
			return err
		}
		if up := m["authbroker_up"]; len(up) != 1 || up[0].value != 1 {
			return fmt.Errorf("authbroker_up = %v", up)
		}
		if n := len(m["authbroker_credential_info"]); n != 4 {
			return fmt.Errorf("%d credentials, want the 4 seeded", n)
		}
		for _, s := range m["authbroker_credential_info"] {
			if s.labels["email"] == "soon@demo.example" {
				soonID = s.labels["id"]
			}
		}
		if soonID == "" {
			return errors.New("no credential_info for soon@demo.example")
		}
		return nil
	})

	// The near-expiry alert of the shipped rules fires (after its for: 1m)
	// for the credential seeded to expire soon, and reaches Alertmanager.
	prom := &promAPI{hc: hc, url: strings.TrimSuffix(urls["prometheus"], "/")}
	isSoon := func(l map[string]string) bool {
		return l["alertname"] == alertExpiringSoon && l["id"] == soonID && l["identity"] == "email:soon@demo.example"
	}
	eventually("near-expiry alert firing in Prometheus", 3*time.Minute, func() error {
		alerts, _, err := prom.alerts(ctx)
		if err != nil {
			return err
		}
		for _, a := range alerts {
			if isSoon(a.Labels) {
				if a.State == "firing" {
					return nil
				}
				return fmt.Errorf("%s is %s", alertExpiringSoon, a.State)
			}
		}
		return fmt.Errorf("no %s alert for credential %s yet", alertExpiringSoon, soonID)
	})
	eventually("near-expiry alert in Alertmanager", time.Minute, func() error {
		alerts, _, err := amAlerts(ctx, hc, strings.TrimSuffix(urls["alertmanager"], "/"))
		if err != nil {
			return err
		}
		for _, a := range alerts {
			if isSoon(a.Labels) && a.Status.State == "active" {
				return nil
			}
		}
		return fmt.Errorf("Alertmanager has no active %s for credential %s", alertExpiringSoon, soonID)
	})

	// The demo's Alertmanager runs alerts/alertmanager.example.yml. The
	// credential seeded as expired is also "expiring soon" (that set has no
	// lower bound), and the example's inhibition suppresses that alert by
	// the same credential's "expired": one notification, for the cause.
	eventually("the expired credential's expiring-soon alert suppressed by its expired alert", 3*time.Minute, func() error {
		alerts, err := amAlertsStatus(ctx, hc, strings.TrimSuffix(urls["alertmanager"], "/"))
		if err != nil {
			return err
		}
		of := func(name string) *amStatusAlert {
			i := slices.IndexFunc(alerts, func(a amStatusAlert) bool {
				return a.Labels["alertname"] == name && a.Labels["identity"] == "email:expired@demo.example"
			})
			if i < 0 {
				return nil
			}
			return &alerts[i]
		}
		expired, soon := of(alertExpired), of(alertExpiringSoon)
		switch {
		case expired == nil || soon == nil:
			return fmt.Errorf("Alertmanager lists %s: %v, %s: %v for expired@demo.example", alertExpired, expired != nil, alertExpiringSoon, soon != nil)
		case expired.Status.State != "active":
			return fmt.Errorf("%s is %s, want active", alertExpired, expired.Status.State)
		case soon.Status.State != "suppressed" || !slices.Contains(soon.Status.InhibitedBy, expired.Fingerprint):
			return fmt.Errorf("%s is %s, inhibited by %v; want suppressed by %s", alertExpiringSoon, soon.Status.State, soon.Status.InhibitedBy, expired.Fingerprint)
		}
		return nil
	})

	// What the demo started: every process working inside its directory
	// (it cds there; the broker runs in its home below it).
	procs := processesUnder(t, demoDir)
	pidFile, err := os.ReadFile(filepath.Join(demoDir, "broker/pid")) // scripts/real-broker.sh writes it
	if err != nil {
		t.Fatal(err)
	}
	brokerPid, err := strconv.Atoi(strings.TrimSpace(string(pidFile)))
	if err != nil {
		t.Fatalf("broker pid file: %v", err)
	}
	for what, is := range map[string]func(process) bool{
		"the script":   func(p process) bool { return p.pid == script },
		"the broker":   func(p process) bool { return p.pid == brokerPid },
		"the exporter": func(p process) bool { return strings.HasPrefix(p.name, "authbroker_exp") },
		"Prometheus":   func(p process) bool { return p.name == "prometheus" },
		"Alertmanager": func(p process) bool { return strings.Contains(p.name, "alertman") || p.name == "prometheus-aler" },
	} {
		found := false
		for _, p := range procs {
			found = found || is(p)
		}
		if !found {
			t.Fatalf("%s is not among the processes working in %s: %v", what, demoDir, procs)
		}
	}

	// Ctrl-C.
	stopped = true
	if err := syscall.Kill(script, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(60 * time.Second):
		_ = syscall.Kill(script, syscall.SIGTERM)
		t.Fatalf("demo.sh still running 60 s after SIGINT")
	}
	var ee *exec.ExitError
	if !errors.As(exitErr, &ee) || ee.ExitCode() != 130 {
		t.Errorf("demo.sh after SIGINT: %v, want exit status 130", exitErr)
	}
	if err := poll(ctx, 30*time.Second, func() error {
		var left []string
		for _, p := range procs {
			if p.alive() {
				left = append(left, p.String())
			}
		}
		for _, p := range processesUnder(t, demoDir) {
			left = append(left, p.String())
		}
		if len(left) > 0 {
			return fmt.Errorf("still running: %s", strings.Join(left, "; "))
		}
		return nil
	}); err != nil {
		t.Fatalf("after SIGINT: %v", err)
	}
	entries, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) > 0 {
		var left []string
		for _, e := range entries {
			left = append(left, e.Name())
		}
		t.Errorf("the demo left %v in its TMPDIR", left)
	}
	<-drained
	if role, found := canaries.find(output.String()); found {
		t.Errorf("demo output carries a secret (%s)", role)
	}
	if b, err := os.ReadFile(stderrPath); err == nil {
		if role, found := canaries.find(string(b)); found {
			t.Errorf("demo stderr carries a secret (%s)", role)
		}
	}
}

// process is one entry of /proc.
type process struct {
	pid       int
	name, cwd string
	start     string // start time in clock ticks, so a reused pid is not taken for it
}

func (p process) String() string { return fmt.Sprintf("%d %s (in %s)", p.pid, p.name, p.cwd) }

func (p process) alive() bool {
	now, ok := readProcess(p.pid)
	return ok && now.start == p.start
}

// readProcess reads /proc/PID; ok is false when the process is gone or a
// zombie (it has exited; only its exit status is left).
func readProcess(pid int) (process, bool) {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return process{}, false
	}
	// pid (comm) state ppid ... field 22 = starttime
	s := string(stat)
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || closing < open {
		return process{}, false
	}
	fields := strings.Fields(s[closing+1:])
	if len(fields) < 20 || fields[0] == "Z" || fields[0] == "X" {
		return process{}, false
	}
	cwd, _ := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "cwd"))
	return process{pid: pid, name: s[open+1 : closing], cwd: cwd, start: fields[19]}, true
}

// processesUnder lists the live processes whose working directory is dir
// or below it.
func processesUnder(t testing.TB, dir string) []process {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []process
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		p, ok := readProcess(pid)
		if ok && (p.cwd == dir || strings.HasPrefix(p.cwd, dir+"/")) {
			out = append(out, p)
		}
	}
	return out
}
