//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/authbroker/authbroker_exporter/mixin"
)

// providerAlert is an alert about a provider's capacity that must reach
// Alertmanager while the provider has no usable credential, and resolve
// once one is usable again; forDuration is its rule's `for:`, and the
// firing alert's description ends with why (its template queries the
// exporter's series in the real Prometheus).
type providerAlert struct {
	name        string
	forDuration time.Duration
	why         string
}

// unavailableAlerts are the alerts TestProviderCapacity expects while
// both credentials are blocked. The first block is held for the longest
// `for:` among them, plus the time the other checks need. Prometheus loads
// the mixin rendered with these `for:` durations (capacityMixin): the
// shipped 2m would add two idle minutes to the suite, and tuning `for:`
// through `_config` is what an operator does too.
var unavailableAlerts = []providerAlert{
	{"AuthBrokerProviderUnavailable", 15 * time.Second, "when a rate-limit block ends."},
}

// capacityRules renders the mixin with unavailableAlerts' `for:`
// durations and writes the two rule files into dir.
func capacityRules(t *testing.T, root, dir string) []string {
	t.Helper()
	var override strings.Builder
	override.WriteString("{ _config+:: { alertFor+: {")
	for _, a := range unavailableAlerts {
		fmt.Fprintf(&override, " %s: '%ds',", a.name, int(a.forDuration.Seconds()))
	}
	override.WriteString(" } } }")
	out, err := mixin.Render(filepath.Join(root, "mixin"), override.String())
	if err != nil {
		t.Fatalf("rendering the mixin with %s: %v", override.String(), err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	var files []string
	for name, b := range map[string][]byte{"authbroker-alerts.yml": out.Alerts, "authbroker-rules.yml": out.Rules} {
		p := filepath.Join(dir, name)
		writeFile(t, p, string(b))
		files = append(files, p)
	}
	return files
}

// capacityProvider is the provider whose two credentials the test blocks.
const capacityProvider = "anthropic"

// TestProviderCapacity runs the exporter against the real broker with two
// credentials of one provider, blocks both through
// POST /v1/credential/:id/block with unscoped blocks, and checks that the
// metrics, the status page, the health API and `check --provider` agree
// that none is usable and when the first comes back; then lets the first
// block end and sees one usable again and the next-usable series gone.
func TestProviderCapacity(t *testing.T) {
	s, root := newSuite(t, "e2e-capacity", 9*time.Minute)
	ctx, work := s.ctx, s.work
	step := func(name string, f func(t *testing.T)) {
		if !t.Run(name, f) {
			t.FailNow()
		}
	}

	tl := installDeps(ctx, t, root)
	bin := filepath.Join(work, "authbroker_exporter")
	if _, err := runScript(ctx, os.Environ(), root, filepath.Join(root, "scripts/build.sh"), bin); err != nil {
		t.Fatalf("scripts/build.sh: %v", err)
	}
	s.broker = startBroker(ctx, t, root, filepath.Join(work, "broker"), tl.omp)
	t.Cleanup(func() {
		if t.Failed() {
			logTail(t, "broker", filepath.Join(s.broker.dir, "broker.log"), 30)
		}
	})
	tok := s.broker.token(t)
	canaries.add("broker bearer token", tok)
	s.api = &brokerAPI{hc: s.hc, url: s.broker.url, token: tok}

	c := &capacityRun{s: s, bin: bin}
	step("seed two credentials of one provider", c.seed)
	s.startAlertmanager(t, tl.alertmanager)
	s.rules = capacityRules(t, root, filepath.Join(work, "rules"))
	s.startPrometheus(t, tl.prometheus, root)
	s.startExporter(t, bin)

	step("both usable", func(t *testing.T) { c.waitCapacity(t, 2, nil) })
	step("both blocked: none usable until the earlier block ends", c.blockBoth)
	for _, a := range unavailableAlerts {
		step(a.name+" reaches Alertmanager", func(t *testing.T) { c.alertReachesAlertmanager(t, a) })
	}
	step("first block ended: one usable, no next-usable time", c.firstBlockEnds)
	for _, a := range unavailableAlerts {
		step(a.name+" resolves", func(t *testing.T) { c.alertResolves(t, a) })
	}
}

// capacityRun is TestProviderCapacity's state.
type capacityRun struct {
	s          *suite
	bin        string
	ids        [2]int64
	firstUntil time.Time // the earlier block's end, at the broker's millisecond
}

func (c *capacityRun) seed(t *testing.T) {
	for i, mail := range []string{"cap-a@e2e.example", "cap-b@e2e.example"} {
		id, err := c.s.api.upload(c.s.ctx, capacityProvider, map[string]any{
			"type": "oauth", "access": "e2e-access-" + mail, "refresh": "e2e-refresh-" + mail,
			"expires": time.Now().Add(24 * time.Hour).UnixMilli(), "email": mail,
		}, func(e snapEntry) bool { return e.Credential.Email == mail })
		if err != nil {
			t.Fatalf("seeding %s: %v", mail, err)
		}
		c.ids[i] = id
	}
	t.Logf("seeded %s credentials %d and %d", capacityProvider, c.ids[0], c.ids[1])
}

// block sets an unscoped block on id until until.
func (c *capacityRun) block(t *testing.T, id int64, until time.Time) {
	t.Helper()
	status, err := c.s.api.do(c.s.ctx, http.MethodPost, "/v1/credential/"+itoa(id)+"/block",
		map[string]any{"providerKey": capacityProvider + ":oauth", "blockScope": "", "blockedUntilMs": until.UnixMilli()}, nil)
	if err != nil || status != http.StatusOK {
		t.Fatalf("blocking %d: status %d, %v", id, status, err)
	}
}

// holdUnavailable is how long both credentials stay blocked: time for the
// metrics, page, API and check to be compared, and for the longest `for:`
// of unavailableAlerts with a minute to spare for evaluation and delivery.
func holdUnavailable() time.Duration {
	hold := 45 * time.Second
	for _, a := range unavailableAlerts {
		hold = max(hold, a.forDuration+90*time.Second)
	}
	return hold
}

func (c *capacityRun) blockBoth(t *testing.T) {
	now := time.Now()
	c.firstUntil = time.UnixMilli(now.Add(holdUnavailable()).UnixMilli())
	c.block(t, c.ids[0], c.firstUntil)
	c.block(t, c.ids[1], now.Add(holdUnavailable()+30*time.Minute))
	t.Logf("blocked %d until %s and %d for 30 min longer", c.ids[0], c.firstUntil.UTC().Format(time.RFC3339Nano), c.ids[1])
	c.waitCapacity(t, 0, &c.firstUntil)

	// The page's headline, the health API's and the check's first line
	// say the same: none usable, back when the first block ends.
	wantPrefix := fmt.Sprintf("%s: 0 of 2 usable, back at %s ", capacityProvider, c.firstUntil.UTC().Format("15:04 UTC"))
	page := c.pageHeadline(t)
	api := c.apiProvider(t)
	code, first := c.check(t)
	if code != 2 {
		t.Errorf("check --provider %s exited %d, want 2 (critical)\n%s", capacityProvider, code, first)
	}
	for what, line := range map[string]string{"page": page, "health API": api.Headline, "check": strings.TrimPrefix(first, "CRITICAL: ")} {
		if !strings.HasPrefix(line, wantPrefix) || !strings.HasSuffix(line, "when a rate-limit block ends") {
			t.Errorf("%s headline %q, want %q… when a rate-limit block ends", what, line, wantPrefix)
		}
	}
	t.Logf("page: %s\nhealth API: %s\ncheck (exit %d): %s", page, api.Headline, code, first)
	if !strings.HasPrefix(first, "CRITICAL: ") {
		t.Errorf("check's first line %q", first)
	}
	if api.Usable != 0 || api.Active != 2 || api.Capacity != "unavailable" || api.NextUsable == nil || !api.NextUsable.Equal(c.firstUntil) {
		t.Errorf("health API provider %+v, want 0 of 2 usable until %s", api, c.firstUntil)
	}
}

func (c *capacityRun) firstBlockEnds(t *testing.T) {
	// Waits on the condition: the block ends at firstUntil by the broker's
	// clock, and no frame announces it (docs/broker-protocol.md §7.7).
	c.waitCapacity(t, 1, nil)
	if page, want := c.pageHeadline(t), capacityProvider+": 1 of 2 usable, capacity low"; page != want {
		t.Errorf("page headline %q, want %q", page, want)
	}
	code, first := c.check(t)
	if code != 1 || first != "WARNING: "+capacityProvider+": 1 of 2 usable, capacity low" {
		t.Errorf("check --provider exited %d with %q, want 1 and the page's headline", code, first)
	}
}

// waitCapacity waits until /metrics shows usable credentials of the
// provider, both active, and the next-usable series at next (absent when
// next is nil).
func (c *capacityRun) waitCapacity(t *testing.T, usable int, next *time.Time) {
	t.Helper()
	timeout := time.Until(c.firstUntil) + 60*time.Second
	if next != nil || c.firstUntil.IsZero() {
		timeout = 60 * time.Second
	}
	c.s.eventually(t, fmt.Sprintf("%d usable %s credentials on /metrics", usable, capacityProvider), timeout, func() error {
		m, err := c.s.scrape()
		if err != nil {
			return err
		}
		if err := oneValue(m, "authbroker_provider_usable_credentials", float64(usable), "provider", capacityProvider); err != nil {
			return err
		}
		blocked := 2 - usable
		for state, want := range map[string]int{"blocked": blocked, "ok": usable, "expired": 0} {
			if err := oneValue(m, "authbroker_provider_credentials", float64(want), "provider", capacityProvider, "state", state); err != nil {
				return err
			}
		}
		got := m.find("authbroker_provider_next_usable_timestamp_seconds", "provider", capacityProvider)
		switch {
		case next == nil && len(got) != 0:
			return fmt.Errorf("next_usable present (%v) with %d usable", got[0].value, usable)
		case next == nil:
			return nil
		case len(got) != 1:
			return fmt.Errorf("%d next_usable series, want 1", len(got))
		case math.Abs(got[0].value-float64(next.UnixMilli())/1e3) > 1e-3:
			return fmt.Errorf("next_usable %.3f, want the earlier blockedUntilMs %d", got[0].value, next.UnixMilli())
		}
		return nil
	})
}

var headlineRE = regexp.MustCompile(`data-provider="([^"]*)" data-capacity="[a-z]+">.*?<span class="headline">([^<]*)</span>`)

// pageHeadline is the provider's line at the top of the status page.
func (c *capacityRun) pageHeadline(t *testing.T) string {
	t.Helper()
	body, err := get(c.s.ctx, c.s.hc, c.s.exporterURL+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range headlineRE.FindAllStringSubmatch(string(body), -1) {
		if html.UnescapeString(m[1]) == capacityProvider {
			return html.UnescapeString(m[2])
		}
	}
	t.Fatalf("the status page has no headline for %s", capacityProvider)
	return ""
}

type apiProvider struct {
	Provider   string     `json:"provider"`
	Capacity   string     `json:"capacity"`
	Active     int        `json:"active"`
	Usable     int        `json:"usable"`
	NextUsable *time.Time `json:"next_usable"`
	Headline   string     `json:"headline"`
}

// apiProvider is the provider's entry in the health API's providers.
func (c *capacityRun) apiProvider(t *testing.T) apiProvider {
	t.Helper()
	body, err := get(c.s.ctx, c.s.hc, c.s.exporterURL+"/api/v1/health", nil)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Providers []apiProvider `json:"providers"`
	}
	if err := json.Unmarshal(body, &rep); err != nil {
		t.Fatalf("health API: %v", err)
	}
	for _, p := range rep.Providers {
		if p.Provider == capacityProvider {
			return p
		}
	}
	t.Fatalf("the health API lists no %s among %d providers", capacityProvider, len(rep.Providers))
	return apiProvider{}
}

// check runs `check --provider` against the broker and returns its exit
// code and first line.
func (c *capacityRun) check(t *testing.T) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(c.s.ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, "check", "--provider="+capacityProvider,
		"--broker.url="+c.s.broker.url, "--broker.token-file="+c.s.broker.tokenFile)
	cmd.Env = cleanEnv(filepath.Join(c.s.work, "exporter-home"))
	out, err := cmd.Output()
	code := 0
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("check: %v", err)
	}
	if role, found := canaries.find(string(out)); found {
		t.Fatalf("check output holds the %s", role)
	}
	first, _, _ := strings.Cut(string(out), "\n")
	return code, first
}

