package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	stdslog "log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alecthomas/kingpin/v2"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/exporter-toolkit/web"
	"go.uber.org/goleak"
	"golang.org/x/crypto/bcrypt"

	"github.com/authbroker/authbroker_exporter/collector"
	"github.com/authbroker/authbroker_exporter/internal/testwait"
	"github.com/authbroker/authbroker_exporter/store/brokertest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	canaryBearer = "CANARY-bearer-main-1f0a"
	canaryAccess = "CANARY-access-main-93be"
	canaryKey    = "CANARY-apikey-main-c2d4"
	canaryExtra  = "CANARY-extra-main-77e1"
)

var canaries = []string{canaryBearer, canaryAccess, canaryKey, canaryExtra}

// syncBuffer is a log sink safe for the exporter's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// seededBroker holds one of everything the exporter publishes.
func seededBroker(t *testing.T) *brokertest.Broker {
	t.Helper()
	now := time.Now()
	b := brokertest.New(brokertest.Options{Token: canaryBearer})
	t.Cleanup(b.Close)
	b.AddAPIKey("openai", canaryKey)
	a := b.AddOAuth("anthropic", brokertest.OAuth{Access: canaryAccess, Refresh: "r", Expires: now.Add(time.Hour),
		Email: "a@example.com", AccountID: "acct-A", Extra: map[string]any{"clientSecret": canaryExtra}})
	c := b.AddOAuth("openai-codex", brokertest.OAuth{Access: canaryAccess + "x", Refresh: "r", Expires: now.Add(2 * time.Minute),
		Email: "b@example.com", OrgID: "org-1"})
	gone := b.AddOAuth("anthropic", brokertest.OAuth{Access: canaryAccess + "y", Refresh: "r", Expires: now.Add(-time.Hour), Email: "c@example.com"})
	b.Disable(gone, "oauth refresh failed: invalid_grant")
	b.SetBlocks(c, []brokertest.Block{{ProviderKey: "openai-codex:oauth", Scope: "chat", BlockedUntil: now.Add(time.Hour)}})
	b.SetUsage([]json.RawMessage{json.RawMessage(`{"provider":"anthropic","fetchedAt":` + itoa(now.UnixMilli()) + `,"metadata":{"email":"a@example.com"},"limits":[` +
		`{"id":"anthropic:5h","label":"5h","scope":{"provider":"anthropic"},"window":{"id":"5h","label":"5 Hour","resetsAt":` + itoa(now.Add(time.Hour).UnixMilli()) + `},` +
		`"amount":{"used":42,"limit":100,"remaining":58,"unit":"percent"},"status":"ok"}],` +
		`"resetCredits":{"availableCount":1,"redeemableCount":1,"cooldownUntil":"` + now.Add(time.Hour).UTC().Format(time.RFC3339) + `",` +
		`"credits":[{"expiresAt":"` + now.Add(48*time.Hour).UTC().Format(time.RFC3339) + `","usable":true,"clears":["anthropic:5h"]}]}}`)})
	b.SetRefreshError(a, 500, "OAuth token refresh timed out for provider: anthropic")
	// A provider with none usable now, so the next-usable family has a sample.
	m := b.AddAPIKey("mistral", canaryKey+"-mistral")
	b.SetBlocks(m, []brokertest.Block{{ProviderKey: "mistral:api_key", BlockedUntil: now.Add(time.Hour)}})
	return b
}

