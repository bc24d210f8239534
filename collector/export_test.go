package collector

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

// All returns every collector, for a registry that gathers them all: the
// same series Handler serves, through client_golang alone.
func (c *Collectors) All() []prometheus.Collector {
	all := slices.Clone(c.registered)
	for _, d := range c.direct {
		all = append(all, d)
	}
	return all
}
