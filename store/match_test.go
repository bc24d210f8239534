package store

import (
	"testing"

	"github.com/authbroker/authbroker_exporter/store/broker"
)

func f64(v float64) *float64 { return &v }

func TestEffectiveUsedFraction(t *testing.T) {
	cases := []struct {
		name string
		a    broker.UsageAmount
		want float64
		ok   bool
	}{
		{"usedFraction wins", broker.UsageAmount{UsedFraction: f64(0.42), Used: f64(90), Limit: f64(100), RemainingFraction: f64(0.9)}, 0.42, true},
		{"overage kept", broker.UsageAmount{UsedFraction: f64(1.3)}, 1.3, true},
		{"used/limit", broker.UsageAmount{Used: f64(30), Limit: f64(120), Unit: "tokens"}, 0.25, true},
		{"limit zero falls to percent", broker.UsageAmount{Used: f64(40), Limit: f64(0), Unit: "percent"}, 0.4, true},
		{"percent without limit", broker.UsageAmount{Used: f64(75), Unit: "percent"}, 0.75, true},
		{"used without limit, not percent, uses remaining", broker.UsageAmount{Used: f64(75), Unit: "tokens", RemainingFraction: f64(0.6)}, 0.4, true},
		{"remainingFraction only", broker.UsageAmount{RemainingFraction: f64(0.25)}, 0.75, true},
		{"nothing", broker.UsageAmount{Used: f64(3), Unit: "requests"}, 0, false},
		{"empty", broker.UsageAmount{}, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := tc.a.EffectiveUsedFraction()
			if ok != tc.ok || (ok && (got-tc.want > 1e-12 || tc.want-got > 1e-12)) {
				t.Fatalf("got %v,%v want %v,%v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func oauthEntry(provider string, c broker.Credential) *Entry {
	c.Type = broker.TypeOAuth
	return &Entry{Entry: &broker.Entry{ID: 1, Provider: provider, Credential: c}}
}

func report(provider string, md broker.UsageMetadata, scopes ...broker.UsageScope) broker.UsageReport {
	r := broker.UsageReport{Provider: provider, Metadata: md}
	for _, s := range scopes {
		r.Limits = append(r.Limits, broker.UsageLimit{ID: provider + ":x", Scope: s})
	}
	return r
}

// TestMatchUsageReport covers the matching rules of docs/broker-protocol.md
// (§9: the 18.2.3 org rule with the 18.2.9 email rule) row by row. want is
// the index of the expected report, -1 for no match.
func TestMatchUsageReport(t *testing.T) {
	cases := []struct {
		name    string
		cred    broker.Credential
		apiKey  bool
		reports []broker.UsageReport
		want    int
	}{
		{"no report of the provider", broker.Credential{Email: "a@x"},
			false, []broker.UsageReport{report("openai", broker.UsageMetadata{Email: "a@x"})}, -1},
		{"api keys never match", broker.Credential{},
			true, []broker.UsageReport{report("anthropic", broker.UsageMetadata{})}, -1},
		{"lone org-less report taken even if identity disagrees", broker.Credential{Email: "a@x"},
			false, []broker.UsageReport{report("anthropic", broker.UsageMetadata{Email: "b@x"})}, 0},
		{"lone report with an org is not a fallback for an org-less credential", broker.Credential{Email: "a@x"},
			false, []broker.UsageReport{report("anthropic", broker.UsageMetadata{Email: "b@x", OrgID: "o1"})}, -1},
		{"lone fallback needs a single report of the provider, not a single candidate", broker.Credential{Email: "a@x"},
			false, []broker.UsageReport{report("anthropic", broker.UsageMetadata{Email: "b@x"}), report("anthropic", broker.UsageMetadata{Email: "a@x", OrgID: "o1"})}, -1},
		{"org-less credential ignores org reports even when identity matches", broker.Credential{Email: "a@x"},
			false, []broker.UsageReport{report("anthropic", broker.UsageMetadata{Email: "a@x", OrgID: "o1"}), report("anthropic", broker.UsageMetadata{Email: "c@x"})}, -1},
		{"email match, trimmed and case-folded on both sides", broker.Credential{Email: "  A@Example.COM "},
			false, []broker.UsageReport{report("anthropic", broker.UsageMetadata{Email: "b@x"}), report("anthropic", broker.UsageMetadata{Email: "a@example.com"})}, 1},
		{"metadata values are trimmed by the decoder then lowercased", broker.Credential{AccountID: "acct-a"},
			false, []broker.UsageReport{report("anthropic", broker.UsageMetadata{Email: "z"}), report("anthropic", broker.UsageMetadata{AccountID: "ACCT-A"})}, 1},
		{"scope accountId lowercased", broker.Credential{AccountID: " Acct-A"},
			false, []broker.UsageReport{report("anthropic", broker.UsageMetadata{}), report("anthropic", broker.UsageMetadata{}, broker.UsageScope{AccountID: "ACCT-A"})}, 1},
		{"scope accountId is not trimmed", broker.Credential{AccountID: "acct-a"},
			false, []broker.UsageReport{report("anthropic", broker.UsageMetadata{}), report("anthropic", broker.UsageMetadata{}, broker.UsageScope{AccountID: " acct-a "})}, -1},
		{"scope projectId lowercased not trimmed (match)", broker.Credential{ProjectID: "Proj-1"},
			false, []broker.UsageReport{report("gemini", broker.UsageMetadata{}), report("gemini", broker.UsageMetadata{}, broker.UsageScope{ProjectID: "PROJ-1"})}, 1},
		{"scope projectId lowercased not trimmed (no match)", broker.Credential{ProjectID: "proj-1"},
			false, []broker.UsageReport{report("gemini", broker.UsageMetadata{}), report("gemini", broker.UsageMetadata{}, broker.UsageScope{ProjectID: "proj-1 "})}, -1},
		{"metadata projectId", broker.Credential{ProjectID: "p"},
			false, []broker.UsageReport{report("gemini", broker.UsageMetadata{}), report("gemini", broker.UsageMetadata{ProjectID: "P"})}, 1},
		{"first identity match wins", broker.Credential{Email: "a@x", AccountID: "acct"},
			false, []broker.UsageReport{report("anthropic", broker.UsageMetadata{Email: "b@x"}), report("anthropic", broker.UsageMetadata{AccountID: "acct"}), report("anthropic", broker.UsageMetadata{Email: "a@x"})}, 1},
		{"no identity match among several", broker.Credential{Email: "a@x"},
			false, []broker.UsageReport{report("anthropic", broker.UsageMetadata{Email: "b@x"}), report("anthropic", broker.UsageMetadata{Email: "c@x"})}, -1},
		{"credential without identity and several reports", broker.Credential{},
			false, []broker.UsageReport{report("anthropic", broker.UsageMetadata{}), report("anthropic", broker.UsageMetadata{})}, -1},
		{"org credential: org-less reports are never given to it", broker.Credential{OrgID: "o1", Email: "a@x"},
			false, []broker.UsageReport{report("anthropic", broker.UsageMetadata{Email: "a@x"})}, -1},
		{"org credential: same org and identity", broker.Credential{OrgID: " O1 ", Email: "a@x"},
			false, []broker.UsageReport{report("anthropic", broker.UsageMetadata{Email: "a@x", OrgID: "o2"}), report("anthropic", broker.UsageMetadata{Email: "a@x", OrgID: "O1"})}, 1},
		{"org credential: same org, identity disagrees", broker.Credential{OrgID: "o1", Email: "a@x"},
			false, []broker.UsageReport{report("anthropic", broker.UsageMetadata{Email: "b@x", OrgID: "o1"})}, -1},
		{"org credential without identity: the only same-org report", broker.Credential{OrgID: "o1"},
			false, []broker.UsageReport{report("anthropic", broker.UsageMetadata{OrgID: "o2"}), report("anthropic", broker.UsageMetadata{OrgID: "o1"})}, 1},
		{"org credential without identity: two same-org reports", broker.Credential{OrgID: "o1"},
			false, []broker.UsageReport{report("anthropic", broker.UsageMetadata{OrgID: "o1"}), report("anthropic", broker.UsageMetadata{OrgID: "o1"})}, -1},
		{"org credential: other org only", broker.Credential{OrgID: "o1", Email: "a@x"},
			false, []broker.UsageReport{report("anthropic", broker.UsageMetadata{Email: "a@x", OrgID: "o2"})}, -1},
		{"org credential: identity via scope accountId", broker.Credential{OrgID: "o1", AccountID: "acct"},
			false, []broker.UsageReport{report("anthropic", broker.UsageMetadata{OrgID: "o1"}, broker.UsageScope{AccountID: "ACCT"})}, 0},
		{"blank credential fields are absent", broker.Credential{Email: "   ", OrgID: "  "},
			false, []broker.UsageReport{report("anthropic", broker.UsageMetadata{Email: "x"}), report("anthropic", broker.UsageMetadata{})}, -1},

		// 18.2.9: when both sides carry an email, the email decides.
		{"team seats sharing account and org ids get their own report", broker.Credential{Email: "a@x", AccountID: "team", OrgID: "o1"},
			false, []broker.UsageReport{report("anthropic", broker.UsageMetadata{Email: "b@x", AccountID: "team", OrgID: "o1"}), report("anthropic", broker.UsageMetadata{Email: "A@X", AccountID: "team", OrgID: "o1"})}, 1},
		{"the other team seat gets the other report", broker.Credential{Email: "b@x", AccountID: "team", OrgID: "o1"},
			false, []broker.UsageReport{report("anthropic", broker.UsageMetadata{Email: "b@x", AccountID: "team", OrgID: "o1"}), report("anthropic", broker.UsageMetadata{Email: "a@x", AccountID: "team", OrgID: "o1"})}, 0},
		{"a seat whose only same-org report is a sibling's is unmatched", broker.Credential{Email: "a@x", AccountID: "team", OrgID: "o1"},
			false, []broker.UsageReport{report("anthropic", broker.UsageMetadata{Email: "b@x", AccountID: "team", OrgID: "o1"})}, -1},
		{"a sibling's scope accountId does not match either", broker.Credential{Email: "a@x", AccountID: "team", OrgID: "o1"},
			false, []broker.UsageReport{report("anthropic", broker.UsageMetadata{Email: "b@x", OrgID: "o1"}, broker.UsageScope{AccountID: "team"})}, -1},
		{"org-less shared workspace: account shared, emails differ", broker.Credential{Email: "a@x", AccountID: "ws"},
			false, []broker.UsageReport{report("anthropic", broker.UsageMetadata{Email: "b@x", AccountID: "ws"}), report("anthropic", broker.UsageMetadata{Email: "c@x"})}, -1},
		{"org-less shared workspace: the member's own report", broker.Credential{Email: "a@x", AccountID: "ws"},
			false, []broker.UsageReport{report("anthropic", broker.UsageMetadata{Email: "b@x", AccountID: "ws"}), report("anthropic", broker.UsageMetadata{Email: "A@x", AccountID: "ws"})}, 1},
		{"lone-candidate fallback is unchanged: a lone org-less report of another email", broker.Credential{Email: "a@x", AccountID: "ws"},
			false, []broker.UsageReport{report("anthropic", broker.UsageMetadata{Email: "b@x", AccountID: "ws"})}, 0},
		{"report without email: the account decides", broker.Credential{Email: "a@x", AccountID: "acct"},
			false, []broker.UsageReport{report("anthropic", broker.UsageMetadata{AccountID: "other"}), report("anthropic", broker.UsageMetadata{AccountID: "ACCT"})}, 1},
		{"report without email: the project decides", broker.Credential{Email: "a@x", ProjectID: "p1"},
			false, []broker.UsageReport{report("gemini", broker.UsageMetadata{ProjectID: "p2"}), report("gemini", broker.UsageMetadata{}, broker.UsageScope{ProjectID: "P1"})}, 1},
		{"credential without email: the account decides whatever the report's email", broker.Credential{AccountID: "acct"},
			false, []broker.UsageReport{report("anthropic", broker.UsageMetadata{Email: "z@x", AccountID: "acct"}), report("anthropic", broker.UsageMetadata{})}, 0},
		{"a blank report email counts as none", broker.Credential{Email: "a@x", AccountID: "acct"},
			false, []broker.UsageReport{report("anthropic", broker.UsageMetadata{Email: "", AccountID: "acct"}), report("anthropic", broker.UsageMetadata{Email: "q@x"})}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			provider := "anthropic"
			if tc.reports[len(tc.reports)-1].Provider == "gemini" {
				provider = "gemini"
			}
			e := oauthEntry(provider, tc.cred)
			if tc.apiKey {
				e.Credential.Type = broker.TypeAPIKey
			}
			got, ok := NewUsage(tc.reports, epoch, nil).Match(e)
			if tc.want < 0 {
				if ok || got != nil {
					t.Fatalf("want no match, got %+v", got)
				}
				return
			}
			if !ok || got != &tc.reports[tc.want] {
				t.Fatalf("want report %d, got %+v (ok=%v)", tc.want, got, ok)
			}
		})
	}
}
