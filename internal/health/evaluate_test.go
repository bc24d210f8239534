package health

import (
	"encoding/json"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/authbroker/authbroker_exporter/internal/identity"
	"github.com/authbroker/authbroker_exporter/store"
	"github.com/authbroker/authbroker_exporter/store/broker"
)

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func f64(f float64) *float64 { return &f }

// oauth is an OAuth entry received at t0 that expires in `expiresIn` and
// is due for rotation at t0+rotatesIn.
func oauth(id int64, provider, email string, expiresIn, rotatesIn time.Duration) *store.Entry {
	return &store.Entry{Entry: &broker.Entry{ID: id, Provider: provider, IdentityKey: "email:" + email, Credential: broker.Credential{Type: broker.TypeOAuth, Expires: t0.Add(expiresIn), HasExpires: true, Email: email}, RotatesIn: rotatesIn, HasRotatesIn: true, ReceivedAt: t0}}
}

func apiKey(id int64, provider string) *store.Entry {
	return &store.Entry{Entry: &broker.Entry{ID: id, Provider: provider, Credential: broker.Credential{Type: broker.TypeAPIKey}, ReceivedAt: t0}}
}

func limit(id string, frac *float64, status string, resetsIn time.Duration) broker.UsageLimit {
	l := broker.UsageLimit{ID: id, Label: id, Status: status, Amount: broker.UsageAmount{UsedFraction: frac, Unit: "percent"}}
	if resetsIn != 0 {
		l.Window = &broker.UsageWindow{ID: "5h", Label: "5 Hour", ResetsAt: t0.Add(resetsIn)}
	}
	return l
}

func report(provider, email string, limits ...broker.UsageLimit) broker.UsageReport {
	return broker.UsageReport{Provider: provider, FetchedAt: t0.Add(-time.Minute), Limits: limits, Metadata: broker.UsageMetadata{Email: email}}
}

// healthy is a broker with one fresh OAuth credential, an API key, usage
// data and no tombstones: every rule passes.
func healthy() Input {
	in := Input{
		Now:       t0,
		BrokerURL: "http://127.0.0.1:8765",
		Broker:    BrokerProbe{Up: true, Version: "18.2.3", Checked: t0.Add(-5 * time.Second), Latency: 3 * time.Millisecond},
		View: store.View{
			Ready: true, Generation: 14, GeneratedAt: t0.Add(-10 * time.Second), ServerNow: t0.Add(-10 * time.Second), ReceivedAt: t0.Add(-10 * time.Second),
			Refresher: broker.Refresher{Enabled: true, Interval: time.Minute, Skew: 5 * time.Minute, NextSweep: t0.Add(20 * time.Second)},
			Entries:   []*store.Entry{oauth(2, "anthropic", "a@example.com", time.Hour, 55*time.Minute), apiKey(1, "openai")},
		},
		Status:       store.SyncStatus{Mode: store.ModeStream, StreamConnected: true, Live: true, LastSync: t0.Add(-10 * time.Second), ClockSkew: 40 * time.Millisecond, HasClockSkew: true},
		TombstonesOK: true,
	}
	in.Usage = store.NewUsage([]broker.UsageReport{report("anthropic", "a@example.com", limit("anthropic:5h", f64(0.42), "ok", 3*time.Hour))}, t0, in.View.Entries)
	return in
}

type reasonKey struct {
	Code     string
	Severity Verdict
}

func reasonKeys(r Report) []reasonKey {
	out := []reasonKey{}
	for _, x := range r.Reasons {
		out = append(out, reasonKey{x.Code, x.Severity})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Code < out[j].Code })
	return out
}

func credByID(t *testing.T, r Report, id int64) CredentialHealth {
	t.Helper()
	for _, c := range r.Credentials {
		if c.ID == id {
			return c
		}
	}
	t.Fatalf("credential %d not in report", id)
	return CredentialHealth{}
}

