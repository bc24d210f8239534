package mixin

import (
	"testing"

	"github.com/authbroker/authbroker_exporter/internal/health"
)

// TestCapacityLowMatchesCheck: with the default config,
// AuthBrokerProviderCapacityLow's condition (at most capacityLowCredentials
// usable, or under capacityLowFraction of the active ones) holds exactly
// where health.CapacityLevel, which `check --provider` and the status page
// use, says "low".
func TestCapacityLowMatchesCheck(t *testing.T) {
	var cfg struct {
		Credentials float64 `json:"capacityLowCredentials"`
		Fraction    float64 `json:"capacityLowFraction"`
	}
	if err := Evaluate([]string{"."}, "capacity.jsonnet", "(import 'config.libsonnet')._config", &cfg); err != nil {
		t.Fatal(err)
	}
	for active := 1; active <= 40; active++ {
		for usable := 1; usable <= active; usable++ {
			alert := float64(usable) <= cfg.Credentials || float64(usable) < cfg.Fraction*float64(active)
			check := health.CapacityLevel(active, usable) == health.CapacityLow
			if alert != check {
				t.Errorf("%d of %d usable: the alert's condition is %t, CapacityLevel says %q", usable, active, alert, health.CapacityLevel(active, usable))
			}
		}
	}
}
