package store

import (
	"strings"

	"github.com/authbroker/authbroker_exporter/store/broker"
)

// usageIndex matches credentials to one set of usage reports. Built once
// per fetch in O(reports + limits), each match is a few map lookups, so
// matching every credential is linear in credentials plus reports.
//
// The rules are the reference client's (docs/broker-protocol.md, usage
// matching), with the 18.2.9 amendment for every broker version: when the
// credential and the report both carry an email, the email alone decides
// (members of one Team share the account and org ids).
type usageIndex struct {
	reports   []broker.UsageReport
	providers map[string]*providerReports
}

type providerReports struct {
	all      int // reports of the provider
	firstPos int // position of the first of them
	orgless  int // of which without a metadata orgId
	// Report positions by normalised identity value, ascending.
	byAccount, byEmail, byProject, byOrg map[string][]int
}

func newUsageIndex(reports []broker.UsageReport) *usageIndex {
	x := &usageIndex{reports: reports, providers: map[string]*providerReports{}}
	// The maps of a provider are made at their size, most reports having an
	// account id and an email: grown from empty, a 10k-report answer's
	// would allocate twice over.
	per := map[string]int{}
	for i := range reports {
		per[reports[i].Provider]++
	}
	for i := range reports {
		r := &reports[i]
		p := x.providers[r.Provider]
		if p == nil {
			n := per[r.Provider]
			p = &providerReports{firstPos: i, byAccount: make(map[string][]int, n), byEmail: make(map[string][]int, n),
				byProject: map[string][]int{}, byOrg: map[string][]int{}}
			x.providers[r.Provider] = p
		}
		p.all++
		if r.Metadata.OrgID == "" {
			p.orgless++
		} else {
			addPos(p.byOrg, strings.ToLower(r.Metadata.OrgID), i)
		}
		// Metadata values are trimmed by the decoder; scope ids are only
		// lowercased, as in the reference client.
		addPos(p.byAccount, strings.ToLower(r.Metadata.AccountID), i)
		addPos(p.byEmail, strings.ToLower(r.Metadata.Email), i)
		addPos(p.byProject, strings.ToLower(r.Metadata.ProjectID), i)
		for j := range r.Limits {
			addPos(p.byAccount, strings.ToLower(r.Limits[j].Scope.AccountID), i)
			addPos(p.byProject, strings.ToLower(r.Limits[j].Scope.ProjectID), i)
		}
	}
	return x
}

// addPos appends position i under a non-empty key once (positions arrive
// in ascending order).
func addPos(m map[string][]int, key string, i int) {
	if key == "" {
		return
	}
	ps := m[key]
	if n := len(ps); n > 0 && ps[n-1] == i {
		return
	}
	m[key] = append(ps, i)
}

// identity is a credential's normalised identity: trimmed, lowercased.
type identity struct{ accountID, email, projectID, orgID string }

func identityOf(c *broker.Credential) identity {
	norm := func(s string) string { return strings.ToLower(strings.TrimSpace(s)) }
	return identity{norm(c.AccountID), norm(c.Email), norm(c.ProjectID), norm(c.OrgID)}
}

func (id identity) any() bool { return id.accountID != "" || id.email != "" || id.projectID != "" }

func (x *usageIndex) match(e *Entry) (*broker.UsageReport, bool) {
	if e == nil || e.Credential.Type != broker.TypeOAuth {
		return nil, false
	}
	p := x.providers[e.Provider]
	if p == nil {
		return nil, false
	}
	id := identityOf(&e.Credential)
	if id.orgID != "" {
		// Reports without an org are never given to an org-scoped credential.
		if !id.any() {
			if same := p.byOrg[id.orgID]; len(same) == 1 {
				return &x.reports[same[0]], true
			}
			return nil, false
		}
		return x.first(p, id, func(r *broker.UsageReport) bool {
			return strings.EqualFold(r.Metadata.OrgID, id.orgID)
		})
	}
	if p.orgless == 0 {
		return nil, false
	}
	if p.all == 1 {
		// Lone-candidate fallback: the provider's one report, org-less.
		return &x.reports[p.firstPos], true
	}
	return x.first(p, id, func(r *broker.UsageReport) bool { return r.Metadata.OrgID == "" })
}

// first is the earliest report that passes keep and identityMatch: the
// emails decide when both sides have one; otherwise an account or project
// id of the report's metadata or limit scopes equal to the credential's.
func (x *usageIndex) first(p *providerReports, id identity, keep func(*broker.UsageReport) bool) (*broker.UsageReport, bool) {
	best := -1
	scan := func(ps []int, emailDecides bool) {
		for _, i := range ps {
			if best >= 0 && i >= best {
				return
			}
			r := &x.reports[i]
			if emailDecides && r.Metadata.Email != "" {
				continue // a report for another member of the same account
			}
			if keep(r) {
				best = i
				return
			}
		}
	}
	if id.email != "" {
		scan(p.byEmail[id.email], false)
	}
	if id.accountID != "" {
		scan(p.byAccount[id.accountID], id.email != "")
	}
	if id.projectID != "" {
		scan(p.byProject[id.projectID], id.email != "")
	}
	if best < 0 {
		return nil, false
	}
	return &x.reports[best], true
}