func tokenFile(t *testing.T, token string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte(token+"\n"), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func parseConfig(t *testing.T, args ...string) *config {
	t.Helper()
	app := kingpin.New(program, "")
	cfg := registerFlags(app)
	app.Command("serve", "").Default()
	if _, err := app.Parse(args); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// startExporter runs the exporter's real handler on a loopback listener
// through exporter-toolkit, as serveExporter does.
func startExporter(t *testing.T, cfg *config, logs io.Writer) (*exporter, string) {
	t.Helper()
	logger, err := cfg.logger(logs)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e, err := newExporter(ctx, cfg, logger)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sl := cfg.slogger()
	srv := &http.Server{Handler: e.handler, ReadHeaderTimeout: time.Second, ErrorLog: stdslog.NewLogLogger(sl.Handler(), stdslog.LevelWarn)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = web.Serve(ln, srv, cfg.web, sl)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
		cancel()
		e.stop()
	})
	return e, ln.Addr().String()
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServeMetrics(t *testing.T) {
	b := seededBroker(t)
	logs := &syncBuffer{}
	cfg := parseConfig(t, "--broker.url="+b.URL, "--broker.token-file="+tokenFile(t, canaryBearer, 0o600),
		"--collector.identity=raw", "--log.level=debug")
	e, addr := startExporter(t, cfg, logs)
	base := "http://" + addr
	testwait.Eventually(t, "ready", e.store.Ready)
	if code, _ := get(t, http.DefaultClient, base+"/-/ready"); code != 200 {
		t.Fatalf("/-/ready = %d", code)
	}
	if code, _ := get(t, http.DefaultClient, base+"/-/healthy"); code != 200 {
		t.Fatalf("/-/healthy = %d", code)
	}
	var body string
	// The healthz probe, the disabled poll and the usage fetch run
	// independently: wait for all three.
	testwait.Eventually(t, "probe, tombstones and usage in /metrics", func() bool {
		_, body = get(t, http.DefaultClient, base+"/metrics")
		return strings.Contains(body, `authbroker_broker_info{version="18.2.3"} 1`) &&
			strings.Contains(body, `authbroker_credentials_disabled{cause="refresh_failed",provider="anthropic"} 1`) &&
			strings.Contains(body, `authbroker_usage_limit_used_fraction{id="2",limit="anthropic:5h",provider="anthropic",window="5h"} 0.42`)
	})
	for _, want := range []string{
		`authbroker_up 1`,
		`authbroker_broker_info{version="18.2.3"} 1`,
		`authbroker_sync_mode{mode="stream"} 1`,
		`authbroker_credentials{provider="anthropic",type="oauth"} 1`,
		`authbroker_credentials{provider="openai",type="api_key"} 1`,
		`authbroker_credential_info{account="acct-A",email="a@example.com",id="2",identity="email:a@example.com",org="",provider="anthropic",type="oauth"} 1`,
		`authbroker_credential_blocked_until_timestamp_seconds{id="3",provider="openai-codex",scope="chat"}`,
		`authbroker_exporter_build_info{`,
		`go_goroutines `,
		`process_resident_memory_bytes `,
		`promhttp_metric_handler_requests_total{code="503"} 0`,
		`promhttp_metric_handler_requests_in_flight 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// The removed credential (id 4) took its series with it.
	if strings.Contains(body, `id="4"`) {
		t.Error("disabled credential still has series")
	}
	// Concurrent scrapes share gathers; each must still get the whole,
	// well-formed exposition (run under -race, this also proves the shared
	// families are only read).
	var wg sync.WaitGroup
	bodies := make([]string, 10)
	for i := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(base + "/metrics") // gzip, decoded by the transport
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			bodies[i] = string(b)
		}()
	}
	wg.Wait()
	for i, b := range bodies {
		if !strings.Contains(b, "authbroker_up 1") || !strings.Contains(b, "authbroker_credential_info{") {
			t.Fatalf("concurrent scrape %d incomplete", i)
		}
	}
	_, page := get(t, http.DefaultClient, base+"/")
	for _, c := range canaries {
		for where, text := range map[string]string{"/metrics": body, "logs": logs.String(), "page": page} {
			if strings.Contains(text, c) {
				t.Errorf("canary %s leaked into %s", c[:14], where)
			}
		}
	}
}

// TestREADMEMetricTable fails when README's metric table and what the
// exporter registers disagree on a name, type, label set or help text.
// TestMetricsAreTheCatalogue: the running exporter publishes every family
// of the metric catalogue (which README's table is generated from) with
// its type, labels and help, and nothing else under authbroker_.
func TestMetricsAreTheCatalogue(t *testing.T) {
	type row struct{ typ, labels, help string }
	documented := map[string]row{}
	for _, m := range collector.Catalogue() {
		labels := slices.Sorted(slices.Values(m.Labels))
		documented[m.Name] = row{m.Type, strings.Join(labels, ","), m.Help}
	}
	documented["authbroker_exporter_build_info"] = row{"gauge", "branch,goarch,goos,goversion,revision,tags,version",
		"A metric with a constant '1' value labeled by version, revision, branch, goversion from which authbroker_exporter was built, and the goos and goarch for the build."}

	b := seededBroker(t)
	cfg := parseConfig(t, "--broker.url="+b.URL, "--broker.token-file="+tokenFile(t, canaryBearer, 0o600))
	e, addr := startExporter(t, cfg, io.Discard)
	testwait.Eventually(t, "ready", e.store.Ready)
	// A rotation, so the last-rotation family has a sample.
	b.UpdateOAuth(3, brokertest.OAuth{Access: canaryAccess + "rotated", Refresh: "r", Expires: time.Now().Add(time.Hour),
		Email: "b@example.com", OrgID: "org-1"})
	// Drive one refresh error so the error families carry a real sample.
	if err := e.store.RefreshOAuthCredential(context.Background(), 2); err == nil {
		t.Fatal("scripted refresh error did not happen")
	}
	registered := map[string]row{}
	defer func() {
		if t.Failed() {
			for name := range documented {
				if _, ok := registered[name]; !ok {
					t.Logf("not published: %s", name)
				}
			}
		}
	}()
	testwait.Eventually(t, "every documented family", func() bool {
		_, body := get(t, http.DefaultClient, "http://"+addr+"/metrics")
		p := expfmt.NewTextParser(model.UTF8Validation)
		mfs, err := p.TextToMetricFamilies(strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		registered = map[string]row{}
		for name, mf := range mfs {
			if !strings.HasPrefix(name, "authbroker_") {
				continue
			}
			set := map[string]bool{}
			for _, m := range mf.GetMetric() {
				for _, lp := range m.GetLabel() {
					set[lp.GetName()] = true
				}
			}
			labels := []string{}
			for l := range set {
				labels = append(labels, l)
			}
			sort.Strings(labels)
			typ := map[dto.MetricType]string{dto.MetricType_GAUGE: "gauge", dto.MetricType_COUNTER: "counter"}[mf.GetType()]
			registered[name] = row{typ, strings.Join(labels, ","), mf.GetHelp()}
		}
		for name := range documented {
			if _, ok := registered[name]; !ok {
				return false
			}
		}
		return true
	})
	for name, d := range documented {
		r, ok := registered[name]
		switch {
		case !ok:
			t.Errorf("the catalogue has %s, the exporter does not publish it", name)
		case r != d:
			t.Errorf("%s: the catalogue says %+v, the exporter publishes %+v", name, d, r)
		}
	}
	for name := range registered {
		if _, ok := documented[name]; !ok {
			t.Errorf("%s is published but not in the catalogue", name)
		}
	}
}

func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestTLSAndBasicAuth(t *testing.T) {
	b := seededBroker(t)
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret-pass"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webCfg := filepath.Join(dir, "web.yml")
	os.WriteFile(webCfg, []byte("tls_server_config:\n  cert_file: "+certFile+"\n  key_file: "+keyFile+"\nbasic_auth_users:\n  prom: "+string(hash)+"\n"), 0o600)
	cfg := parseConfig(t, "--broker.url="+b.URL, "--broker.token-file="+tokenFile(t, canaryBearer, 0o600), "--web.config.file="+webCfg)
	e, addr := startExporter(t, cfg, io.Discard)
	testwait.Eventually(t, "ready", e.store.Ready)

	tlsClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if code, _ := get(t, tlsClient, "https://"+addr+"/metrics"); code != http.StatusUnauthorized {
		t.Fatalf("no credentials: %d, want 401", code)
	}
	req, _ := http.NewRequest("GET", "https://"+addr+"/metrics", nil)
	req.SetBasicAuth("prom", "wrong")
	if resp, err := tlsClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong password: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	req.SetBasicAuth("prom", "s3cret-pass")
	resp, err := tlsClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "authbroker_up") {
		t.Fatalf("authorised scrape: %d", resp.StatusCode)
	}
	// Plain HTTP against the TLS listener must not yield metrics.
	if resp, err := http.Get("http://" + addr + "/metrics"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), "authbroker_up") {
			t.Fatal("metrics served over plain HTTP")
		}
	}
}

func TestStartupErrors(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("OMP_AUTH_BROKER_URL", "")
	t.Setenv("OMP_AUTH_BROKER_TOKEN", "")
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	b := seededBroker(t)
	tok := tokenFile(t, canaryBearer, 0o600)
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no token", []string{"--broker.url=" + b.URL}, "no broker token found (looked in: env OMP_AUTH_BROKER_TOKEN, " + filepath.Join(home, ".omp", "auth-broker.token")},
		{"bad url", []string{"--broker.url=127.0.0.1:8765", "--broker.token-file=" + tok}, "bad broker URL"},
		{"missing token file", []string{"--broker.token-file=/nonexistent/token"}, "broker token file: stat /nonexistent/token: no such file or directory"},
		{"port in use", []string{"--broker.url=" + b.URL, "--broker.token-file=" + tok, "--web.listen-address=" + busy.Addr().String()}, "address already in use"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			stderr := runCapture(t, tc.args...)
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			last := lines[len(lines)-1]
			if !strings.Contains(last, "level=error") || !strings.Contains(last, tc.want) {
				t.Fatalf("last log line %q does not say %q", last, tc.want)
			}
			if strings.Contains(stderr, canaryBearer) {
				t.Fatal("token leaked into startup output")
			}
		})
	}
}

// runCapture runs the whole command and returns its stderr; it must exit 1.
func runCapture(t *testing.T, args ...string) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan string)
	go func() { b, _ := io.ReadAll(r); out <- string(b) }()
	code := run(args, os.Stdout, w)
	w.Close()
	s := <-out
	if code != 1 {
		t.Fatalf("exit code %d, want 1; stderr:\n%s", code, s)
	}
	return s
}

func TestTokenFileModeWarning(t *testing.T) {
	b := seededBroker(t)
	logs := &syncBuffer{}
	cfg := parseConfig(t, "--broker.url="+b.URL, "--broker.token-file="+tokenFile(t, canaryBearer, 0o644))
	startExporter(t, cfg, logs)
	if !strings.Contains(logs.String(), "broker token file is readable by others") {
		t.Fatalf("no warning for a world-readable token file; logs:\n%s", logs.String())
	}
	// 0640: a group that is meant to read it (a Secret mounted for fsGroup).
	cfg = parseConfig(t, "--broker.url="+b.URL, "--broker.token-file="+tokenFile(t, canaryBearer, 0o640))
	logs2 := &syncBuffer{}
	startExporter(t, cfg, logs2)
	if strings.Contains(logs2.String(), "readable by") {
		t.Fatal("warning for a 0640 token file")
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestCheckCommand runs the check subcommand as a user would.
func TestCheckCommand(t *testing.T) {
	healthy := brokertest.New(brokertest.Options{Token: canaryBearer})
	t.Cleanup(healthy.Close)
	healthy.AddOAuth("anthropic", brokertest.OAuth{Access: canaryAccess, Refresh: "r", Expires: time.Now().Add(time.Hour), Email: "a@example.com"})
	expired := brokertest.New(brokertest.Options{Token: canaryBearer})
	t.Cleanup(expired.Close)
	expired.AddOAuth("anthropic", brokertest.OAuth{Access: canaryAccess, Refresh: "r", Expires: time.Now().Add(-time.Hour), Email: "a@example.com"})
	down := brokertest.New(brokertest.Options{Token: canaryBearer})
	down.Close()
	tok := tokenFile(t, canaryBearer, 0o600)
	wrongTok := tokenFile(t, "not-the-token", 0o600)
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"ok", []string{"check", "--broker.url=" + healthy.URL, "--broker.token-file=" + tok}, 0, "OK"},
		{"json", []string{"check", "--format=json", "--broker.url=" + healthy.URL, "--broker.token-file=" + tok}, 0, `"status": "ok"`},
		{"expired is critical", []string{"check", "--broker.url=" + expired.URL, "--broker.token-file=" + tok}, 2, "CRITICAL"},
		{"broker down is critical", []string{"check", "--broker.url=" + down.URL, "--broker.token-file=" + tok}, 2, "CRITICAL"},
		{"wrong token is unknown", []string{"check", "--broker.url=" + healthy.URL, "--broker.token-file=" + wrongTok}, 3, "UNKNOWN"},
		{"no token is unknown", []string{"check", "--broker.url=" + healthy.URL, "--broker.token-file=/nonexistent"}, 3, "UNKNOWN"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tc.args, &stdout, &stderr)
			if code != tc.code || !strings.Contains(stdout.String(), tc.want) {
				t.Fatalf("exit %d (want %d), stdout:\n%s\nstderr:\n%s", code, tc.code, stdout.String(), stderr.String())
			}
			if strings.Contains(stdout.String()+stderr.String(), canaryBearer) || strings.Contains(stdout.String(), canaryAccess) {
				t.Fatal("a secret reached the check output")
			}
		})
	}
}
