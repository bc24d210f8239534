package store

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/authbroker/authbroker_exporter/store/broker"
	"github.com/authbroker/authbroker_exporter/store/internal/testkit"
)

// randomUsageWorld draws reports and credentials from small vocabularies,
// with case and whitespace variants, orgs, aliases in scopes and
// duplicates, so every branch of the matching rules (docs/broker-protocol.md §9) is hit many times.
func randomUsageWorld(rng *rand.Rand, nReports, nCreds int) ([]broker.UsageReport, []*Entry) {
	pick := func(vs ...string) string { return vs[rng.IntN(len(vs))] }
	providers := []string{"anthropic", "openai-codex", "gemini"}
	accounts := []string{"", "", "acct-1", "ACCT-1", "acct-2", " acct-2", "acct-3"}
	emails := []string{"", "", "a@x", "A@X", "b@x", "c@x "}
	projects := []string{"", "", "", "p1", "P1", "p2"}
	orgs := []string{"", "", "", "org-1", "ORG-1", "org-2"}
	reports := make([]broker.UsageReport, nReports)
	for i := range reports {
		r := broker.UsageReport{Provider: pick(providers...), Metadata: broker.UsageMetadata{
			Email: pick(emails...), AccountID: pick(accounts...), ProjectID: pick(projects...), OrgID: pick(orgs...)}}
		// The decoder trims metadata values.
		r.Metadata.Email = trimmed(r.Metadata.Email)
		r.Metadata.AccountID = trimmed(r.Metadata.AccountID)
		for range rng.IntN(3) {
			r.Limits = append(r.Limits, broker.UsageLimit{ID: r.Provider + ":x",
				Scope: broker.UsageScope{AccountID: pick(accounts...), ProjectID: pick(projects...)}})
		}
		reports[i] = r
	}
	creds := make([]*Entry, nCreds)
	for i := range creds {
		typ := broker.TypeOAuth
		if rng.IntN(10) == 0 {
			typ = broker.TypeAPIKey
		}
		creds[i] = &Entry{Entry: &broker.Entry{ID: int64(i), Provider: pick(append(providers, "unknown")...), Credential: broker.Credential{
			Type: typ, Email: pick(emails...), AccountID: pick(accounts...), ProjectID: pick(projects...), OrgID: pick(orgs...)}}}
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

// scanMatch is the matching rule as the reference client runs it: a scan
// of the provider's reports (docs/broker-protocol.md §9).
func scanMatch(reports []broker.UsageReport, e *Entry) (*broker.UsageReport, bool) {
	if e.Credential.Type != broker.TypeOAuth {
		return nil, false
	}
	id := identityOf(&e.Credential)
	lower := strings.ToLower
	matches := func(r *broker.UsageReport) bool {
		if id.email != "" && r.Metadata.Email != "" {
			return lower(r.Metadata.Email) == id.email
		}
		for _, l := range r.Limits {
			if id.accountID != "" && lower(l.Scope.AccountID) == id.accountID || id.projectID != "" && lower(l.Scope.ProjectID) == id.projectID {
				return true
			}
		}
		return id.accountID != "" && lower(r.Metadata.AccountID) == id.accountID || id.projectID != "" && lower(r.Metadata.ProjectID) == id.projectID
	}
	var all, candidates []*broker.UsageReport
	for i := range reports {
		if r := &reports[i]; r.Provider == e.Provider {
			all = append(all, r)
			if id.orgID == "" && r.Metadata.OrgID == "" || id.orgID != "" && lower(r.Metadata.OrgID) == id.orgID {
				candidates = append(candidates, r)
			}
		}
	}
	switch {
	case len(candidates) == 0:
		return nil, false
	case id.orgID != "" && !id.any():
		if len(candidates) == 1 {
			return candidates[0], true
		}
		return nil, false
	case id.orgID == "" && len(all) == 1:
		return all[0], true
	}
	for _, r := range candidates {
		if matches(r) {
			return r, true
		}
	}
	return nil, false
}

// TestUsageIndexAgreesWithScan: the index is an optimisation of the
// reference client's scan and must pick the very same report every time.
func TestUsageIndexAgreesWithScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	matched := 0
	for round := range 400 {
		reports, creds := randomUsageWorld(rng, rng.IntN(12), 30)
		x := NewUsage(reports, epoch, creds)
		claimed := map[*broker.UsageReport]bool{}
		for _, e := range creds {
			want, wok := scanMatch(reports, e)
			got, gok := x.Match(e)
			if want != got || wok != gok {
				t.Fatalf("round %d, credential %+v: index gave %p,%v, linear scan %p,%v", round, e.Credential, got, gok, want, wok)
			}
			if wok {
				matched++
				claimed[want] = true
			}
		}
		unmatched := map[string]int{}
		for i := range reports {
			unmatched[reports[i].Provider] += 0
			if !claimed[&reports[i]] {
				unmatched[reports[i].Provider]++
			}
		}
		if !maps.Equal(x.UnmatchedByProvider, unmatched) || x.Unmatched() != len(reports)-len(claimed) {
			t.Fatalf("round %d: unmatched %v (%d), by the scan %v", round, x.UnmatchedByProvider, x.Unmatched(), unmatched)
		}
	}
	if matched < 1000 {
		t.Fatalf("only %d matches: the random world does not exercise matching", matched)
	}
	if _, ok := NewUsage(nil, epoch, nil).Match(&Entry{Entry: &broker.Entry{Provider: "anthropic", Credential: broker.Credential{Type: broker.TypeOAuth}}}); ok {
		t.Fatal("empty index matched")
	}
}

func benchUsage(n int) ([]broker.UsageReport, []*Entry) {
	reports := make([]broker.UsageReport, n)
	creds := make([]*Entry, n)
	for i := range n {
		p := testkit.BenchProviders[i%len(testkit.BenchProviders)]
		email := fmt.Sprintf("user%d@example.com", i)
		creds[i] = &Entry{Entry: &broker.Entry{ID: int64(i), Provider: p, Credential: broker.Credential{Type: broker.TypeOAuth, Email: email, AccountID: fmt.Sprintf("acct-%d", i)}}}
		reports[n-1-i] = broker.UsageReport{Provider: p, Metadata: broker.UsageMetadata{Email: email, AccountID: fmt.Sprintf("acct-%d", i)},
			Limits: []broker.UsageLimit{{ID: p + ":5h"}, {ID: p + ":7d"}}}
	}
	return reports, creds
}

// BenchmarkMatchUsage matches every credential to its report: the linear
// scan of the reference client against the index (build included).
func BenchmarkMatchUsage(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		reports, creds := benchUsage(n)
		b.Run("scan/creds="+benchSize(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				for _, e := range creds {
					if _, ok := scanMatch(reports, e); !ok {
						b.Fatal("no match")
					}
				}
			}
		})
		b.Run("index/creds="+benchSize(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				x := NewUsage(reports, epoch, nil)
				for _, e := range creds {
					if _, ok := x.Match(e); !ok {
						b.Fatal("no match")
					}
				}
			}
		})
	}
}
