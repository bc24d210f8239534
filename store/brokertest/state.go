package brokertest

import (
	"encoding/json"
	"sort"
	"strings"
	"time"
)

const (
	remoteSentinel        = "__remote__"
	capabilitiesHeader    = "OMP-Auth-Broker-Capabilities"
	codexMeterBlockScopes = "codex-meter-block-scopes"
	codexBlockKey         = "openai-codex:oauth"
	defaultDisableCause   = "disabled via auth-broker"
	replacedByOAuthCause  = "replaced by oauth login"
	replacedByNewerCause  = "replaced by newer credential"
)

// row is one credential as the broker's SQLite store holds it, secrets
// included. Rows are never deleted, only disabled (tombstones), except
// when an upload supersedes a tombstone.
type row struct {
	id       int64
	provider string
	apiKey   bool
	key      string
	source   string // api_key only
	oauth    OAuth

	disabled   bool
	cause      string
	disabledAt time.Time
}

type blockRec struct {
	providerKey  string
	scope        string
	blockedUntil int64 // ms
	updatedAt    int64 // ms, multiple of 1000
}

// identityKey follows resolveCredentialIdentityKey for the explicit fields
// (claims in JWT-shaped tokens are not decoded by the fake).
func identityKey(provider string, c *OAuth) (string, bool) {
	account := strings.TrimSpace(c.AccountID)
	email := strings.ToLower(strings.TrimSpace(c.Email))
	project := strings.TrimSpace(c.ProjectID)
	org := strings.TrimSpace(c.OrgID)
	if provider == "anthropic" || provider == "openai-codex" {
		base := ""
		switch {
		case email != "":
			base = "email:" + email
		case account != "":
			base = "account:" + account
		case project != "":
			base = "project:" + project
		}
		switch {
		case base != "" && org != "":
			return base + "|org:" + org, true
		case base != "":
			return base, true
		case org != "":
			return "org:" + org, true
		}
		return "", false
	}
	switch {
	case account != "":
		return "account:" + account, true
	case email != "":
		return "email:" + email, true
	case project != "":
		return "project:" + project, true
	}
	return "", false
}

func (r *row) identity() (string, bool) {
	if r.apiKey {
		return "", false
	}
	return identityKey(r.provider, &r.oauth)
}

func (r *row) typ() string {
	if r.apiKey {
		return "api_key"
	}
	return "oauth"
}

// standardOAuthKeys are emitted from OAuth's fields, never from Extra.
var standardOAuthKeys = map[string]bool{
	"type": true, "access": true, "refresh": true, "expires": true,
	"email": true, "accountId": true, "projectId": true, "orgId": true, "orgName": true,
}

// rebuiltExtraKeys are the standard fields a successful refresh keeps; any
// other extra key is dropped, like the broker's rebuilt credential.
var rebuiltExtraKeys = map[string]bool{"enterpriseUrl": true, "apiEndpoint": true, "authorizedAt": true}

// credentialJSON is the wire credential: the refresh token is always the
// sentinel; the access token and API key go out unredacted, as the real
// broker sends them.
func (r *row) credentialJSON() object {
	if r.apiKey {
		o := object{{"type", "api_key"}, {"key", r.key}}
		if r.source != "" {
			o = append(o, field{"source", r.source})
		}
		return o
	}
	c := &r.oauth
	o := object{{"type", "oauth"}, {"access", c.Access}, {"refresh", remoteSentinel}, {"expires", ms(c.Expires)}}
	for _, f := range []struct{ k, v string }{
		{"email", c.Email}, {"accountId", c.AccountID}, {"projectId", c.ProjectID},
		{"orgId", c.OrgID}, {"orgName", c.OrgName},
	} {
		if f.v != "" {
			o = append(o, field{f.k, f.v})
		}
	}
	keys := make([]string, 0, len(c.Extra))
	for k := range c.Extra {
		if !standardOAuthKeys[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		o = append(o, field{k, c.Extra[k]})
	}
	return o
}

// credentialEntry is the CredentialEntry of upload and refresh responses.
func (r *row) credentialEntry() object {
	var ik any
	if k, ok := r.identity(); ok {
		ik = k
	}
	return object{{"id", r.id}, {"provider", r.provider}, {"credential", r.credentialJSON()}, {"identityKey", ik}}
}

// sameCredential is the broker's authCredentialEquals: a change outside
// these fields neither bumps the generation nor replaces the in-memory row.
func sameCredential(a, b *row) bool {
	if a.apiKey != b.apiKey {
		return false
	}
	if a.apiKey {
		return a.key == b.key
	}
	x, y := &a.oauth, &b.oauth
	return x.Access == y.Access && x.Refresh == y.Refresh && ms(x.Expires) == ms(y.Expires) &&
		x.AccountID == y.AccountID && x.Email == y.Email && x.ProjectID == y.ProjectID &&
		jsonEqual(x.Extra["enterpriseUrl"], y.Extra["enterpriseUrl"])
}

func jsonEqual(a, b any) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return string(mustJSON(a)) == string(mustJSON(b))
}

