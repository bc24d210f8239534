package health

import (
	"time"

	"github.com/authbroker/authbroker_exporter/store"
	"github.com/authbroker/authbroker_exporter/store/broker"
)

// DefaultRotationGrace is the rotation grace while the broker's refresher
// interval is unknown.
const DefaultRotationGrace = time.Minute

// RotationRule is the one definition of "rotation overdue" (docs/health.md),
// used by the health report and by the monitor's self-healing alike:
//
//   - an OAuth credential past `expires` is overdue: the broker keeps
//     reporting the next sweep as rotatesInMs for an expired row whose
//     refresh keeps failing (docs/broker-protocol.md, rotatesInMs), so its
//     deadline alone never falls far behind;
//   - otherwise it is overdue when its rotation deadline passed more than
//     Grace ago and no rotation was observed since the deadline.
//
// The deadline branch is judged only while the broker's refresher is
// enabled (a disabled refresher announces no deadline and sweeps nothing;
// health reports refresher_disabled for that) and while the mirror is live
// (a frozen mirror's deadlines only look passed).
type RotationRule struct {
	Refresher broker.Refresher
	// Grace is how long past its deadline a credential may go unrotated;
	// zero means the refresher's interval (DefaultRotationGrace while that
	// is unknown).
	Grace time.Duration
	// MirrorLive says the mirror is current (store.SyncStatus.Live).
	MirrorLive bool
}

// grace is the effective grace.
func (r RotationRule) grace() time.Duration {
	switch {
	case r.Grace > 0:
		return r.Grace
	case r.Refresher.Interval > 0:
		return r.Refresher.Interval
	}
	return DefaultRotationGrace
}

// Overdue applies the rule to e at now: Expired or DeadlineMissed.
func (r RotationRule) Overdue(e *store.Entry, now time.Time) bool {
	if e == nil || e.Credential.Type != broker.TypeOAuth {
		return false
	}
	return Expired(e, now) || r.DeadlineMissed(e, now)
}

// DeadlineMissed is the deadline half of the rule: an OAuth credential's
// rotation deadline passed more than the grace ago with no rotation
// observed since, while the refresher is enabled and the mirror live.
func (r RotationRule) DeadlineMissed(e *store.Entry, now time.Time) bool {
	if e == nil || e.Credential.Type != broker.TypeOAuth || !r.Refresher.Enabled || !r.MirrorLive {
		return false
	}
	deadline, ok := e.RotationDeadline()
	if !ok {
		return false
	}
	return now.Sub(deadline) > r.grace() && e.LastRotation.Before(deadline)
}

// Expired says an OAuth credential is past `expires`: 1 ms past is
// expired, exactly at `expires` is not yet.
func Expired(e *store.Entry, now time.Time) bool {
	return e.Credential.HasExpires && now.After(e.Credential.Expires)
}
