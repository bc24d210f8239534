package store

import (
	"context"
	"slices"
	"time"

	"github.com/go-kit/log/level"

	"github.com/authbroker/authbroker_exporter/store/broker"
)

// A stream-mode mirror can fall behind the broker without any frame to
// tell it (docs/broker-protocol.md §13.4): a refresh sweep bumps the
// generation a second time when an attempt fails, and that bump may send
// no frame; and when a sweep ends the broker reschedules the credentials it
// tried without any bump. So while a stream is connected, the reconciler
// asks once after every rotation deadline and sweep the mirror knows of: a
// conditional GET /v1/snapshot that the broker answers 304 when nothing
// changed, or 200 with the snapshot the stream did not send; after a sweep
// that was refreshing a credential, a plain GET.

const (
	// reconcileGrace lets the sweep that starts at a deadline finish
	// before the mirror asks what it did.
	reconcileGrace = 2 * time.Second
	// reconcileFollow: after an answer that found a refresh still under
	// way (rotatesIn 0 and no word since), ask again for this long.
	reconcileFollow = 15 * time.Second
)

// reconcile runs beside one connected stream until ctx ends. The stream
// opened with a snapshot received at opened, which answers for every
// deadline before it.
func (s *Store) reconcile(ctx context.Context, opened time.Time) {
	checked := opened // deadlines up to here have been asked about
	for ctx.Err() == nil {
		at, ok := s.nextCheck(checked)
		if !ok {
			select { // nothing scheduled: wait for a frame to bring a deadline
			case <-s.frameSeen:
				continue
			case <-ctx.Done():
				return
			}
		}
		if wait := at.Sub(s.clock.Now()); wait > 0 {
			// Look again at least every ReconcileEvery: a frame may have
			// brought an earlier deadline meanwhile (a scan of the mirror is
			// cheap next to that).
			if s.clock.Sleep(ctx, min(wait, s.opts.ReconcileEvery)) != nil {
				return
			}
			continue
		}
		checked = s.clock.Now()
		s.reconcileOnce(ctx, checked)
	}
}

// nextCheck is when to ask next: grace after the earliest deadline or
// sweep not yet asked about, but never sooner than ReconcileEvery after
// the last question (or the connection).
func (s *Store) nextCheck(checked time.Time) (time.Time, bool) {
	now := s.clock.Now()
	var best time.Time
	consider := func(t time.Time) {
		if t.After(checked.Add(-reconcileGrace)) && (best.IsZero() || t.Before(best)) {
			best = t
		}
	}
	s.mu.RLock()
	if !s.head.Refresher.NextSweep.IsZero() {
		consider(s.head.Refresher.NextSweep)
	}
	for _, e := range s.entries.list {
		d, ok := e.RotationDeadline()
		if !ok || e.Credential.Type != broker.TypeOAuth {
			continue
		}
		if e.RotatesIn == 0 && !d.After(checked) && now.Sub(d) < reconcileFollow {
			// A refresh was under way when this entry was sent; its outcome
			// may come as a silent bump.
			consider(checked.Add(s.opts.ReconcileEvery))
			continue
		}
		consider(d)
	}
	s.mu.RUnlock()
	if best.IsZero() {
		return time.Time{}, false
	}
	return maxTime(best.Add(reconcileGrace), checked.Add(s.opts.ReconcileEvery)), true
}

// reconcileOnce asks whether the broker moved past the mirror's generation.
func (s *Store) reconcileOnce(ctx context.Context, now time.Time) {
	s.mu.RLock()
	gen := s.head.Generation
	// An entry last sent while its refresh was under way (rotatesIn 0, the
	// deadline passed) is rescheduled when the sweep ends, and the broker
	// does not bump its generation for that: a 304 cannot tell, so ask for
	// the whole snapshot.
	plain := slices.ContainsFunc(s.entries.list, func(e *Entry) bool {
		d, ok := e.RotationDeadline()
		return ok && e.RotatesIn == 0 && !d.After(now)
	})
	s.mu.RUnlock()
	// wait=1 ms: the broker answers a matching tag with 304 after the wait,
	// and a different generation with 200 at once (a wait of 0 would
	// always answer 200 with the whole snapshot).
	res, err := s.broker.Snapshot(ctx, broker.SnapshotRequest{LongPoll: !plain, Generation: gen, Wait: time.Millisecond})
	if ctx.Err() != nil {
		return
	}
	result := SyncResultOK
	switch {
	case err != nil:
		result = SyncResultError
	case res.NotModified:
		result = SyncResultUnchanged
		s.advanceSweep(now)
	default:
		s.adoptSnapshot(res.Snapshot, false)
	}
	s.sm.Lock()
	inc(&s.count.SyncRequests, SyncOutcome{ModeReconcile, result})
	if err != nil {
		inc(&s.count.SyncErrors, SyncFailure{ModeReconcile, broker.SyncReason(err)})
	}
	failingBefore := s.status.reconcileFailing
	s.status.reconcileFailing = err != nil
	s.sm.Unlock()
	s.notify()
	switch {
	case err != nil && !failingBefore:
		level.Warn(s.log).Log("msg", "auth-broker reconciling GET failed; the stream stays connected", "reason", broker.SyncReason(err), "err", err)
	case err == nil && failingBefore:
		level.Info(s.log).Log("msg", "auth-broker reconciling GET recovered")
	}
}

// advanceSweep moves a next-sweep time that passed on by whole refresher
// intervals once the broker confirmed (304) that nothing changed: a sweep
// with nothing to do moves the broker's schedule without a frame.
func (s *Store) advanceSweep(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := &s.head.Refresher
	if !r.Enabled || r.Interval <= 0 || r.NextSweep.IsZero() || r.NextSweep.After(now) {
		return
	}
	n := now.Sub(r.NextSweep)/r.Interval + 1
	r.NextSweep = r.NextSweep.Add(n * r.Interval)
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
