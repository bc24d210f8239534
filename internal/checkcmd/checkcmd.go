// Package checkcmd is the `check` command's broker round: it asks the
// broker once (healthz, snapshot, usage, disabled list), hands what it got
// to health.Evaluate and prints the report. The HTTP lives here; package
// health only evaluates and formats.
package checkcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/authbroker/authbroker_exporter/internal/health"
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

// ExitCode maps a verdict to the check's exit status.
func ExitCode(v health.Verdict) int {
	switch v {
	case health.OK:
		return ExitOK
	case health.Degraded:
		return ExitWarning
	case health.Critical:
		return ExitCritical
	}
	return ExitUnknown
}

// Options configure Check.
type Options struct {
	// Client is built from the same broker flags as the exporter's.
	Client     *broker.Client
	BrokerURL  string // shown in the output
	Thresholds health.Thresholds
	Redactor   *identity.Redactor
	Format     string        // health.FormatText (default) or health.FormatJSON
	Timeout    time.Duration // bounds the whole check; default 60s
	Version    string        // exporter version, echoed in the JSON
	// Provider makes the check about one provider's capacity: critical
	// when none of its credentials is usable, warning when capacity is
	// low (health.CapacityLevel), whatever the broker's overall verdict.
	Provider string
	Now      func() time.Time
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
func Check(ctx context.Context, opts Options, w io.Writer) int {
	if opts.Format == "" {
		opts.Format = health.FormatText
	}
	if opts.Format != health.FormatText && opts.Format != health.FormatJSON {
		fmt.Fprintf(w, "UNKNOWN: unsupported output format %q (want text or json)\n", opts.Format)
		return ExitUnknown
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	if opts.Client == nil {
		return write(w, opts, unknown(opts, now(), "no broker client configured"))
	}
	defer opts.Client.CloseIdleConnections()
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	in, rejected := gather(ctx, opts.Client, now)
	if rejected != nil {
		return write(w, opts, unknown(opts, now(), "the broker rejected the token: "+rejected.Error()))
	}
	in.BrokerURL = opts.BrokerURL
	in.Now = now()
	rep := health.Evaluate(in, opts.Thresholds, opts.Redactor)
	rep.ExporterVersion = opts.Version
	if opts.Provider != "" {
		v, err := health.WriteProviderReport(w, opts.Format, rep, opts.Provider)
		if err != nil {
			fmt.Fprintf(w, "UNKNOWN: %v\n", err)
			return ExitUnknown
		}
		return ExitCode(v)
	}
	return write(w, opts, rep)
}

// gather is the round of requests. rejected is the snapshot's error when
// the broker refused the token (401): then nothing else can be seen.
func gather(ctx context.Context, c *broker.Client, now func() time.Time) (in health.Input, rejected error) {
	in.ForcePoll = true
	start := now()
	h, err := c.Healthz(ctx)
	in.Broker = health.BrokerProbe{Checked: now(), Latency: now().Sub(start)}
	switch {
	case err != nil:
		in.Broker.Err = err.Error()
	case !h.OK:
		in.Broker.Err = "healthz answered ok=false"
	default:
		in.Broker.Up, in.Broker.Version = true, h.Version
	}

	res, err := c.Snapshot(ctx, broker.SnapshotRequest{})
	if err != nil {
		var he *broker.HTTPError
		if errors.As(err, &he) && he.Status == http.StatusUnauthorized {
			return in, err
		}
		in.Status.LastError = err.Error()
		return in, nil
	}
	if s := res.Snapshot; s != nil {
		// One GET is a poll that just succeeded: the "mirror" is as live as
		// it gets, and the skew is measured on this very response.
		in.View = store.NewView(s)
		in.Status = store.SyncStatus{
			Mode: store.ModePoll, Live: true, LastSync: s.ReceivedAt,
			ClockSkew: s.ReceivedAt.Sub(s.ServerNow), HasClockSkew: !s.ServerNow.IsZero(),
		}
		usageAndDisabled(ctx, c, in.View.Entries, &in)
	}
	return in, nil
}

// usageAndDisabled fetches both lists side by side: usage can take the
// broker many seconds (it asks every provider), the disabled list does not.
func usageAndDisabled(ctx context.Context, c *broker.Client, entries []*store.Entry, in *health.Input) {
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
			in.Usage = store.NewUsage(u.Reports, time.Now(), entries)
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

func unknown(opts Options, now time.Time, msg string) health.Report {
	return health.UnknownReport(now, opts.BrokerURL, opts.Version, msg, opts.Thresholds, opts.Redactor)
}

func write(w io.Writer, opts Options, rep health.Report) int {
	if err := health.WriteReport(w, opts.Format, rep); err != nil {
		fmt.Fprintf(w, "UNKNOWN: %v\n", err)
		return ExitUnknown
	}
	return ExitCode(rep.Status)
}
