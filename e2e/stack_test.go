//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// tools are the executables scripts/install-deps.sh reports.
type tools struct {
	omp, prometheus, alertmanager string
}

func installDeps(ctx context.Context, t testing.TB, root string) tools {
	t.Helper()
	out, err := runScript(ctx, os.Environ(), root, filepath.Join(root, "scripts/install-deps.sh"), "broker", "prometheus")
	if err != nil {
		t.Fatalf("install-deps: %v", err)
	}
	kv := keyValues(out)
	tl := tools{omp: kv["OMP"], prometheus: kv["PROMETHEUS"], alertmanager: kv["ALERTMANAGER"]}
	if tl.omp == "" || tl.prometheus == "" || tl.alertmanager == "" {
		t.Fatalf("install-deps did not report OMP, PROMETHEUS and ALERTMANAGER:\n%s", out)
	}
	return tl
}

// broker drives scripts/real-broker.sh with a state dir of its own.
type broker struct {
	root, dir, omp string
	proxy          string // a closed loopback port posing as HTTP(S) proxy
	url, tokenFile string
	pid            int
}

// env keeps the broker offline even on a host with Internet access: bun's
// fetch honours the proxy variables, so every provider call (refresh,
// usage) fails at once with ECONNREFUSED, which the broker treats as a
// transient failure, like a DNS failure on an offline host.
func (b *broker) env() []string {
	env := []string{"REAL_BROKER_DIR=" + b.dir, "OMP=" + b.omp, "REAL_BROKER_KEEP=1",
		"NO_PROXY=127.0.0.1,localhost", "no_proxy=127.0.0.1,localhost"}
	for _, k := range []string{"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"} {
		env = append(env, k+"="+b.proxy)
	}
	out := []string{}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !strings.Contains(strings.ToLower(k), "proxy") {
			out = append(out, kv)
		}
	}
	return append(out, env...)
}

func (b *broker) script(ctx context.Context, args ...string) (map[string]string, error) {
	out, err := runScript(ctx, b.env(), b.root, append([]string{filepath.Join(b.root, "scripts/real-broker.sh")}, args...)...)
	if err != nil {
		return nil, err
	}
	return keyValues(out), nil
}

func startBroker(ctx context.Context, t testing.TB, root, dir, omp string) *broker {
	t.Helper()
	b := &broker{root: root, dir: dir, omp: omp, proxy: "http://127.0.0.1:" + strconv.Itoa(freePort(t))}
	t.Cleanup(func() {
		// The script stops by pid file; the group kill covers a broker the
		// script lost track of.
		sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if _, err := b.script(sctx, "stop"); err != nil {
			t.Logf("real-broker.sh stop: %v", err)
		}
		b.killGroup(syscall.SIGKILL)
	})
	if err := b.start(ctx, "start"); err != nil {
		t.Fatal(err)
	}
	return b
}

// start runs `real-broker.sh start|restart` and records where the broker is.
func (b *broker) start(ctx context.Context, verb string) error {
	kv, err := b.script(ctx, verb)
	if err != nil {
		return fmt.Errorf("real broker: %v", err)
	}
	pid, _ := strconv.Atoi(kv["PID"])
	if kv["URL"] == "" || kv["TOKEN_FILE"] == "" || pid <= 0 {
		return fmt.Errorf("real-broker.sh start printed no URL/TOKEN_FILE/PID")
	}
	if b.url != "" && b.url != kv["URL"] {
		return fmt.Errorf("broker came back on %s, want %s", kv["URL"], b.url)
	}
	b.url, b.tokenFile, b.pid = kv["URL"], kv["TOKEN_FILE"], pid
	reaper.add(pid) // setsid: the broker leads its own group
	return nil
}

func (b *broker) killGroup(sig syscall.Signal) {
	if b.pid > 0 {
		_ = syscall.Kill(-b.pid, sig)
	}
}

// kill SIGKILLs the broker's process group and waits until it is gone.
func (b *broker) kill(ctx context.Context) error {
	b.killGroup(syscall.SIGKILL)
	pid := b.pid
	return poll(ctx, 10*time.Second, func() error {
		if err := syscall.Kill(pid, 0); err == nil {
			return fmt.Errorf("broker pid %d still alive", pid)
		}
		reaper.remove(pid)
		return nil
	})
}

func (b *broker) token(t testing.TB) string {
	t.Helper()
	raw, err := os.ReadFile(b.tokenFile)
	if err != nil {
		t.Fatalf("broker token: %v", err)
	}
	tok := strings.TrimSpace(string(raw))
	if tok == "" {
		t.Fatal("broker token file is empty")
	}
	return tok
}

// exporterFlags are the flags the scenario needs: raw identities so labels
// can be compared with the snapshot, fast probes, and opt-in self-healing
// so the exporter itself calls refresh and disable.
func exporterFlags(b *broker, port int) []string {
	return []string{
		"--broker.url=" + b.url,
		"--broker.token-file=" + b.tokenFile,
		"--web.listen-address=127.0.0.1:" + strconv.Itoa(port),
		"--log.level=debug",
		"--collector.identity=raw",
		"--monitor.probe-interval=1s",
		"--collector.disabled.interval=2s",
		"--monitor.refresh-overdue",
		"--monitor.disable-expired-after=1h",
	}
}

// cleanEnv is a minimal environment: nothing the exporter could discover a
// broker or token from besides its flags.
func cleanEnv(home string) []string {
	return []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "TZ=UTC"}
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// ruleFiles are the shipped rule files, loaded as they are (not
// alerts/alertmanager.example.yml, which is Alertmanager's).
func ruleFiles(t testing.TB, root string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, "alerts", "authbroker-*.yml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no rule files in alerts/: %v", err)
	}
	sort.Strings(files)
	return files
}

func prometheusConfig(exporterPort, amPort int, rules []string) string {
	var b strings.Builder
	b.WriteString("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n")
	b.WriteString("rule_files:\n")
	for _, r := range rules {
		fmt.Fprintf(&b, "  - %q\n", r)
	}
	fmt.Fprintf(&b, "alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:%d']\n", amPort)
	// job "authbroker" is the name the shipped rules expect.
	fmt.Fprintf(&b, "scrape_configs:\n  - job_name: authbroker\n    static_configs:\n      - targets: ['127.0.0.1:%d']\n", exporterPort)
	return b.String()
}

const alertmanagerConfig = `route:
  receiver: blackhole
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: blackhole
`

func newHTTPClient() *http.Client {
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{DisableKeepAlives: true},
	}
}
