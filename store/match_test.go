package store

import (
	"testing"
)

func f64(v float64) *float64 { return &v }

func TestEffectiveUsedFraction(t *testing.T) {
	cases := []struct {
		name string
		a    UsageAmount
		want float64
		ok   bool
	}{
		{"usedFraction wins", UsageAmount{UsedFraction: f64(0.42), Used: f64(90), Limit: f64(100), RemainingFraction: f64(0.9)}, 0.42, true},
		{"overage kept", UsageAmount{UsedFraction: f64(1.3)}, 1.3, true},
		{"used/limit", UsageAmount{Used: f64(30), Limit: f64(120), Unit: "tokens"}, 0.25, true},
		{"limit zero falls to percent", UsageAmount{Used: f64(40), Limit: f64(0), Unit: "percent"}, 0.4, true},
		{"percent without limit", UsageAmount{Used: f64(75), Unit: "percent"}, 0.75, true},
		{"used without limit, not percent, uses remaining", UsageAmount{Used: f64(75), Unit: "tokens", RemainingFraction: f64(0.6)}, 0.4, true},
		{"remainingFraction only", UsageAmount{RemainingFraction: f64(0.25)}, 0.75, true},
		{"nothing", UsageAmount{Used: f64(3), Unit: "requests"}, 0, false},
		{"empty", UsageAmount{}, 0, false},
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

func oauthEntry(provider string, c Credential) *Entry {
	c.Type = TypeOAuth
	return &Entry{ID: 1, Provider: provider, Credential: c}
}

func report(provider string, md UsageMetadata, scopes ...UsageScope) UsageReport {
	r := UsageReport{Provider: provider, Metadata: md}
	for _, s := range scopes {
		r.Limits = append(r.Limits, UsageLimit{ID: provider + ":x", Scope: s})
	}
	return r
}

// TestMatchUsageReport covers protocol §8 (18.2.3) rule by rule. want is the
// index of the expected report, -1 for no match.
func TestMatchUsageReport(t *testing.T) {
	cases := []struct {
		name    string
		cred    Credential
		apiKey  bool
		reports []UsageReport
		want    int
	}{
		{"no report of the provider", Credential{Email: "a@x"},
			false, []UsageReport{report("openai", UsageMetadata{Email: "a@x"})}, -1},
		{"api keys never match", Credential{},
			true, []UsageReport{report("anthropic", UsageMetadata{})}, -1},
		{"lone org-less report taken even if identity disagrees", Credential{Email: "a@x"},
			false, []UsageReport{report("anthropic", UsageMetadata{Email: "b@x"})}, 0},
		{"lone report with an org is not a fallback for an org-less credential", Credential{Email: "a@x"},
			false, []UsageReport{report("anthropic", UsageMetadata{Email: "b@x", OrgID: "o1"})}, -1},
		{"lone fallback needs a single report of the provider, not a single candidate", Credential{Email: "a@x"},
			false, []UsageReport{report("anthropic", UsageMetadata{Email: "b@x"}), report("anthropic", UsageMetadata{Email: "a@x", OrgID: "o1"})}, -1},
		{"org-less credential ignores org reports even when identity matches", Credential{Email: "a@x"},
			false, []UsageReport{report("anthropic", UsageMetadata{Email: "a@x", OrgID: "o1"}), report("anthropic", UsageMetadata{Email: "c@x"})}, -1},
		{"email match, trimmed and case-folded on both sides", Credential{Email: "  A@Example.COM "},
			false, []UsageReport{report("anthropic", UsageMetadata{Email: "b@x"}), report("anthropic", UsageMetadata{Email: "a@example.com"})}, 1},
		{"metadata values are trimmed by the decoder then lowercased", Credential{AccountID: "acct-a"},
			false, []UsageReport{report("anthropic", UsageMetadata{Email: "z"}), report("anthropic", UsageMetadata{AccountID: "ACCT-A"})}, 1},
		{"scope accountId lowercased", Credential{AccountID: " Acct-A"},
			false, []UsageReport{report("anthropic", UsageMetadata{}), report("anthropic", UsageMetadata{}, UsageScope{AccountID: "ACCT-A"})}, 1},
		{"scope accountId is not trimmed", Credential{AccountID: "acct-a"},
			false, []UsageReport{report("anthropic", UsageMetadata{}), report("anthropic", UsageMetadata{}, UsageScope{AccountID: " acct-a "})}, -1},
		{"scope projectId lowercased not trimmed (match)", Credential{ProjectID: "Proj-1"},
			false, []UsageReport{report("gemini", UsageMetadata{}), report("gemini", UsageMetadata{}, UsageScope{ProjectID: "PROJ-1"})}, 1},
		{"scope projectId lowercased not trimmed (no match)", Credential{ProjectID: "proj-1"},
			false, []UsageReport{report("gemini", UsageMetadata{}), report("gemini", UsageMetadata{}, UsageScope{ProjectID: "proj-1 "})}, -1},
		{"metadata projectId", Credential{ProjectID: "p"},
			false, []UsageReport{report("gemini", UsageMetadata{}), report("gemini", UsageMetadata{ProjectID: "P"})}, 1},
		{"scope orgId is never consulted", Credential{OrgID: "o1", Email: "a@x"},
			false, []UsageReport{report("anthropic", UsageMetadata{Email: "a@x"}, UsageScope{OrgID: "o1"})}, -1},
		{"first identity match wins", Credential{Email: "a@x", AccountID: "acct"},
			false, []UsageReport{report("anthropic", UsageMetadata{Email: "b@x"}), report("anthropic", UsageMetadata{AccountID: "acct"}), report("anthropic", UsageMetadata{Email: "a@x"})}, 1},
		{"no identity match among several", Credential{Email: "a@x"},
			false, []UsageReport{report("anthropic", UsageMetadata{Email: "b@x"}), report("anthropic", UsageMetadata{Email: "c@x"})}, -1},
		{"credential without identity and several reports", Credential{},
			false, []UsageReport{report("anthropic", UsageMetadata{}), report("anthropic", UsageMetadata{})}, -1},
		{"org credential: org-less reports are never given to it", Credential{OrgID: "o1", Email: "a@x"},
			false, []UsageReport{report("anthropic", UsageMetadata{Email: "a@x"})}, -1},
		{"org credential: same org and identity", Credential{OrgID: " O1 ", Email: "a@x"},
			false, []UsageReport{report("anthropic", UsageMetadata{Email: "a@x", OrgID: "o2"}), report("anthropic", UsageMetadata{Email: "a@x", OrgID: "O1"})}, 1},
		{"org credential: same org, identity disagrees", Credential{OrgID: "o1", Email: "a@x"},
			false, []UsageReport{report("anthropic", UsageMetadata{Email: "b@x", OrgID: "o1"})}, -1},
		{"org credential without identity: the only same-org report", Credential{OrgID: "o1"},
			false, []UsageReport{report("anthropic", UsageMetadata{OrgID: "o2"}), report("anthropic", UsageMetadata{OrgID: "o1"})}, 1},
		{"org credential without identity: two same-org reports", Credential{OrgID: "o1"},
			false, []UsageReport{report("anthropic", UsageMetadata{OrgID: "o1"}), report("anthropic", UsageMetadata{OrgID: "o1"})}, -1},
		{"org credential: other org only", Credential{OrgID: "o1", Email: "a@x"},
			false, []UsageReport{report("anthropic", UsageMetadata{Email: "a@x", OrgID: "o2"})}, -1},
		{"org credential: identity via scope accountId", Credential{OrgID: "o1", AccountID: "acct"},
			false, []UsageReport{report("anthropic", UsageMetadata{OrgID: "o1"}, UsageScope{AccountID: "ACCT"})}, 0},
		{"blank credential fields are absent", Credential{Email: "   ", OrgID: "  "},
			false, []UsageReport{report("anthropic", UsageMetadata{Email: "x"}), report("anthropic", UsageMetadata{})}, -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			provider := "anthropic"
			if tc.reports[len(tc.reports)-1].Provider == "gemini" {
				provider = "gemini"
			}
			e := oauthEntry(provider, tc.cred)
			if tc.apiKey {
				e.Credential.Type = TypeAPIKey
			}
			got, ok := MatchUsageReport(tc.reports, e)
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
