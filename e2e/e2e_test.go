//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql/parser"

	"github.com/authbroker/authbroker_exporter/dashboards"
)

// Alert names from alerts/authbroker-alerts.yml.
const (
	alertUnreachable  = "AuthBrokerUnreachable"
	alertExpiringSoon = "AuthBrokerCredentialExpiringSoon"
	alertExpired      = "AuthBrokerCredentialExpired"
)

// suite is the running stack and what the scenario seeded.
type suite struct {
	ctx    context.Context
	hc     *http.Client
	work   string
	broker *broker
	api    *brokerAPI
	prom   *promAPI
	amURL  string

	exporter     *proc
	exporterURL  string
	exporterAddr string // Prometheus' instance label
	brokerVer    string
	rules        []string // rule files Prometheus loads; nil: the shipped alerts/authbroker-*.yml

	// seeded credential ids
	apiKey, soon, expired, stale, day, victim, canary int64
}

// newSuite starts a test's own stack: a context that ends 45 s before go
// test's deadline (default when none is set), so cleanups still run, and
// a work directory that is kept for inspection when the test fails. The
// test's wall time is logged last as "<name> wall time".
func newSuite(t *testing.T, name string, defaultTimeout time.Duration) (s *suite, root string) {
	began := time.Now()
	t.Cleanup(func() { t.Logf("%s wall time: %s", name, time.Since(began).Round(100*time.Millisecond)) })
	deadline, ok := t.Deadline()
	if !ok {
		deadline = time.Now().Add(defaultTimeout)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline.Add(-45*time.Second))
	t.Cleanup(cancel)
	work, err := os.MkdirTemp("", "authbroker-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kept %s (logs, configs, data) for inspection", work)
			return
		}
		_ = os.RemoveAll(work)
	})
	return &suite{ctx: ctx, hc: newHTTPClient(), work: work}, repoRoot(t)
}

func TestEndToEnd(t *testing.T) {
	s, root := newSuite(t, "e2e", 11*time.Minute)
	ctx, work := s.ctx, s.work

	step := func(name string, f func(t *testing.T)) {
		if !t.Run(name, f) {
			t.FailNow()
		}
	}

	var tl tools
	step("install", func(t *testing.T) { tl = installDeps(ctx, t, root) })
	bin := filepath.Join(work, "authbroker_exporter")
	step("build", func(t *testing.T) {
		if _, err := runScript(ctx, os.Environ(), root, filepath.Join(root, "scripts/build.sh"), bin); err != nil {
			t.Fatalf("scripts/build.sh: %v", err)
		}
	})

	s.broker = startBroker(ctx, t, root, filepath.Join(work, "broker"), tl.omp)
	t.Cleanup(func() {
		if t.Failed() {
			logTail(t, "broker", filepath.Join(s.broker.dir, "broker.log"), 30)
		}
	})
	tok := s.broker.token(t)
	canaries.add("broker bearer token", tok)
	s.api = &brokerAPI{hc: s.hc, url: s.broker.url, token: tok}
	step("seed", s.seed)

	s.startAlertmanager(t, tl.alertmanager)
	s.startPrometheus(t, tl.prometheus, root)
	s.startExporter(t, bin)

	step("mirror matches the broker snapshot", s.mirrorMatchesSnapshot)
	step("rotation and block reach the mirror", s.rotationAndBlock)
	step("disable through the broker removes the series", s.disableThroughBroker)
	step("self-healing refresh fails upstream and is counted", s.selfHealing)
	step("stream mirror reconciles after a failed sweep", s.reconcileAfterFailedSweep)
	preKill := s.lastState(t)
	step("killed broker sets up=0 and keeps the last mirror", func(t *testing.T) { s.killBroker(t, preKill) })
	step("near-expiry alert fires and reaches Alertmanager", s.nearExpiryAlert)
	step("unreachable alert fires", s.unreachableAlert)
	step("restarted broker is followed without exporter restart", func(t *testing.T) { s.restartBroker(t, preKill) })
	step("every dashboard query evaluates", s.dashboardQueries)
	step("canary secrets appear nowhere", s.noSecrets)
}

// ---- setup ----

