package broker

import (
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"strconv"
	"time"
)

// ProtocolError reports a response or frame the broker should never send:
// malformed JSON, a duplicate or case-variant key, a value of the wrong
// type, a missing required field, an unexpected content type, an oversized
// frame. Its text names the field path but never quotes the offending
// payload, which may carry token material.
type ProtocolError struct {
	Op       string // e.g. "GET /v1/snapshot" or "stream"
	Detail   string
	TooLarge bool // the body or frame was over its size limit
}

func (e *ProtocolError) Error() string {
	return "auth-broker " + e.Op + ": invalid response: " + e.Detail
}

// ErrTooLarge matches (errors.Is) a ProtocolError for a body or frame over
// its size limit.
var ErrTooLarge = errors.New("auth-broker response over its size limit")

func (e *ProtocolError) Is(target error) bool { return target == ErrTooLarge && e.TooLarge }

func protoErr(op, format string, args ...any) *ProtocolError {
	return &ProtocolError{Op: op, Detail: fmt.Sprintf(format, args...)}
}

func quoteShort(s string) string {
	if len(s) > 32 {
		s = s[:32] + "…"
	}
	return strconv.Quote(s)
}

// fingerprintSeed keys the token fingerprints. It is fixed for the life of
// the process so rotations are detected across reconnects, and never leaves
// it, so a fingerprint cannot be tested against a guessed token.
var fingerprintSeed = maphash.MakeSeed()

func fingerprint(raw []byte) uint64 {
	h := maphash.Bytes(fingerprintSeed, raw)
	if h == 0 {
		h = 1 // 0 means "no fingerprint"
	}
	return h
}

// addSat adds d to t unless that would leave time.Time's range of
// sensible values; ok is false for effectively-never instants.
func addSat(t time.Time, d time.Duration) (time.Time, bool) {
	if d == math.MaxInt64 || d == math.MinInt64 {
		return time.Time{}, false
	}
	return t.Add(d), true
}

// Snapshot is a decoded full SnapshotResponse.
type Snapshot struct {
	Generation  int64
	GeneratedAt time.Time
	ServerNow   time.Time
	ReceivedAt  time.Time
	Refresher   Refresher
	Entries     []*Entry
}

// StreamFrame is one decoded event of /v1/snapshot/stream.
type StreamFrame struct {
	Kind       string // FrameSnapshot, FrameEntry or FrameRemoved
	Generation int64
	ServerNow  time.Time
	ReceivedAt time.Time
	Refresher  Refresher
	Snapshot   *Snapshot // Kind == FrameSnapshot
	Entry      *Entry    // Kind == FrameEntry
	RemovedID  int64     // Kind == FrameRemoved
}

// The keys of each object the decoders read; any other key is skipped
// (docs/broker-protocol.md §1).
var (
	frameFields      = []string{"kind", "generation", "generatedAt", "serverNowMs", "refresher", "credentials", "entry", "id"}
	refresherFields  = []string{"enabled", "intervalMs", "skewMs", "nextSweepInMs"}
	entryFields      = []string{"id", "provider", "credential", "identityKey", "rotatesInMs", "blocks"}
	credentialFields = []string{"type", "access", "key", "refresh", "expires", "authorizedAt", "email", "accountId",
		"projectId", "orgId", "orgName", "enterpriseUrl", "apiEndpoint", "source"}
	blockFields     = []string{"providerKey", "blockScope", "blockedUntilMs", "updatedAtMs"}
	tombstoneFields = []string{"id", "provider", "type", "email", "accountId", "orgId", "orgName", "cause", "disabledAtMs"}
)

// FrameDecoder decodes the frames of one stream connection; the strings
// the frames repeat (providers, emails, identity keys) are kept once. Not
// safe for concurrent use.
type FrameDecoder struct {
	r    reader
	pool stringPool
}

// Decode decodes one frame received at recv. The frame and its entry are
// new values that nothing else refers to.
func (d *FrameDecoder) Decode(data []byte, recv time.Time) (*StreamFrame, error) {
	d.r.reset("stream", data)
	d.r.pool = &d.pool
	f := d.r.frame(recv, false)
	if err := d.r.finish(); err != nil {
		return nil, err
	}
	return f, nil
}

func decodeSnapshot(op string, data []byte, recv time.Time) (*Snapshot, error) {
	r := newReader(op, data, nil)
	f := r.frame(recv, true)
	if err := r.finish(); err != nil {
		return nil, err
	}
	return f.Snapshot, nil
}

