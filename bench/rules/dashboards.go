package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"math"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/authbroker/authbroker_exporter/dashboards"
)

// The -dashboards check: the fleet with every family a dashboard reads,
// one server with the working tree's rules, then every panel query of
// every dashboard at its default variables, as Grafana sends it. A query
// fails the check when it takes 1 s or more or returns more than 50 series
// (a table: more than 50 rows).
const (
	maxQuerySeconds = 1.0
	maxSeries       = 50
	// Grafana's defaults for the dashboards: the range is the mixin's
	// dashboardPeriod; a time series panel's step is the 15 s scrape
	// interval (the data source's minimum) or more, so 15 s is the
	// costliest; $__rate_interval is then max(4 × scrape interval,
	// step + scrape interval).
	dashboardRange = 6 * time.Hour
	dashboardStep  = 15 * time.Second
	rateInterval   = "1m"
)

// dashboardFamilies are the families the dashboards read that the rules
// do not: per credential the rotations, a block for 1 %, the usage match,
// saved resets and their cooldown and expiry for the fifth that hold one,
// the raw amounts of every limit; per provider the capacity families.
func (f *fleet) dashboardFamilies(cs []cred) []family {
	tl := f.targetLabels()
	rotations := func(c cred) func(int64) float64 {
		phase := int64(hash01(c.id, 200) * 3300)
		return func(t int64) float64 { return float64((t + 86400 - phase) / 3300) }
	}
	lastRotation := func(c cred) func(int64) float64 {
		phase := int64(hash01(c.id, 200) * 3300)
		return func(t int64) float64 { return float64((t-phase)/3300*3300 + phase) }
	}
	var blocked []series
	var resetCooldown, resetExpiry []series
	var match, credits []series
	for _, c := range cs {
		cl := f.credLabels(c)
		if hash01(c.id, 400) < 0.01 {
			blocked = append(blocked, series{cl + `,scope="model:` + providers[c.provider].limits[1] + `"`, constant(float64(f.end + 900))})
		}
		match = append(match, series{cl + `,state="matched"`, constant(1)}, series{cl + `,state="unmatched"`, constant(0)})
		r := f.resetCredits(c)
		credits = append(credits, series{cl + `,state="available"`, constant(r)}, series{cl + `,state="redeemable"`, constant(r)})
		if r > 0 {
			resetCooldown = append(resetCooldown, series{cl, constant(float64(f.end + int64(hash01(c.id, 500)*7200) - 3600))})
			resetExpiry = append(resetExpiry, series{cl, constant(float64(f.end + 86400 + int64(hash01(c.id, 600)*6*86400)))})
		}
	}
	amount := func(scale func(c cred, k int, t int64) float64) func(c cred, k int) func(int64) float64 {
		return func(c cred, k int) func(int64) float64 { return func(t int64) float64 { return scale(c, k, t) } }
	}
	unitLabels := func(c cred, k int) string { return f.limitLabels(c, k) + `,unit="requests"` }
	var capacity, usable, nextUsable []series
	for i, p := range providers {
		pl := tl + `,provider="` + p.name + `"`
		n := 0
		for _, c := range cs {
			if c.provider == i {
				n++
			}
		}
		for _, st := range []struct {
			state string
			share float64
		}{{"usable", 0.85}, {"expired", 0.01}, {"blocked", 0.01}, {"exhausted", 0.13}, {"disabled", 0}} {
			capacity = append(capacity, series{pl + `,state="` + st.state + `"`, constant(float64(int(float64(n) * st.share)))})
		}
		usable = append(usable, series{pl, constant(float64(int(float64(n) * 0.85)))})
		if i == expiredProvider {
			nextUsable = append(nextUsable, series{pl, constant(float64(f.end + 1800))})
		}
	}
	return []family{
		{name: "authbroker_credential_rotations_total", typ: "counter", series: perCred(cs, rotations, f.credLabels)},
		{name: "authbroker_credential_last_rotation_timestamp_seconds", typ: "gauge", series: perCred(cs, lastRotation, f.credLabels)},
		{name: "authbroker_credential_blocked_until_timestamp_seconds", typ: "gauge", series: blocked},
		{name: "authbroker_usage_match", typ: "gauge", series: match},
		{name: "authbroker_usage_reset_credits", typ: "gauge", series: credits},
		{name: "authbroker_usage_reset_cooldown_until_timestamp_seconds", typ: "gauge", series: resetCooldown},
		{name: "authbroker_usage_reset_credit_next_expiry_timestamp_seconds", typ: "gauge", series: resetExpiry},
		{name: "authbroker_usage_limit_used", typ: "gauge", series: perLimit(cs, amount(func(c cred, k int, t int64) float64 { return 1000 * f.usedFraction(c, k, t) }), unitLabels)},
		{name: "authbroker_usage_limit_max", typ: "gauge", series: perLimit(cs, amount(func(cred, int, int64) float64 { return 1000 }), unitLabels)},
		{name: "authbroker_usage_limit_remaining", typ: "gauge", series: perLimit(cs, amount(func(c cred, k int, t int64) float64 { return max(0, 1000-1000*f.usedFraction(c, k, t)) }), unitLabels)},
		{name: "authbroker_provider_credentials", typ: "gauge", series: capacity},
		{name: "authbroker_provider_usable_credentials", typ: "gauge", series: usable},
		{name: "authbroker_provider_next_usable_timestamp_seconds", typ: "gauge", series: nextUsable},
	}
}