func TestEvaluateVerdicts(t *testing.T) {
	entry := func(mut func(e *store.Entry)) func(in *Input) {
		return func(in *Input) {
			e := *in.View.Entries[0]
			mut(&e)
			in.View.Entries[0] = &e
		}
	}
	usage := func(l broker.UsageLimit) func(in *Input) {
		return func(in *Input) {
			in.Usage = store.NewUsage([]broker.UsageReport{report("anthropic", "a@example.com", l)}, t0, in.View.Entries)
		}
	}
	cases := []struct {
		name    string
		mut     func(in *Input)
		th      Thresholds
		verdict Verdict
		reasons []reasonKey
		state   string   // state of credential 2, "" = don't care
		probs   []string // problems of credential 2, nil = don't care
	}{
		{name: "healthy", mut: func(*Input) {}, verdict: OK, state: StateOK, probs: []string{}},

		// Broker probe.
		{name: "broker down", mut: func(in *Input) { in.Broker = BrokerProbe{Checked: t0, Err: "connection refused"} },
			verdict: Critical, reasons: []reasonKey{{ReasonBrokerUnreachable, Critical}}},
		{name: "broker never probed", mut: func(in *Input) { in.Broker = BrokerProbe{} },
			verdict: Degraded, reasons: []reasonKey{{ReasonBrokerUnknown, Degraded}}},

		// Mirror.
		{name: "no snapshot yet", mut: func(in *Input) { in.View = store.View{}; in.Status = store.SyncStatus{LastError: "dial tcp: refused"} },
			verdict: Critical, reasons: []reasonKey{{ReasonMirrorNotReady, Critical}}},
		{name: "not live for longer than stale-after", mut: func(in *Input) {
			in.Status.Live, in.Status.StreamConnected, in.Status.LastSync = false, false, t0.Add(-2*time.Minute-time.Millisecond)
		}, verdict: Critical, reasons: []reasonKey{{ReasonMirrorNotLive, Critical}}},
		{name: "not live, never synced", mut: func(in *Input) { in.Status.Live, in.Status.LastSync = false, time.Time{} },
			verdict: Critical, reasons: []reasonKey{{ReasonMirrorNotLive, Critical}}},
		{name: "not live exactly stale-after ago is still reconnecting", mut: func(in *Input) {
			in.Status.Live, in.Status.LastSync = false, t0.Add(-2*time.Minute)
		}, verdict: Degraded, reasons: []reasonKey{{ReasonMirrorReconnecting, Degraded}}},
		{name: "custom stale-after", th: Thresholds{StaleAfter: 10 * time.Second}, mut: func(in *Input) {
			in.Status.Live, in.Status.LastSync = false, t0.Add(-11*time.Second)
		}, verdict: Critical, reasons: []reasonKey{{ReasonMirrorNotLive, Critical}}},
		{name: "polling although the stream is supported", mut: func(in *Input) { in.Status.Mode, in.Status.StreamConnected = store.ModePoll, false },
			verdict: Degraded, reasons: []reasonKey{{ReasonPollFallback, Degraded}}},
		{name: "polling by configuration", mut: func(in *Input) { in.Status.Mode, in.ForcePoll = store.ModePoll, true },
			verdict: OK},
		{name: "old broker without stream", mut: func(in *Input) { in.Status.Mode, in.Status.StreamUnsupported = store.ModePoll, true },
			verdict: OK, reasons: []reasonKey{{ReasonStreamUnsupported, Info}}},
		{name: "clock skew at the limit", mut: func(in *Input) { in.Status.ClockSkew = 30 * time.Second }, verdict: OK},
		{name: "clock skew over the limit", mut: func(in *Input) { in.Status.ClockSkew = 30*time.Second + time.Millisecond },
			verdict: Degraded, reasons: []reasonKey{{ReasonClockSkew, Degraded}}},
		{name: "negative clock skew", mut: func(in *Input) { in.Status.ClockSkew = -45 * time.Second },
			verdict: Degraded, reasons: []reasonKey{{ReasonClockSkew, Degraded}}},
		{name: "refresher disabled with oauth credentials", mut: func(in *Input) {
			in.View.Refresher = broker.Refresher{}
			in.View.Entries[0] = oauth(2, "anthropic", "a@example.com", time.Hour, 0)
			in.View.Entries[0].HasRotatesIn = false
		}, verdict: Degraded, reasons: []reasonKey{{ReasonRefresherDisabled, Degraded}}, state: StateOK},
		{name: "refresher disabled, api keys only", mut: func(in *Input) {
			in.View.Refresher = broker.Refresher{}
			in.View.Entries = in.View.Entries[1:]
		}, verdict: OK, reasons: []reasonKey{{ReasonRefresherDisabled, Info}}},
		{name: "no credentials", mut: func(in *Input) { in.View.Entries = nil }, verdict: Degraded, reasons: []reasonKey{{ReasonNoCredentials, Degraded}}},

		// Expiry boundaries (default 4m).
		{name: "expires this instant", mut: entry(func(e *store.Entry) { e.Credential.Expires = t0 }),
			verdict: Degraded, reasons: []reasonKey{{ReasonCredentialExpiring, Degraded}}, state: StateExpiring, probs: []string{StateExpiring}},
		{name: "expired a millisecond ago", mut: entry(func(e *store.Entry) { e.Credential.Expires = t0.Add(-time.Millisecond) }),
			verdict: Critical, reasons: []reasonKey{{ReasonCredentialExpired, Critical}}, state: StateExpired, probs: []string{StateExpired}},
		{name: "expired long ago while the broker keeps retrying", mut: entry(func(e *store.Entry) {
			e.Credential.Expires, e.RotatesIn = t0.Add(-time.Hour), 20*time.Second
		}), verdict: Critical, reasons: []reasonKey{{ReasonCredentialExpired, Critical}}, state: StateExpired, probs: []string{StateExpired}},
		{name: "expires in 1s", mut: entry(func(e *store.Entry) { e.Credential.Expires = t0.Add(time.Second) }),
			verdict: Degraded, reasons: []reasonKey{{ReasonCredentialExpiring, Degraded}}, state: StateExpiring},
		{name: "expires just inside 4m", mut: entry(func(e *store.Entry) { e.Credential.Expires = t0.Add(4*time.Minute - time.Millisecond) }),
			verdict: Degraded, reasons: []reasonKey{{ReasonCredentialExpiring, Degraded}}, state: StateExpiring},
		{name: "expires in exactly 4m", mut: entry(func(e *store.Entry) { e.Credential.Expires = t0.Add(4 * time.Minute) }),
			verdict: OK, state: StateOK},
		{name: "custom expiring window", th: Thresholds{ExpiringWithin: 2 * time.Hour},
			mut: func(*Input) {}, verdict: Degraded, reasons: []reasonKey{{ReasonCredentialExpiring, Degraded}}, state: StateExpiring},
		{name: "non-expiring oauth", mut: entry(func(e *store.Entry) { e.Credential.HasExpires = false; e.Credential.Expires = time.Time{} }),
			verdict: OK, state: StateOK},

		// Rotation deadline: grace = refresher interval (60s).
		{name: "deadline passed by exactly the grace", mut: entry(func(e *store.Entry) { e.RotatesIn = -time.Minute }),
			verdict: OK, state: StateOK},
		{name: "deadline passed by more than the grace", mut: entry(func(e *store.Entry) { e.RotatesIn = -time.Minute - time.Millisecond }),
			verdict: Degraded, reasons: []reasonKey{{ReasonRotationOverdue, Degraded}}, state: StateRotationOverdue},
		{name: "overdue is not judged on a frozen mirror", mut: func(in *Input) {
			in.Status.Live, in.Status.LastSync = false, t0.Add(-10*time.Minute)
			entry(func(e *store.Entry) { e.RotatesIn = -5 * time.Minute })(in)
		}, verdict: Critical, reasons: []reasonKey{{ReasonMirrorNotLive, Critical}}, state: StateOK},
		{name: "rotation observed after the deadline", mut: entry(func(e *store.Entry) {
			e.RotatesIn, e.LastRotation, e.Rotations = -5*time.Minute, t0.Add(-4*time.Minute), 3
		}), verdict: OK, state: StateOK},
		{name: "rotation observed before the deadline does not count", mut: entry(func(e *store.Entry) {
			e.RotatesIn, e.LastRotation = -5*time.Minute, t0.Add(-6*time.Minute)
		}), verdict: Degraded, reasons: []reasonKey{{ReasonRotationOverdue, Degraded}}, state: StateRotationOverdue},
		{name: "grace follows a slower refresher", mut: func(in *Input) {
			in.View.Refresher.Interval = 5 * time.Minute
			entry(func(e *store.Entry) { e.RotatesIn = -4 * time.Minute })(in)
		}, verdict: OK, state: StateOK},
		{name: "explicit grace wins", th: Thresholds{RotationGrace: 10 * time.Second},
			mut:     entry(func(e *store.Entry) { e.RotatesIn = -11 * time.Second }),
			verdict: Degraded, reasons: []reasonKey{{ReasonRotationOverdue, Degraded}}, state: StateRotationOverdue},
		{name: "deadline relative to the entry's own receipt", mut: entry(func(e *store.Entry) {
			// Received 10 min ago with 8 min to go: due 2 min ago.
			e.ReceivedAt, e.RotatesIn = t0.Add(-10*time.Minute), 8*time.Minute
		}), verdict: Degraded, reasons: []reasonKey{{ReasonRotationOverdue, Degraded}}, state: StateRotationOverdue},

		// Blocks.
		{name: "active block", mut: entry(func(e *store.Entry) {
			e.Blocks = []broker.Block{{ProviderKey: "anthropic:oauth", Scope: "tier:x", BlockedUntil: t0.Add(time.Minute)}}
		}), verdict: Degraded, reasons: []reasonKey{{ReasonCredentialBlocked, Degraded}}, state: StateBlocked},
		{name: "block that just ran out", mut: entry(func(e *store.Entry) {
			e.Blocks = []broker.Block{{ProviderKey: "anthropic:oauth", BlockedUntil: t0}}
		}), verdict: OK, state: StateOK},

		// Usage.
		{name: "usage just under warning", mut: usage(limit("5h", f64(0.8999), "", 0)), verdict: OK, state: StateOK},
		{name: "usage at warning", mut: usage(limit("5h", f64(0.9), "", 0)),
			verdict: Degraded, reasons: []reasonKey{{ReasonUsageWarning, Degraded}}, state: StateOK, probs: []string{ProblemUsageWarning}},
		{name: "broker says warning", mut: usage(limit("5h", f64(0.5), "warning", 0)),
			verdict: Degraded, reasons: []reasonKey{{ReasonUsageWarning, Degraded}}, state: StateOK},
		{name: "custom warning fraction", th: Thresholds{UsageWarning: 0.4}, mut: func(*Input) {},
			verdict: Degraded, reasons: []reasonKey{{ReasonUsageWarning, Degraded}}, state: StateOK},
		{name: "usage at 100%", mut: usage(limit("5h", f64(1), "", time.Hour)),
			verdict: Critical, reasons: []reasonKey{{ReasonUsageExhausted, Critical}}, state: StateUsageExhausted},
		{name: "overage", mut: usage(limit("5h", f64(1.3), "", 0)),
			verdict: Critical, reasons: []reasonKey{{ReasonUsageExhausted, Critical}}, state: StateUsageExhausted},
		{name: "broker says exhausted", mut: usage(limit("5h", nil, "exhausted", 0)),
			verdict: Critical, reasons: []reasonKey{{ReasonUsageExhausted, Critical}}, state: StateUsageExhausted},
		{name: "exhausted window already reset", mut: usage(limit("5h", f64(1), "exhausted", -time.Second)),
			verdict: OK, state: StateOK},
		{name: "no usage data", mut: func(in *Input) { in.Usage = nil },
			verdict: Degraded, reasons: []reasonKey{{ReasonUsageUnavailable, Degraded}}, state: StateOK},
		{name: "no report for the credential", mut: func(in *Input) { in.Usage = store.NewUsage(nil, t0, in.View.Entries) }, verdict: OK, state: StateOK},
		{name: "usage fetch failing, last good reports kept", mut: func(in *Input) {
			in.Usage = store.NewUsage(in.Usage.Reports, t0.Add(-time.Minute), in.View.Entries)
			in.Usage.Failing, in.Usage.Reason = true, broker.ReasonUpstream
		}, verdict: Degraded, reasons: []reasonKey{{ReasonUsageUnavailable, Degraded}}, state: StateOK},

		// Tombstones.
		{name: "disabled list unavailable", mut: func(in *Input) { in.TombstonesOK = false },
			verdict: Degraded, reasons: []reasonKey{{ReasonDisabledUnavailable, Degraded}}},
		{name: "recent refresh failure", mut: func(in *Input) {
			in.Tombstones = []broker.Tombstone{{ID: 9, Provider: "anthropic", Type: "oauth", Cause: "oauth refresh failed: invalid_grant", DisabledAt: t0.Add(-time.Minute)}}
		}, verdict: Degraded, reasons: []reasonKey{{ReasonRefreshFailed, Degraded}}},
		{name: "refresh failure at the recent boundary", mut: func(in *Input) {
			in.Tombstones = []broker.Tombstone{{ID: 9, Provider: "anthropic", Type: "oauth", Cause: "oauth refresh failed: x", DisabledAt: t0.Add(-time.Hour)}}
		}, verdict: Degraded, reasons: []reasonKey{{ReasonRefreshFailed, Degraded}}},
		{name: "old refresh failure", mut: func(in *Input) {
			in.Tombstones = []broker.Tombstone{{ID: 9, Provider: "anthropic", Type: "oauth", Cause: "oauth refresh failed: x", DisabledAt: t0.Add(-time.Hour - time.Second)}}
		}, verdict: OK},
		{name: "refresh failure without a time", mut: func(in *Input) {
			in.Tombstones = []broker.Tombstone{{ID: 9, Provider: "anthropic", Type: "oauth", Cause: "oauth refresh failed: x"}}
		}, verdict: OK},
		{name: "replaced credential", mut: func(in *Input) {
			in.Tombstones = []broker.Tombstone{{ID: 9, Provider: "openai", Type: "api_key", Cause: "replaced by newer credential", DisabledAt: t0}}
		}, verdict: OK},

		// Several problems on one credential: the worst names the state.
		{name: "expired, exhausted and blocked", mut: func(in *Input) {
			entry(func(e *store.Entry) {
				e.Credential.Expires = t0.Add(-time.Second)
				e.RotatesIn = -10 * time.Minute
				e.Blocks = []broker.Block{{ProviderKey: "anthropic:oauth", BlockedUntil: t0.Add(time.Hour)}}
			})(in)
			usage(limit("5h", f64(1), "", 0))(in)
		}, verdict: Critical,
			reasons: []reasonKey{{ReasonCredentialBlocked, Degraded}, {ReasonCredentialExpired, Critical}, {ReasonRotationOverdue, Degraded}, {ReasonUsageExhausted, Critical}},
			state:   StateExpired, probs: []string{StateExpired, StateUsageExhausted, StateRotationOverdue, StateBlocked}},
		{name: "critical beats degraded", mut: func(in *Input) {
			in.Broker = BrokerProbe{Checked: t0}
			in.Usage = nil
		}, verdict: Critical, reasons: []reasonKey{{ReasonBrokerUnreachable, Critical}, {ReasonUsageUnavailable, Degraded}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := healthy()
			tc.mut(&in)
			r := Evaluate(in, tc.th, nil)
			if r.Status != tc.verdict {
				t.Errorf("verdict %s, want %s; reasons %+v", r.Status, tc.verdict, r.Reasons)
			}
			want := tc.reasons
			if want == nil {
				want = []reasonKey{}
			}
			sort.Slice(want, func(i, j int) bool { return want[i].Code < want[j].Code })
			if got := reasonKeys(r); !reflect.DeepEqual(got, want) {
				t.Errorf("reasons %v, want %v", got, want)
			}
			for i := 1; i < len(r.Reasons); i++ {
				if r.Reasons[i].Severity.rank() > r.Reasons[i-1].Severity.rank() {
					t.Errorf("reasons not sorted worst first: %+v", r.Reasons)
				}
			}
			for _, x := range r.Reasons {
				if x.Message == "" {
					t.Errorf("reason %s has no message", x.Code)
				}
			}
			if tc.state != "" {
				c := credByID(t, r, 2)
				if c.State != tc.state {
					t.Errorf("state %s, want %s (problems %v)", c.State, tc.state, c.Problems)
				}
				if tc.probs != nil && !reflect.DeepEqual(c.Problems, tc.probs) {
					t.Errorf("problems %v, want %v", c.Problems, tc.probs)
				}
			}
		})
	}
}