// frame reads a stream frame of any kind or, with document set, the
// answer of GET /v1/snapshot (a snapshot frame without its kind).
func (r *reader) frame(recv time.Time, document bool) *StreamFrame {
	f := &StreamFrame{ReceivedAt: recv}
	var (
		generatedAt                            time.Time
		hasGen, hasNow, hasGenAt, hasRefresher bool
		hasCreds, hasEntry, hasID              bool
		entries                                []Entry
	)
	r.object(frameFields, func(key string) {
		switch key {
		case "kind":
			f.Kind = r.str()
		case "generation":
			f.Generation, hasGen = numInt(r.number())
		case "generatedAt":
			generatedAt, hasGenAt = msTime(r.number())
		case "serverNowMs":
			f.ServerNow, hasNow = msTime(r.number())
		case "refresher":
			hasRefresher = r.refresher(&f.Refresher, recv)
		case "credentials": // one slice for all: a full snapshot replaces them together
			entries = []Entry{}
			hasCreds = r.array(func() {
				entries = append(entries, Entry{})
				r.entry(&entries[len(entries)-1], recv)
			})
		case "entry":
			f.Entry = new(Entry)
			hasEntry = r.entry(f.Entry, recv)
		case "id":
			f.RemovedID, hasID = numInt(r.number())
		}
	})
	if document {
		f.Kind = FrameSnapshot
	}
	switch f.Kind {
	case FrameSnapshot, FrameEntry, FrameRemoved:
	case "":
		r.require(false, "kind")
	default:
		r.fail("kind", "unknown frame kind %s", quoteShort(f.Kind))
	}
	_ = r.require(hasGen, "generation") && r.require(hasNow, "serverNowMs") && r.require(hasRefresher, "refresher")
	switch f.Kind {
	case FrameSnapshot:
		_ = r.require(hasGenAt, "generatedAt") && r.require(hasCreds, "credentials")
		s := &Snapshot{Generation: f.Generation, GeneratedAt: generatedAt, ServerNow: f.ServerNow, ReceivedAt: recv,
			Refresher: f.Refresher, Entries: make([]*Entry, len(entries))}
		for i := range entries {
			s.Entries[i] = &entries[i]
		}
		f.Snapshot, f.Entry = s, nil
	case FrameEntry:
		r.require(hasEntry, "entry")
	case FrameRemoved:
		r.require(hasID, "id")
		f.Entry = nil
	}
	if r.err != nil {
		return nil
	}
	return f
}

func (r *reader) refresher(f *Refresher, recv time.Time) bool {
	var next time.Duration
	var hasEnabled, hasInterval, hasSkew, hasNext bool
	r.object(refresherFields, func(key string) {
		switch key {
		case "enabled":
			f.Enabled, hasEnabled = r.boolean()
		case "intervalMs":
			f.Interval, hasInterval = msDuration(r.number())
		case "skewMs":
			f.Skew, hasSkew = msDuration(r.number())
		case "nextSweepInMs":
			next, hasNext = msDuration(r.number())
		}
	})
	ok := r.require(hasEnabled, "enabled") && r.require(hasInterval, "intervalMs") &&
		r.require(hasSkew, "skewMs") && r.require(hasNext, "nextSweepInMs")
	if ok && f.Enabled {
		f.NextSweep, _ = addSat(recv, next)
	}
	return ok
}

// entry reads a SnapshotEntry, or the CredentialEntry of a refresh answer
// (which has no rotatesInMs: HasRotatesIn stays false).
func (r *reader) entry(e *Entry, recv time.Time) bool {
	e.ReceivedAt = recv
	hasID, hasCred := false, false
	r.object(entryFields, func(key string) {
		switch key {
		case "id":
			e.ID, hasID = numInt(r.number())
		case "provider":
			e.Provider = r.str()
		case "credential":
			hasCred = r.credential(&e.Credential)
		case "identityKey":
			e.IdentityKey = r.str()
		case "rotatesInMs":
			if raw := r.number(); raw != nil {
				if e.RotatesIn, e.HasRotatesIn = msDuration(raw); !e.HasRotatesIn {
					r.fail("", "out of range")
				}
			}
		case "blocks":
			r.array(func() { e.Blocks = append(e.Blocks, r.block()) })
		}
	})
	return r.require(hasID, "id") && r.require(e.Provider != "", "provider") && r.require(hasCred, "credential")
}