func (s *suite) seed(t *testing.T) {
	now := time.Now()
	ms := func(d time.Duration) int64 { return now.Add(d).UnixMilli() }
	email := func(addr string) func(snapEntry) bool {
		return func(e snapEntry) bool { return e.Credential.Email == addr }
	}
	oauth := func(access, mail string, expires int64) map[string]any {
		return map[string]any{"type": "oauth", "access": access, "refresh": "e2e-refresh-" + mail, "expires": expires, "email": mail}
	}
	var err error
	up := func(dst *int64, provider string, cred map[string]any, pick func(snapEntry) bool) {
		if err != nil {
			return
		}
		*dst, err = s.api.upload(s.ctx, provider, cred, pick)
	}
	up(&s.apiKey, "openai", map[string]any{"type": "api_key", "key": canaryAPIKey},
		func(e snapEntry) bool { return e.Credential.Type == "api_key" })
	// Expires inside the near-expiry alert's 4 min window; the broker's
	// refresh of it fails (offline), transiently, so it stays active.
	up(&s.soon, "anthropic", oauth("e2e-access-soon", "soon@e2e.example", ms(150*time.Second)), email("soon@e2e.example"))
	// Already expired: overdue, so the exporter's self-healing refreshes it.
	up(&s.expired, "anthropic", oauth("e2e-access-expired", "expired@e2e.example", ms(-10*time.Minute)), email("expired@e2e.example"))
	// Expired for longer than --monitor.disable-expired-after=1h.
	up(&s.stale, "anthropic", oauth("e2e-access-stale", "stale@e2e.example", ms(-2*time.Hour)), email("stale@e2e.example"))
	day := oauth("e2e-access-day-1", "day@e2e.example", ms(24*time.Hour))
	day["accountId"] = "acct-e2e-day"
	up(&s.day, "openai-codex", day, email("day@e2e.example"))
	up(&s.victim, "openai-codex", oauth("e2e-access-victim", "victim@e2e.example", ms(24*time.Hour)), email("victim@e2e.example"))
	up(&s.canary, "google-gemini-cli", map[string]any{
		"type": "oauth", "access": canaryAccess, "refresh": canaryRefresh, "expires": ms(24 * time.Hour),
		"email": "canary@e2e.example", "projectId": "proj-e2e", "clientSecret": canarySecret,
	}, email("canary@e2e.example"))
	if err != nil {
		t.Fatalf("seeding the broker: %v", err)
	}
	t.Logf("seeded ids: api_key=%d soon=%d expired=%d stale=%d day=%d victim=%d canary=%d",
		s.apiKey, s.soon, s.expired, s.stale, s.day, s.victim, s.canary)

	// The absence checks at the end only mean something if the canaries
	// really are in what the broker serves the exporter.
	raw, err := get(s.ctx, s.hc, s.broker.url+"/v1/snapshot", map[string]string{"Authorization": "Bearer " + s.api.token})
	if err != nil {
		t.Fatal(err)
	}
	role, _ := canaries.find(string(raw))
	for _, want := range []string{"OAuth access token", "API key", "clientSecret"} {
		if !strings.Contains(role, want) {
			t.Fatalf("the broker snapshot does not carry the %s canary (found: %q); the leak checks would prove nothing", want, role)
		}
	}

	var h struct {
		OK      bool   `json:"ok"`
		Version string `json:"version"`
	}
	body, err := get(s.ctx, s.hc, s.broker.url+"/v1/healthz", nil)
	if err == nil {
		err = json.Unmarshal(body, &h)
	}
	if err != nil || !h.OK || h.Version == "" {
		t.Fatalf("broker healthz: ok=%v version=%q err=%v", h.OK, h.Version, err)
	}
	s.brokerVer = h.Version
}

func (s *suite) startAlertmanager(t *testing.T, bin string) {
	dir := filepath.Join(s.work, "alertmanager")
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "alertmanager.yml")
	writeFile(t, cfg, alertmanagerConfig)
	port := freePort(t)
	s.amURL = "http://127.0.0.1:" + strconv.Itoa(port)
	p := startProc(t, "alertmanager", filepath.Join(dir, "alertmanager.log"), cleanEnv(dir), bin,
		"--config.file="+cfg,
		"--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address=127.0.0.1:"+strconv.Itoa(port),
		"--cluster.listen-address=",
	)
	t.Cleanup(func() {
		if t.Failed() {
			logTail(t, "alertmanager", p.log, 20)
		}
	})
	if err := waitHTTP200(s.ctx, s.hc, s.amURL+"/-/ready", 60*time.Second, p.alive); err != nil {
		t.Fatalf("alertmanager not ready: %v", err)
	}
}

