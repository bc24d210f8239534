package broker

import (
	"fmt"
	"testing"
	"time"
)

// TestDecodeSavedResets covers the shapes of resetCredits
// (docs/broker-protocol.md §13.1): every field is optional, and a field of
// the wrong type reads as absent without costing the report.
func TestDecodeSavedResets(t *testing.T) {
	const ms = 1795760000000
	at := time.UnixMilli(ms)
	iso := time.Date(2026, 11, 30, 20, 0, 0, 0, time.UTC)
	isoMilli := time.Date(2026, 11, 30, 20, 0, 0, 250e6, time.UTC)
	type credit = ResetCredit
	cases := []struct {
		name   string
		resets string // the resetCredits value; "" leaves the key out
		limits string // the limits value; "" means one limit
		want   *SavedResets
	}{
		{name: "absent", want: nil},
		{name: "null", resets: `null`, want: nil},
		{name: "string", resets: `"2 saved"`, want: nil},
		{name: "number", resets: `3`, want: nil},
		{name: "array", resets: `[{"availableCount":1}]`, want: nil},
		{name: "empty object", resets: `{}`, want: &SavedResets{}},
		{name: "counts", resets: `{"availableCount":2,"redeemableCount":1}`,
			want: &SavedResets{Available: 2, HasAvailable: true, Redeemable: 1, HasRedeemable: true}},
		{name: "zero counts are present", resets: `{"availableCount":0,"redeemableCount":0.0}`,
			want: &SavedResets{HasAvailable: true, HasRedeemable: true}},
		{name: "counts under limits: []", limits: `[]`, resets: `{"availableCount":1,"redeemableCount":1}`,
			want: &SavedResets{Available: 1, HasAvailable: true, Redeemable: 1, HasRedeemable: true}},
		{name: "count as string", resets: `{"availableCount":"2","redeemableCount":1}`,
			want: &SavedResets{Redeemable: 1, HasRedeemable: true}},
		{name: "count null", resets: `{"availableCount":null,"redeemableCount":1}`,
			want: &SavedResets{Redeemable: 1, HasRedeemable: true}},
		{name: "count object", resets: `{"availableCount":{"n":2},"redeemableCount":[1]}`, want: &SavedResets{}},
		{name: "count boolean", resets: `{"availableCount":true}`, want: &SavedResets{}},
		{name: "count huge", resets: `{"availableCount":1e400}`, want: &SavedResets{}},
		{name: "cooldown ms", resets: fmt.Sprintf(`{"cooldownUntil":%d}`, ms), want: &SavedResets{CooldownUntil: at}},
		{name: "cooldown fractional ms", resets: fmt.Sprintf(`{"cooldownUntil":%d.5}`, ms),
			want: &SavedResets{CooldownUntil: at.Add(500 * time.Microsecond)}},
		{name: "cooldown ISO", resets: `{"cooldownUntil":"2026-11-30T20:00:00Z"}`, want: &SavedResets{CooldownUntil: iso}},
		{name: "cooldown ISO offset millis", resets: `{"cooldownUntil":"2026-11-30T21:00:00.250+01:00"}`,
			want: &SavedResets{CooldownUntil: isoMilli}},
		{name: "cooldown ISO padded", resets: `{"cooldownUntil":" 2026-11-30T20:00:00Z "}`, want: &SavedResets{CooldownUntil: iso}},
		{name: "cooldown garbage string", resets: `{"cooldownUntil":"tomorrow"}`, want: &SavedResets{}},
		{name: "cooldown date only", resets: `{"cooldownUntil":"2026-11-30"}`, want: &SavedResets{}},
		{name: "cooldown numeric string", resets: fmt.Sprintf(`{"cooldownUntil":"%d"}`, ms), want: &SavedResets{}},
		{name: "cooldown null", resets: `{"cooldownUntil":null}`, want: &SavedResets{}},
		{name: "cooldown bool", resets: `{"cooldownUntil":true}`, want: &SavedResets{}},
		{name: "cooldown object", resets: `{"cooldownUntil":{"ms":1}}`, want: &SavedResets{}},
		{name: "cooldown huge", resets: `{"cooldownUntil":1e300}`, want: &SavedResets{}},
		{name: "credits", resets: fmt.Sprintf(`{"availableCount":2,"credits":[
			{"id":"c1","usable":true,"expiresAt":%d,"clears":["anthropic:5h","anthropic:7d"]},
			{"id":"c2","usable":false,"expiresAt":"2026-11-30T20:00:00Z","clears":["anthropic:5h"]},
			{"id":"c3"}]}`, ms),
			want: &SavedResets{Available: 2, HasAvailable: true, Credits: []credit{
				{ExpiresAt: at, Usable: true, HasUsable: true, Clears: []string{"anthropic:5h", "anthropic:7d"}},
				{ExpiresAt: iso, HasUsable: true, Clears: []string{"anthropic:5h"}},
				{},
			}}},
		{name: "credit expiresAt garbage", resets: `{"credits":[{"expiresAt":"soon"},{"expiresAt":false},{"expiresAt":null},{"expiresAt":[1]}]}`,
			want: &SavedResets{Credits: []credit{{}, {}, {}, {}}}},
		{name: "credit usable of the wrong type", resets: `{"credits":[{"usable":"true"},{"usable":1},{"usable":null},{"usable":{}}]}`,
			want: &SavedResets{Credits: []credit{{}, {}, {}, {}}}},
		{name: "clears with non-string members", resets: `{"credits":[{"usable":true,"clears":["a",1,null,"",{"id":"b"},["c"],true,"d"]}]}`,
			want: &SavedResets{Credits: []credit{{Usable: true, HasUsable: true, Clears: []string{"a", "d"}}}}},
		{name: "clears of the wrong type", resets: `{"credits":[{"clears":"a"},{"clears":{"a":true}},{"clears":null}]}`,
			want: &SavedResets{Credits: []credit{{}, {}, {}}}},
		{name: "credits of the wrong type", resets: `{"availableCount":1,"credits":"two"}`,
			want: &SavedResets{Available: 1, HasAvailable: true}},
		{name: "credits null", resets: `{"credits":null}`, want: &SavedResets{}},
		{name: "credits empty", resets: `{"credits":[]}`, want: &SavedResets{}},
		{name: "credit of the wrong type", resets: `{"credits":[1,"x",null,{"usable":true,"clears":["a"]}]}`,
			want: &SavedResets{Credits: []credit{{Usable: true, HasUsable: true, Clears: []string{"a"}}}}},
		{name: "unknown fields ignored", resets: `{"nextCreditId":"c1","eligible":true,"reason":"r","credits":[{"title":"t","program":"p",
			"remainingCount":3,"requiresLimit":"x","blocking":["y"],"usedFractions":{"a":0.5},"usable":true}]}`,
			want: &SavedResets{Credits: []credit{{Usable: true, HasUsable: true}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			limits := tc.limits
			if limits == "" {
				limits = `[{"id":"anthropic:5h","status":"ok"}]`
			}
			report := `{"provider":"anthropic","metadata":{"email":"a@example.com"},"limits":` + limits
			if tc.resets != "" {
				report += `,"resetCredits":` + tc.resets
			}
			report += `}`
			// The report under test sits between two plain ones: it must
			// neither fail the answer nor disturb its neighbours.
			body := `{"generatedAt":1,"reports":[{"provider":"openai","limits":[]},` + report + `,{"provider":"google","limits":[]}]}`
			u, err := DecodeUsage([]byte(body))
			if err != nil {
				t.Fatalf("%s: %v", body, err)
			}
			if len(u.Reports) != 3 || u.Reports[0].Provider != "openai" || u.Reports[2].Provider != "google" ||
				u.Reports[0].Resets != nil || u.Reports[2].Resets != nil {
				t.Fatalf("reports %+v", u.Reports)
			}
			r := u.Reports[1]
			if r.Provider != "anthropic" || r.Metadata.Email != "a@example.com" {
				t.Fatalf("report %+v", r)
			}
			if wantLimits := map[bool]int{true: 0, false: 1}[tc.limits == `[]`]; len(r.Limits) != wantLimits || r.Limits == nil {
				t.Fatalf("limits %+v, want %d", r.Limits, wantLimits)
			}
			if (r.Resets == nil) != (tc.want == nil) || dumpResets(r.Resets) != dumpResets(tc.want) {
				t.Fatalf("resets\n got %s\nwant %s", dumpResets(r.Resets), dumpResets(tc.want))
			}
		})
	}
}

func dumpResets(sr *SavedResets) string {
	if sr == nil {
		return "<nil>"
	}
	s := fmt.Sprintf("available=%v/%v redeemable=%v/%v cooldown=%v", sr.Available, sr.HasAvailable,
		sr.Redeemable, sr.HasRedeemable, sr.CooldownUntil.UTC())
	for _, c := range sr.Credits {
		s += fmt.Sprintf(" {expires=%v usable=%v/%v clears=%q}", c.ExpiresAt.UTC(), c.Usable, c.HasUsable, c.Clears)
	}
	return s
}

// TestResetCreditUsableAt: a credit's own usable wins; without it a credit
// is usable until it expires, and one without an expiry stays usable.
func TestResetCreditUsableAt(t *testing.T) {
	now := time.UnixMilli(1795760000000)
	for _, tc := range []struct {
		c    ResetCredit
		want bool
	}{
		{ResetCredit{}, true},
		{ResetCredit{ExpiresAt: now.Add(time.Second)}, true},
		{ResetCredit{ExpiresAt: now}, false},
		{ResetCredit{ExpiresAt: now.Add(-time.Second)}, false},
		{ResetCredit{ExpiresAt: now.Add(-time.Hour), Usable: true, HasUsable: true}, true},
		{ResetCredit{ExpiresAt: now.Add(time.Hour), HasUsable: true}, false},
	} {
		if got := tc.c.UsableAt(now); got != tc.want {
			t.Errorf("%+v: usable %v, want %v", tc.c, got, tc.want)
		}
	}
}