// refresherState is the broker's schedule. Sweeps are modelled as instants
// at start + k*interval, so the next one is always strictly in the future.
type refresherState struct {
	enabled  bool
	interval time.Duration
	skew     time.Duration
	start    time.Time
}

// wire returns the RefresherSchedule object and T (nextSweepAt, ms).
func (rs refresherState) wire(now time.Time) (object, int64) {
	if !rs.enabled {
		return object{{"enabled", false}, {"intervalMs", 0}, {"skewMs", 0}, {"nextSweepInMs", int64(maxSafeInteger)}}, maxSafeInteger
	}
	iv := rs.interval.Milliseconds()
	start, nowMs := ms(rs.start), ms(now)
	next := start
	if iv > 0 {
		elapsed := nowMs - start
		if elapsed < 0 {
			next = start
		} else {
			next = start + (elapsed/iv+1)*iv
		}
	}
	return object{{"enabled", true}, {"intervalMs", iv}, {"skewMs", rs.skew.Milliseconds()}, {"nextSweepInMs", max(0, next-nowMs)}}, next
}

// rotatesIn is computeRotatesInMs (docs/broker-protocol.md §7.4).
func (rs refresherState) rotatesIn(r *row, nextSweepAt, now int64) (int64, bool) {
	if !rs.enabled || r.apiKey {
		return 0, false
	}
	iv, skew := rs.interval.Milliseconds(), rs.skew.Milliseconds()
	if iv <= 0 || nextSweepAt >= maxSafeInteger {
		return 0, false
	}
	due := ms(r.oauth.Expires) - skew
	eligible := max(now, due)
	if due <= now && nextSweepAt <= now {
		return 0, true
	}
	if nextSweepAt >= eligible {
		return max(0, nextSweepAt-now), true
	}
	steps := (eligible - nextSweepAt + iv - 1) / iv
	return max(0, nextSweepAt+steps*iv-now), true
}

// blocksFor lists the active blocks of id as a client sees them: expired
// ones dropped, Codex meter scopes collapsed for clients without the
// capability, sorted by providerKey, blockScope, blockedUntilMs.
func blocksFor(recs []blockRec, now int64, meterScopes bool) []blockRec {
	var out []blockRec
	var shared *blockRec
	for _, b := range recs {
		if b.blockedUntil <= now {
			continue
		}
		if !meterScopes && b.providerKey == codexBlockKey && (b.scope == "chat" || b.scope == "spark" || b.scope == "shared") {
			if shared == nil {
				shared = &blockRec{providerKey: codexBlockKey, scope: "shared"}
			}
			shared.blockedUntil = max(shared.blockedUntil, b.blockedUntil)
			shared.updatedAt = max(shared.updatedAt, b.updatedAt)
			continue
		}
		out = append(out, b)
	}
	if shared != nil {
		out = append(out, *shared)
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if c := localeCompare(a.providerKey, b.providerKey); c != 0 {
			return c < 0
		}
		if c := localeCompare(a.scope, b.scope); c != 0 {
			return c < 0
		}
		return a.blockedUntil < b.blockedUntil
	})
	return out
}

// localeCompare approximates String.prototype.localeCompare for the ASCII
// keys and scopes the broker uses: case-insensitive first, then by case.
func localeCompare(a, b string) int {
	if c := strings.Compare(strings.ToLower(a), strings.ToLower(b)); c != 0 {
		return c
	}
	return -strings.Compare(a, b) // lower case sorts before upper case
}

func blocksJSON(bs []blockRec) []object {
	out := make([]object, 0, len(bs))
	for _, b := range bs {
		out = append(out, object{{"providerKey", b.providerKey}, {"blockScope", b.scope}, {"blockedUntilMs", b.blockedUntil}, {"updatedAtMs", b.updatedAt}})
	}
	return out
}

// snapshot is one built SnapshotResponse; entries keep their marshalled
// JSON, which doubles as the stream's per-entry fingerprint.
type snapshot struct {
	generation  int64
	generatedAt int64
	serverNow   int64
	refresher   object
	ids         []int64
	entries     []json.RawMessage
}

func (s *snapshot) response(kind bool) object {
	o := object{}
	if kind {
		o = append(o, field{"kind", "snapshot"})
	}
	creds := make([]json.RawMessage, len(s.entries))
	copy(creds, s.entries)
	return append(o,
		field{"generation", s.generation}, field{"generatedAt", s.generatedAt}, field{"serverNowMs", s.serverNow},
		field{"refresher", s.refresher}, field{"credentials", creds})
}
