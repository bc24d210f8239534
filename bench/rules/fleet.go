package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"strconv"
)

// The synthetic fleet: n OAuth credentials, each matched to one usage
// report with four limits, written with the metric names and label sets of
// the exporter (collector/testdata/*.prom) plus the job and instance labels
// a scrape adds. Every value is a pure function of (credential, limit,
// time), so the backfilled hour and the live target after it are one
// continuous, deterministic history.

var providers = []struct {
	name   string
	share  int // per 100 credentials
	limits [4]string
}{
	{"anthropic", 40, [4]string{"5h", "7d", "7d_opus", "7d_sonnet"}},
	{"openai-codex", 30, [4]string{"primary", "secondary", "code_review", "tokens"}},
	{"google-gemini-cli", 20, [4]string{"daily", "pro", "flash", "minute"}},
	{"github-copilot", 10, [4]string{"chat", "completions", "premium", "monthly"}},
}

var windows = [4]string{"5h", "7d", "7d", "30d"}

// Problem groups, chosen so that the before rules reproduce the storm of
// issue 15 (thousands of active usage alerts) and the credential alerts see
// both a storm (one provider) and a small fleet case (another provider).
const (
	expiredProvider  = 1  // openai-codex: its first 40 credentials expired
	expiredCount     = 40 //
	expiringProvider = 2  // google-gemini-cli: 3 credentials about to expire
	expiringCount    = 3
)

type fleet struct {
	n        int
	job      string
	instance string
	end      int64 // Unix seconds: the last backfilled step
	// dashboards adds the families only the dashboards read
	// (dashboardFamilies), for the -dashboards check.
	dashboards bool
}

type cred struct {
	id       int
	provider int
	rank     int // index among the provider's credentials
}

func (f *fleet) creds() []cred {
	out := make([]cred, 0, f.n)
	rank := make([]int, len(providers))
	for i := range f.n {
		p, acc := 0, 0
		for j, pr := range providers {
			acc += pr.share
			if i%100 < acc {
				p = j
				break
			}
		}
		out = append(out, cred{id: i + 1, provider: p, rank: rank[p]})
		rank[p]++
	}
	return out
}

// hash01 is a deterministic value in [0, 1) for (a, b).
func hash01(a, b int) float64 {
	x := uint64(a)*0x9E3779B97F4A7C15 ^ uint64(b+1)*0xC2B2AE3D27D4EB4F
	x ^= x >> 31
	x *= 0xBF58476D1CE4E5B9
	x ^= x >> 29
	return float64(x>>11) / float64(1<<53)
}

// usedFraction: a report changes every 5 minutes (the broker's cache), at a
// phase of its own. 5 % of limits sit in [0.9, 1.0), 5 % in [1.0, 1.1), 5 %
// climb fast enough to be forecast to run out, the rest stay below 0.85.
func (f *fleet) usedFraction(c cred, k int, t int64) float64 {
	phase := int64(hash01(c.id, 100) * 300)
	tr := (t-phase)/300*300 + phase // time of the report in effect
	h := hash01(c.id, k)
	switch {
	case h < 0.05:
		return 0.9 + 0.1*hash01(c.id, k+10)*0.99
	case h < 0.10:
		return 1.0 + 0.1*hash01(c.id, k+10)
	case h < 0.15:
		// 25 %/h, reaching 100 % about 2 h after the end of the data.
		return 0.5 + float64(tr-(f.end-3600))*f.climbRate(c, k)
	default:
		return 0.85*hash01(c.id, k+10) + 0.01*math.Sin(float64(tr)/1800)
	}
}

// climbRate is the used fraction per second of a limit that climbs (0
// for the others).
func (f *fleet) climbRate(c cred, k int) float64 {
	if h := hash01(c.id, k); h < 0.10 || h >= 0.15 {
		return 0
	}
	return 0.25 / 3600 * (0.8 + 0.2*hash01(c.id, k+20))
}

func (f *fleet) status(c cred, k int, t int64) float64 {
	u := f.usedFraction(c, k, t)
	switch {
	case u >= 1:
		return 2
	case u >= 0.8:
		return 1
	}
	return 0
}

// resets: each window resets 1–5 h after the end of the data.
func (f *fleet) resets(c cred, k int) float64 {
	return float64(f.end + 3600 + int64(hash01(c.id, k+30)*4*3600))
}

// expiry: a 1 h token the broker rotates 5 min before expiry, at a phase of
// its own; the expired group stopped rotating 10 min before the end of the
// data, the expiring group expires 200 s after it.
func (f *fleet) expiry(c cred, t int64) float64 {
	switch {
	case c.provider == expiredProvider && c.rank < expiredCount:
		return float64(f.end - 600)
	case c.provider == expiringProvider && c.rank < expiringCount:
		return float64(f.end + 200)
	}
	phase := int64(hash01(c.id, 200) * 3300)
	return float64(phase + ((t-phase)/3300+1)*3300 + 300)
}