// recentOnly keeps the history of the large families (per credential or
// per limit) to the last hour: the dashboards read them only at an instant
// or over at most [1h], never over their time range. The small ones (per
// target, per provider) keep the whole history that range panels read.
func recentOnly(fams []family, end int64) {
	for i := range fams {
		if len(fams[i].series) > 100 {
			fams[i].since = end - 3600
		}
	}
}

// ruleHistory is what the breaching sets the range panels count would
// have recorded over the backfilled history, from the fleet's definitions
// (alerts/authbroker-rules.yml): the credential sets every 15 s, the usage
// sets every minute. A server that has run for the dashboards' range has
// them; this one records them itself only from its start.
func (f *fleet) ruleHistory() []family {
	cs := f.creds()
	nan := math.NaN()
	when := func(ok bool, v float64) float64 {
		if ok {
			return v
		}
		return nan
	}
	credSet := func(v func(c cred, t int64) float64) []series {
		return perCred(cs, func(c cred) func(int64) float64 { return func(t int64) float64 { return v(c, t) } }, f.credLabels)
	}
	limitSet := func(v func(c cred, k int, t int64) float64) []series {
		return perLimit(cs, func(c cred, k int) func(int64) float64 { return func(t int64) float64 { return v(c, k, t) } }, f.limitLabels)
	}
	left := func(c cred, t int64) float64 { return f.expiry(c, t) - float64(t) }
	// The refresher interval is 60 s and rotates_in never passes -60 in
	// this fleet, so the overdue set is the expired one.
	expired := func(c cred, t int64) float64 { return when(left(c, t) < 0, -left(c, t)) }
	used := func(c cred, k int, t int64) float64 { return f.usedFraction(c, k, t) }
	forecast := func(c cred, k int, t int64) float64 {
		u := used(c, k, t)
		fc := u + f.climbRate(c, k)*min(f.resets(c, k)-float64(t), 4*3600)
		return when(u < 1 && fc >= 1, fc)
	}
	return []family{
		{name: "id:authbroker_credential_expiring_soon:expires_in_seconds", typ: "gauge", series: credSet(func(c cred, t int64) float64 { return when(left(c, t) < 240, left(c, t)) })},
		{name: "id:authbroker_credential_expired:seconds_since_expiry", typ: "gauge", series: credSet(expired)},
		{name: "id:authbroker_credential_rotation_overdue:seconds", typ: "gauge", series: credSet(expired)},
		{name: "id_limit:authbroker_usage_limit_high:used_fraction", typ: "gauge", step: 60, series: limitSet(func(c cred, k int, t int64) float64 { return when(used(c, k, t) >= 0.9, used(c, k, t)) })},
		{name: "id_limit:authbroker_usage_limit_exhausted:used_fraction", typ: "gauge", step: 60, series: limitSet(func(c cred, k int, t int64) float64 { return when(used(c, k, t) >= 1, used(c, k, t)) })},
		{name: "id_limit:authbroker_usage_limit_forecast_exhausted:used_fraction", typ: "gauge", step: 60, series: limitSet(forecast)},
	}
}

