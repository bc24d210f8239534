package broker

import "testing"

func TestTombstoneCauseClass(t *testing.T) {
	for cause, want := range map[string]string{
		"oauth refresh failed: invalid_grant":               CauseRefreshFailed,
		"OAuth refresh failed: Error: timed out":            CauseRefreshFailed,
		"upstream reported invalidated OAuth token":         CauseRefreshFailed,
		"replaced by oauth login":                           CauseReplaced,
		"replaced by newer credential":                      CauseReplaced,
		"deduplicated duplicate credential":                 CauseReplaced,
		"disabled via auth-broker":                          CauseManual,
		"  Disabled via auth-broker ":                       CauseManual,
		"deleted by user":                                   CauseManual,
		"logged out by user":                                CauseManual,
		"authbroker_exporter: expired for more than 1h0m0s": CauseManual,
		"rotating keys for the quarterly audit":             CauseOther,
		"":                                                  CauseOther,
		"disabled via auth-broker because it was stale":     CauseOther,
	} {
		if got := (Tombstone{Cause: cause}).CauseClass(); got != want {
			t.Errorf("CauseClass(%q) = %s, want %s", cause, got, want)
		}
	}
}
