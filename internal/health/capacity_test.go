package health

import (
	"encoding/json"
	"html"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/authbroker/authbroker_exporter/store"
	"github.com/authbroker/authbroker_exporter/store/broker"
)

func block(key, scope string, until time.Duration) broker.Block {
	return broker.Block{ProviderKey: key, Scope: scope, BlockedUntil: t0.Add(until)}
}

func withBlocks(e *store.Entry, bs ...broker.Block) *store.Entry {
	e.Blocks = bs
	return e
}

// capacityOf evaluates one provider's credentials with the given reports
// through Capacity, the metrics' path.
func capacityOf(t *testing.T, entries []*store.Entry, reports ...broker.UsageReport) ProviderCapacity {
	t.Helper()
	in := healthy()
	in.View.Entries = entries
	in.Usage = store.NewUsage(reports, t0, in.View.Entries)
	caps := Capacity(in, Thresholds{})
	if len(caps) != 1 {
		t.Fatalf("Capacity gave %d providers, want 1: %+v", len(caps), caps)
	}
	return caps[0]
}

// TestUsableNow is the rule's table: every condition alone and in
// combination, through the same classification the page uses.
func TestUsableNow(t *testing.T) {
	fresh := func() *store.Entry { return oauth(1, "anthropic", "a@example.com", time.Hour, 55*time.Minute) }
	codex := func() *store.Entry { return oauth(1, "openai-codex", "a@example.com", time.Hour, 55*time.Minute) }
	const ck = "openai-codex:oauth"
	exhausted := func(resetsIn time.Duration) broker.UsageReport {
		return report("anthropic", "a@example.com", limit("anthropic:5h", f64(1.02), "exhausted", resetsIn))
	}
	withResets := func(r broker.UsageReport, sr broker.SavedResets) broker.UsageReport {
		r.Resets = &sr
		return r
	}
	cases := []struct {
		name    string
		e       *store.Entry
		reports []broker.UsageReport
		state   string
		usable  bool
		back    time.Duration // from t0; ignored when usable
		known   bool
		cause   string
		login   bool
	}{
		{name: "fresh oauth", e: fresh(), state: StateOK, usable: true},
		{name: "api key", e: apiKey(1, "anthropic"), state: StateOK, usable: true},
		{name: "api key unscoped block", e: withBlocks(apiKey(1, "anthropic"), block("anthropic:api_key", "", 9*time.Minute)),
			state: StateBlocked, back: 9 * time.Minute, known: true, cause: BackBlockEnds},
		{name: "api key scoped block", e: withBlocks(apiKey(1, "anthropic"), block("anthropic:api_key", "tier:fable", 9*time.Minute)),
			state: StateBlocked, usable: true},
		{name: "expiring but usable", e: oauth(1, "anthropic", "a@example.com", 3*time.Minute, -70*time.Second), state: StateExpiring, usable: true},
		{name: "overdue but usable", e: oauth(1, "anthropic", "a@example.com", 2*time.Hour, -3*time.Minute), state: StateRotationOverdue, usable: true},
		{name: "expiring and overdue, usable", e: oauth(1, "anthropic", "a@example.com", 3*time.Minute, -3*time.Minute), state: StateExpiring, usable: true},
		{name: "expired", e: oauth(1, "anthropic", "a@example.com", -time.Minute, 20*time.Second), state: StateExpired, login: true},
		{name: "expired and blocked", e: withBlocks(oauth(1, "anthropic", "a@example.com", -time.Minute, 20*time.Second), block("anthropic:oauth", "", 5*time.Minute)),
			state: StateExpired, login: true},
		{name: "unscoped block", e: withBlocks(fresh(), block("anthropic:oauth", "", 12*time.Minute)),
			state: StateBlocked, back: 12 * time.Minute, known: true, cause: BackBlockEnds},
		{name: "two unscoped blocks: the later ends it", e: withBlocks(fresh(), block("anthropic:oauth", "", 12*time.Minute), block("anthropic:other", "", 20*time.Minute)),
			state: StateBlocked, back: 20 * time.Minute, known: true, cause: BackBlockEnds},
		{name: "ended block", e: withBlocks(fresh(), block("anthropic:oauth", "", -time.Second)), state: StateOK, usable: true},
		{name: "block ending now", e: withBlocks(fresh(), block("anthropic:oauth", "", 0)), state: StateOK, usable: true},
		{name: "tier block", e: withBlocks(fresh(), block("anthropic:oauth", "tier:fable", 12*time.Minute)), state: StateBlocked, usable: true},
		{name: "expiring and tier-blocked", e: withBlocks(oauth(1, "anthropic", "a@example.com", 3*time.Minute, -70*time.Second), block("anthropic:oauth", "tier:x", time.Minute)),
			state: StateExpiring, usable: true},
		{name: "codex shared", e: withBlocks(codex(), block(ck, "shared", 7*time.Minute)),
			state: StateBlocked, back: 7 * time.Minute, known: true, cause: BackBlockEnds},
		{name: "codex chat only", e: withBlocks(codex(), block(ck, "chat", 7*time.Minute)), state: StateBlocked, usable: true},
		{name: "codex spark only", e: withBlocks(codex(), block(ck, "spark", 7*time.Minute)), state: StateBlocked, usable: true},
		{name: "codex chat and spark: until the first ends", e: withBlocks(codex(), block(ck, "chat", 42*time.Minute), block(ck, "spark", 17*time.Minute)),
			state: StateBlocked, back: 17 * time.Minute, known: true, cause: BackBlockEnds},
		{name: "codex chat and spark under a longer unscoped block", e: withBlocks(codex(), block(ck, "", time.Hour), block(ck, "chat", 42*time.Minute), block(ck, "spark", 17*time.Minute)),
			state: StateBlocked, back: time.Hour, known: true, cause: BackBlockEnds},
		{name: "codex chat ended, spark active", e: withBlocks(codex(), block(ck, "chat", -time.Minute), block(ck, "spark", 17*time.Minute)), state: StateBlocked, usable: true},
		{name: "chat and spark of another key", e: withBlocks(fresh(), block("anthropic:oauth", "chat", 9*time.Minute), block("anthropic:oauth", "spark", 9*time.Minute)),
			state: StateBlocked, usable: true},
		{name: "shared of another key", e: withBlocks(fresh(), block("anthropic:oauth", "shared", 9*time.Minute)), state: StateBlocked, usable: true},
		{name: "usage ok", e: fresh(), reports: []broker.UsageReport{report("anthropic", "a@example.com", limit("anthropic:5h", f64(0.4), "ok", time.Hour))},
			state: StateOK, usable: true},
		{name: "usage warning is usable", e: fresh(), reports: []broker.UsageReport{report("anthropic", "a@example.com", limit("anthropic:5h", f64(0.95), "", time.Hour))},
			state: StateOK, usable: true},
		{name: "usage exhausted", e: fresh(), reports: []broker.UsageReport{exhausted(95 * time.Minute)},
			state: StateUsageExhausted, back: 95 * time.Minute, known: true, cause: BackWindowReset},
		{name: "usage exhausted by fraction alone", e: fresh(), reports: []broker.UsageReport{report("anthropic", "a@example.com", limit("anthropic:5h", f64(1), "", 30*time.Minute))},
			state: StateUsageExhausted, back: 30 * time.Minute, known: true, cause: BackWindowReset},
		{name: "two exhausted windows: the later resets it", e: fresh(), reports: []broker.UsageReport{report("anthropic", "a@example.com",
			limit("anthropic:5h", f64(1.02), "exhausted", 95*time.Minute), withWindow(limit("anthropic:7d", f64(1), "exhausted", 0), "7 Day", 50*time.Hour))},
			state: StateUsageExhausted, back: 50 * time.Hour, known: true, cause: BackWindowReset},
		{name: "exhausted window already reset", e: fresh(), reports: []broker.UsageReport{exhausted(-time.Minute)}, state: StateOK, usable: true},
		{name: "exhausted without reset time", e: fresh(), reports: []broker.UsageReport{exhausted(0)}, state: StateUsageExhausted},
		{name: "exhausted with a usable saved reset", e: fresh(), reports: []broker.UsageReport{withResets(exhausted(95*time.Minute),
			broker.SavedResets{Credits: []broker.ResetCredit{{ExpiresAt: t0.Add(24 * time.Hour)}}})},
			state: StateUsageExhausted, back: 0, known: true, cause: BackSavedReset},
		{name: "exhausted without reset time, saved reset clearing it", e: fresh(), reports: []broker.UsageReport{withResets(exhausted(0),
			broker.SavedResets{Credits: []broker.ResetCredit{{Clears: []string{"anthropic:5h"}}}})},
			state: StateUsageExhausted, back: 0, known: true, cause: BackSavedReset},
		{name: "saved reset in cooldown", e: fresh(), reports: []broker.UsageReport{withResets(exhausted(95*time.Minute),
			broker.SavedResets{CooldownUntil: t0.Add(10 * time.Minute), Credits: []broker.ResetCredit{{}}})},
			state: StateUsageExhausted, back: 10 * time.Minute, known: true, cause: BackSavedReset},
		{name: "saved reset clearing another limit", e: fresh(), reports: []broker.UsageReport{withResets(exhausted(95*time.Minute),
			broker.SavedResets{Credits: []broker.ResetCredit{{Clears: []string{"anthropic:7d"}}}})},
			state: StateUsageExhausted, back: 95 * time.Minute, known: true, cause: BackWindowReset},
		{name: "expired saved reset", e: fresh(), reports: []broker.UsageReport{withResets(exhausted(95*time.Minute),
			broker.SavedResets{Credits: []broker.ResetCredit{{ExpiresAt: t0.Add(-time.Minute)}}})},
			state: StateUsageExhausted, back: 95 * time.Minute, known: true, cause: BackWindowReset},
		{name: "saved reset marked unusable", e: fresh(), reports: []broker.UsageReport{withResets(exhausted(95*time.Minute),
			broker.SavedResets{Credits: []broker.ResetCredit{{HasUsable: true}}})},
			state: StateUsageExhausted, back: 95 * time.Minute, known: true, cause: BackWindowReset},
		{name: "exhausted and blocked past the reset", e: withBlocks(fresh(), block("anthropic:oauth", "", 2*time.Hour)), reports: []broker.UsageReport{exhausted(95 * time.Minute)},
			state: StateUsageExhausted, back: 2 * time.Hour, known: true, cause: BackBlockEnds},
		{name: "exhausted and blocked until before the reset", e: withBlocks(fresh(), block("anthropic:oauth", "", 5*time.Minute)), reports: []broker.UsageReport{exhausted(95 * time.Minute)},
			state: StateUsageExhausted, back: 95 * time.Minute, known: true, cause: BackWindowReset},
		{name: "exhausted without reset time and blocked", e: withBlocks(fresh(), block("anthropic:oauth", "", 5*time.Minute)), reports: []broker.UsageReport{exhausted(0)},
			state: StateUsageExhausted},
		{name: "expiring and exhausted", e: oauth(1, "anthropic", "a@example.com", 3*time.Minute, -70*time.Second), reports: []broker.UsageReport{exhausted(time.Hour)},
			state: StateUsageExhausted, back: time.Hour, known: true, cause: BackWindowReset},
		{name: "api key with an exhausted report elsewhere", e: apiKey(1, "anthropic"), reports: []broker.UsageReport{exhausted(time.Hour)}, state: StateOK, usable: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := capacityOf(t, []*store.Entry{tc.e}, tc.reports...)
			for i, s := range CredentialStates() {
				want := 0
				if s == tc.state {
					want = 1
				}
				if p.States[i] != want {
					t.Errorf("state %s counts %d, want %d (states %v)", s, p.States[i], want, p.States)
				}
			}
			if p.Active != 1 {
				t.Errorf("active %d, want 1", p.Active)
			}
			if got := p.Usable == 1; got != tc.usable {
				t.Fatalf("usable %v, want %v", got, tc.usable)
			}
			switch {
			case tc.usable || !tc.known:
				if p.NextUsable != nil {
					t.Errorf("next usable %v, want none", p.NextUsable)
				}
			case p.NextUsable == nil:
				t.Errorf("no next usable, want t0%+v", tc.back)
			case !p.NextUsable.Equal(t0.Add(tc.back)):
				t.Errorf("next usable t0%+v, want t0%+v", p.NextUsable.Sub(t0), tc.back)
			}
			if p.NextUsableCause != tc.cause {
				t.Errorf("cause %q, want %q", p.NextUsableCause, tc.cause)
			}
			if p.LoginNeeded != tc.login {
				t.Errorf("login needed %v, want %v", p.LoginNeeded, tc.login)
			}
		})
	}
}