// queryResult is one panel query as run.
type queryResult struct {
	q       dashboards.Query
	expr    string
	seconds float64 // fastest of the runs: the query's own cost
	median  float64
	slowest float64
	series  int
	labels  []map[string]string
}

// checkDashboards lets the rules evaluate for o.settle, then runs every
// panel query o.runs times and reports; it fails when a query breaks a
// bound.
func checkDashboards(ctx context.Context, o options, s *ruleSet, rep *report) error {
	log.Printf("server up; rules evaluate for %s before the queries", o.settle)
	select {
	case <-time.After(o.settle):
	case <-ctx.Done():
		return ctx.Err()
	}
	// "All" of the job variable is the values it lists (it has no custom
	// all value); instance and provider have ".+".
	jobs, err := labelValues(ctx, s.url, "job", `authbroker_up{job="authbroker"}`)
	if err != nil {
		return err
	}
	vars := map[string]string{
		"job":             strings.Join(jobs, "|"),
		"instance":        ".+",
		"provider":        ".+",
		"__rate_interval": rateInterval,
		"__interval":      strconv.Itoa(int(dashboardStep.Seconds())) + "s",
		"__range":         strconv.Itoa(int(dashboardRange.Seconds())) + "s",
	}
	qs, err := dashboards.QueriesWith(vars)
	if err != nil {
		return err
	}
	loadStart := loadavg()
	now := time.Now()
	var results []*queryResult
	for _, q := range qs {
		r := &queryResult{q: q, expr: q.Expr}
		var runs []float64
		for range 3 {
			took, labels, err := runQuery(ctx, s.url, q, now)
			if err != nil {
				return fmt.Errorf("%s / %s / %s: %v\n%s", q.UID, q.Panel, q.RefID, err, q.Expr)
			}
			runs = append(runs, took)
			r.labels = labels
		}
		r.seconds, r.median, r.slowest, r.series = slices.Min(runs), median(runs), slices.Max(runs), len(r.labels)
		results = append(results, r)
	}
	text, failed := dashboardReport(o, rep, results, loadStart, loadavg())
	fmt.Print(text)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(text), 0o644); err != nil {
			return err
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d panel queries break a bound (1 s, 50 series or rows)", failed)
	}
	return nil
}

func labelValues(ctx context.Context, base, label, match string) ([]string, error) {
	var r struct {
		Data []string `json:"data"`
	}
	if err := getJSON(ctx, base+"/api/v1/label/"+label+"/values?match[]="+url.QueryEscape(match), &r); err != nil {
		return nil, err
	}
	if len(r.Data) == 0 {
		return nil, fmt.Errorf("no %s values for %s", label, match)
	}
	for i, v := range r.Data {
		r.Data[i] = regexp.QuoteMeta(v)
	}
	return r.Data, nil
}

// runQuery sends q as Grafana would (instant at now, or over the default
// range at the default step) and returns the time to the last byte and the
// label sets of the result.
func runQuery(ctx context.Context, base string, q dashboards.Query, now time.Time) (float64, []map[string]string, error) {
	v := url.Values{"query": {q.Expr}}
	path := "/api/v1/query"
	if q.Instant {
		v.Set("time", strconv.FormatInt(now.Unix(), 10))
	} else {
		step := dashboardStep
		if q.MinStep != "" {
			d, err := time.ParseDuration(q.MinStep)
			if err != nil {
				return 0, nil, fmt.Errorf("panel interval %q: %v", q.MinStep, err)
			}
			step = max(step, d)
		}
		path = "/api/v1/query_range"
		v.Set("start", strconv.FormatInt(now.Add(-dashboardRange).Unix(), 10))
		v.Set("end", strconv.FormatInt(now.Unix(), 10))
		v.Set("step", strconv.Itoa(int(step.Seconds())))
	}
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result json.RawMessage `json:"result"`
		} `json:"data"`
	}
	began := time.Now()
	if err := getJSON(ctx, base+path+"?"+v.Encode(), &r); err != nil {
		return 0, nil, err
	}
	took := time.Since(began).Seconds()
	var series []struct {
		Metric map[string]string `json:"metric"`
	}
	if err := json.Unmarshal(r.Data.Result, &series); err != nil {
		return 0, nil, fmt.Errorf("result: %v", err)
	}
	labels := make([]map[string]string, len(series))
	for i, s := range series {
		labels[i] = s.Metric
	}
	return took, labels, nil
}