func (s *suite) startPrometheus(t *testing.T, bin, root string) {
	dir := filepath.Join(s.work, "prometheus")
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	amPort := strings.TrimPrefix(s.amURL, "http://127.0.0.1:")
	am, _ := strconv.Atoi(amPort)
	exporterPort := freePort(t)
	s.exporterAddr = "127.0.0.1:" + strconv.Itoa(exporterPort)
	s.exporterURL = "http://" + s.exporterAddr
	rules := s.rules
	if rules == nil {
		rules = ruleFiles(t, root)
	}
	cfg := filepath.Join(dir, "prometheus.yml")
	writeFile(t, cfg, prometheusConfig(exporterPort, am, rules))
	s.prom = &promAPI{hc: s.hc, url: "http://127.0.0.1:" + strconv.Itoa(port)}
	p := startProc(t, "prometheus", filepath.Join(dir, "prometheus.log"), cleanEnv(dir), bin,
		"--config.file="+cfg,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address=127.0.0.1:"+strconv.Itoa(port),
		// Only how often a still-firing alert is re-sent; the first
		// notification goes out when the alert starts firing.
		"--rules.alert.resend-delay=5s",
	)
	t.Cleanup(func() {
		if t.Failed() {
			logTail(t, "prometheus", p.log, 20)
		}
	})
	if err := waitHTTP200(s.ctx, s.hc, s.prom.url+"/-/ready", 60*time.Second, p.alive); err != nil {
		t.Fatalf("prometheus not ready: %v", err)
	}
	groups, _, err := s.prom.rules(s.ctx)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	files := map[string]bool{}
	for _, g := range groups {
		files[g.File] = true
		for _, r := range g.Rules {
			names[r.Name] = true
		}
	}
	if len(files) != len(rules) {
		t.Fatalf("prometheus loaded rule groups from %d files, the repo ships %d", len(files), len(rules))
	}
	for _, n := range []string{alertUnreachable, alertExpiringSoon} {
		if !names[n] {
			t.Fatalf("alert %s is not among the loaded rules %v", n, sortedKeys(names))
		}
	}
}

