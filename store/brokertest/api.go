// Package brokertest is an in-process fake oh-my-pi auth-broker that speaks
// the 18.2.3 wire protocol (shared broker-protocol.md) exactly: the same
// keys, the same ETag/long-poll rules, the same SSE framing and the same
// per-connection entry/removed diff the real broker produces. Tests script
// it: add, rotate or remove credentials, set usage, restart, act like an old
// broker, and inject faults.
package brokertest

import (
	"encoding/json"
	"net/http"
	"time"
)

// Options configure a Broker. Zero values get sensible defaults.
type Options struct {
	Token   string           // bearer token; default "test-token"
	Version string           // healthz version; default "18.2.3"
	Now     func() time.Time // broker wall clock; default time.Now
	// Refresher schedule; default enabled, 60 s interval, 300 s skew.
	RefresherDisabled bool
	RefresherInterval time.Duration
	RefresherSkew     time.Duration
	// KeepaliveInterval between ": keepalive" comments; default 20 s.
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

// Broker is the fake. Create it with New; Close it when done.
type Broker struct {
	URL string // base URL, no trailing slash
	// unexported state
}

func New(opts Options) *Broker                                            { panic("unimplemented") }
func (b *Broker) Close()                                                  { panic("unimplemented") }
func (b *Broker) Token() string                                           { panic("unimplemented") }
func (b *Broker) SetToken(token string)                                   { panic("unimplemented") } // rotate the accepted token
func (b *Broker) Generation() int64                                       { panic("unimplemented") }
func (b *Broker) AddOAuth(provider string, c OAuth) int64                 { panic("unimplemented") }
func (b *Broker) AddAPIKey(provider, key string) int64                    { panic("unimplemented") }
func (b *Broker) UpdateOAuth(id int64, c OAuth)                           { panic("unimplemented") } // e.g. rotation
func (b *Broker) Disable(id int64, cause string)                          { panic("unimplemented") } // tombstone + removed frame
func (b *Broker) SetBlocks(id int64, blocks []Block)                      { panic("unimplemented") }
func (b *Broker) SetRefresher(enabled bool, interval, skew time.Duration) { panic("unimplemented") }
func (b *Broker) Bump()                                                   { panic("unimplemented") } // content-free generation bump
// SetUsage sets the reports /v1/usage returns (marshalled as given).
func (b *Broker) SetUsage(reports []json.RawMessage) { panic("unimplemented") }

// SetRefreshError makes POST /v1/credential/:id/refresh fail for id with
// status and message; status 0 restores success (a fresh access token).
func (b *Broker) SetRefreshError(id int64, status int, message string) { panic("unimplemented") }

// Restart drops every connection and resets generation to 1, keeping data.
func (b *Broker) Restart() { panic("unimplemented") }

// SetStreamSupported(false) makes the stream route answer 404 like an old broker.
func (b *Broker) SetStreamSupported(ok bool) { panic("unimplemented") }
func (b *Broker) AddFault(f Fault)           { panic("unimplemented") }
func (b *Broker) ClearFaults()               { panic("unimplemented") }

// SendRaw writes raw bytes to every open stream connection (malformed,
// oversized or non-UTF-8 frames); CutStreams closes them mid-flight.
func (b *Broker) SendRaw(raw []byte) { panic("unimplemented") }
func (b *Broker) CutStreams()        { panic("unimplemented") }

// Keepalive sends one ": keepalive" comment now on every stream.
func (b *Broker) Keepalive() { panic("unimplemented") }

// Requests counts requests seen per path (after auth), for single-flight tests.
func (b *Broker) Requests(path string) int { panic("unimplemented") }

// StreamConnections is the number of open stream connections.
func (b *Broker) StreamConnections() int { panic("unimplemented") }

// Handler exposes the broker's http.Handler (for wrapping in other servers).
func (b *Broker) Handler() http.Handler { panic("unimplemented") }
