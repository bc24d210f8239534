package health

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// headline phrases p for the page, the health API and the check:
// "anthropic: 0 of 3 usable, back at 14:05 UTC (in 2h05m) when the 5h
// window resets".
func headline(p *ProviderCapacity, now time.Time) string {
	s := fmt.Sprintf("%s: %d of %d usable", oneLine(p.Provider), p.Usable, p.Active)
	switch {
	case p.Active == 0:
		return s + ", no active credential: a new login is needed"
	case p.Usable > 0:
		if p.Capacity == CapacityLow {
			s += ", capacity low"
		}
		if len(p.ScopedBlocks) > 0 {
			scopes := make([]string, len(p.ScopedBlocks))
			for i, b := range p.ScopedBlocks {
				scopes[i] = oneLine(b.Scope) + " on " + strconv.Itoa(b.Credentials)
			}
			s += "; blocked for one scope only: " + strings.Join(scopes, ", ")
		}
		return s
	case p.NextUsable == nil && p.LoginNeeded:
		return s + ", no time known: a new login is needed"
	case p.NextUsable == nil:
		return s + ", no time known"
	case p.NextUsableCause == BackSavedReset && !p.NextUsable.After(now):
		return s + ", back now: a saved reset can be redeemed"
	}
	s += ", back at " + clockTime(now, *p.NextUsable) + " (" + fromNow(now, *p.NextUsable) + ")"
	switch p.NextUsableCause {
	case BackBlockEnds:
		s += " when a rate-limit block ends"
	case BackWindowReset:
		s += " when the " + oneLine(p.NextUsableWindow) + " window resets"
	case BackSavedReset:
		s += " when a saved reset can be redeemed"
	}
	return s
}

// clockTime is t as a UTC time of day, with the date when it is not on
// now's day.
func clockTime(now, t time.Time) string {
	now, t = now.UTC(), t.UTC()
	if y, m, d := t.Date(); y == now.Year() && m == now.Month() && d == now.Day() {
		return t.Format("15:04 UTC")
	}
	return t.Format("Jan 2 15:04 UTC")
}

// WriteProviderReport is `check --provider NAME`: rep written as
// WriteReport does, its text form opening with the provider's headline
// instead of the broker's verdict. It returns the provider's verdict.
func WriteProviderReport(w io.Writer, format string, rep Report, name string) (Verdict, error) {
	p := rep.Provider(name)
	v := p.Verdict()
	if format == FormatJSON {
		return v, WriteReport(w, format, rep)
	}
	fmt.Fprintf(w, "%s: %s\n", nagiosWord(v), p.Headline)
	writeText(w, rep)
	return v, nil
}
