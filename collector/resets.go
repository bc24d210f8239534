package collector

import (
	"maps"
	"slices"
	"time"

	"github.com/authbroker/authbroker_exporter/store/broker"
)

// resetRow is the saved-reset series of one matched credential
// (docs/broker-protocol.md §13.1), computed when its row is built.
type resetRow struct {
	available, redeemable *float64
	cooldown, nextExpiry  time.Time
	idProvider            labelSet
	availableL            labelSet
	redeemableL           labelSet
	limits                []limitResets // sorted by limit
}

type limitResets struct {
	labels labelSet // {id, provider, limit}
	n      int
}

func newResetRow(id, provider string, sr *broker.SavedResets, now time.Time) *resetRow {
	if sr == nil {
		return nil
	}
	r := &resetRow{cooldown: sr.CooldownUntil, idProvider: mResetCooldown.set(id, provider)}
	if sr.HasAvailable {
		r.available, r.availableL = &sr.Available, mResetCredits.set(id, provider, "available")
	}
	if sr.HasRedeemable {
		r.redeemable, r.redeemableL = &sr.Redeemable, mResetCredits.set(id, provider, "redeemable")
	}
	clears := map[string]int{}
	for i := range sr.Credits {
		c := &sr.Credits[i]
		if !c.UsableAt(now) {
			continue
		}
		if !c.ExpiresAt.IsZero() && (r.nextExpiry.IsZero() || c.ExpiresAt.Before(r.nextExpiry)) {
			r.nextExpiry = c.ExpiresAt
		}
		for _, l := range slices.Compact(slices.Sorted(slices.Values(c.Clears))) {
			clears[label(l)]++
		}
	}
	for _, l := range slices.Sorted(maps.Keys(clears)) {
		r.limits = append(r.limits, limitResets{labels: mLimitResets.set(id, provider, l), n: clears[l]})
	}
	return r
}

// writeSavedResets writes the four saved-reset families, each in label
// order (rows are sorted by id).
func writeSavedResets(s sink, rows []*usageRow) {
	for _, row := range rows {
		if r := row.resets; r != nil {
			if r.available != nil {
				s.add(mResetCredits, &r.availableL, *r.available)
			}
			if r.redeemable != nil {
				s.add(mResetCredits, &r.redeemableL, *r.redeemable)
			}
		}
	}
	for _, row := range rows {
		if r := row.resets; r != nil && !r.cooldown.IsZero() {
			s.add(mResetCooldown, &r.idProvider, unix(r.cooldown))
		}
	}
	for _, row := range rows {
		if r := row.resets; r != nil && !r.nextExpiry.IsZero() {
			s.add(mResetNextExpiry, &r.idProvider, unix(r.nextExpiry))
		}
	}
	for _, row := range rows {
		if r := row.resets; r != nil {
			for i := range r.limits {
				s.add(mLimitResets, &r.limits[i].labels, float64(r.limits[i].n))
			}
		}
	}
}
