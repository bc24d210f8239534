package health

import (
	"cmp"
	"slices"
)

// Views of a Query.
const (
	// ViewFull lists the credentials and tombstones that match.
	ViewFull = "full"
	// ViewSummary lists no credential and no tombstone: the verdict, the
	// reasons and the counts.
	ViewSummary = "summary"
)

// Query chooses what a report lists. The verdict and the summary counts
// always cover the whole broker; the filters and the limit only narrow
// the lists. The zero Query lists everything, by provider then id.
type Query struct {
	View string // ViewFull (default) or ViewSummary
	// State keeps credentials in that state (or, for usage_warning, with
	// that problem); "disabled" keeps only tombstones.
	State    string
	Provider string
	ID       int64
	HasID    bool
	// ProblemsFirst orders credentials worst state first (then provider,
	// id) instead of by provider, then id.
	ProblemsFirst bool
	// Limit caps the credential and tombstone lists, and in a summary the
	// credential reasons; 0 lists all that match.
	Limit int
}

// FilterStates are the values State accepts.
func FilterStates() []string {
	return []string{StateExpired, StateUsageExhausted, StateExpiring, StateRotationOverdue, StateBlocked, ProblemUsageWarning, StateOK, StateDisabled}
}

func (q Query) summary() bool { return q.View == ViewSummary }

func (q Query) listing() Listing {
	l := Listing{View: ViewFull, State: q.State, Provider: q.Provider, Limit: q.Limit}
	if q.summary() {
		l.View = ViewSummary
	}
	if q.HasID {
		id := q.ID
		l.ID = &id
	}
	return l
}

func (q Query) matchesCredential(c *credState) bool {
	e := c.e
	if (q.HasID && e.ID != q.ID) || (q.Provider != "" && e.Provider != q.Provider) {
		return false
	}
	switch q.State {
	case "":
		return true
	case ProblemUsageWarning:
		return c.problems&pUsageWarning != 0
	}
	return q.State == c.state()
}

func (q Query) matchesTombstone(id int64, provider string) bool {
	if q.HasID && id != q.ID || q.Provider != "" && provider != q.Provider {
		return false
	}
	return q.State == "" || q.State == StateDisabled
}

// capped is n limited by the query's limit.
func (q Query) capped(n int) int {
	if q.Limit > 0 && n > q.Limit {
		return q.Limit
	}
	return n
}

// order sorts matching credentials (already by provider, then id) for
// listing: stable, so ProblemsFirst keeps provider, id within a state.
func (q Query) order(cs []credState) {
	if q.ProblemsFirst {
		slices.SortStableFunc(cs, func(a, b credState) int { return cmp.Compare(a.rank(), b.rank()) })
	}
}