// TestNextUsableFromUsage: with every credential exhausted, one comes back
// when the earliest exhausted window resets, or now when a usable saved
// reset exists.
func TestNextUsableFromUsage(t *testing.T) {
	a := oauth(1, "anthropic", "a@example.com", time.Hour, 55*time.Minute)
	b := oauth(2, "anthropic", "b@example.com", time.Hour, 55*time.Minute)
	c := withBlocks(oauth(3, "anthropic", "c@example.com", time.Hour, 55*time.Minute), block("anthropic:oauth", "", 3*time.Hour))
	ra := report("anthropic", "a@example.com", limit("anthropic:5h", f64(1.1), "exhausted", 95*time.Minute))
	rb := report("anthropic", "b@example.com", limit("anthropic:5h", f64(0.3), "ok", 2*time.Hour),
		withWindow(limit("anthropic:7d", f64(1), "exhausted", 0), "7 Day", 40*time.Minute))
	p := capacityOf(t, []*store.Entry{a, b, c}, ra, rb)
	if p.Usable != 0 || p.Active != 3 || p.Capacity != CapacityUnavailable {
		t.Fatalf("usable %d of %d (%s), want 0 of 3 unavailable", p.Usable, p.Active, p.Capacity)
	}
	if p.NextUsable == nil || !p.NextUsable.Equal(t0.Add(40*time.Minute)) || p.NextUsableCause != BackWindowReset || p.NextUsableWindow != "7 Day" {
		t.Fatalf("next usable %v %s %q, want t0+40m when the 7 Day window resets", p.NextUsable, p.NextUsableCause, p.NextUsableWindow)
	}
	if want := "anthropic: 0 of 3 usable, back at 12:40 UTC (in 40m) when the 7 Day window resets"; p.Headline != want {
		t.Errorf("headline %q\nwant     %q", p.Headline, want)
	}

	ra.Resets = &broker.SavedResets{HasAvailable: true, Available: 1, Credits: []broker.ResetCredit{{ExpiresAt: t0.Add(48 * time.Hour), Clears: []string{"anthropic:5h"}}}}
	p = capacityOf(t, []*store.Entry{a, b, c}, ra, rb)
	if p.NextUsable == nil || !p.NextUsable.Equal(t0) || p.NextUsableCause != BackSavedReset {
		t.Fatalf("next usable %v %s, want now by a saved reset", p.NextUsable, p.NextUsableCause)
	}
	if want := "anthropic: 0 of 3 usable, back now: a saved reset can be redeemed"; p.Headline != want {
		t.Errorf("headline %q\nwant     %q", p.Headline, want)
	}
}