func (s *suite) startExporter(t *testing.T, bin string) {
	home := filepath.Join(s.work, "exporter-home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(strings.TrimPrefix(s.exporterAddr, "127.0.0.1:"))
	s.exporter = startProc(t, "exporter", filepath.Join(s.work, "exporter.log"), cleanEnv(home),
		append([]string{bin}, exporterFlags(s.broker, port)...)...)
	t.Cleanup(func() {
		if t.Failed() {
			logTail(t, "exporter", s.exporter.log, 40)
		}
	})
	if err := waitHTTP200(s.ctx, s.hc, s.exporterURL+"/-/ready", 60*time.Second, s.exporter.alive); err != nil {
		t.Fatalf("exporter not ready: %v", err)
	}
}

// ---- assertions ----

func (s *suite) scrape() (metrics, error) {
	if err := s.exporter.alive(); err != nil {
		return nil, backoffStop{err}
	}
	m, _, err := scrape(s.ctx, s.hc, s.exporterURL+"/metrics")
	return m, err
}

// matches compares the exporter with a snapshot fetched just before the
// scrape; callers poll it, since the broker moves on its own (sweeps).
func (s *suite) matches() (*snapshot, metrics, error) {
	snap, err := s.api.snapshot(s.ctx)
	if err != nil {
		return nil, nil, err
	}
	m, err := s.scrape()
	if err != nil {
		return nil, nil, err
	}
	gen, err := lastStreamedGeneration(filepath.Join(s.broker.dir, "broker.log"))
	if err != nil {
		return nil, nil, err
	}
	return snap, m, compareMirror(snap, m, s.brokerVer, gen)
}

// lastStreamedGeneration reads the broker's log (real-broker.sh truncates
// it on every start, so it covers the current process only) for the
// generation of the last stream frame sent; the exporter is the only
// stream client. Relies on 18.2.3's debug lines "auth-broker stream
// opened|entry|removed", which carry the frame's generation.
func lastStreamedGeneration(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	gen, found := int64(0), false
	for sc.Scan() {
		if !strings.Contains(sc.Text(), `"auth-broker stream `) {
			continue
		}
		var l struct {
			Message    string `json:"message"`
			Generation *int64 `json:"generation"`
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil || l.Generation == nil {
			continue
		}
		switch l.Message {
		case "auth-broker stream opened", "auth-broker stream entry", "auth-broker stream removed":
			gen, found = *l.Generation, true
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	if !found {
		return 0, fmt.Errorf("the broker log shows no stream frame yet")
	}
	return gen, nil
}

func (s *suite) eventually(t *testing.T, what string, timeout time.Duration, f func() error) {
	t.Helper()
	if err := poll(s.ctx, timeout, f); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func (s *suite) mirrorMatchesSnapshot(t *testing.T) {
	s.eventually(t, "exporter metrics = broker snapshot", 60*time.Second, func() error {
		_, _, err := s.matches()
		return err
	})
}

func (s *suite) rotationAndBlock(t *testing.T) {
	until := time.Now().Add(time.Hour).UnixMilli()
	if _, err := s.api.do(s.ctx, http.MethodPost, "/v1/credential/"+itoa(s.day)+"/block",
		map[string]any{"providerKey": "openai-codex:oauth", "blockScope": "tier:e2e", "blockedUntilMs": until}, nil); err != nil {
		t.Fatal(err)
	}
	// A new access token for the same identity: the broker updates the row
	// in place, which is what a successful rotation looks like to clients.
	rotatedAt := time.Now()
	day := map[string]any{"type": "oauth", "access": "e2e-access-day-2", "refresh": "e2e-refresh-day-2",
		"expires": rotatedAt.Add(25 * time.Hour).UnixMilli(), "email": "day@e2e.example", "accountId": "acct-e2e-day"}
	id, err := s.api.upload(s.ctx, "openai-codex", day, func(e snapEntry) bool { return e.Credential.Email == "day@e2e.example" })
	if err != nil {
		t.Fatal(err)
	}
	if id != s.day {
		t.Fatalf("re-upload gave id %d, want the row %d updated in place", id, s.day)
	}
	s.eventually(t, "rotation observed and block mirrored", 60*time.Second, func() error {
		snap, m, err := s.matches()
		if err != nil {
			return err
		}
		if len(snap.byID()[s.day].Blocks) == 0 {
			return fmt.Errorf("broker lists no block on %d", s.day)
		}
		for _, smp := range m["authbroker_credential_rotations_total"] {
			want := 0.0
			if smp.labels["id"] == itoa(s.day) {
				want = 1
			}
			// Offline, no other credential rotates: entry frames re-send
			// every OAuth row on each bump and must not count as rotations.
			if smp.value != want {
				return fmt.Errorf("credential_rotations_total%s = %v, want %v", fmtLabels(smp.labels), smp.value, want)
			}
		}
		last, err := m.one("authbroker_credential_last_rotation_timestamp_seconds", "id", itoa(s.day))
		if err != nil {
			return err
		}
		if lo, hi := float64(rotatedAt.Add(-5*time.Second).Unix()), float64(time.Now().Add(5*time.Second).Unix()); last < lo || last > hi {
			return fmt.Errorf("last rotation at %v, want within [%v, %v]", last, lo, hi)
		}
		if n := len(m["authbroker_credential_last_rotation_timestamp_seconds"]); n != 1 {
			return fmt.Errorf("%d credentials have a last rotation, want 1", n)
		}
		return nil
	})
}

func (s *suite) disableThroughBroker(t *testing.T) {
	id := itoa(s.victim)
	s.eventually(t, "victim series present", 30*time.Second, func() error {
		m, err := s.scrape()
		if err != nil {
			return err
		}
		if len(m.seriesWithID(id)) == 0 {
			return fmt.Errorf("no series for credential %s yet", id)
		}
		return nil
	})
	if _, err := s.api.do(s.ctx, http.MethodPost, "/v1/credential/"+id+"/disable", nil, nil); err != nil {
		t.Fatal(err)
	}
	s.eventually(t, "disabled credential's series gone", 60*time.Second, func() error {
		snap, m, err := s.matches()
		if err != nil {
			return err
		}
		if _, ok := snap.byID()[s.victim]; ok {
			return fmt.Errorf("broker still lists %s", id)
		}
		if left := m.seriesWithID(id); len(left) != 0 {
			return fmt.Errorf("series left for disabled credential: %v", left)
		}
		// "disabled via auth-broker" is the broker's default cause.
		return oneValue(m, "authbroker_credentials_disabled", 1, "provider", "openai-codex", "cause", "manual")
	})
	s.eventually(t, "Prometheus sees the series end", 30*time.Second, func() error {
		r, err := s.prom.query(s.ctx, `{id="`+id+`", job="authbroker"}`)
		if err != nil {
			return err
		}
		if len(r.Samples) != 0 {
			return fmt.Errorf("prometheus still returns %d series for id %s", len(r.Samples), id)
		}
		return nil
	})
}

func oneValue(m metrics, name string, want float64, kv ...string) error {
	v, err := m.one(name, kv...)
	if err != nil {
		return err
	}
	if v != want {
		return fmt.Errorf("%s%s = %v, want %v", name, fmtKV(kv), v, want)
	}
	return nil
}

// selfHealing: with --monitor.refresh-overdue the exporter asks the broker
// to refresh the expired credential; offline, the broker's upstream call
// fails and it answers 500 with the provider's error, which the store
// classifies as reason "upstream". The failure is transient for the broker
// (connection refused, not invalid_grant), so the row stays. The credential that
// stayed expired beyond --monitor.disable-expired-after is disabled.
func (s *suite) selfHealing(t *testing.T) {
	var selfCause string
	s.eventually(t, "refresh error and self-disable counted", 90*time.Second, func() error {
		m, err := s.scrape()
		if err != nil {
			return err
		}
		if v, err := m.one("authbroker_refresh_requests_total", "provider", "anthropic", "result", "error"); err != nil || v < 1 {
			return fmt.Errorf("refresh_requests_total{anthropic,error} = %v (%v), want >= 1", v, err)
		}
		if v, err := m.one("authbroker_refresh_errors_total", "provider", "anthropic", "reason", "upstream"); err != nil || v < 1 {
			return fmt.Errorf("refresh_errors_total{anthropic,upstream} = %v (%v), want >= 1", v, err)
		}
		if v, err := m.one("authbroker_disable_requests_total", "provider", "anthropic", "result", "ok"); err != nil || v < 1 {
			return fmt.Errorf("disable_requests_total{anthropic,ok} = %v (%v), want >= 1", v, err)
		}
		if left := m.seriesWithID(itoa(s.stale)); len(left) != 0 {
			return fmt.Errorf("self-disabled credential still has series: %v", left)
		}
		// The exporter's own disable cause ("authbroker_exporter: expired
		// for more than …") is not one of the broker's texts; the contract
		// only fixes that each tombstone is counted once, under a cause of
		// the closed vocabulary.
		var total float64
		for _, smp := range m.find("authbroker_credentials_disabled", "provider", "anthropic") {
			total += smp.value
			if smp.value != 0 {
				selfCause = smp.labels["cause"]
			}
		}
		if total != 1 {
			return fmt.Errorf("credentials_disabled{provider=\"anthropic\"} sums to %v over causes, want 1", total)
		}
		return nil
	})
	// The operator's own policy, carried out by the exporter, is a manual disable.
	if selfCause != "manual" {
		t.Errorf("the exporter's own disable is counted under cause=%q, want manual", selfCause)
	}

	m, err := s.scrape()
	if err != nil {
		t.Fatal(err)
	}
	for _, smp := range m["authbroker_refresh_errors_total"] {
		if smp.labels["reason"] != "upstream" && smp.value != 0 {
			t.Errorf("unexpected refresh error %s = %v", fmtLabels(smp.labels), smp.value)
		}
	}
	for _, smp := range m["authbroker_refresh_requests_total"] {
		if smp.labels["result"] == "ok" && smp.value != 0 {
			t.Errorf("%s = %v, but every refresh must fail offline", fmtLabels(smp.labels), smp.value)
		}
	}

	// The broker itself logged the failed refresh route call for that id
	// (its sweep logs "refresh failed (transient)" instead).
	if logged, err := brokerLogged(filepath.Join(s.broker.dir, "broker.log"), "auth-broker refresh failed", s.expired); err != nil {
		t.Errorf("broker log: %v", err)
	} else if !logged {
		t.Errorf("broker log has no failed refresh call for credential %d", s.expired)
	}
	ts, err := s.api.disabled(s.ctx)
	if err != nil {
		t.Fatal(err)
	}
	var staleCause string
	for _, tb := range ts {
		switch tb.ID {
		case s.stale:
			staleCause = tb.Cause
		case s.soon, s.expired:
			t.Errorf("broker disabled credential %d (%s) after a transient refresh failure", tb.ID, tb.Cause)
		}
	}
	if !strings.HasPrefix(staleCause, "authbroker_exporter:") {
		t.Errorf("credential %d tombstone cause %q, want the exporter's", s.stale, staleCause)
	}
	snap, err := s.api.snapshot(s.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []int64{s.soon, s.expired} {
		if _, ok := snap.byID()[id]; !ok {
			t.Errorf("credential %d left the snapshot after a transient refresh failure", id)
		}
	}
	s.eventually(t, "Prometheus has the refresh errors", 30*time.Second, func() error {
		r, err := s.prom.query(s.ctx, `authbroker_refresh_errors_total{job="authbroker",provider="anthropic",reason="upstream"} > 0`)
		if err != nil {
			return err
		}
		if len(r.Samples) != 1 {
			return fmt.Errorf("query returned %d series, want 1", len(r.Samples))
		}
		return nil
	})
}

// brokerLogged reports whether the broker's log has a line with that
// message for credential id.
func brokerLogged(path, message string, id int64) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var l struct {
			Message string `json:"message"`
			ID      int64  `json:"id"`
		}
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.Message == message && l.ID == id {
			return true, nil
		}
	}
	return false, sc.Err()
}

type state struct {
	ids        []int64
	generation float64
}

func (s *suite) lastState(t *testing.T) state {
	var st state
	s.eventually(t, "pre-kill state", 60*time.Second, func() error {
		snap, m, err := s.matches()
		if err != nil {
			return err
		}
		g, err := m.one("authbroker_snapshot_generation")
		if err != nil {
			return err
		}
		st = state{ids: snap.ids(), generation: g}
		return nil
	})
	return st
}

func (s *suite) killBroker(t *testing.T, pre state) {
	if err := s.broker.kill(s.ctx); err != nil {
		t.Fatal(err)
	}
	s.eventually(t, "up=0 after SIGKILL", 30*time.Second, func() error {
		m, err := s.scrape()
		if err != nil {
			return err
		}
		if err := oneValue(m, "authbroker_up", 0); err != nil {
			return err
		}
		if err := oneValue(m, "authbroker_stream_connected", 0); err != nil {
			return err
		}
		// Last good state kept: the mirror still holds every credential.
		if got := idsOf(m); !equalIDs(got, pre.ids) {
			return fmt.Errorf("mirror ids %v, before the kill %v", got, pre.ids)
		}
		return nil
	})
	// The exporter stays ready: /-/ready is about the exporter serving; the
	// broker's state is authbroker_up's.
	if err := waitHTTP200(s.ctx, s.hc, s.exporterURL+"/-/ready", time.Second, s.exporter.alive); err != nil {
		t.Fatalf("/-/ready with the broker down: %v", err)
	}
	s.eventually(t, "Prometheus sees up=0", 30*time.Second, func() error {
		r, err := s.prom.query(s.ctx, `authbroker_up{job="authbroker"} == 0`)
		if err != nil {
			return err
		}
		if len(r.Samples) != 1 {
			return fmt.Errorf("authbroker_up == 0 returned %d series", len(r.Samples))
		}
		return nil
	})
}

func findAlert(as []promAlert, name string, kv ...string) *promAlert {
	for i := range as {
		a := &as[i]
		if a.Labels["alertname"] != name {
			continue
		}
		ok := true
		for j := 0; j+1 < len(kv); j += 2 {
			if a.Labels[kv[j]] != kv[j+1] {
				ok = false
			}
		}
		if ok {
			return a
		}
	}
	return nil
}

func (s *suite) nearExpiryAlert(t *testing.T) {
	id := itoa(s.soon)
	s.eventually(t, alertExpiringSoon+" firing in Prometheus", 4*time.Minute, func() error {
		as, _, err := s.prom.alerts(s.ctx)
		if err != nil {
			return err
		}
		a := findAlert(as, alertExpiringSoon, "id", id)
		if a == nil {
			return fmt.Errorf("no %s alert for id %s", alertExpiringSoon, id)
		}
		if a.State != "firing" {
			return fmt.Errorf("%s for id %s is %s", alertExpiringSoon, id, a.State)
		}
		if a.Labels["identity"] != "email:soon@e2e.example" || a.Labels["provider"] != "anthropic" {
			return fmt.Errorf("alert labels %v", a.Labels)
		}
		return nil
	})
	// Credentials a day away must not be caught by the same rule.
	as, _, err := s.prom.alerts(s.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, far := range []int64{s.day, s.canary} {
		if a := findAlert(as, alertExpiringSoon, "id", itoa(far)); a != nil {
			t.Errorf("%s is %s for credential %d that expires in a day", alertExpiringSoon, a.State, far)
		}
	}
	s.eventually(t, alertExpiringSoon+" received by Alertmanager", 60*time.Second, func() error {
		as, _, err := amAlerts(s.ctx, s.hc, s.amURL)
		if err != nil {
			return err
		}
		for _, a := range as {
			if a.Labels["alertname"] == alertExpiringSoon && a.Labels["id"] == id && a.Labels["job"] == "authbroker" {
				if a.Status.State != "active" {
					return fmt.Errorf("alertmanager has the alert in state %s", a.Status.State)
				}
				return nil
			}
		}
		return fmt.Errorf("alertmanager has no %s for id %s (%d alerts)", alertExpiringSoon, id, len(as))
	})
}

func (s *suite) unreachableAlert(t *testing.T) {
	s.eventually(t, alertUnreachable+" firing", 4*time.Minute, func() error {
		as, _, err := s.prom.alerts(s.ctx)
		if err != nil {
			return err
		}
		a := findAlert(as, alertUnreachable, "instance", s.exporterAddr)
		if a == nil {
			return fmt.Errorf("no %s alert for %s", alertUnreachable, s.exporterAddr)
		}
		if a.State != "firing" {
			return fmt.Errorf("%s is %s", alertUnreachable, a.State)
		}
		return nil
	})
}

func (s *suite) restartBroker(t *testing.T, pre state) {
	// Same state dir, so the same port, token and SQLite store.
	if err := s.broker.start(s.ctx, "restart"); err != nil {
		t.Fatal(err)
	}
	var after *snapshot
	var m metrics
	// The exporter's reconnect backoff is capped at 30 s.
	s.eventually(t, "exporter follows the restarted broker", 90*time.Second, func() error {
		snap, mm, err := s.matches()
		if err != nil {
			return err
		}
		if !equalIDs(snap.ids(), pre.ids) {
			return fmt.Errorf("broker came back with ids %v, before %v", snap.ids(), pre.ids)
		}
		after, m = snap, mm
		return nil
	})
	resets, err := m.one("authbroker_snapshot_generation_resets_total")
	if err != nil {
		t.Fatal(err)
	}
	gen, err := m.one("authbroker_snapshot_generation")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("mirror generation before the kill %v, after the restart %v (broker snapshot %d); resets_total %v",
		pre.generation, gen, after.Generation, resets)
	if gen < pre.generation && resets < 1 {
		t.Errorf("generation went back from %v to %v but resets_total = %v", pre.generation, gen, resets)
	}
	// Usage fetched while the broker was down is "no data"; it must come
	// back once the mirror has recovered, not only when that answer expires.
	s.eventually(t, "usage series back in Prometheus", 60*time.Second, func() error {
		r, err := s.prom.query(s.ctx, `authbroker_usage_match{state="unmatched"}`)
		if err != nil {
			return err
		}
		if len(r.Samples) == 0 {
			return fmt.Errorf("no authbroker_usage_match series yet")
		}
		return nil
	})
	s.eventually(t, alertUnreachable+" resolved", 60*time.Second, func() error {
		as, _, err := s.prom.alerts(s.ctx)
		if err != nil {
			return err
		}
		if a := findAlert(as, alertUnreachable); a != nil {
			return fmt.Errorf("%s still %s", alertUnreachable, a.State)
		}
		return nil
	})
}

// Families that are absent by construction of the scenario, with why. A
// dashboard query may come back empty only if it reads one of these and
// Prometheus confirms the family has no series.
var expectedAbsent = []struct {
	re  *regexp.Regexp
	why string
}{
	{regexp.MustCompile(`^(authbroker_usage_limit_.*|authbroker_usage_reset_.*|authbroker_usage_report_fetched_timestamp_seconds|authbroker_usage_reports_unmatched|provider_limit:authbroker_usage_limit_.*|id_limit:authbroker_usage_limit_.*)$`),
		"usage: the offline broker's /v1/usage answers {reports: []} (providers unreachable), so there are no limits, saved resets, reports or recording-rule results"},
	{regexp.MustCompile(`^authbroker_provider_next_usable_timestamp_seconds$`),
		"capacity: written only while a provider has no usable credential"},
}

func absentWhy(name string) string {
	for _, e := range expectedAbsent {
		if e.re.MatchString(name) {
			return e.why
		}
	}
	return ""
}

func metricNames(expr string) ([]string, error) {
	ast, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	set := map[string]bool{}
	parser.Inspect(ast, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			if vs.Name != "" {
				set[vs.Name] = true
			}
			for _, m := range vs.LabelMatchers {
				if m.Name == "__name__" {
					set[m.Value] = true
				}
			}
		}
		return nil
	})
	return sortedKeys(set), nil
}

func (s *suite) dashboardQueries(t *testing.T) {
	qs, err := dashboards.Queries()
	if err != nil {
		t.Fatal(err)
	}
	if len(qs) == 0 {
		t.Fatal("dashboards.Queries returned nothing")
	}
	absent := map[string]bool{}
	present := func(name string) (bool, error) {
		if v, ok := absent[name]; ok {
			return !v, nil
		}
		r, err := s.prom.query(s.ctx, `count({__name__="`+name+`"})`)
		if err != nil {
			return false, err
		}
		absent[name] = len(r.Samples) == 0
		return !absent[name], nil
	}
	var withData, empty int
	var emptyLines []string
	for _, q := range qs {
		where := fmt.Sprintf("%s / %q / %s", q.UID, q.Panel, q.RefID)
		r, err := s.prom.query(s.ctx, q.Expr)
		if err != nil {
			t.Errorf("%s: Prometheus rejected the query: %v\n  %s", where, err, q.Expr)
			continue
		}
		if len(r.Samples) > 0 {
			withData++
			continue
		}
		empty++
		names, err := metricNames(q.Expr)
		if err != nil {
			t.Errorf("%s: parse: %v", where, err)
			continue
		}
		var why []string
		for _, n := range names {
			ok, err := present(n)
			if err != nil {
				t.Fatal(err)
			}
			if !ok && absentWhy(n) != "" {
				why = append(why, absentWhy(n))
			}
		}
		if len(why) == 0 {
			t.Errorf("%s returned no data although the scenario produces its inputs %v:\n  %s", where, names, q.Expr)
			continue
		}
		emptyLines = append(emptyLines, fmt.Sprintf("  %s: %s", where, why[0]))
	}
	sort.Strings(emptyLines)
	t.Logf("%d dashboard queries: %d with data, %d empty as expected:\n%s", len(qs), withData, empty, strings.Join(emptyLines, "\n"))
}

// noSecrets: no canary (the seeded access token, refresh token, API key,
// clientSecret, nor the broker's bearer token) in anything the exporter
// serves or logs, nor in Prometheus' or Alertmanager's view of it.
func (s *suite) noSecrets(t *testing.T) {
	check := func(where string, body []byte) {
		t.Helper()
		if role, found := canaries.find(string(body)); found {
			t.Errorf("canary (%s) found in %s", role, where)
		}
	}
	// The default health answer is a summary; view=full lists every credential.
	pages := []string{"/metrics", "/", "/-/ready", "/-/healthy", "/api/v1/health", "/api/v1/health?view=full"}
	if landing, err := get(s.ctx, s.hc, s.exporterURL+"/", nil); err == nil {
		for _, m := range regexp.MustCompile(`href="(/[^"]*)"`).FindAllStringSubmatch(string(landing), -1) {
			pages = append(pages, m[1])
		}
	}
	seen := map[string]bool{}
	for _, p := range pages {
		if seen[p] {
			continue
		}
		seen[p] = true
		body, err := get(s.ctx, s.hc, s.exporterURL+p, nil)
		if err != nil && len(body) == 0 {
			t.Logf("exporter %s: %v", p, err)
			continue
		}
		check("exporter "+p, body)
		if p == "/api/v1/health?view=full" && !healthLists(body, s.canary) {
			t.Errorf("exporter %s does not list the canary credential %d; the scan would prove little", p, s.canary)
		}
	}

	logb, err := os.ReadFile(s.exporter.log)
	if err != nil {
		t.Fatal(err)
	}
	// The broker's refresh error text passes through the store into this
	// line: the likeliest way for broker data to reach the log.
	if !strings.Contains(string(logb), "refresh overdue credential failed") {
		t.Errorf("exporter log lacks the failed self-healing refresh; the log check would prove little")
	}
	check("the exporter's debug log", logb)

	var labels []string
	body, err := s.prom.api(s.ctx, "/api/v1/labels", nil, &labels)
	if err != nil {
		t.Fatal(err)
	}
	check("Prometheus /api/v1/labels", body)
	for _, l := range labels {
		body, err := s.prom.api(s.ctx, "/api/v1/label/"+url.PathEscape(l)+"/values", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		check("Prometheus label values of "+l, body)
	}
	body, err = s.prom.api(s.ctx, "/api/v1/series", url.Values{"match[]": {`{__name__=~".+"}`}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	check("Prometheus /api/v1/series", body)
	if _, body, err := s.prom.alerts(s.ctx); err == nil {
		check("Prometheus /api/v1/alerts", body)
	}
	if _, body, err := amAlerts(s.ctx, s.hc, s.amURL); err == nil {
		check("Alertmanager /api/v2/alerts", body)
	}
	if len(labels) < 10 {
		t.Errorf("Prometheus knows only %d label names; the series check would prove little", len(labels))
	}
}

// healthLists reports whether a /api/v1/health answer lists credential id.
func healthLists(body []byte, id int64) bool {
	var h struct {
		Credentials []struct {
			ID int64 `json:"id"`
		} `json:"credentials"`
	}
	if json.Unmarshal(body, &h) != nil {
		return false
	}
	for _, c := range h.Credentials {
		if c.ID == id {
			return true
		}
	}
	return false
}
