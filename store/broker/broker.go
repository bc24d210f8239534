// Package broker is the oh-my-pi auth-broker's HTTP client: the routes the
// exporter uses (healthz, snapshot with long-poll, the SSE stream, usage,
// refresh, disable, the disabled list), the bearer-token source, frame and
// usage decoding, and typed errors. It knows nothing of the mirror built
// from what it decodes (package store). The wire protocol is described in
// docs/broker-protocol.md.
//
// Decoding never keeps token material: access tokens and API keys are
// reduced to a keyed fingerprint, and unknown credential fields are
// skipped without being copied.
package broker

import (
	"context"
	"errors"
	"strings"
	"time"
)

// ErrStreamUnsupported is returned by Client.Stream when the broker answers
// 404 on /v1/snapshot/stream (a broker that predates the stream).
var ErrStreamUnsupported = errors.New("auth-broker snapshot stream unsupported (404)")

// Credential types on the wire.
const (
	TypeOAuth  = "oauth"
	TypeAPIKey = "api_key"
)

// Stream frame kinds.
const (
	FrameSnapshot = "snapshot"
	FrameEntry    = "entry"
	FrameRemoved  = "removed"
)

// Credential is the redacted, secret-free view of a SnapshotCredential.
// The access token, API key and unknown extra fields are never kept; only a
// keyed fingerprint of the token material survives, so rotations can be
// detected without the token being recoverable.
type Credential struct {
	Type          string // TypeOAuth or TypeAPIKey
	Expires       time.Time
	HasExpires    bool // false for api_key and for a non-finite expires
	Email         string
	AccountID     string
	ProjectID     string
	OrgID         string
	OrgName       string
	EnterpriseURL string
	APIEndpoint   string
	AuthorizedAt  time.Time
	Source        string // api_key only ("login")

	fingerprint uint64 // keyed hash of access/key; never exported
}

// SameToken reports whether c and o carry the same token material and
// expiry: a difference between two versions of an OAuth credential is a
// rotation.
func (c *Credential) SameToken(o *Credential) bool {
	return c.fingerprint == o.fingerprint && c.HasExpires == o.HasExpires && c.Expires.Equal(o.Expires)
}

// Block is an active rate-limit block on a credential.
type Block struct {
	ProviderKey  string
	Scope        string
	BlockedUntil time.Time
	UpdatedAt    time.Time
}

// Entry is one credential as the broker sent it. Entries are immutable once
// decoded; readers may keep them.
type Entry struct {
	ID          int64
	Provider    string
	IdentityKey string // "" when the broker sent null
	Credential  Credential
	// RotatesIn is the broker's rotatesInMs; valid only when HasRotatesIn.
	RotatesIn    time.Duration
	HasRotatesIn bool
	Blocks       []Block
	// ReceivedAt is the local time the frame carrying this entry arrived;
	// RotationDeadline is relative to it, not to the broker clock.
	ReceivedAt time.Time
}

// RotationDeadline is the local instant at which the broker will next
// attempt to refresh this credential.
func (e *Entry) RotationDeadline() (time.Time, bool) {
	if !e.HasRotatesIn {
		return time.Time{}, false
	}
	return e.ReceivedAt.Add(e.RotatesIn), true
}

// Refresher is the broker's refresher schedule as of the last frame.
type Refresher struct {
	Enabled  bool
	Interval time.Duration
	Skew     time.Duration
	// NextSweep is the local instant of the next sweep (receipt time +
	// nextSweepInMs); zero while the refresher is disabled.
	NextSweep time.Time
}

// Tombstone is one row of /v1/credentials/disabled. It carries no secret.
type Tombstone struct {
	ID         int64
	Provider   string
	Type       string
	Email      string
	AccountID  string
	OrgID      string
	OrgName    string
	Cause      string
	DisabledAt time.Time // zero when the broker omitted it
}

// Clock is injected so tests never sleep. A nil Clock in options means the
// wall clock.
type Clock interface {
	Now() time.Time
	// Sleep waits for d or until ctx is done (then it returns ctx.Err()).
	Sleep(ctx context.Context, d time.Duration) error
}

// WallClock is the real clock.
type WallClock struct{}

func (WallClock) Now() time.Time { return time.Now() }

func (WallClock) Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Disable cause classes: a tombstone's free-text cause reduced to a closed
// vocabulary fit for a metric label.
const (
	CauseRefreshFailed = "refresh_failed"
	CauseReplaced      = "replaced"
	CauseManual        = "manual"
	CauseOther         = "other"
)

// DisableCauses lists every cause class, sorted.
var DisableCauses = []string{CauseManual, CauseOther, CauseRefreshFailed, CauseReplaced}

// CauseClass classifies the tombstone's cause:
//   - refresh_failed: "oauth refresh failed: <error>" (the broker's refresher
//     gave up on a definitive failure) or an invalidated OAuth token;
//   - replaced: "replaced by …" (an OAuth login replaced an API key) or a
//     deduplicated row;
//   - manual: the broker's default disable cause, a logout or delete by the
//     user, and the exporter's own disables ("authbroker_exporter: …");
//   - other: anything else.
func (t Tombstone) CauseClass() string {
	c := strings.ToLower(strings.TrimSpace(t.Cause))
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
