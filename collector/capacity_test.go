package collector

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/authbroker/authbroker_exporter/internal/health"
	"github.com/authbroker/authbroker_exporter/internal/identity"
	"github.com/authbroker/authbroker_exporter/internal/testwait"
	"github.com/authbroker/authbroker_exporter/store/brokertest"
)

// TestCapacityNextUsable: with every credential of a provider blocked,
// usable drops to 0 and next_usable is the earlier block's end; once that
// block ends, one is usable again and the series is gone.
func TestCapacityNextUsable(t *testing.T) {
	s := newScenario(t)
	o := s.options(t, identity.Raw)
	o.Now = s.clock.Now
	c := &capacityCollector{o: o}
	if out := scrape(t, c); !strings.Contains(out, `authbroker_provider_usable_credentials{provider="anthropic"} 2`) ||
		strings.Contains(out, "authbroker_provider_next_usable_timestamp_seconds") {
		t.Fatalf("before the blocks:\n%s", out)
	}
	first, second := t0.Add(5*time.Minute), t0.Add(25*time.Minute)
	s.broker.SetBlocks(s.ids["anthropic"], []brokertest.Block{{ProviderKey: "anthropic:oauth", BlockedUntil: second}})
	s.broker.SetBlocks(s.ids["resets"], []brokertest.Block{
		{ProviderKey: "anthropic:oauth", BlockedUntil: first},
		{ProviderKey: "anthropic:oauth", Scope: "tier:x", BlockedUntil: second},
	})
	testwait.Eventually(t, "both blocks mirrored", func() bool {
		n := 0
		for _, e := range s.store.Snapshot().Entries {
			if e.Provider == "anthropic" && len(e.Blocks) > 0 {
				n++
			}
		}
		return n == 2
	})
	out := scrape(t, c)
	for _, want := range []string{
		`authbroker_provider_usable_credentials{provider="anthropic"} 0`,
		`authbroker_provider_next_usable_timestamp_seconds{provider="anthropic"} ` + strconv.FormatFloat(float64(first.Unix()), 'g', -1, 64),
		`authbroker_provider_credentials{provider="anthropic",state="blocked"} 2`,
		`authbroker_provider_credentials{provider="anthropic",state="ok"} 0`,
		`authbroker_provider_usable_credentials{provider="openai-codex"} 1`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("blocked: no %s in\n%s", want, out)
		}
	}
	if strings.Count(out, "authbroker_provider_next_usable_timestamp_seconds{") != 1 {
		t.Errorf("next_usable for a provider with usable credentials:\n%s", out)
	}

	s.clock.Advance(first.Sub(t0))
	out = scrape(t, c)
	if !strings.Contains(out, `authbroker_provider_usable_credentials{provider="anthropic"} 1`) ||
		strings.Contains(out, "authbroker_provider_next_usable_timestamp_seconds{") {
		t.Errorf("after the first block ended:\n%s", out)
	}
}

// TestCapacityMergesLabels: two providers whose names become one label
// value (invalid UTF-8) are added up, not written twice.
func TestCapacityMergesLabels(t *testing.T) {
	early, late := t0.Add(time.Minute), t0.Add(time.Hour)
	caps := []health.ProviderCapacity{
		{Provider: "bad\xffname", Active: 1, States: [6]int{0, 0, 0, 0, 1, 0}, NextUsable: &late},
		{Provider: "ok", Active: 1, Usable: 1, States: [6]int{0, 0, 0, 0, 0, 1}},
		{Provider: "bad\xfename", Active: 2, States: [6]int{0, 0, 0, 0, 2, 0}, NextUsable: &early},
	}
	got := mergeByLabel(caps)
	if len(got) != 2 || got[0].Provider != "bad\uFFFDname" || got[0].Active != 3 || got[0].States[4] != 3 ||
		!got[0].NextUsable.Equal(early) || got[1].Provider != "ok" {
		t.Errorf("merged %+v", got)
	}
}