func (f *fleet) rotatesIn(c cred, t int64) float64 {
	e := f.expiry(c, t)
	if e < float64(t) {
		return 30 // the broker keeps announcing its next sweep
	}
	return e - 300 - float64(t)
}

func (f *fleet) fetched(c cred, t int64) float64 {
	phase := int64(hash01(c.id, 100) * 300)
	return float64((t-phase)/300*300 + phase)
}

// resetCredits: a fifth of the credentials hold one saved reset that clears
// their first limit.
func (f *fleet) resetCredits(c cred) float64 {
	if hash01(c.id, 300) < 0.2 {
		return 1
	}
	return 0
}

// series is one line of the exposition without its value.
type series struct {
	labels string
	value  func(t int64) float64
}

type family struct {
	name, typ string
	series    []series
	step      int64 // seconds between samples when not the scrape interval
	since     int64 // Unix seconds: no samples before (0: from the start)
}

// The label sets: of the target, of a credential, of one of its limits.
func (f *fleet) targetLabels() string {
	return `job="` + f.job + `",instance="` + f.instance + `"`
}

func (f *fleet) credLabels(c cred) string {
	return f.targetLabels() + `,id="` + strconv.Itoa(c.id) + `",provider="` + providers[c.provider].name + `"`
}

func (f *fleet) limitLabels(c cred, k int) string {
	p := providers[c.provider]
	return f.credLabels(c) + `,limit="` + p.name + ":" + p.limits[k] + `",window="` + windows[k] + `"`
}

func constant(v float64) func(int64) float64 { return func(int64) float64 { return v } }

// perCred is one series per credential, labelled by lbl.
func perCred(cs []cred, v func(c cred) func(int64) float64, lbl func(c cred) string) []series {
	ss := make([]series, 0, len(cs))
	for _, c := range cs {
		ss = append(ss, series{lbl(c), v(c)})
	}
	return ss
}

// perLimit is one series per credential and limit, labelled by lbl.
func perLimit(cs []cred, v func(c cred, k int) func(int64) float64, lbl func(c cred, k int) string) []series {
	ss := make([]series, 0, 4*len(cs))
	for _, c := range cs {
		for k := range 4 {
			ss = append(ss, series{lbl(c, k), v(c, k)})
		}
	}
	return ss
}

func (f *fleet) families() []family {
	cs := f.creds()
	tl, cl, ll := f.targetLabels(), f.credLabels, f.limitLabels
	var fams []family
	add := func(name, typ string, ss []series) { fams = append(fams, family{name: name, typ: typ, series: ss}) }
	one := func(v func(c cred) func(int64) float64, lbl func(c cred) string) []series { return perCred(cs, v, lbl) }
	limits := func(v func(c cred, k int) func(int64) float64) []series { return perLimit(cs, v, ll) }

	add("up", "gauge", []series{{tl, constant(1)}})
	add("authbroker_up", "gauge", []series{{tl, constant(1)}})
	add("authbroker_sync_mode", "gauge", []series{{tl + `,mode="poll"`, constant(0)}, {tl + `,mode="stream"`, constant(1)}})
	add("authbroker_stream_connected", "gauge", []series{{tl, constant(1)}})
	add("authbroker_stream_supported", "gauge", []series{{tl, constant(1)}})
	add("authbroker_snapshot_last_sync_timestamp_seconds", "gauge", []series{{tl, func(t int64) float64 { return float64(t - 5) }}})
	add("authbroker_broker_clock_skew_seconds", "gauge", []series{{tl, constant(0.01)}})
	add("authbroker_refresher_enabled", "gauge", []series{{tl, constant(1)}})
	add("authbroker_refresher_interval_seconds", "gauge", []series{{tl, constant(60)}})
	var counts []series
	for i, p := range providers {
		n := 0
		for _, c := range cs {
			if c.provider == i {
				n++
			}
		}
		counts = append(counts, series{tl + `,provider="` + p.name + `",type="oauth"`, constant(float64(n))})
	}
	add("authbroker_credentials", "gauge", counts)
	var disabled []series
	for _, p := range providers {
		for _, cause := range []string{"manual", "other", "refresh_failed", "replaced"} {
			disabled = append(disabled, series{tl + `,cause="` + cause + `",provider="` + p.name + `"`, constant(0)})
		}
	}
	add("authbroker_credentials_disabled", "gauge", disabled)
	add("authbroker_credential_info", "gauge", one(func(cred) func(int64) float64 { return constant(1) }, func(c cred) string {
		email := "user" + strconv.Itoa(c.id) + "@example.com"
		return cl(c) + `,type="oauth",identity="email:` + email + `",email="` + email + `",account="acct-` + strconv.Itoa(c.id) + `",org=""`
	}))
	add("authbroker_credential_expiry_timestamp_seconds", "gauge", one(func(c cred) func(int64) float64 {
		return func(t int64) float64 { return f.expiry(c, t) }
	}, cl))
	add("authbroker_credential_rotates_in_seconds", "gauge", one(func(c cred) func(int64) float64 {
		return func(t int64) float64 { return f.rotatesIn(c, t) }
	}, cl))
	add("authbroker_usage_limit_used_fraction", "gauge", limits(func(c cred, k int) func(int64) float64 {
		return func(t int64) float64 { return f.usedFraction(c, k, t) }
	}))
	add("authbroker_usage_limit_resets_timestamp_seconds", "gauge", limits(func(c cred, k int) func(int64) float64 {
		return constant(f.resets(c, k))
	}))
	add("authbroker_usage_limit_status", "gauge", limits(func(c cred, k int) func(int64) float64 {
		return func(t int64) float64 { return f.status(c, k, t) }
	}))
	add("authbroker_usage_limit_reset_credits", "gauge", one(func(c cred) func(int64) float64 {
		return constant(f.resetCredits(c))
	}, func(c cred) string {
		p := providers[c.provider]
		return cl(c) + `,limit="` + p.name + ":" + p.limits[0] + `"`
	}))
	add("authbroker_usage_report_fetched_timestamp_seconds", "gauge", one(func(c cred) func(int64) float64 {
		return func(t int64) float64 { return f.fetched(c, t) }
	}, cl))
	add("authbroker_usage_fetches_total", "counter", []series{{tl, func(t int64) float64 { return float64((t - f.end + 7200) / 15) }}})
	var handler []series
	for _, code := range []string{"200", "500", "503"} {
		v := constant(0)
		if code == "200" {
			v = func(t int64) float64 { return float64((t - f.end + 7200) / 15) }
		}
		handler = append(handler, series{tl + `,code="` + code + `"`, v})
	}
	add("promhttp_metric_handler_requests_total", "counter", handler)
	if f.dashboards {
		fams = append(fams, f.dashboardFamilies(cs)...)
	}
	return fams
}

