package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestDeprecatedUsageTimeout: --collector.usage.timeout is still accepted
// (old command lines keep working) and says once that it does nothing;
// without it nothing is said.
func TestDeprecatedUsageTimeout(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		lines int
	}{
		{[]string{"--collector.usage.timeout=5s"}, 1},
		{nil, 0},
	} {
		cfg := parseConfig(t, tc.args...)
		var logs bytes.Buffer
		logger, err := cfg.logger(&logs)
		if err != nil {
			t.Fatal(err)
		}
		cfg.warnDeprecated(logger)
		if n := strings.Count(logs.String(), "--collector.usage.timeout is deprecated"); n != tc.lines || strings.Count(logs.String(), "\n") != tc.lines {
			t.Errorf("%v: %d deprecation lines, want %d:\n%s", tc.args, n, tc.lines, logs.String())
		}
	}
}
