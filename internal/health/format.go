package health

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/authbroker/authbroker_exporter/internal/identity"
	"github.com/authbroker/authbroker_exporter/store"
)

// Unknown is the status of a report that could not be evaluated (the
// check command's answer when it could not ask the broker).
const Unknown Verdict = "unknown"

// ReasonCheckFailed is the reason code of an Unknown report.
const ReasonCheckFailed = "check_failed"

// Formats of WriteReport.
const (
	FormatText = "text"
	FormatJSON = "json"
)

// UnknownReport is a report whose status is Unknown, with msg as its one
// reason: every other section is empty.
func UnknownReport(now time.Time, brokerURL, version, msg string, th Thresholds, ids *identity.Redactor) Report {
	rep := Evaluate(Input{Now: now, BrokerURL: brokerURL, Usage: store.NewUsage(nil, now, nil), TombstonesOK: true}, th, ids)
	rep.Status = Unknown
	rep.ExporterVersion = version
	rep.Reasons = []Reason{{Code: ReasonCheckFailed, Severity: Unknown, Message: msg}}
	return rep
}

// WriteReport writes rep as indented JSON (FormatJSON) or as the text
// summary (any other format): a first line that fits a monitoring
// system's status field, then the reasons and one line per credential.
func WriteReport(w io.Writer, format string, rep Report) error {
	if format != FormatJSON {
		writeText(w, rep)
		return nil
	}
	body, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the report: %w", err)
	}
	_, err = w.Write(append(body, '\n'))
	return err
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

// writeText prints the text form of WriteReport: a first line that fits a monitoring system's status
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