func TestEvaluateCredentialDetails(t *testing.T) {
	in := healthy()
	e := in.View.Entries[0]
	e.LastRotation, e.Rotations = t0.Add(-30*time.Minute), 4
	e.Credential.OrgID, e.Credential.AccountID = "org-1", "acct-A"
	in.Usage.Reports[0].Metadata.OrgID = "org-1" // an org-scoped credential only takes org reports
	in.Usage = store.NewUsage(in.Usage.Reports, t0, in.View.Entries)
	e.Blocks = []broker.Block{
		{ProviderKey: "anthropic:oauth", Scope: "later", BlockedUntil: t0.Add(2 * time.Hour)},
		{ProviderKey: "anthropic:oauth", Scope: "gone", BlockedUntil: t0.Add(-time.Second)},
		{ProviderKey: "anthropic:oauth", Scope: "sooner", BlockedUntil: t0.Add(time.Hour)},
	}
	r := Evaluate(in, Thresholds{}, mustRedactor(t, identity.Raw))
	c := credByID(t, r, 2)
	if c.Provider != "anthropic" || c.Type != "oauth" || c.Identity != "email:a@example.com" || c.Email != "a@example.com" || c.Account != "acct-A" || c.Org != "org-1" {
		t.Errorf("identity fields: %+v", c)
	}
	if *c.ExpiresInSeconds != 3600 || !c.ExpiresAt.Equal(t0.Add(time.Hour)) {
		t.Errorf("expires: %v %v", *c.ExpiresInSeconds, c.ExpiresAt)
	}
	if *c.RotatesInSeconds != 3300 || !c.RotatesAt.Equal(t0.Add(55*time.Minute)) {
		t.Errorf("rotates: %v %v", *c.RotatesInSeconds, c.RotatesAt)
	}
	if c.Rotations != 4 || !c.LastRotation.Equal(t0.Add(-30*time.Minute)) {
		t.Errorf("rotations: %d %v", c.Rotations, c.LastRotation)
	}
	if len(c.Blocks) != 2 || c.Blocks[0].Scope != "sooner" || c.Blocks[1].Scope != "later" || c.Blocks[0].BlockedForSecs != 3600 {
		t.Errorf("blocks: %+v", c.Blocks)
	}
	if c.UsageMatched == nil || !*c.UsageMatched || len(c.Limits) != 1 {
		t.Fatalf("usage: %+v", c)
	}
	l := c.Limits[0]
	if l.ID != "anthropic:5h" || l.Window != "5 Hour" || *l.UsedFraction != 0.42 || l.State != LimitOK || l.BrokerStatus != "ok" || *l.ResetsInSecs != 3*3600 {
		t.Errorf("limit: %+v", l)
	}
	k := credByID(t, r, 1)
	if k.Type != "api_key" || k.UsageMatched != nil || k.ExpiresAt != nil || k.RotatesAt != nil || k.State != StateOK {
		t.Errorf("api key: %+v", k)
	}
	// Sorted by provider, then id.
	if r.Credentials[0].ID != 2 || r.Credentials[1].ID != 1 {
		t.Errorf("order: %d, %d", r.Credentials[0].ID, r.Credentials[1].ID)
	}
	if r.Summary.Credentials != 2 || r.Summary.ByState[StateOK] != 1 || r.Summary.ByState[StateBlocked] != 1 || len(r.Summary.ByState) != 6 {
		t.Errorf("summary: %+v", r.Summary)
	}
	if r.Broker.URL != in.BrokerURL || r.Broker.Version != "18.2.3" || *r.Broker.LatencySeconds != 0.003 {
		t.Errorf("broker: %+v", r.Broker)
	}
	if !r.Sync.Live || r.Sync.Mode != "stream" || r.Sync.Generation != 14 || *r.Sync.SecondsSinceLastSync != 10 || *r.Sync.ClockSkewSeconds != 0.04 {
		t.Errorf("sync: %+v", r.Sync)
	}
	if !r.Refresher.Enabled || r.Refresher.IntervalSeconds != 60 || r.Refresher.SkewSeconds != 300 || *r.Refresher.NextSweepInSeconds != 20 {
		t.Errorf("refresher: %+v", r.Refresher)
	}
	if r.Thresholds.RotationGraceSeconds != 60 || r.Thresholds.ExpiringWithinSeconds != 240 || r.Thresholds.UsageWarning != 0.9 {
		t.Errorf("thresholds: %+v", r.Thresholds)
	}
}

