package collector

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/authbroker/authbroker_exporter/store"
	"github.com/authbroker/authbroker_exporter/store/broker"
)

var (
	syncModes    = []string{store.ModeReconcile, store.ModePoll.String(), store.ModeStream.String()} // label order
	syncResults  = []string{store.SyncResultError, store.SyncResultOK, store.SyncResultUnchanged}
	syncReasons  = []string{broker.SyncReason4xx, broker.SyncReason5xx, broker.SyncReasonEOF, broker.SyncReasonIdle, broker.SyncReasonNetwork, broker.SyncReasonProtocol, broker.SyncReasonTimeout, broker.SyncReasonUnauthorized}
	frameKinds   = []string{broker.FrameEntry, broker.FrameRemoved, broker.FrameSnapshot}
	frameResults = []string{store.FrameApplied, store.FrameStale}
)

// syncCollector publishes the health of the mirror itself.
type syncCollector struct{ o Options }

func (c *syncCollector) Describe(ch chan<- *prometheus.Desc) {
	describeFamilies(ch, mUp, mBrokerInfo, mSyncMode, mStreamConnected, mStreamSupported, mSyncRequests, mSyncErrors,
		mStreamEvents, mGeneration, mGenerationResets, mLastSync, mGeneratedAt, mClockSkew, mRefresherEnabled,
		mRefresherInterval, mRefresherSkew, mNextSweep)
}

func (c *syncCollector) Collect(ch chan<- prometheus.Metric) { c.write(registrySink{ch}) }

func (c *syncCollector) write(s sink) {
	st := c.o.Source.Status()
	v := c.o.Source.Snapshot()
	cn := c.o.Source.Counters()
	probe := c.o.Broker.Probe()

	// A live stream can outlast a wedged broker (it only sends keepalives
	// while idle), so the healthz probe has the last word once it has run.
	up := st.Live && (!probe.Checked || probe.Up)
	s.one(mUp, boolf(up))
	if probe.Version != "" {
		s.one(mBrokerInfo, 1, label(probe.Version))
	}
	for _, m := range syncModes[1:] {
		s.one(mSyncMode, boolf(st.Mode.String() == m), m)
	}
	for _, m := range syncModes {
		for _, r := range syncResults {
			s.one(mSyncRequests, float64(cn.SyncRequests[store.SyncOutcome{Mode: m, Result: r}]), m, r)
		}
	}
	for _, m := range syncModes {
		for _, r := range syncReasons {
			s.one(mSyncErrors, float64(cn.SyncErrors[store.SyncFailure{Mode: m, Reason: r}]), m, r)
		}
	}
	s.one(mStreamConnected, boolf(st.StreamConnected))
	s.one(mStreamSupported, boolf(!st.StreamUnsupported && !c.o.StreamDisabled))
	for _, k := range frameKinds {
		for _, r := range frameResults {
			s.one(mStreamEvents, float64(cn.StreamEvents[store.FrameOutcome{Kind: k, Result: r}]), k, r)
		}
	}
	s.one(mGenerationResets, float64(st.GenerationResets))
	if !st.LastSync.IsZero() {
		s.one(mLastSync, unix(st.LastSync))
	}
	if st.HasClockSkew {
		s.one(mClockSkew, st.ClockSkew.Seconds())
	}
	if !v.Ready {
		return
	}
	s.one(mGeneration, float64(v.Generation))
	if !v.GeneratedAt.IsZero() {
		s.one(mGeneratedAt, unix(v.GeneratedAt))
	}
	r := v.Refresher
	s.one(mRefresherEnabled, boolf(r.Enabled))
	s.one(mRefresherInterval, r.Interval.Seconds())
	s.one(mRefresherSkew, r.Skew.Seconds())
	if r.Enabled && !r.NextSweep.IsZero() {
		s.one(mNextSweep, unix(r.NextSweep))
	}
}
