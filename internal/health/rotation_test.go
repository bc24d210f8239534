package health

import (
	"testing"
	"time"

	"github.com/authbroker/authbroker_exporter/store"
	"github.com/authbroker/authbroker_exporter/store/broker"
)

// TestRotationRule is the table of the one "rotation overdue" rule that
// both the health report and the monitor apply.
func TestRotationRule(t *testing.T) {
	// An OAuth entry that expires in an hour, received `ago` before t0
	// with a rotation deadline `rotatesIn` after receipt.
	entry := func(rotatesIn, ago time.Duration) *store.Entry {
		return &store.Entry{Entry: &broker.Entry{ID: 1, Provider: "anthropic", ReceivedAt: t0.Add(-ago), RotatesIn: rotatesIn, HasRotatesIn: true, Credential: broker.Credential{Type: broker.TypeOAuth, Expires: t0.Add(time.Hour), HasExpires: true}}}
	}
	with := func(e *store.Entry, mut func(e *store.Entry)) *store.Entry { mut(e); return e }
	on := broker.Refresher{Enabled: true, Interval: time.Minute}
	live := RotationRule{Refresher: on, MirrorLive: true}
	cases := []struct {
		name     string
		rule     RotationRule
		e        *store.Entry
		overdue  bool
		deadline bool // DeadlineMissed
	}{
		{"deadline ahead", live, entry(time.Minute, 0), false, false},
		{"deadline passed less than one interval ago", live, entry(0, 30*time.Second), false, false},
		{"deadline passed exactly one interval ago", live, entry(0, time.Minute), false, false},
		{"deadline passed more than one interval ago", live, entry(0, time.Minute+time.Millisecond), true, true},
		{"rotation observed after the deadline", live, with(entry(0, 3*time.Minute), func(e *store.Entry) {
			e.LastRotation = t0.Add(-time.Minute)
		}), false, false},
		{"rotation observed at the deadline", live, with(entry(0, 3*time.Minute), func(e *store.Entry) {
			e.LastRotation = t0.Add(-3 * time.Minute)
		}), false, false},
		{"rotation observed only before the deadline", live, with(entry(0, 3*time.Minute), func(e *store.Entry) {
			e.LastRotation = t0.Add(-4 * time.Minute)
		}), true, true},
		{"expired, deadline fresh", live, with(entry(30*time.Second, 0), func(e *store.Entry) {
			e.Credential.Expires = t0.Add(-time.Millisecond)
		}), true, false},
		{"expires exactly now", live, with(entry(30*time.Second, 0), func(e *store.Entry) {
			e.Credential.Expires = t0
		}), false, false},
		{"api key", live, &store.Entry{Entry: &broker.Entry{ID: 1, Credential: broker.Credential{Type: broker.TypeAPIKey}, ReceivedAt: t0.Add(-time.Hour), HasRotatesIn: true}}, false, false},
		{"refresher disabled: the deadline is not judged", RotationRule{Refresher: broker.Refresher{Interval: time.Minute}, MirrorLive: true},
			entry(0, 10*time.Minute), false, false},
		{"refresher disabled: expiry still counts", RotationRule{MirrorLive: true}, with(entry(0, 0), func(e *store.Entry) {
			e.Credential.Expires = t0.Add(-time.Hour)
		}), true, false},
		{"no rotatesIn, not expired", live, with(entry(0, 10*time.Minute), func(e *store.Entry) { e.HasRotatesIn = false }), false, false},
		{"no rotatesIn, expired", live, with(entry(0, 0), func(e *store.Entry) {
			e.HasRotatesIn, e.Credential.Expires = false, t0.Add(-time.Minute)
		}), true, false},
		{"frozen mirror: the deadline is not judged", RotationRule{Refresher: on}, entry(0, 10*time.Minute), false, false},
		{"explicit grace", RotationRule{Refresher: on, MirrorLive: true, Grace: 10 * time.Minute}, entry(0, 9*time.Minute), false, false},
		{"unknown interval: 60 s", RotationRule{Refresher: broker.Refresher{Enabled: true}, MirrorLive: true}, entry(0, 61*time.Second), true, true},
		{"nil entry", live, nil, false, false},
	}
	for _, tc := range cases {
		if got := tc.rule.Overdue(tc.e, t0); got != tc.overdue {
			t.Errorf("%s: Overdue = %v, want %v", tc.name, got, tc.overdue)
		}
		if got := tc.rule.DeadlineMissed(tc.e, t0); got != tc.deadline {
			t.Errorf("%s: DeadlineMissed = %v, want %v", tc.name, got, tc.deadline)
		}
	}
}