func getJSON(ctx context.Context, u string, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, b)
	}
	return json.Unmarshal(b, into)
}

// tableRows is what Grafana's merge makes of a table's queries: one row
// per distinct value of the labels every query's result has.
func tableRows(rs []*queryResult) int {
	var common []string
	first := true
	for _, r := range rs {
		if len(r.labels) == 0 {
			continue
		}
		var names []string
		for n := range r.labels[0] {
			if !first && !slices.Contains(common, n) {
				continue
			}
			names = append(names, n)
		}
		common, first = names, false
	}
	slices.Sort(common)
	rows := map[string]bool{}
	for _, r := range rs {
		for _, l := range r.labels {
			var key strings.Builder
			for _, n := range common {
				key.WriteString(l[n] + "\xff")
			}
			rows[key.String()] = true
		}
	}
	return len(rows)
}

func dashboardReport(o options, rep *report, rs []*queryResult, loadStart, loadEnd string) (string, int) {
	var b strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "# Dashboard queries at %d credentials (bench/rules -dashboards)\n\n", o.n)
	fmt.Fprintf(&b, "`go run ./bench/rules -dashboards -n %d -hours %d`, %s UTC on %s. %d series (%d OAuth credentials, %d usage limits), %d h of history at 15 s steps backfilled, then live scrapes every 15 s and the working tree's rules for %s before the queries.\n\n",
		o.n, o.hours, time.Now().UTC().Format("2006-01-02 15:04"), host, rep.series, o.n, 4*o.n, o.hours, o.settle)
	fmt.Fprintf(&b, "Every panel query at the default variables (job: its values; instance, provider: All), instant for stats, bar gauges and tables, else over the last %s at a %s step (or the panel's minimum step). Each ran 3 times in turn; time = the fastest run to the last byte, the query's own cost on this shared machine (median and slowest in brackets). Bound: under %.0f s and at most %d series (tables: rows after merge).\n\n", dashboardRange, dashboardStep, maxQuerySeconds, maxSeries)
	fmt.Fprintf(&b, "- `/proc/loadavg`: before the queries %s; after %s\n", loadStart, loadEnd)
	fmt.Fprintf(&b, "- preparation (write and backfill) %s; the server started %s after the end of the backfilled history (a gap of that length in the data)\n\n", rep.preparation.Round(time.Second), rep.lag.Round(time.Second))
	fmt.Fprintf(&b, "| dashboard | panel | ref | kind | time (median, slowest) | series |\n|---|---|---|---|---|---|\n")
	failed := 0
	var slowest float64
	maxS := 0
	panels := map[string][]*queryResult{}
	var order []string
	for _, r := range rs {
		key := r.q.UID + "\x00" + r.q.Panel
		if _, ok := panels[key]; !ok {
			order = append(order, key)
		}
		panels[key] = append(panels[key], r)
		kind := "range"
		if r.q.Instant {
			kind = "instant"
		}
		mark := ""
		if r.seconds >= maxQuerySeconds || r.series > maxSeries {
			mark = " **over**"
			failed++
		}
		slowest = max(slowest, r.seconds)
		maxS = max(maxS, r.series)
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s (%s, %s) | %d%s |\n", r.q.UID, r.q.Panel, r.q.RefID, kind, ms(r.seconds), ms(r.median), ms(r.slowest), r.series, mark)
	}
	maxRows := 0
	for _, key := range order {
		ps := panels[key]
		if ps[0].q.PanelType != "table" {
			continue
		}
		rows := tableRows(ps)
		maxRows = max(maxRows, rows)
		if rows > maxSeries {
			fmt.Fprintf(&b, "\nTable %s / %s: %d rows, over the bound.\n", ps[0].q.UID, ps[0].q.Panel, rows)
			failed++
		}
	}
	fmt.Fprintf(&b, "\n**%d queries on %d panels; slowest %s (fastest of 3 runs); at most %d series per query, %d rows per table; %d over a bound.**\n", len(rs), len(order), ms(slowest), maxS, maxRows, failed)
	return b.String(), failed
}
