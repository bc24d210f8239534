package collector

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/authbroker/authbroker_exporter/store"
)

var (
	modes       = []store.Mode{store.ModeStream, store.ModePoll}
	syncResults = []string{store.SyncResultOK, store.SyncResultUnchanged, store.SyncResultError}
	syncReasons = []string{store.SyncReasonNetwork, store.SyncReasonTimeout, store.SyncReasonUnauthorized,
		store.SyncReason4xx, store.SyncReason5xx, store.SyncReasonProtocol, store.SyncReasonIdle, store.SyncReasonEOF}
	eventKinds   = []string{store.EventSnapshot, store.EventEntry, store.EventRemoved}
	eventResults = []string{store.EventApplied, store.EventStale}
)

// syncCollector publishes the health of the mirror itself.
type syncCollector struct {
	o Options

	up, brokerInfo, mode, streamConnected, streamSupported        *prometheus.Desc
	requests, errors, events                                      *prometheus.Desc
	generation, resets, lastSync, generatedAt, skew               *prometheus.Desc
	refresherEnabled, refresherInterval, refresherSkew, nextSweep *prometheus.Desc
}

func newSyncCollector(o Options) *syncCollector {
	return &syncCollector{
		o:                 o,
		up:                desc("up", "1 while the mirror is live: stream connected, or the last long-poll answered within its window, and the broker's healthz answers."),
		brokerInfo:        desc("broker_info", "Broker version as reported by /v1/healthz; always 1.", "version"),
		mode:              desc("sync_mode", "1 for the active sync mode (stream or poll), 0 for the other.", "mode"),
		streamConnected:   desc("stream_connected", "1 while the SSE stream is open and past its first frame."),
		streamSupported:   desc("stream_supported", "0 once the broker answered 404 on the stream and long-poll was latched, or when --no-broker.stream turned the stream off."),
		requests:          desc("sync_requests_total", "Stream connections and long-polls by result (ok, unchanged, error).", "mode", "result"),
		errors:            desc("sync_errors_total", "Sync failures by mode and reason.", "mode", "reason"),
		events:            desc("stream_events_total", "Stream frames by kind and whether they were applied or stale.", "kind", "result"),
		generation:        desc("snapshot_generation", "Generation of the mirrored snapshot."),
		resets:            desc("snapshot_generation_resets_total", "Broker restarts seen: full snapshots whose generation went backwards."),
		lastSync:          desc("snapshot_last_sync_timestamp_seconds", "Last time the mirror was confirmed current (frame applied, long-poll 200 or 304)."),
		generatedAt:       desc("snapshot_generated_timestamp_seconds", "generatedAt of the last full snapshot (broker clock)."),
		skew:              desc("broker_clock_skew_seconds", "Local receipt time minus the broker's serverNowMs of the last frame."),
		refresherEnabled:  desc("refresher_enabled", "1 when the broker's background refresher is enabled."),
		refresherInterval: desc("refresher_interval_seconds", "Interval between the broker's refresh sweeps."),
		refresherSkew:     desc("refresher_skew_seconds", "How long before expiry the broker refreshes a credential."),
		nextSweep:         desc("refresher_next_sweep_timestamp_seconds", "When the broker's next refresh sweep is due; absent while the refresher is disabled."),
	}
}

func (c *syncCollector) Describe(ch chan<- *prometheus.Desc) {
	describe(ch, c.up, c.brokerInfo, c.mode, c.streamConnected, c.streamSupported, c.requests, c.errors,
		c.events, c.generation, c.resets, c.lastSync, c.generatedAt, c.skew, c.refresherEnabled,
		c.refresherInterval, c.refresherSkew, c.nextSweep)
}

func (c *syncCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.o.Source.Status()
	v := c.o.Source.Snapshot()
	cn := c.o.Source.Counters()
	probe := c.o.Broker.Probe()

	// A live stream can outlast a wedged broker (it only sends keepalives
	// while idle), so the healthz probe has the last word once it has run.
	up := st.Live && (!probe.Checked || probe.Up)
	gauge(ch, c.up, boolf(up))
	if probe.Version != "" {
		gauge(ch, c.brokerInfo, 1, label(probe.Version))
	}
	for _, m := range modes {
		gauge(ch, c.mode, boolf(st.Mode == m), m.String())
		for _, r := range syncResults {
			counter(ch, c.requests, float64(cn.SyncRequests[[2]string{m.String(), r}]), m.String(), r)
		}
		for _, r := range syncReasons {
			counter(ch, c.errors, float64(cn.SyncErrors[[2]string{m.String(), r}]), m.String(), r)
		}
	}
	gauge(ch, c.streamConnected, boolf(st.StreamConnected))
	gauge(ch, c.streamSupported, boolf(!st.StreamUnsupported && !c.o.StreamDisabled))
	for _, k := range eventKinds {
		for _, r := range eventResults {
			counter(ch, c.events, float64(cn.StreamEvents[[2]string{k, r}]), k, r)
		}
	}
	counter(ch, c.resets, float64(st.GenerationResets))
	if !st.LastSync.IsZero() {
		gauge(ch, c.lastSync, unix(st.LastSync))
	}
	if st.HasClockSkew {
		gauge(ch, c.skew, st.ClockSkew.Seconds())
	}
	if !v.Ready {
		return
	}
	gauge(ch, c.generation, float64(v.Generation))
	if !v.GeneratedAt.IsZero() {
		gauge(ch, c.generatedAt, unix(v.GeneratedAt))
	}
	r := v.Refresher
	gauge(ch, c.refresherEnabled, boolf(r.Enabled))
	gauge(ch, c.refresherInterval, r.Interval.Seconds())
	gauge(ch, c.refresherSkew, r.Skew.Seconds())
	if r.Enabled && !r.NextSweep.IsZero() {
		gauge(ch, c.nextSweep, unix(r.NextSweep))
	}
}