func TestCapacityLevel(t *testing.T) {
	cases := []struct {
		active, usable int
		want           string
	}{
		{0, 0, CapacityUnavailable}, {3, 0, CapacityUnavailable},
		{1, 1, CapacityLow}, {2, 1, CapacityLow}, {2, 2, CapacityOK}, {3, 2, CapacityOK},
		{8, 2, CapacityOK}, {9, 2, CapacityLow}, {12, 3, CapacityOK}, {13, 3, CapacityLow}, {100, 24, CapacityLow}, {100, 25, CapacityOK},
	}
	for _, tc := range cases {
		if got := CapacityLevel(tc.active, tc.usable); got != tc.want {
			t.Errorf("CapacityLevel(%d, %d) = %s, want %s", tc.active, tc.usable, got, tc.want)
		}
	}
}

// TestReportProviders: the health API's providers, worst first, with the
// page's headlines; a provider with tombstones only has none usable.
func TestReportProviders(t *testing.T) {
	in := showcase()
	in.View.Entries = append(in.View.Entries,
		withBlocks(oauth(20, "google-gemini-cli", "g@example.com", time.Hour, 55*time.Minute), block("google-gemini-cli:oauth", "", 25*time.Minute)),
		withBlocks(oauth(21, "openai-codex", "c@example.com", time.Hour, 55*time.Minute), block("openai-codex:oauth", "spark", 25*time.Minute)),
		apiKey(22, "openai"))
	in.Tombstones = append(in.Tombstones, broker.Tombstone{ID: 30, Provider: "mistral", Type: "oauth", DisabledAt: t0.Add(-time.Hour)})
	rep := Evaluate(in, Thresholds{}, nil)
	var got []string
	for _, p := range rep.Providers {
		got = append(got, p.Headline)
	}
	want := []string{
		"mistral: 0 of 0 usable, no active credential: a new login is needed",
		"anthropic: 1 of 3 usable, capacity low",
		"google-gemini-cli: 1 of 2 usable, capacity low",
		hostile + ": 1 of 1 usable, capacity low",
		"openai-codex: 2 of 3 usable; blocked for one scope only: spark on 1",
		"openai: 2 of 2 usable",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("headlines\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if p := rep.Provider("openai-codex"); p.Verdict() != OK || p.Active != 3 {
		t.Errorf("openai-codex: %+v", p)
	}
	if p := rep.Provider("anthropic"); p.Verdict() != Degraded {
		t.Errorf("anthropic verdict %s, want degraded", p.Verdict())
	}
	for _, name := range []string{"mistral", "nobody"} {
		if p := rep.Provider(name); p.Verdict() != Critical || !strings.HasPrefix(p.Headline, name+": 0 of 0 usable") {
			t.Errorf("%s: verdict %s, headline %q", name, p.Verdict(), p.Headline)
		}
	}
	body, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(body), `"providers":[`) {
		t.Errorf("no providers list in %s", body)
	}
}