// credential reads a SnapshotCredential. The token (access or key) is
// reduced to a fingerprint on the spot; extension keys are skipped
// unread, whatever they hold (docs/broker-protocol.md §4.1).
func (r *reader) credential(c *Credential) bool {
	hasSecret, hasExpires := false, false
	r.object(credentialFields, func(key string) {
		switch key {
		case "type":
			c.Type = r.str()
		case "access", "key":
			if !r.expect('"') {
				r.require(false, "") // null
				return
			}
			c.fingerprint, hasSecret = fingerprint(r.value()), true
		case "refresh": // always "__remote__"
			r.skip()
		case "expires":
			raw := r.number()
			hasExpires = raw != nil
			c.Expires, c.HasExpires = msTime(raw)
		case "authorizedAt":
			c.AuthorizedAt, _ = msTime(r.number())
		case "email":
			c.Email = r.str()
		case "accountId":
			c.AccountID = r.str()
		case "projectId":
			c.ProjectID = r.str()
		case "orgId":
			c.OrgID = r.str()
		case "orgName":
			c.OrgName = r.str()
		case "enterpriseUrl":
			c.EnterpriseURL = r.str()
		case "apiEndpoint":
			c.APIEndpoint = r.str()
		case "source":
			c.Source = r.str()
		}
	})
	switch c.Type {
	case TypeOAuth:
		return r.require(hasSecret, "access") && r.require(hasExpires, "expires")
	case TypeAPIKey:
		c.Expires, c.HasExpires, c.AuthorizedAt = time.Time{}, false, time.Time{}
		return r.require(hasSecret, "key")
	case "":
		return r.require(false, "type")
	}
	r.fail("type", "unknown credential type %s", quoteShort(c.Type))
	return false
}

func (r *reader) block() Block {
	var b Block
	hasKey, hasUntil := false, false
	r.object(blockFields, func(key string) {
		switch key {
		case "providerKey":
			hasKey = r.peek() == '"'
			b.ProviderKey = r.str()
		case "blockScope":
			b.Scope = r.str()
		case "blockedUntilMs":
			b.BlockedUntil, hasUntil = msTime(r.number())
		case "updatedAtMs":
			b.UpdatedAt, _ = msTime(r.number())
		}
	})
	_ = r.require(hasKey, "providerKey") && r.require(hasUntil, "blockedUntilMs")
	return b
}

// Health is the answer of GET /v1/healthz.
type Health struct {
	OK      bool
	Version string
}

func decodeHealth(op string, body []byte) (Health, error) {
	r := newReader(op, body, nil)
	var h Health
	r.object([]string{"ok", "version"}, func(key string) {
		if key == "ok" {
			h.OK, _ = r.boolean()
		} else {
			h.Version = r.str()
		}
	})
	return h, r.finish()
}

// decodeEntryAnswer decodes the answer of POST /v1/credential/:id/refresh:
// {"entry": CredentialEntry}.
func decodeEntryAnswer(op string, body []byte, recv time.Time) (*Entry, error) {
	r := newReader(op, body, nil)
	e := new(Entry)
	hasEntry := false
	r.object([]string{"entry"}, func(string) { hasEntry = r.entry(e, recv) })
	r.require(hasEntry, "entry")
	return e, r.finish()
}

// decodeOKAnswer decodes the answer of POST /v1/credential/:id/disable:
// {"ok": true}.
func decodeOKAnswer(op string, body []byte) error {
	r := newReader(op, body, nil)
	ok := false
	r.object([]string{"ok"}, func(string) { ok, _ = r.boolean() })
	r.require(ok, "ok")
	return r.finish()
}

// decodeDisabled decodes the answer of GET /v1/credentials/disabled.
func decodeDisabled(op string, body []byte) ([]Tombstone, error) {
	r := newReader(op, body, nil)
	var out []Tombstone
	r.object([]string{"generatedAt", "disabled"}, func(key string) {
		if key == "generatedAt" {
			r.skip()
			return
		}
		list := []Tombstone{}
		if r.array(func() { list = append(list, r.tombstone()) }) {
			out = list
		}
	})
	r.require(out != nil, "disabled")
	if err := r.finish(); err != nil {
		return nil, err
	}
	return out, nil
}

func (r *reader) tombstone() Tombstone {
	var t Tombstone
	hasID := false
	r.object(tombstoneFields, func(key string) {
		switch key {
		case "id":
			t.ID, hasID = numInt(r.number())
		case "provider":
			t.Provider = r.str()
		case "type":
			t.Type = r.str()
		case "email":
			t.Email = r.str()
		case "accountId":
			t.AccountID = r.str()
		case "orgId":
			t.OrgID = r.str()
		case "orgName":
			t.OrgName = r.str()
		case "cause":
			t.Cause = r.str()
		case "disabledAtMs":
			t.DisabledAt, _ = msTime(r.number())
		}
	})
	_ = r.require(hasID, "id") && r.require(t.Provider != "", "provider")
	return t
}

// errorMessage is the "error" text of an error answer, "" when the body
// is not such an answer (a proxy's HTML page, say).
func errorMessage(body []byte) string {
	r := newReader("", body, nil)
	msg := ""
	r.object([]string{"error"}, func(string) { msg = r.plainStr() })
	if r.finish() != nil {
		return ""
	}
	return msg
}