func TestEvaluateLimitStates(t *testing.T) {
	cases := []struct {
		name  string
		l     broker.UsageLimit
		state string
		frac  *float64
	}{
		{"fraction", limit("x", f64(0.2), "", 0), LimitOK, f64(0.2)},
		{"used/limit", broker.UsageLimit{ID: "x", Amount: broker.UsageAmount{Used: f64(95), Limit: f64(100), Unit: "requests"}}, LimitWarning, f64(0.95)},
		{"remaining fraction", broker.UsageLimit{ID: "x", Amount: broker.UsageAmount{RemainingFraction: f64(0), Unit: "percent"}}, LimitExhausted, f64(1)},
		{"nothing known", broker.UsageLimit{ID: "x", Amount: broker.UsageAmount{Unit: "unknown"}}, LimitUnknown, nil},
		{"only the broker's ok", broker.UsageLimit{ID: "x", Status: "ok", Amount: broker.UsageAmount{Unit: "unknown"}}, LimitOK, nil},
		{"broker unknown with a fraction", limit("x", f64(0.1), "unknown", 0), LimitOK, f64(0.1)},
		{"reset passed", limit("x", f64(0.95), "warning", -time.Minute), LimitUnknown, f64(0.95)},
	}
	th := Thresholds{}.withDefaults(time.Minute)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lh := evalLimit(&tc.l, th, t0)
			if lh.State != tc.state {
				t.Errorf("state %s, want %s", lh.State, tc.state)
			}
			if (lh.UsedFraction == nil) != (tc.frac == nil) || (tc.frac != nil && *lh.UsedFraction != *tc.frac) {
				t.Errorf("fraction %v, want %v", lh.UsedFraction, tc.frac)
			}
			if lh.Label != "x" {
				t.Errorf("label falls back to id: %q", lh.Label)
			}
		})
	}
}

