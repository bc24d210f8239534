package store

import "strings"

// UsageIndex answers MatchUsageReport for many credentials against one set
// of reports: built once per usage fetch in O(reports + limits), each match
// is then a few map lookups instead of a scan of the provider's reports, so
// a scrape is linear in credentials, not credentials × reports.
//
// It gives exactly MatchUsageReport's answer (the same report pointer).
// It is immutable and safe for concurrent use; the reports must not change.
type UsageIndex struct {
	reports   []UsageReport
	providers map[string]*providerReports
}

type providerReports struct {
	all     []int // positions in reports, in order
	orgless int   // reports without a metadata orgId
	// Report positions by normalised identity value, ascending.
	byAccount, byEmail, byProject map[string][]int
	byOrg                         map[string][]int
}

// NewUsageIndex indexes reports, which it keeps (not a copy).
func NewUsageIndex(reports []UsageReport) *UsageIndex {
	x := &UsageIndex{reports: reports, providers: map[string]*providerReports{}}
	for i := range reports {
		r := &reports[i]
		p := x.providers[r.Provider]
		if p == nil {
			p = &providerReports{byAccount: map[string][]int{}, byEmail: map[string][]int{},
				byProject: map[string][]int{}, byOrg: map[string][]int{}}
			x.providers[r.Provider] = p
		}
		p.all = append(p.all, i)
		if r.Metadata.OrgID == "" {
			p.orgless++
		} else {
			addPos(p.byOrg, strings.ToLower(r.Metadata.OrgID), i)
		}
		// The keys identity.matches compares against: metadata values are
		// trimmed by the decoder, scope ids only lowercased.
		if m := r.Metadata.AccountID; m != "" {
			addPos(p.byAccount, strings.ToLower(m), i)
		}
		if m := r.Metadata.Email; m != "" {
			addPos(p.byEmail, strings.ToLower(m), i)
		}
		if m := r.Metadata.ProjectID; m != "" {
			addPos(p.byProject, strings.ToLower(m), i)
		}
		for j := range r.Limits {
			if s := r.Limits[j].Scope.AccountID; s != "" {
				addPos(p.byAccount, strings.ToLower(s), i)
			}
			if s := r.Limits[j].Scope.ProjectID; s != "" {
				addPos(p.byProject, strings.ToLower(s), i)
			}
		}
	}
	return x
}

// addPos appends position i once (positions arrive in ascending order).
func addPos(m map[string][]int, key string, i int) {
	ps := m[key]
	if n := len(ps); n > 0 && ps[n-1] == i {
		return
	}
	m[key] = append(ps, i)
}

// Match is MatchUsageReport(reports, e).
func (x *UsageIndex) Match(e *Entry) (*UsageReport, bool) {
	if e == nil || e.Credential.Type != TypeOAuth {
		return nil, false
	}
	p := x.providers[e.Provider]
	if p == nil {
		return nil, false
	}
	c := &e.Credential
	id := identity{accountID: norm(c.AccountID), email: norm(c.Email), projectID: norm(c.ProjectID)}
	org := norm(c.OrgID)
	if org != "" {
		// Reports without an org are never given to an org-scoped credential.
		if !id.any() {
			if same := p.byOrg[org]; len(same) == 1 {
				return &x.reports[same[0]], true
			}
			return nil, false
		}
		return x.first(p, id, func(r *UsageReport) bool {
			return r.Metadata.OrgID != "" && strings.ToLower(r.Metadata.OrgID) == org
		})
	}
	if p.orgless == 0 {
		return nil, false
	}
	if len(p.all) == 1 {
		return &x.reports[p.all[0]], true // lone-candidate fallback: one org-less report
	}
	return x.first(p, id, func(r *UsageReport) bool { return r.Metadata.OrgID == "" })
}

// first is the earliest report passing identityMatch and keep.
func (x *UsageIndex) first(p *providerReports, id identity, keep func(*UsageReport) bool) (*UsageReport, bool) {
	best := -1
	scan := func(ps []int) {
		for _, i := range ps {
			if best >= 0 && i >= best {
				return
			}
			if keep(&x.reports[i]) {
				best = i
				return
			}
		}
	}
	if id.accountID != "" {
		scan(p.byAccount[id.accountID])
	}
	if id.email != "" {
		scan(p.byEmail[id.email])
	}
	if id.projectID != "" {
		scan(p.byProject[id.projectID])
	}
	if best < 0 {
		return nil, false
	}
	return &x.reports[best], true
}