// writeOpenMetrics writes every family's history from start (or its since)
// to end at step seconds, leaving out NaN values: per family, per series,
// the samples in time order, the layout
// `promtool tsdb create-blocks-from openmetrics` reads.
func writeOpenMetrics(w io.Writer, fams []family, start, end, step int64) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	buf := make([]byte, 0, 64)
	for _, fam := range fams {
		name := fam.name
		if fam.typ == "counter" {
			// OpenMetrics names a counter family without _total.
			name = name[:len(name)-len("_total")]
		}
		fmt.Fprintf(bw, "# TYPE %s %s\n", name, fam.typ)
		first, st := max(start, fam.since), step
		if fam.step > 0 {
			first, st = (first+fam.step-1)/fam.step*fam.step, fam.step
		}
		for _, s := range fam.series {
			for t := first; t <= end; t += st {
				v := s.value(t)
				if math.IsNaN(v) {
					continue // no sample: the series is absent at t
				}
				bw.WriteString(fam.name)
				bw.WriteByte('{')
				bw.WriteString(s.labels)
				bw.WriteString("} ")
				buf = strconv.AppendFloat(buf[:0], v, 'g', -1, 64)
				buf = append(buf, ' ')
				buf = strconv.AppendInt(buf, t, 10)
				buf = append(buf, '\n')
				bw.Write(buf)
			}
		}
	}
	bw.WriteString("# EOF\n")
	return bw.Flush()
}

// writeText writes one scrape at time t in the text format (the live
// target after the backfilled hour); Prometheus stamps it itself.
func writeText(w io.Writer, fams []family, t int64) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	buf := make([]byte, 0, 32)
	for _, fam := range fams {
		if fam.name == "up" {
			continue // Prometheus writes up itself
		}
		fmt.Fprintf(bw, "# TYPE %s %s\n", fam.name, fam.typ)
		for _, s := range fam.series {
			bw.WriteString(fam.name)
			bw.WriteByte('{')
			bw.WriteString(dropTargetLabels(s.labels))
			bw.WriteString("} ")
			buf = strconv.AppendFloat(buf[:0], s.value(t), 'g', -1, 64)
			buf = append(buf, '\n')
			bw.Write(buf)
		}
	}
	return bw.Flush()
}

// dropTargetLabels removes the leading job and instance pair, which the
// scrape adds back from the target.
func dropTargetLabels(l string) string {
	n := 0
	for i := range len(l) {
		if l[i] == '"' {
			n++
			if n == 4 {
				if i+2 <= len(l) {
					return l[min(i+2, len(l)):]
				}
				return ""
			}
		}
	}
	return l
}
