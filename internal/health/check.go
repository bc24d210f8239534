package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/authbroker/authbroker_exporter/internal/identity"
	"github.com/authbroker/authbroker_exporter/store"
	"github.com/authbroker/authbroker_exporter/store/broker"
)

// Exit codes of the check command, in the Nagios plugin convention that
// cron wrappers and uptime monitors understand.
const (
	ExitOK       = 0 // verdict ok
	ExitWarning  = 1 // verdict degraded
	ExitCritical = 2 // verdict critical, including an unreachable broker
	ExitUnknown  = 3 // health could not be determined: bad options, or the broker refused the token
)

// Unknown is the status the check reports when it could not evaluate.
const Unknown Verdict = "unknown"

// ReasonCheckFailed is the reason code of an Unknown check.
const ReasonCheckFailed = "check_failed"

// CheckOptions configure Check.
type CheckOptions struct {
	// Client is built from the same broker flags as the exporter's.
	Client     *broker.Client
	BrokerURL  string // shown in the output
	Thresholds Thresholds
	Redactor   *identity.Redactor
	Format     string        // "text" (default) or "json"
	Timeout    time.Duration // bounds the whole check; default 60s
	Version    string        // exporter version, echoed in the JSON
	Now        func() time.Time
}

// ExitCode maps a verdict to the check's exit status.
func ExitCode(v Verdict) int {
	switch v {
	case OK:
		return ExitOK
	case Degraded:
		return ExitWarning
	case Critical:
		return ExitCritical
	}
	return ExitUnknown
}

// Check makes one round of requests to the broker (healthz, snapshot, then
// usage and the disabled list), evaluates them like the exporter's health
// page, writes a summary to w and returns the exit code. It starts no
// background work: every request has returned when it does.
//
// An unreachable or failing broker is critical: that is the answer the
// check exists to give. Unknown is kept for when the question could not
// be asked: invalid options, or a token the broker rejects (401), since
// then the credentials' state is simply not visible.
func Check(ctx context.Context, opts CheckOptions, w io.Writer) int {
	format := opts.Format
	if format == "" {
		format = "text"
	}
	if format != "text" && format != "json" {
		fmt.Fprintf(w, "UNKNOWN: unsupported output format %q (want text or json)\n", format)
		return ExitUnknown
	}
	if opts.Client == nil {
		return writeCheck(w, format, unknownReport(opts, time.Now(), "no broker client configured"))
	}
	defer opts.Client.CloseIdleConnections()
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	in := Input{BrokerURL: opts.BrokerURL, ForcePoll: true}

	start := now()
	h, err := opts.Client.Healthz(ctx)
	in.Broker = BrokerProbe{Checked: now(), Latency: now().Sub(start)}
	switch {
	case err != nil:
		in.Broker.Err = err.Error()
	case !h.OK:
		in.Broker.Err = "healthz answered ok=false"
	default:
		in.Broker.Up, in.Broker.Version = true, h.Version
	}

	res, err := opts.Client.Snapshot(ctx, broker.SnapshotRequest{})
	if err != nil {
		var he *broker.HTTPError
		if errors.As(err, &he) && he.Status == http.StatusUnauthorized {
			return writeCheck(w, format, unknownReport(opts, now(), "the broker rejected the token: "+err.Error()))
		}
		in.Status.LastError = err.Error()
	} else if s := res.Snapshot; s != nil {
		// One GET is a poll that just succeeded: the "mirror" is as live as
		// it gets, and the skew is measured on this very response.
		in.View = store.NewView(s)
		in.Status = store.SyncStatus{
			Mode: store.ModePoll, Live: true, LastSync: s.ReceivedAt,
			ClockSkew: s.ReceivedAt.Sub(s.ServerNow), HasClockSkew: !s.ServerNow.IsZero(),
		}
		usageAndDisabled(ctx, opts.Client, in.View.Entries, &in)
	}

	in.Now = now()
	rep := Evaluate(in, opts.Thresholds, opts.Redactor)
	rep.ExporterVersion = opts.Version
	return writeCheck(w, format, rep)
}