func TestEvaluateUsageMatching(t *testing.T) {
	in := healthy()
	in.View.Entries = append(in.View.Entries, oauth(3, "anthropic", "b@example.com", time.Hour, 55*time.Minute))
	in.Usage = store.NewUsage([]broker.UsageReport{
		report("anthropic", "b@example.com", limit("anthropic:5h", f64(0.95), "", time.Hour)),
		report("anthropic", "c@example.com", limit("anthropic:5h", f64(1), "", time.Hour)),
		report("anthropic", "a@example.com", limit("anthropic:5h", f64(0.1), "", time.Hour)),
	}, t0, in.View.Entries)
	r := Evaluate(in, Thresholds{}, nil)
	a, b := credByID(t, r, 2), credByID(t, r, 3)
	if *a.Limits[0].UsedFraction != 0.1 || *b.Limits[0].UsedFraction != 0.95 {
		t.Errorf("matched the wrong reports: a=%v b=%v", *a.Limits[0].UsedFraction, *b.Limits[0].UsedFraction)
	}
	if r.Usage.Reports != 3 || r.Usage.Unmatched != 1 {
		t.Errorf("usage summary %+v", r.Usage)
	}
	// The unclaimed report at 100% belongs to no credential: no verdict.
	if r.Status != Degraded || len(r.Reasons) != 1 || r.Reasons[0].Code != ReasonUsageWarning || *r.Reasons[0].CredentialID != 3 {
		t.Errorf("verdict %s %+v", r.Status, r.Reasons)
	}
}

