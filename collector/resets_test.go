package collector

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/authbroker/authbroker_exporter/store/broker"
)

// recordSink keeps what a writer adds, one "name{labels} value" line each.
type recordSink []string

func (r *recordSink) add(f *family, l *labelSet, v float64) {
	*r = append(*r, fmt.Sprintf("%s%s %g", f.name, l.text, v))
}

func (r *recordSink) one(f *family, v float64, values ...string) {
	l := f.set(values...)
	r.add(f, &l, v)
}

// TestSavedResetSeries covers the edge cases of the saved-reset families
// (docs/broker-protocol.md §13.1) that the golden scenario does not.
func TestSavedResetSeries(t *testing.T) {
	now := t0
	ts := func(d time.Duration) string { return fmt.Sprintf("%g", unix(now.Add(d))) }
	yes := func(c broker.ResetCredit) broker.ResetCredit { c.Usable, c.HasUsable = true, true; return c }
	no := func(c broker.ResetCredit) broker.ResetCredit { c.Usable, c.HasUsable = false, true; return c }
	cases := []struct {
		name string
		sr   *broker.SavedResets
		want []string // without the authbroker_usage_ prefix
	}{
		{"no resetCredits", nil, nil},
		{"empty resetCredits", &broker.SavedResets{}, nil},
		{"zero counts are written", &broker.SavedResets{HasAvailable: true, HasRedeemable: true},
			[]string{`reset_credits{id="7",provider="p",state="available"} 0`, `reset_credits{id="7",provider="p",state="redeemable"} 0`}},
		{"redeemable without available", &broker.SavedResets{Redeemable: 3, HasRedeemable: true},
			[]string{`reset_credits{id="7",provider="p",state="redeemable"} 3`}},
		{"credit without expiresAt is usable but has no expiry", &broker.SavedResets{Credits: []broker.ResetCredit{
			{Clears: []string{"l1"}}}},
			[]string{`limit_reset_credits{id="7",limit="l1",provider="p"} 1`}},
		{"duplicate clears count once per credit", &broker.SavedResets{Credits: []broker.ResetCredit{
			{Clears: []string{"l2", "l1", "l2", "l1", "l2"}}, yes(broker.ResetCredit{Clears: []string{"l2"}})}},
			[]string{`limit_reset_credits{id="7",limit="l1",provider="p"} 1`, `limit_reset_credits{id="7",limit="l2",provider="p"} 2`}},
		{"expired credit without usable is not usable", &broker.SavedResets{Credits: []broker.ResetCredit{
			{ExpiresAt: now.Add(-time.Minute), Clears: []string{"l1"}},
			{ExpiresAt: now, Clears: []string{"l1"}},
			{ExpiresAt: now.Add(time.Hour), Clears: []string{"l1"}}}},
			[]string{`reset_credit_next_expiry_timestamp_seconds{id="7",provider="p"} ` + ts(time.Hour), `limit_reset_credits{id="7",limit="l1",provider="p"} 1`}},
		{"the credit's own usable beats its expiry", &broker.SavedResets{Credits: []broker.ResetCredit{
			yes(broker.ResetCredit{ExpiresAt: now.Add(-time.Minute), Clears: []string{"l1"}}),
			no(broker.ResetCredit{ExpiresAt: now.Add(time.Minute), Clears: []string{"l2"}})}},
			[]string{`reset_credit_next_expiry_timestamp_seconds{id="7",provider="p"} ` + ts(-time.Minute), `limit_reset_credits{id="7",limit="l1",provider="p"} 1`}},
		{"next expiry is the earliest of the usable credits only", &broker.SavedResets{Credits: []broker.ResetCredit{
			yes(broker.ResetCredit{ExpiresAt: now.Add(3 * time.Hour)}),
			no(broker.ResetCredit{ExpiresAt: now.Add(time.Hour)}),
			{},
			yes(broker.ResetCredit{ExpiresAt: now.Add(2 * time.Hour)}),
			yes(broker.ResetCredit{ExpiresAt: now.Add(4 * time.Hour)})}},
			[]string{`reset_credit_next_expiry_timestamp_seconds{id="7",provider="p"} ` + ts(2*time.Hour)}},
		{"no usable credit: no expiry, no limit series", &broker.SavedResets{Available: 1, HasAvailable: true, Credits: []broker.ResetCredit{
			no(broker.ResetCredit{ExpiresAt: now.Add(time.Hour), Clears: []string{"l1"}})}},
			[]string{`reset_credits{id="7",provider="p",state="available"} 1`}},
		{"cooldown in the past is still written", &broker.SavedResets{CooldownUntil: now.Add(-time.Hour)},
			[]string{`reset_cooldown_until_timestamp_seconds{id="7",provider="p"} ` + ts(-time.Hour)}},
		{"invalid UTF-8 in a limit id is repaired", &broker.SavedResets{Credits: []broker.ResetCredit{
			{Clears: []string{"l\xff"}}}},
			[]string{`limit_reset_credits{id="7",limit="l` + "\uFFFD" + `",provider="p"} 1`}},
		{"family order: counts, cooldown, expiry, limits", &broker.SavedResets{Available: 2, HasAvailable: true, Redeemable: 1, HasRedeemable: true,
			CooldownUntil: now.Add(time.Minute), Credits: []broker.ResetCredit{{ExpiresAt: now.Add(time.Hour), Clears: []string{"l1"}}}},
			[]string{`reset_credits{id="7",provider="p",state="available"} 2`, `reset_credits{id="7",provider="p",state="redeemable"} 1`,
				`reset_cooldown_until_timestamp_seconds{id="7",provider="p"} ` + ts(time.Minute), `reset_credit_next_expiry_timestamp_seconds{id="7",provider="p"} ` + ts(time.Hour),
				`limit_reset_credits{id="7",limit="l1",provider="p"} 1`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			row := newResetRow("7", "p", tc.sr, now)
			if (row == nil) != (tc.sr == nil) {
				t.Fatalf("row %v for resets %v", row, tc.sr)
			}
			var got recordSink
			writeSavedResets(&got, []*usageRow{{resets: row}, {}})
			want := make([]string, len(tc.want))
			for i, w := range tc.want {
				want[i] = "authbroker_usage_" + w
			}
			if !slices.Equal(got, want) {
				t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}
