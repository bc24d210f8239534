package collector

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/authbroker/authbroker_exporter/internal/health"
)

// capacityCollector publishes each provider's capacity: its active
// credentials by state, how many are usable now, and when one comes back
// while none is. health.Capacity is the rule, in one pass over the
// credentials; a handful of series per provider come out.
type capacityCollector struct{ o Options }

func (c *capacityCollector) Describe(ch chan<- *prometheus.Desc) {
	describeFamilies(ch, mProviderCredentials, mProviderUsable, mProviderNextUsable)
}

func (c *capacityCollector) Collect(ch chan<- prometheus.Metric) { c.write(registrySink{ch}) }

func (c *capacityCollector) write(s sink) {
	in := health.Input{Now: c.o.Now(), View: c.o.Source.Snapshot(), Status: c.o.Source.Status()}
	if c.o.Usage {
		in.Usage = c.o.Source.Usage() // the store's last answer; it counts and logs failures
	}
	states := health.CredentialStates()
	for _, p := range mergeByLabel(health.Capacity(in, c.o.Thresholds)) {
		for i, st := range states {
			s.one(mProviderCredentials, float64(p.States[i]), p.Provider, st)
		}
		s.one(mProviderUsable, float64(p.Usable), p.Provider)
		if p.NextUsable != nil && p.Usable == 0 {
			s.one(mProviderNextUsable, unix(*p.NextUsable), p.Provider)
		}
	}
}

// mergeByLabel makes the provider names label-safe and adds up providers
// that become one label value (invalid UTF-8), whose series would
// otherwise collide and fail the scrape.
func mergeByLabel(caps []health.ProviderCapacity) []health.ProviderCapacity {
	out := caps[:0]
	at := map[string]int{}
	for _, p := range caps {
		p.Provider = label(p.Provider)
		i, seen := at[p.Provider]
		if !seen {
			at[p.Provider] = len(out)
			out = append(out, p)
			continue
		}
		q := &out[i]
		q.Active += p.Active
		q.Usable += p.Usable
		for j := range q.States {
			q.States[j] += p.States[j]
		}
		if p.NextUsable != nil && (q.NextUsable == nil || p.NextUsable.Before(*q.NextUsable)) {
			q.NextUsable = p.NextUsable
		}
	}
	return out
}