func TestEvaluateIdentityModes(t *testing.T) {
	in := healthy()
	in.Tombstones = []broker.Tombstone{{ID: 9, Provider: "anthropic", Type: "oauth", Email: "gone@example.com", AccountID: "acct-Z", Cause: "deleted by user"}}
	hashed := mustRedactor(t, identity.Hashed)
	for name, ids := range map[string]*identity.Redactor{"hashed": hashed, "empty": mustRedactor(t, identity.Empty), "nil": nil} {
		t.Run(name, func(t *testing.T) {
			r := Evaluate(in, Thresholds{}, ids)
			body, _ := json.Marshal(r)
			for _, pii := range []string{"a@example.com", "gone@example.com", "acct-Z"} {
				if strings.Contains(string(body), pii) {
					t.Errorf("%s leaked in %s mode", pii, name)
				}
			}
			c := credByID(t, r, 2)
			if name == "hashed" {
				if c.Identity != hashed.Render("email:a@example.com") || c.Email != hashed.Render("a@example.com") || len(c.Email) != 16 {
					t.Errorf("hashed identity %q email %q", c.Identity, c.Email)
				}
				if r.Disabled[0].Email != hashed.Render("gone@example.com") {
					t.Errorf("hashed tombstone %+v", r.Disabled[0])
				}
			} else if c.Identity != "" || c.Email != "" || r.Disabled[0].Email != "" {
				t.Errorf("identity not empty: %+v", c)
			}
		})
	}
}

