// Package brokertest is an in-process fake oh-my-pi auth-broker that speaks
// the 18.2.3 wire protocol (shared broker-protocol.md) exactly: the same
// keys, the same ETag/long-poll rules, the same SSE framing and the same
// per-connection entry/removed diff the real broker produces. Tests script
// it: add, rotate or remove credentials, set usage, restart, act like an old
// broker, and inject faults.
package brokertest

import "time"

// Options configure a Broker. Zero values get sensible defaults.
type Options struct {
	Token   string           // bearer token; default "test-token"
	Version string           // healthz version; default "18.2.3"
	Now     func() time.Time // broker wall clock; default time.Now
	// Refresher schedule; default enabled, 60 s interval, 300 s skew.
	RefresherDisabled bool
	RefresherInterval time.Duration
	RefresherSkew     time.Duration
	// KeepaliveInterval between ": keepalive" comments; default 20 s,
	// negative = none (tests call Keepalive instead).
	KeepaliveInterval time.Duration
}

// OAuth is a credential the fake holds, secrets included.
type OAuth struct {
	Access    string
	Refresh   string
	Expires   time.Time
	Email     string
	AccountID string
	ProjectID string
	OrgID     string
	OrgName   string
	Extra     map[string]any // unknown keys that round-trip (e.g. clientSecret)
}

// Block is a rate-limit block.
type Block struct {
	ProviderKey  string
	Scope        string
	BlockedUntil time.Time
}

// Fault describes a scripted misbehaviour of one route ("" path = all).
type Fault struct {
	Path    string // e.g. "/v1/snapshot/stream", "/v1/usage"
	Status  int    // answer this status with {"error":Message} (0 = none)
	Message string
	Delay   time.Duration // added latency before answering
	Stall   bool          // hold the request until the client goes away or ClearFaults
	Times   int           // apply this many times, then stop (0 = until cleared)
}
