package store

import (
	"context"
	"errors"
	"maps"
	"sync"
	"time"

	"github.com/authbroker/authbroker_exporter/store/broker"
	"github.com/go-kit/log/level"
)

// inc counts one under key, making the counter's map on first use.
func inc[K comparable](m *map[K]uint64, key K) {
	if *m == nil {
		*m = map[K]uint64{}
	}
	(*m)[key]++
}

// Counters returns a copy of the outcome counters.
func (s *Store) Counters() Counters {
	s.sm.Lock()
	defer s.sm.Unlock()
	c := s.count
	c.SyncRequests = maps.Clone(c.SyncRequests)
	c.SyncErrors = maps.Clone(c.SyncErrors)
	c.StreamEvents = maps.Clone(c.StreamEvents)
	c.RefreshRequests = maps.Clone(c.RefreshRequests)
	c.RefreshErrors = maps.Clone(c.RefreshErrors)
	c.DisableRequests = maps.Clone(c.DisableRequests)
	c.DisableErrors = maps.Clone(c.DisableErrors)
	c.UsageFetchErrors = maps.Clone(c.UsageFetchErrors)
	return c
}

func (s *Store) mode() Mode {
	s.sm.Lock()
	defer s.sm.Unlock()
	if !s.opts.Stream || s.status.StreamUnsupported {
		return ModePoll
	}
	return ModeStream
}

// Status returns the sync status.
func (s *Store) Status() SyncStatus {
	mode := s.mode()
	now := s.clock.Now()
	connected := s.streamConnected.Load()
	s.sm.Lock()
	defer s.sm.Unlock()
	st := s.status.SyncStatus
	st.Mode, st.StreamConnected = mode, connected
	if mode == ModeStream {
		st.Live = connected
	} else {
		// A long-poll may stay unanswered for the client's own long-poll
		// timeout, max(request timeout, wait + 1 s).
		window := max(s.broker.RequestTimeout(), s.opts.PollWait+time.Second)
		st.Live = s.status.pollOK && now.Sub(s.status.lastPollAnswer) <= window
	}
	return st
}

func (s *Store) sleep(d time.Duration) bool {
	return s.clock.Sleep(s.ctx, d) == nil
}

// run is the background sync: the stream while it is wanted and supported,
// long-poll otherwise, each with the same context-aware backoff.
func (s *Store) run() {
	bo := newRetryDelay(s.opts.BackoffInitial, s.opts.BackoffMax)
	unconditional := true
	for s.ctx.Err() == nil {
		if s.mode() == ModePoll {
			if !s.pollOnce(&bo, &unconditional) {
				return
			}
			continue
		}
		err := s.followStream(&bo)
		switch {
		case s.ctx.Err() != nil:
			return
		case errors.Is(err, broker.ErrStreamUnsupported):
			s.latchPoll()
		case !s.sleep(bo.Next()):
			return
		}
	}
}

// followStream runs one stream connection, and the reconciler beside it
// while it is connected. The backoff is reset after its first frame, so a
// stream that keeps dropping right after connecting still escalates.
func (s *Store) followStream(bo *retryDelay) error {
	connected := false
	before := *bo
	conn, endConn := context.WithCancel(s.ctx)
	var reconciler sync.WaitGroup
	defer func() {
		endConn()
		reconciler.Wait() // gone before the loop sleeps or reconnects
	}()
	err := s.broker.Stream(conn, func(f *broker.StreamFrame) error {
		s.applyFrame(f)
		if !connected {
			connected = true
			s.streamConnected.Store(true)
			bo.Reset()
			s.syncOK(ModeStream, SyncResultOK)
			if s.opts.ReconcileEvery > 0 {
				reconciler.Go(func() { s.reconcile(conn, f.ReceivedAt) })
			}
		}
		return nil
	})
	endConn()
	s.streamConnected.Store(false)
	if s.ctx.Err() != nil {
		return err
	}
	if connected && errors.As(err, new(*broker.ProtocolError)) {
		// A broker that sends a snapshot, then a frame the exporter cannot
		// read, on every connection was not healthy after all: keep
		// escalating rather than fetch a full snapshot every 500 ms.
		*bo = before
	}
	s.syncFailed(ModeStream, err, !connected)
	return err
}