func TestEvaluateDisabledList(t *testing.T) {
	in := healthy()
	long := "oauth refresh failed: " + strings.Repeat("é", 300)
	in.Tombstones = []broker.Tombstone{
		{ID: 7, Provider: "openai", Type: "api_key", Cause: "replaced by oauth login", DisabledAt: t0.Add(-48 * time.Hour)},
		{ID: 8, Provider: "anthropic", Type: "oauth", Cause: long, DisabledAt: t0.Add(-time.Hour)},
		{ID: 9, Provider: "anthropic", Type: "oauth", Cause: "because I said so"},
	}
	r := Evaluate(in, Thresholds{}, nil)
	if len(r.Disabled) != 3 || r.Summary.Disabled != 3 {
		t.Fatalf("disabled: %+v", r.Disabled)
	}
	// Newest first; unknown times last.
	if r.Disabled[0].ID != 8 || r.Disabled[1].ID != 7 || r.Disabled[2].ID != 9 {
		t.Errorf("order: %d %d %d", r.Disabled[0].ID, r.Disabled[1].ID, r.Disabled[2].ID)
	}
	d := r.Disabled[0]
	if d.State != StateDisabled || d.CauseClass != broker.CauseRefreshFailed || len(d.Cause) > maxCauseLen+len("…") || !strings.HasSuffix(d.Cause, "…") || !strings.HasPrefix(d.Cause, "oauth refresh failed: é") {
		t.Errorf("tombstone: %+v", d)
	}
	if !json.Valid([]byte(`"`+d.Cause+`"`)) || strings.ContainsRune(d.Cause, '\uFFFD') {
		t.Errorf("cause cut mid-rune: %q", d.Cause)
	}
	if r.Disabled[1].CauseClass != broker.CauseReplaced || r.Disabled[2].CauseClass != broker.CauseOther || r.Disabled[2].DisabledAt != nil {
		t.Errorf("classes: %+v", r.Disabled)
	}
}