// alertReachesAlertmanager waits until a fires for the provider in
// Prometheus and is active in Alertmanager, and checks why its
// description gives.
func (c *capacityRun) alertReachesAlertmanager(t *testing.T, a providerAlert) {
	var description string
	c.s.eventually(t, a.name+" active in Alertmanager", a.forDuration+90*time.Second, func() error {
		as, _, err := c.s.prom.alerts(c.s.ctx)
		if err != nil {
			return err
		}
		p := findAlert(as, a.name, "provider", capacityProvider)
		if p == nil || p.State != "firing" {
			return fmt.Errorf("%s is not firing for %s in Prometheus", a.name, capacityProvider)
		}
		description = p.Annotations["description"]
		am, _, err := amAlerts(c.s.ctx, c.s.hc, c.s.amURL)
		if err != nil {
			return err
		}
		for _, x := range am {
			if x.Labels["alertname"] == a.name && x.Labels["provider"] == capacityProvider && x.Status.State == "active" {
				return nil
			}
		}
		return fmt.Errorf("alertmanager has no active %s for %s", a.name, capacityProvider)
	})
	if !strings.HasSuffix(description, a.why) {
		t.Errorf("%s: description %q does not end with %q", a.name, description, a.why)
	}
	t.Logf("%s: %s", a.name, description)
}

// alertResolves waits until a no longer fires in Prometheus and is no
// longer active in Alertmanager.
func (c *capacityRun) alertResolves(t *testing.T, a providerAlert) {
	c.s.eventually(t, a.name+" resolved", 90*time.Second, func() error {
		as, _, err := c.s.prom.alerts(c.s.ctx)
		if err != nil {
			return err
		}
		if p := findAlert(as, a.name, "provider", capacityProvider); p != nil {
			return fmt.Errorf("%s is still %s in Prometheus", a.name, p.State)
		}
		am, _, err := amAlerts(c.s.ctx, c.s.hc, c.s.amURL)
		if err != nil {
			return err
		}
		for _, x := range am {
			if x.Labels["alertname"] == a.name && x.Labels["provider"] == capacityProvider && x.Status.State == "active" {
				return fmt.Errorf("alertmanager still has %s active", a.name)
			}
		}
		return nil
	})
}