// TestHandlerCapacity: the page opens with the providers' headlines, worst
// first, the same as the health API's providers.
func TestHandlerCapacity(t *testing.T) {
	h := handlerFor(t, showcase())
	_, body := serve(t, h, "GET", APIPath)
	var api struct {
		Providers []map[string]any `json:"providers"`
	}
	if err := json.Unmarshal([]byte(body), &api); err != nil {
		t.Fatal(err)
	}
	if len(api.Providers) == 0 {
		t.Fatal("no providers in the health API")
	}
	var headlines []string
	for _, p := range api.Providers {
		if len(p) != 11 {
			t.Errorf("provider has %d keys, documented 11: %v", len(p), p)
		}
		for _, k := range []string{"provider", "capacity", "active", "usable", "next_usable", "next_usable_in_seconds",
			"next_usable_cause", "next_usable_window", "login_needed", "scoped_blocks", "headline"} {
			if _, ok := p[k]; !ok {
				t.Errorf("provider lacks %q: %v", k, p)
			}
		}
		headlines = append(headlines, p["headline"].(string))
	}

	_, page := serve(t, h, "GET", "/")
	capacity, why := strings.Index(page, `id="capacity"`), strings.Index(page, `id="reasons"`)
	if capacity < 0 || why < 0 || capacity > why || strings.Index(page, "<section") < capacity-len(`<section class="card" `) {
		t.Fatalf("the capacity section does not open the page (at %d, reasons at %d)", capacity, why)
	}
	re := regexp.MustCompile(`<span class="headline">([^<]*)</span>`)
	var shown []string
	for _, m := range re.FindAllStringSubmatch(page, -1) {
		shown = append(shown, html.UnescapeString(m[1]))
	}
	if strings.Join(shown, "\n") != strings.Join(headlines, "\n") {
		t.Errorf("page headlines\n%s\nAPI headlines\n%s", strings.Join(shown, "\n"), strings.Join(headlines, "\n"))
	}
	if !strings.Contains(page, `data-provider="anthropic" data-capacity="low"`) {
		t.Error("page lacks anthropic's capacity level")
	}
}
