// Package brokertest is an in-process fake oh-my-pi auth-broker that speaks
// the 18.2.3 wire protocol (docs/broker-protocol.md) exactly: the same
// keys, the same ETag/long-poll rules, the same SSE framing and the same
// per-connection entry/removed diff the real broker produces. Tests script
// it: add, rotate or remove credentials, set usage, restart, act like an old
// broker, and inject faults.
//
// testdata/real holds captures from a live 18.2.3 broker (capture.sh makes
// them) and TestRealBrokerShapes replays the same scenario against the
// fake, so a drift in keys, types, headers, error texts, generations or
// stream passes fails a test.
//
// Deliberately not modelled: background refresher sweeps (the schedule is
// reported, but nothing refreshes by itself: tests rotate with UpdateOAuth
// or POST .../refresh), identity claims decoded from JWT-shaped tokens, the
// org-upgrade identity matching of uploads (identity keys must be equal),
// single-flight of concurrent refreshes of one id, the usage history,
// clients, observed and stale routes (404 "No route"), and ArkType's
// wording for validation errors beyond the common cases.
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
