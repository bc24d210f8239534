package store

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/authbroker/authbroker_exporter/store/broker"
)

// FuzzMatchUsage checks Usage.Match against refMatch: a match is a report
// of the credential's provider, API keys never match, the answer is
// deterministic and is the one docs/broker-protocol.md §9 gives.
const exampleUsageReport = `{"provider":"anthropic","fetchedAt":1795751800000,"metadata":{"endpoint":"x","accountId":"acct-A","email":"a@example.com"},
 "limits":[{"id":"anthropic:5h","label":"Claude 5 Hour","scope":{"provider":"anthropic","windowId":"5h","shared":true},
  "window":{"id":"5h","label":"5 Hour","durationMs":18000000,"resetsAt":1795760000000},
  "amount":{"used":42,"limit":100,"remaining":58,"usedFraction":0.42,"remainingFraction":0.58,"unit":"percent"},"status":"ok"}]}`

func FuzzMatchUsage(f *testing.F) {
	two := `{"generatedAt":1,"reports":[` + exampleUsageReport + `,{"provider":"anthropic","metadata":{"email":"c@example.com","accountId":"acct-A"},"limits":[]},{"provider":"anthropic","metadata":{"email":"b@example.com","orgId":"Org-1"},"limits":[]}]}`
	f.Add([]byte(two), "anthropic", false, "A@Example.com ", "", "", "")
	f.Add([]byte(two), "anthropic", false, "b@example.com", "", "", "org-1")
	f.Add([]byte(two), "anthropic", true, "", "acct-A", "", "")
	f.Add([]byte(`{"reports":[{"provider":"gemini","metadata":{"project_id":" P1 "},"limits":[{"scope":{"accountId":"X"}}]}]}`), "gemini", false, "", "x", "p1", "")
	f.Fuzz(func(t *testing.T, body []byte, provider string, apiKey bool, email, account, project, org string) {
		resp, err := broker.DecodeUsage(body)
		if err != nil {
			return
		}
		var raw struct {
			Reports []any `json:"reports"`
		}
		var doc any
		if json.Unmarshal(body, &raw) != nil || json.Unmarshal(body, &doc) != nil || caseFolded(doc) {
			return // the reference reads keys exactly; see usageKeys
		}
		typ := broker.TypeOAuth
		if apiKey {
			typ = broker.TypeAPIKey
		}
		e := &Entry{Entry: &broker.Entry{ID: 1, Provider: provider, Credential: broker.Credential{Type: typ, Email: email, AccountID: account, ProjectID: project, OrgID: org}}}
		u := NewUsage(resp.Reports, epoch, nil)
		r, ok := u.Match(e)
		if ok != (r != nil) {
			t.Fatalf("ok %v with report %v", ok, r)
		}
		got := -1
		if ok {
			for i := range resp.Reports {
				if &resp.Reports[i] == r {
					got = i
				}
			}
			if got < 0 {
				t.Fatal("the match is not one of the reports")
			}
			if r.Provider != provider {
				t.Fatalf("credential of %q matched a report of %q", provider, r.Provider)
			}
			if apiKey {
				t.Fatal("an API key matched a usage report")
			}
		}
		if r2, ok2 := u.Match(e); r2 != r || ok2 != ok {
			t.Fatal("not deterministic")
		}
		if want := refMatch(raw.Reports, provider, typ, email, account, project, org); got != want {
			t.Fatalf("matched report %d, docs/broker-protocol.md §9 says %d", got, want)
		}
	})
}

// usageKeys are the keys the decoder reads; encoding/json folds case when
// it matches them to struct fields, the broker client does not.
var usageKeys = []string{"generatedAt", "reports", "provider", "fetchedAt", "limits", "metadata", "id", "label", "scope",
	"window", "amount", "status", "accountId", "projectId", "orgId", "modelId", "tier", "windowId", "shared", "durationMs",
	"resetsAt", "resetLabel", "used", "limit", "remaining", "usedFraction", "remainingFraction", "unit", "resetCredits"}

// caseFolded reports a key that differs from a known key only by case
// (outside metadata, which is a map and matched exactly).
func caseFolded(v any) bool {
	switch x := v.(type) {
	case map[string]any:
		for k, y := range x {
			for _, want := range usageKeys {
				if k != want && strings.EqualFold(k, want) {
					return true
				}
			}
			if k != "metadata" && caseFolded(y) {
				return true
			}
		}
	case []any:
		for _, y := range x {
			if caseFolded(y) {
				return true
			}
		}
	}
	return false
}

// refMatch is the matching of docs/broker-protocol.md §9 (the 18.2.3 org
// rule, the 18.2.9 email rule), written from the text, over the raw JSON
// reports: the index of the matching report, or -1.
func refMatch(reports []any, provider string, typ, email, account, project, org string) int {
	if typ != broker.TypeOAuth {
		return -1
	}
	lower := func(s string) string { return strings.ToLower(strings.TrimSpace(s)) }
	cEmail, cAccount, cProject, cOrg := lower(email), lower(account), lower(project), lower(org)
	meta := func(r map[string]any, key string) string {
		m, _ := r["metadata"].(map[string]any)
		s, _ := m[key].(string)
		return strings.ToLower(strings.TrimSpace(s))
	}
	metaAlias := func(r map[string]any, key, alias string) string {
		if v := meta(r, key); v != "" {
			return v
		}
		return meta(r, alias)
	}
	scopes := func(r map[string]any, key string) []string {
		var out []string
		ls, _ := r["limits"].([]any)
		for _, l := range ls {
			lm, _ := l.(map[string]any)
			sc, _ := lm["scope"].(map[string]any)
			if s, ok := sc[key].(string); ok && s != "" {
				out = append(out, strings.ToLower(s))
			}
		}
		return out
	}
	identityMatch := func(r map[string]any) bool {
		if rEmail := meta(r, "email"); cEmail != "" && rEmail != "" {
			return rEmail == cEmail // 18.2.9: the email decides
		}
		if cAccount != "" && (metaAlias(r, "accountId", "account_id") == cAccount || contains(scopes(r, "accountId"), cAccount)) {
			return true
		}
		return cProject != "" && (metaAlias(r, "projectId", "project_id") == cProject || contains(scopes(r, "projectId"), cProject))
	}
	var all []int
	for i, x := range reports {
		r, _ := x.(map[string]any)
		if p, _ := r["provider"].(string); p == provider {
			all = append(all, i)
		}
	}
	if len(all) == 0 {
		return -1
	}
	rep := func(i int) map[string]any { r, _ := reports[i].(map[string]any); return r }
	hasIdentity := cEmail != "" || cAccount != "" || cProject != ""
	if cOrg != "" {
		var same []int
		for _, i := range all {
			if o := meta(rep(i), "orgId"); o != "" && o == cOrg {
				same = append(same, i)
			}
		}
		if !hasIdentity {
			if len(same) == 1 {
				return same[0]
			}
			return -1
		}
		for _, i := range same {
			if identityMatch(rep(i)) {
				return i
			}
		}
		return -1
	}
	var candidates []int
	for _, i := range all {
		if meta(rep(i), "orgId") == "" {
			candidates = append(candidates, i)
		}
	}
	if len(candidates) == 0 {
		return -1
	}
	if len(all) == 1 {
		return all[0]
	}
	for _, i := range candidates {
		if identityMatch(rep(i)) {
			return i
		}
	}
	return -1
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}