func TestEvaluateJSONShape(t *testing.T) {
	// Every key is present even for an empty input: clients can rely on
	// the schema without probing for keys.
	body, err := json.Marshal(Evaluate(Input{Now: t0}, Thresholds{}, nil))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"status", "checked_at", "exporter_version", "reasons", "broker", "sync", "refresher", "usage", "summary", "credentials", "disabled", "thresholds"} {
		if _, ok := m[k]; !ok {
			t.Errorf("missing key %q", k)
		}
	}
	for _, k := range []string{"reasons", "credentials", "disabled"} {
		if _, ok := m[k].([]any); !ok {
			t.Errorf("%s is %T, want a list", k, m[k])
		}
	}
	if m["status"] != "critical" {
		t.Errorf("empty input status %v", m["status"])
	}
}

func TestHuman(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                                 "0s",
		1500 * time.Millisecond:           "2s",
		59 * time.Second:                  "59s",
		61 * time.Second:                  "1m01s",
		time.Hour + 5*time.Minute + 9e9:   "1h05m",
		50*time.Hour + 30*time.Minute:     "2d2h",
		-(3*time.Minute + 12*time.Second): "-3m12s",
		5 * time.Minute:                   "5m",
		2 * time.Hour:                     "2h",
		4 * 24 * time.Hour:                "4d",
	} {
		if got := human(d); got != want {
			t.Errorf("human(%v) = %q, want %q", d, got, want)
		}
	}
}

func mustRedactor(t *testing.T, m identity.Mode) *identity.Redactor {
	t.Helper()
	r, err := identity.New(m, []byte("test-key"))
	if err != nil {
		t.Fatal(err)
	}
	return r
}
