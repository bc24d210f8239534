package health

import "strings"

// The disable-cause vocabulary lives in this file alone and depends on
// nothing else in the package, so it can move next to the tombstone type
// (package store) as it is: the collector labels
// authbroker_credentials_disabled{cause} with DisableCause, and health
// classifies the disabled list with it.

// Disable causes (the `cause` label of authbroker_credentials_disabled).
const (
	CauseRefreshFailed = "refresh_failed"
	CauseReplaced      = "replaced"
	CauseManual        = "manual"
	CauseOther         = "other"
)

// DisableCause classifies a tombstone's free-text cause into a closed
// vocabulary. The texts are the ones oh-my-pi 18.2.3 writes:
//
//   - refresh_failed: "oauth refresh failed: <error>" (the broker's refresher
//     or a forced refresh gave up) and "upstream reported invalidated OAuth
//     token" (the provider revoked it); both need a new login.
//   - replaced: "replaced by oauth login", "replaced by newer credential",
//     "deduplicated duplicate credential"; nothing to do.
//   - manual: a person asked for it: "disabled via auth-broker" (the broker's
//     default for POST /disable without a cause), "deleted by user",
//     "logged out by user", or the operator's own policy carried out by this
//     exporter (--monitor.disable-expired-after, cause "authbroker_exporter: …").
//   - other: everything else, including free-text causes an operator passed
//     to the disable route: they cannot be told apart from error messages,
//     and an unknown text must not be mistaken for a deliberate action.
func DisableCause(cause string) string {
	c := strings.ToLower(strings.TrimSpace(cause))
	switch {
	case strings.HasPrefix(c, "oauth refresh failed"),
		strings.Contains(c, "invalidated oauth token"):
		return CauseRefreshFailed
	case strings.HasPrefix(c, "replaced by"),
		strings.HasPrefix(c, "deduplicated"):
		return CauseReplaced
	case c == "disabled via auth-broker",
		c == "deleted by user",
		c == "logged out by user",
		strings.HasPrefix(c, "authbroker_exporter:"):
		return CauseManual
	}
	return CauseOther
}

// DisableCauses lists the vocabulary in a fixed order, for callers that
// publish a series per cause.
func DisableCauses() []string {
	return []string{CauseRefreshFailed, CauseReplaced, CauseManual, CauseOther}
}