// usageAndDisabled fetches both lists side by side: usage can take the
// broker many seconds (it asks every provider), the disabled list does not.
func usageAndDisabled(ctx context.Context, c *broker.Client, entries []*store.Entry, in *Input) {
	perProvider := map[string]int{}
	most := 0
	for _, e := range entries {
		if e.Credential.Type == broker.TypeOAuth {
			perProvider[e.Provider]++
			most = max(most, perProvider[e.Provider])
		}
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if u, err := c.Usage(ctx, most); err == nil {
			in.Usage, in.UsageOK = u.Reports, true
		}
	}()
	go func() {
		defer wg.Done()
		if t, err := c.Disabled(ctx, ""); err == nil {
			in.Tombstones, in.TombstonesOK = t, true
		}
	}()
	wg.Wait()
}

func unknownReport(opts CheckOptions, now time.Time, msg string) Report {
	rep := Evaluate(Input{Now: now, BrokerURL: opts.BrokerURL, UsageOK: true, TombstonesOK: true}, opts.Thresholds, opts.Redactor)
	rep.Status = Unknown
	rep.ExporterVersion = opts.Version
	rep.Reasons = []Reason{{Code: ReasonCheckFailed, Severity: Unknown, Message: msg}}
	return rep
}

func writeCheck(w io.Writer, format string, rep Report) int {
	if format == "json" {
		body, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			fmt.Fprintf(w, "UNKNOWN: encoding the report: %v\n", err)
			return ExitUnknown
		}
		w.Write(append(body, '\n'))
	} else {
		writeText(w, rep)
	}
	return ExitCode(rep.Status)
}

// nagiosWord is the plugin-convention word for a verdict.
func nagiosWord(v Verdict) string {
	switch v {
	case OK:
		return "OK"
	case Degraded:
		return "WARNING"
	case Critical:
		return "CRITICAL"
	}
	return "UNKNOWN"
}

// writeText prints a first line that fits a monitoring system's status
// field, then the reasons and one line per credential.
func writeText(w io.Writer, r Report) {
	broker := r.Broker.URL
	if broker == "" {
		broker = "auth-broker"
	}
	if r.Broker.Version != "" {
		broker += " (" + r.Broker.Version + ")"
	}
	first := fmt.Sprintf("%s: %s", nagiosWord(r.Status), broker)
	switch {
	case r.Status == Unknown:
		first += ": " + r.Reasons[0].Message
	case len(r.Reasons) == 0 || r.Status == OK:
		first += fmt.Sprintf(": %d credentials healthy", r.Summary.Credentials)
	default:
		first += ": " + r.Reasons[0].Message
		if n := countAtLeast(r.Reasons, Degraded) - 1; n > 0 {
			first += fmt.Sprintf(" (+%d more)", n)
		}
	}
	fmt.Fprintln(w, oneLine(first))
	if r.Status == Unknown {
		return
	}
	for _, x := range r.Reasons {
		fmt.Fprintf(w, "  %-8s %s: %s\n", x.Severity, x.Code, oneLine(x.Message))
	}
	var states []string
	for s, n := range r.Summary.ByState {
		if n > 0 {
			states = append(states, fmt.Sprintf("%s %d", s, n))
		}
	}
	sort.Strings(states)
	fmt.Fprintf(w, "credentials: %d active (%s), %d disabled; generation %d\n",
		r.Summary.Credentials, strings.Join(states, ", "), r.Summary.Disabled, r.Sync.Generation)
	if len(r.Credentials) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  ID\tPROVIDER\tTYPE\tSTATE\tEXPIRES\tIDENTITY")
	for _, c := range r.Credentials {
		exp := "-"
		if c.ExpiresAt != nil {
			exp = relTime(r.CheckedAt, c.ExpiresAt)
		}
		ident := identityText(c)
		if ident == "—" {
			ident = "-"
		}
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%s\n", c.ID, oneLine(c.Provider), c.Type, c.State, exp, oneLine(ident))
	}
	tw.Flush()
}

func countAtLeast(rs []Reason, sev Verdict) int {
	n := 0
	for _, x := range rs {
		if x.Severity.rank() >= sev.rank() {
			n++
		}
	}
	return n
}

// oneLine keeps broker-supplied text from breaking the line-based output.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
