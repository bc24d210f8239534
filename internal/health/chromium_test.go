package health

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authbroker/authbroker_exporter/store"
)

// artifactsDir holds the screenshots the browser test saves for people to
// look at (gitignored).
const artifactsDir = "testdata/artifacts"

// chromium finds a headless-capable Chromium. Locally a missing browser
// skips; under CI it fails, so the page is never silently untested there.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{os.Getenv("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium not found (set CHROMIUM or run scripts/install-deps.sh chromium)")
	}
	t.Skip("chromium not found; set CI=1 to make this a failure")
	return ""
}

// runChromium runs one headless Chromium invocation and returns stdout.
func runChromium(t *testing.T, bin string, args ...string) string {
	t.Helper()
	// The deadline only keeps a wedged browser from hanging the suite; no
	// assertion depends on how long rendering takes.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	base := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
		"--user-data-dir=" + t.TempDir(),
	}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, lastLines(stderr.String(), 20))
	}
	return stdout.String()
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func TestPageInChromium(t *testing.T) {
	bin := chromium(t)
	var (
		mu    sync.Mutex
		paths []string
	)
	h := handlerFor(t, showcase())
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()

	dom := runChromium(t, bin, "--dump-dom", srv.URL+"/")
	if !strings.Contains(dom, `id="verdict"`) {
		t.Fatalf("rendered DOM lacks the verdict:\n%s", lastLines(dom, 20))
	}
	if m := regexp.MustCompile(`id="verdict">([A-Z]+)<`).FindStringSubmatch(dom); m == nil || m[1] != "CRITICAL" {
		t.Errorf("verdict badge %v", m)
	}
	for id, state := range showcaseStates {
		re := regexp.MustCompile(fmt.Sprintf(`id="cred-%d" data-state="([a-z_]+)"`, id))
		if m := re.FindStringSubmatch(dom); m == nil || m[1] != state {
			t.Errorf("credential %d rendered state %v, want %s", id, m, state)
		}
	}
	// The hostile provider name stayed text: the browser built no script
	// element from it (the serialised DOM would show a live <script> tag).
	if strings.Contains(strings.ToLower(dom), "<script") {
		t.Error("a <script> element exists in the rendered DOM")
	}
	if !strings.Contains(dom, `&lt;script&gt;alert("x")&lt;/script&gt;`) {
		t.Error("hostile provider not rendered as text")
	}
	for _, want := range []string{"openai-codex", "7 Day", "refresh_failed", "usage_exhausted", "rotation_overdue", `href="/-/ready"`} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered DOM lacks %q", want)
		}
	}

	if err := os.MkdirAll(artifactsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, shot := range []struct {
		name string
		size string
	}{
		{"status-desktop.png", "1280,900"},
		{"status-desktop-full.png", "1280,2000"},
		{"status-phone.png", "390,2400"},
	} {
		path, err := filepath.Abs(filepath.Join(artifactsDir, shot.name))
		if err != nil {
			t.Fatal(err)
		}
		os.Remove(path)
		runChromium(t, bin, "--screenshot="+path, "--window-size="+shot.size, srv.URL+"/")
		png, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("screenshot not written: %v", err)
		}
		if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) || len(png) < 10_000 {
			t.Errorf("%s: not a plausible PNG (%d bytes)", shot.name, len(png))
		}
		t.Logf("screenshot: %s (%d bytes)", path, len(png))
	}
	// A self-contained page asks for nothing but itself (favicon aside).
	mu.Lock()
	defer mu.Unlock()
	for _, p := range paths {
		if p != "/" && p != "/favicon.ico" {
			t.Errorf("the page made the browser fetch %s", p)
		}
	}
}

// TestDownPageInChromium renders the page of a broker that cannot be
// reached: nothing mirrored, every section still readable.
func TestDownPageInChromium(t *testing.T) {
	bin := chromium(t)
	in := Input{
		Now: t0, BrokerURL: "http://127.0.0.1:8765",
		Broker: BrokerProbe{Checked: t0, Err: "auth-broker GET /v1/healthz: dial tcp 127.0.0.1:8765: connect: connection refused"},
		Status: store.SyncStatus{LastError: "auth-broker GET /v1/snapshot/stream: dial tcp 127.0.0.1:8765: connect: connection refused", LastErrorReason: "network"},
	}
	srv := httptest.NewServer(handlerFor(t, in))
	defer srv.Close()
	dom := runChromium(t, bin, "--dump-dom", srv.URL+"/")
	for _, want := range []string{`id="verdict">CRITICAL<`, "broker_unreachable", "mirror_not_ready", "connection refused", "No active credentials (no snapshot yet)", ">down<"} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered DOM lacks %q", want)
		}
	}
	if err := os.MkdirAll(artifactsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	path, err := filepath.Abs(filepath.Join(artifactsDir, "status-down.png"))
	if err != nil {
		t.Fatal(err)
	}
	runChromium(t, bin, "--screenshot="+path, "--window-size=1280,700", srv.URL+"/")
	if fi, err := os.Stat(path); err != nil || fi.Size() < 10_000 {
		t.Errorf("screenshot %s: %v", path, err)
	}
}

// TestPage10kInChromium renders the default page of a broker with 10k
// credentials: the browser shows the verdict, the reasons, the counts by
// provider and state, and the bounded list of problem credentials.
func TestPage10kInChromium(t *testing.T) {
	bin := chromium(t)
	srv := httptest.NewServer(handlerFor(t, scaleInput(10000)))
	defer srv.Close()
	dom := runChromium(t, bin, "--dump-dom", srv.URL+"/")
	for _, want := range []string{`id="verdict">CRITICAL<`, `id="reasons"`, `id="counts"`, `<strong>40 credentials</strong>`,
		`data-provider="github-copilot"`, "showing 200 of 10000, problems first"} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered DOM lacks %q", want)
		}
	}
	rows := rowRE.FindAllStringSubmatch(dom, -1)
	if len(rows) != PageRows {
		t.Errorf("%d credential rows rendered, want %d", len(rows), PageRows)
	}
	for _, r := range rows {
		if r[2] == StateOK {
			t.Errorf("credential %s is ok but listed among the 200 problem credentials", r[1])
			break
		}
	}
	if err := os.MkdirAll(artifactsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	path, err := filepath.Abs(filepath.Join(artifactsDir, "status-10k.png"))
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(path)
	runChromium(t, bin, "--screenshot="+path, "--window-size=1280,1400", srv.URL+"/")
	png, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("screenshot not written: %v", err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) || len(png) < 10_000 {
		t.Errorf("status-10k.png: not a plausible PNG (%d bytes)", len(png))
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(png))
}
