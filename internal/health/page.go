package health

import (
	_ "embed"
	"fmt"
	"html/template"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

type pageData struct {
	R              Report
	Links          []Link
	RefreshSeconds int
	Q              Query
	// Filtered: the query narrows the lists.
	Filtered bool
	// Global are the broker and mirror reasons; Groups the credential
	// reasons, one group per code.
	Global []Reason
	Groups []reasonGroup
	// Providers are the rows of the counts table; States its columns.
	Providers []providerRow
	Totals    providerRow
	States    []string
	// Rows are the listed credentials, phrased for the page.
	Rows []pageRow
	// MoreCredentials and MoreDisabled count matching rows not shown.
	MoreCredentials, MoreDisabled int
}

// reasonGroup is every listed credential reason of one code: how many,
// the filter that lists their credentials, and the first few messages.
type reasonGroup struct {
	Code     string
	Severity Verdict
	Count    int
	State    string // the state filter of these credentials
	Samples  []Reason
}

// samplesPerReason bounds the messages shown per credential reason code.
const samplesPerReason = 3

type providerRow struct {
	Provider string
	Counts   []stateCount
	Total    int
}

type stateCount struct {
	State string
	N     int
}

// pageStates are the columns of the counts table, worst first.
var pageStates = [...]string{StateExpired, StateUsageExhausted, StateExpiring, StateRotationOverdue, StateBlocked, StateOK, StateDisabled}

// reasonState is the state filter that lists the credentials of a
// credential reason code.
func reasonState(code string) string {
	switch code {
	case ReasonCredentialExpired:
		return StateExpired
	case ReasonUsageExhausted:
		return StateUsageExhausted
	case ReasonCredentialExpiring:
		return StateExpiring
	case ReasonRotationOverdue:
		return StateRotationOverdue
	case ReasonCredentialBlocked:
		return StateBlocked
	case ReasonUsageWarning:
		return ProblemUsageWarning
	case ReasonRefreshFailed:
		return StateDisabled
	}
	return ""
}

func newPageData(r Report, q Query) pageData {
	d := pageData{R: r, Q: q, States: pageStates[:], Filtered: q.State != "" || q.Provider != "" || q.HasID,
		MoreCredentials: r.Listing.Credentials.Matching - r.Listing.Credentials.Listed,
		MoreDisabled:    r.Listing.Disabled.Matching - r.Listing.Disabled.Listed}
	byCode := map[string]int{}
	for _, x := range r.Reasons {
		if x.CredentialID == nil {
			d.Global = append(d.Global, x)
			continue
		}
		i, ok := byCode[x.Code]
		if !ok {
			i = len(d.Groups)
			byCode[x.Code] = i
			d.Groups = append(d.Groups, reasonGroup{Code: x.Code, Severity: x.Severity, State: reasonState(x.Code)})
		}
		g := &d.Groups[i]
		g.Count++
		if len(g.Samples) < samplesPerReason {
			g.Samples = append(g.Samples, x)
		}
	}
	d.Rows = make([]pageRow, 0, len(r.Credentials))
	for i := range r.Credentials {
		d.Rows = append(d.Rows, newPageRow(&r.Credentials[i], r.CheckedAt))
	}
	providers := slices.Sorted(maps.Keys(r.Summary.ByProvider))
	d.Totals = providerRow{Counts: make([]stateCount, len(pageStates))}
	for _, p := range providers {
		row := providerRow{Provider: p}
		for i, s := range pageStates {
			n := r.Summary.ByProvider[p][s]
			row.Counts = append(row.Counts, stateCount{s, n})
			row.Total += n
			d.Totals.Counts[i].State = s
			d.Totals.Counts[i].N += n
		}
		d.Totals.Total += row.Total
		d.Providers = append(d.Providers, row)
	}
	return d
}

//go:embed page.html.tmpl
var pageSource string

var pageTmpl = template.Must(template.New("page").Funcs(template.FuncMap{
	"rel":     relTime,
	"relsecs": relSecs,
	"utc":     func(t *time.Time) string { return utc(t) },
	"utcv":    func(t time.Time) string { return utc(&t) },
	"skew":    skewText,
	"dur":     func(s float64) string { return human(time.Duration(s * float64(time.Second))) },
	"dash":    dash,
	"sev":     func(v Verdict) string { return string(v) },
	"upper":   strings.ToUpper,
	"filter":  filterURL,
	"minus":   func(a, b int) int { return a - b },
	"maxrows": func() int { return MaxPageRows },
	"idstr":   func(id int64) string { return strconv.FormatInt(id, 10) },
}).Parse(pageSource))

func utc(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// relTime phrases t relative to now: "in 3m05s", "12s ago", "now", "—".
func relTime(now time.Time, t *time.Time) string {
	if t == nil {
		return "—"
	}
	return relDur(t.Sub(now))
}

func relSecs(s *float64) string {
	if s == nil {
		return "—"
	}
	return relDur(time.Duration(*s * float64(time.Second)))
}

func relDur(d time.Duration) string {
	switch {
	case d > -time.Second/2 && d < time.Second/2:
		return "now"
	case d > 0:
		return "in " + human(d)
	}
	return human(-d) + " ago"
}

func skewText(s *float64) string {
	if s == nil {
		return "—"
	}
	d := time.Duration(*s * float64(time.Second))
	if d >= 0 {
		return fmt.Sprintf("exporter %s ahead", roundDur(d))
	}
	return fmt.Sprintf("exporter %s behind", roundDur(-d))
}

func pct(f *float64) string {
	if f == nil {
		return "?"
	}
	return fmt.Sprintf("%.0f%%", *f*100)
}

// barWidth is the CSS width in percent, clamped so an overage fills the bar
// instead of overflowing it.
func barWidth(f *float64) float64 {
	if f == nil || *f <= 0 {
		return 0
	}
	if *f >= 1 {
		return 100
	}
	return float64(int(*f*1000)) / 10
}

func identityText(c CredentialHealth) string {
	for _, s := range []string{c.Identity, c.Email, c.Account} {
		if s != "" {
			return s
		}
	}
	return "—"
}

func dash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}