func (s *Store) applyFrame(f *broker.StreamFrame) {
	result := FrameApplied
	if f.Kind == broker.FrameSnapshot {
		s.adoptSnapshot(f.Snapshot, true)
	} else if !s.applyDelta(f) {
		result = FrameStale
	}
	s.sm.Lock()
	inc(&s.count.StreamEvents, FrameOutcome{f.Kind, result})
	s.sm.Unlock()
	select {
	case s.frameSeen <- struct{}{}:
	default:
	}
	s.notify()
}

func (s *Store) latchPoll() {
	s.sm.Lock()
	s.status.StreamUnsupported = true
	s.sm.Unlock()
	s.notify()
	level.Info(s.log).Log("msg", "auth-broker has no snapshot stream (404); using long-poll from now on")
}

// pollOnce does one long-poll, or one unconditional GET before the first
// snapshot and after any failure: a restarted broker may reuse the
// generation the mirror holds and would answer 304 for stale data.
func (s *Store) pollOnce(bo *retryDelay, unconditional *bool) bool {
	req := broker.SnapshotRequest{}
	s.mu.RLock()
	if s.head.Ready && !*unconditional {
		req = broker.SnapshotRequest{LongPoll: true, Generation: s.head.Generation, Wait: s.opts.PollWait}
	}
	s.mu.RUnlock()
	res, err := s.broker.Snapshot(s.ctx, req)
	if s.ctx.Err() != nil {
		return false
	}
	if err != nil {
		*unconditional = true
		s.syncFailed(ModePoll, err, true)
		return s.sleep(bo.Next())
	}
	*unconditional = false
	bo.Reset()
	if res.NotModified {
		s.syncOK(ModePoll, SyncResultUnchanged)
		return true
	}
	s.adoptSnapshot(res.Snapshot, false)
	s.syncOK(ModePoll, SyncResultOK)
	return true
}

func (s *Store) syncOK(mode Mode, result string) {
	now := s.clock.Now()
	s.sm.Lock()
	inc(&s.count.SyncRequests, SyncOutcome{mode.String(), result})
	s.status.LastError, s.status.LastErrorReason = "", ""
	s.status.LastSync = now
	if mode == ModePoll {
		s.status.pollOK = true
		s.status.lastPollAnswer = now
	}
	wasConnected, failures := s.status.connected, s.status.failures
	s.status.connected, s.status.failures = true, 0
	s.sm.Unlock()
	defer s.notify()
	switch {
	case failures > 0:
		level.Info(s.log).Log("msg", "auth-broker mirror recovered", "mode", mode.String(), "failed_attempts", failures)
		// A usage fetch that failed while the broker was away would
		// otherwise hide usage for the rest of its TTL after the broker is
		// back: retry it at once, leaving a good answer as it is.
		if u := s.usage.Load(); u != nil && u.Failing {
			s.kickUsage()
		}
	case !wasConnected:
		level.Info(s.log).Log("msg", "auth-broker mirror connected", "mode", mode.String())
	}
}

// syncFailed records a failed connection or long-poll. Only the transition
// into the failed state is logged, not every retry.
func (s *Store) syncFailed(mode Mode, err error, countRequest bool) {
	reason := broker.SyncReason(err)
	s.sm.Lock()
	if countRequest {
		inc(&s.count.SyncRequests, SyncOutcome{mode.String(), SyncResultError})
	}
	inc(&s.count.SyncErrors, SyncFailure{mode.String(), reason})
	s.status.LastError, s.status.LastErrorReason = err.Error(), reason
	if mode == ModePoll {
		s.status.pollOK = false
	}
	firstFailure := s.status.failures == 0
	s.status.failures++
	s.sm.Unlock()
	defer s.notify()
	if !s.Ready() {
		// No snapshot to wait for: usage is fetched without one, and again
		// with the first snapshot.
		s.usageUnready.Do(s.kickUsage)
	}
	if firstFailure {
		level.Warn(s.log).Log("msg", "auth-broker mirror degraded; retrying with backoff", "mode", mode.String(), "reason", reason, "err", err)
	}
}
