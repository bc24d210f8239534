package health

import (
	"net/url"
	"strconv"
	"time"
)

// pageRow is a listed credential with its cells already phrased, so the
// template only places strings: a template action costs reflection and
// allocations, and the page has a few thousand of them.
type pageRow struct {
	ID, Provider, Type, State string
	IDLink, ProviderLink      string
	StateLink                 string
	Identity, Org             string
	OtherProblems             []string
	Expires, ExpiresUTC       string // Expires "" when the credential never expires
	ExpiresNeg                bool
	Rotates, RotatesUTC       string // Rotates "" without a deadline
	RotatesNeg                bool
	LastRotation, LastRotUTC  string // LastRotation "" until one is seen
	Rotations                 string // "" when none
	Blocks                    []pageBlock
	Limits                    []pageLimit
	UsageNote                 string // shown when there is no limit
}

type pageBlock struct{ Scope, For string }

type pageLimit struct {
	ID, Label, Window, Used, Width, State, Resets string
}

func newPageRow(c *CredentialHealth, now time.Time) pageRow {
	id := strconv.FormatInt(c.ID, 10)
	r := pageRow{
		ID: id, Provider: c.Provider, Type: c.Type, State: c.State,
		IDLink: filterURL("id", id), ProviderLink: filterURL("provider", c.Provider), StateLink: filterURL("state", c.State),
		Identity: identityText(*c), Org: c.Org,
		ExpiresUTC: utc(c.ExpiresAt), RotatesUTC: utc(c.RotatesAt), LastRotUTC: utc(c.LastRotation),
	}
	for _, p := range c.Problems {
		if p != c.State {
			r.OtherProblems = append(r.OtherProblems, p)
		}
	}
	if c.ExpiresAt != nil {
		r.Expires = relTime(now, c.ExpiresAt)
		r.ExpiresNeg = c.State == StateExpired || c.State == StateExpiring
	}
	if c.RotatesAt != nil {
		r.Rotates = relTime(now, c.RotatesAt)
		if c.RotatesInSeconds != nil && *c.RotatesInSeconds < 0 {
			r.Rotates = "due " + r.Rotates
		}
		r.RotatesNeg = c.State == StateRotationOverdue
	}
	if c.LastRotation != nil {
		r.LastRotation = relTime(now, c.LastRotation)
	}
	if c.Rotations > 0 {
		r.Rotations = "×" + strconv.FormatUint(c.Rotations, 10)
	}
	for _, b := range c.Blocks {
		scope := b.Scope
		if scope == "" {
			scope = "all"
		}
		r.Blocks = append(r.Blocks, pageBlock{Scope: scope, For: human(time.Duration(b.BlockedForSecs * float64(time.Second)))})
	}
	for _, l := range c.Limits {
		pl := pageLimit{ID: l.ID, Label: l.Label, Used: pct(l.UsedFraction), State: l.State,
			Width: strconv.FormatFloat(barWidth(l.UsedFraction), 'f', -1, 64)}
		if l.Window != "" && l.Window != l.Label {
			pl.Window = l.Window
		}
		if l.ResetsAt != nil {
			pl.Resets = "resets " + relTime(now, l.ResetsAt)
		}
		r.Limits = append(r.Limits, pl)
	}
	switch {
	case c.Type == "api_key":
		r.UsageNote = "—"
	case c.UsageMatched == nil:
		r.UsageNote = "no data" // usage data unavailable
	default:
		r.UsageNote = "no report" // data, but no report for this credential
	}
	return r
}

// filterURL is the page's link with the given filters (name, value
// pairs; empty values left out), relative to the page.
func filterURL(kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			v.Set(kv[i], kv[i+1])
		}
	}
	return "?" + v.Encode()
}
