package store

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// randomUsageWorld draws reports and credentials from small vocabularies,
// with case and whitespace variants, orgs, aliases in scopes and
// duplicates, so every branch of protocol §8 is hit many times.
func randomUsageWorld(rng *rand.Rand, nReports, nCreds int) ([]UsageReport, []*Entry) {
	pick := func(vs ...string) string { return vs[rng.IntN(len(vs))] }
	providers := []string{"anthropic", "openai-codex", "gemini"}
	accounts := []string{"", "", "acct-1", "ACCT-1", "acct-2", " acct-2", "acct-3"}
	emails := []string{"", "", "a@x", "A@X", "b@x", "c@x "}
	projects := []string{"", "", "", "p1", "P1", "p2"}
	orgs := []string{"", "", "", "org-1", "ORG-1", "org-2"}
	reports := make([]UsageReport, nReports)
	for i := range reports {
		r := UsageReport{Provider: pick(providers...), Metadata: UsageMetadata{
			Email: pick(emails...), AccountID: pick(accounts...), ProjectID: pick(projects...), OrgID: pick(orgs...)}}
		// The decoder trims metadata values.
		r.Metadata.Email = trimmed(r.Metadata.Email)
		r.Metadata.AccountID = trimmed(r.Metadata.AccountID)
		for range rng.IntN(3) {
			r.Limits = append(r.Limits, UsageLimit{ID: r.Provider + ":x",
				Scope: UsageScope{Provider: r.Provider, AccountID: pick(accounts...), ProjectID: pick(projects...)}})
		}
		reports[i] = r
	}
	creds := make([]*Entry, nCreds)
	for i := range creds {
		typ := TypeOAuth
		if rng.IntN(10) == 0 {
			typ = TypeAPIKey
		}
		creds[i] = &Entry{ID: int64(i), Provider: pick(append(providers, "unknown")...), Credential: Credential{
			Type: typ, Email: pick(emails...), AccountID: pick(accounts...), ProjectID: pick(projects...), OrgID: pick(orgs...)}}
	}
	return reports, creds
}

func trimmed(s string) string {
	for len(s) > 0 && s[0] == ' ' {
		s = s[1:]
	}
	for len(s) > 0 && s[len(s)-1] == ' ' {
		s = s[:len(s)-1]
	}
	return s
}

// TestUsageIndexAgreesWithMatchUsageReport: the index is an optimisation
// of MatchUsageReport and must pick the very same report every time.
func TestUsageIndexAgreesWithMatchUsageReport(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	matched := 0
	for round := range 400 {
		reports, creds := randomUsageWorld(rng, rng.IntN(12), 30)
		x := NewUsageIndex(reports)
		for _, e := range creds {
			want, wok := MatchUsageReport(reports, e)
			got, gok := x.Match(e)
			if want != got || wok != gok {
				t.Fatalf("round %d, credential %+v: index gave %p,%v, linear scan %p,%v", round, e.Credential, got, gok, want, wok)
			}
			if wok {
				matched++
			}
		}
	}
	if matched < 1000 {
		t.Fatalf("only %d matches: the random world does not exercise matching", matched)
	}
	if _, ok := NewUsageIndex(nil).Match(&Entry{Provider: "anthropic", Credential: Credential{Type: TypeOAuth}}); ok {
		t.Fatal("empty index matched")
	}
}

func benchUsage(n int) ([]UsageReport, []*Entry) {
	reports := make([]UsageReport, n)
	creds := make([]*Entry, n)
	for i := range n {
		p := benchProviders[i%len(benchProviders)]
		email := fmt.Sprintf("user%d@example.com", i)
		creds[i] = &Entry{ID: int64(i), Provider: p, Credential: Credential{Type: TypeOAuth, Email: email, AccountID: fmt.Sprintf("acct-%d", i)}}
		reports[n-1-i] = UsageReport{Provider: p, Metadata: UsageMetadata{Email: email, AccountID: fmt.Sprintf("acct-%d", i)},
			Limits: []UsageLimit{{ID: p + ":5h"}, {ID: p + ":7d"}}}
	}
	return reports, creds
}

// BenchmarkMatchUsage matches every credential to its report: the linear
// scan of MatchUsageReport against the index (build included).
func BenchmarkMatchUsage(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		reports, creds := benchUsage(n)
		b.Run("scan/creds="+benchSize(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				for _, e := range creds {
					if _, ok := MatchUsageReport(reports, e); !ok {
						b.Fatal("no match")
					}
				}
			}
		})
		b.Run("index/creds="+benchSize(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				x := NewUsageIndex(reports)
				for _, e := range creds {
					if _, ok := x.Match(e); !ok {
						b.Fatal("no match")
					}
				}
			}
		})
	}
}
