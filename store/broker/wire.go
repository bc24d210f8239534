package broker

import (
	"hash/maphash"
	"math"
	"strconv"
	"time"
)

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

// FrameDecoder decodes the frames of one stream connection; the strings
// every frame repeats (providers, credential types) are kept once. Not
// safe for concurrent use.
type FrameDecoder struct {
	r    reader
	pool stringPool
}

// Decode decodes one frame received at recv. The frame and its entry are
// new values that nothing else refers to.
func (d *FrameDecoder) Decode(data []byte, recv time.Time) (*StreamFrame, error) {
	d.r.reset("stream", data)
	d.r.pool, d.r.recv = &d.pool, recv
	f, err := d.r.frame(false)
	d.r.reset("", nil) // let go of data, which may be a snapshot of megabytes
	return f, err
}

func decodeSnapshot(op string, data []byte, recv time.Time) (*Snapshot, error) {
	r := newReader(op, data, nil)
	r.recv = recv
	f, err := r.frame(true)
	if err != nil {
		return nil, err
	}
	return f.Snapshot, nil
}

// wireFrame is a frame of any kind as read, before its kind is checked.
type wireFrame struct {
	StreamFrame
	generatedAt                     time.Time
	hasGeneratedAt, hasID, hasCreds bool
	document                        bool    // GET /v1/snapshot: no kind
	entries                         []Entry // a snapshot's: one slice, as they are replaced together
}

// The keys of each object the decoders read; any other key is skipped
// (docs/broker-protocol.md §1).
var frameFields = []field[wireFrame]{
	{"kind", optional, func(r *reader, f *wireFrame) bool {
		switch r.text(&f.Kind); f.Kind {
		case FrameSnapshot, FrameEntry, FrameRemoved:
		default:
			if !f.document {
				r.fail("", "unknown frame kind %s", quoteShort(f.Kind))
			}
		}
		return true
	}},
	{"generation", required, func(r *reader, f *wireFrame) bool { return r.int(&f.Generation) }},
	{"generatedAt", optional, func(r *reader, f *wireFrame) bool { f.hasGeneratedAt = r.time(&f.generatedAt); return true }},
	{"serverNowMs", required, func(r *reader, f *wireFrame) bool { return r.time(&f.ServerNow) }},
	{"refresher", required, func(r *reader, f *wireFrame) bool { return r.refresher(&f.Refresher) }},
	{"credentials", optional, func(r *reader, f *wireFrame) bool {
		f.entries = []Entry{}
		f.hasCreds = r.array(func() {
			f.entries = append(f.entries, Entry{})
			r.require(r.entry(&f.entries[len(f.entries)-1]), "")
		})
		return true
	}},
	{"entry", optional, func(r *reader, f *wireFrame) bool {
		f.Entry = new(Entry)
		if !r.entry(f.Entry) {
			f.Entry = nil
		}
		return true
	}},
	{"id", optional, func(r *reader, f *wireFrame) bool { f.hasID = r.int(&f.RemovedID); return true }},
}

// frame decodes a whole document: a stream frame of any kind or, with
// document set, the answer of GET /v1/snapshot (a snapshot frame without
// its kind).
func (r *reader) frame(document bool) (*StreamFrame, error) {
	w := &wireFrame{StreamFrame: StreamFrame{ReceivedAt: r.recv}, document: document}
	readObject(r, w, frameFields)
	f := &w.StreamFrame
	if document {
		f.Kind = FrameSnapshot
	}
	switch f.Kind {
	case FrameSnapshot:
		_ = r.require(w.hasGeneratedAt, "generatedAt") && r.require(w.hasCreds, "credentials")
		s := &Snapshot{Generation: f.Generation, GeneratedAt: w.generatedAt, ServerNow: f.ServerNow, ReceivedAt: r.recv,
			Refresher: f.Refresher, Entries: make([]*Entry, len(w.entries))}
		for i := range w.entries {
			s.Entries[i] = &w.entries[i]
		}
		f.Snapshot, f.Entry = s, nil
	case FrameEntry:
		r.require(f.Entry != nil, "entry")
	case FrameRemoved:
		r.require(w.hasID, "id")
		f.Entry = nil
	default:
		r.require(false, "kind")
	}
	if err := r.finish(); err != nil {
		return nil, err
	}
	return f, nil
}

var refresherFields = []field[Refresher]{
	{"enabled", required, func(r *reader, f *Refresher) bool { return r.bool(&f.Enabled) }},
	{"intervalMs", required, func(r *reader, f *Refresher) bool { return r.duration(&f.Interval) }},
	{"skewMs", required, func(r *reader, f *Refresher) bool { return r.duration(&f.Skew) }},
	{"nextSweepInMs", required, func(r *reader, f *Refresher) bool {
		var next time.Duration
		ok := r.duration(&next)
		f.NextSweep, _ = addSat(r.recv, next)
		return ok
	}},
}

func (r *reader) refresher(f *Refresher) bool {
	ok := readObject(r, f, refresherFields)
	if !f.Enabled {
		f.NextSweep = time.Time{}
	}
	return ok
}

// entryFields read a SnapshotEntry, or the CredentialEntry of a refresh
// answer (which has no rotatesInMs: HasRotatesIn stays false).
var entryFields = []field[Entry]{
	{"id", required, func(r *reader, e *Entry) bool { return r.int(&e.ID) }},
	{"provider", required, func(r *reader, e *Entry) bool { return r.text(&e.Provider) && e.Provider != "" }},
	{"credential", required, func(r *reader, e *Entry) bool { return r.credential(&e.Credential) }},
	{"identityKey", optional, func(r *reader, e *Entry) bool { return r.plain(&e.IdentityKey) }},
	{"rotatesInMs", optional, func(r *reader, e *Entry) bool {
		if raw := r.number(); raw != nil {
			if e.RotatesIn, e.HasRotatesIn = msDuration(raw); !e.HasRotatesIn {
				r.fail("", "out of range")
			}
		}
		return true
	}},
	{"blocks", optional, func(r *reader, e *Entry) bool { return objects(r, &e.Blocks, blockFields) }},
}

// entry reads an entry; false for null.
func (r *reader) entry(e *Entry) bool {
	e.ReceivedAt = r.recv
	return readObject(r, e, entryFields)
}

var blockFields = []field[Block]{
	{"providerKey", required, func(r *reader, b *Block) bool { return r.text(&b.ProviderKey) }},
	{"blockScope", optional, func(r *reader, b *Block) bool { return r.text(&b.Scope) }},
	{"blockedUntilMs", required, func(r *reader, b *Block) bool { return r.time(&b.BlockedUntil) }},
	{"updatedAtMs", optional, func(r *reader, b *Block) bool { return r.time(&b.UpdatedAt) }},
}

// credentialFields read a SnapshotCredential. The token (access or key)
// is reduced to a fingerprint on the spot; extension keys are skipped
// unread, whatever they hold (docs/broker-protocol.md §4.1).
var credentialFields = []field[Credential]{
	{"type", optional, func(r *reader, c *Credential) bool { return r.text(&c.Type) }},
	{"access", optional, (*reader).secret},
	{"key", optional, (*reader).secret},
	{"refresh", optional, func(r *reader, c *Credential) bool { r.skip(); return true }}, // always "__remote__"
	{"expires", optional, func(r *reader, c *Credential) bool { // there, even if out of range
		raw := r.number()
		c.Expires, c.HasExpires = msTime(raw)
		return raw != nil
	}},
	{"authorizedAt", optional, func(r *reader, c *Credential) bool { return r.time(&c.AuthorizedAt) }},
	{"email", optional, func(r *reader, c *Credential) bool { return r.plain(&c.Email) }},
	{"accountId", optional, func(r *reader, c *Credential) bool { return r.plain(&c.AccountID) }},
	{"projectId", optional, func(r *reader, c *Credential) bool { return r.plain(&c.ProjectID) }},
	{"orgId", optional, func(r *reader, c *Credential) bool { return r.plain(&c.OrgID) }},
	{"orgName", optional, func(r *reader, c *Credential) bool { return r.plain(&c.OrgName) }},
	{"enterpriseUrl", optional, func(r *reader, c *Credential) bool { return r.plain(&c.EnterpriseURL) }},
	{"apiEndpoint", optional, func(r *reader, c *Credential) bool { return r.plain(&c.APIEndpoint) }},
	{"source", optional, func(r *reader, c *Credential) bool { return r.text(&c.Source) }},
}

// secret reads access or key: a string, of which only a fingerprint is
// kept.
func (r *reader) secret(c *Credential) bool {
	v := r.scalar('"')
	if v != nil {
		c.fingerprint = fingerprint(v)
	}
	return r.require(v != nil, "") // null
}

// credential reads a credential and checks the fields its type requires.
func (r *reader) credential(c *Credential) bool {
	if !readObject(r, c, credentialFields) {
		return false
	}
	switch c.Type {
	case TypeOAuth:
		return r.require(c.fingerprint != 0, "access") && r.require(has(r, credentialFields, "expires"), "expires")
	case TypeAPIKey:
		c.Expires, c.HasExpires, c.AuthorizedAt = time.Time{}, false, time.Time{}
		return r.require(c.fingerprint != 0, "key")
	case "":
		return r.require(false, "type")
	}
	r.fail("type", "unknown credential type %s", quoteShort(c.Type))
	return false
}

// Health is the answer of GET /v1/healthz.
type Health struct {
	OK      bool
	Version string
}

var healthFields = []field[Health]{
	{"ok", optional, func(r *reader, h *Health) bool { return r.bool(&h.OK) }},
	{"version", optional, func(r *reader, h *Health) bool { return r.text(&h.Version) }},
}

func decodeHealth(op string, body []byte) (h Health, err error) {
	err = decodeDocument(newReader(op, body, nil), &h, healthFields)
	return h, err
}

// entryAnswerFields read the answer of POST /v1/credential/:id/refresh:
// {"entry": CredentialEntry}.
var entryAnswerFields = []field[Entry]{{"entry", required, (*reader).entry}}

func decodeEntryAnswer(op string, body []byte, recv time.Time) (*Entry, error) {
	r := newReader(op, body, nil)
	r.recv = recv
	e := new(Entry)
	return e, decodeDocument(r, e, entryAnswerFields)
}

// okAnswerFields read the answer of POST /v1/credential/:id/disable:
// {"ok": true}.
var okAnswerFields = []field[bool]{{"ok", required, func(r *reader, ok *bool) bool { return r.bool(ok) && *ok }}}

func decodeOKAnswer(op string, body []byte) (ok bool, err error) {
	err = decodeDocument(newReader(op, body, nil), &ok, okAnswerFields)
	return ok, err
}

// disabledFields read the answer of GET /v1/credentials/disabled.
var disabledFields = []field[[]Tombstone]{
	{"generatedAt", optional, func(r *reader, _ *[]Tombstone) bool { r.skip(); return true }},
	{"disabled", required, func(r *reader, ts *[]Tombstone) bool {
		*ts = []Tombstone{}
		return objects(r, ts, tombstoneFields)
	}},
}

var tombstoneFields = []field[Tombstone]{
	{"id", required, func(r *reader, t *Tombstone) bool { return r.int(&t.ID) }},
	{"provider", required, func(r *reader, t *Tombstone) bool { return r.text(&t.Provider) && t.Provider != "" }},
	{"type", optional, func(r *reader, t *Tombstone) bool { return r.text(&t.Type) }},
	{"email", optional, func(r *reader, t *Tombstone) bool { return r.text(&t.Email) }},
	{"accountId", optional, func(r *reader, t *Tombstone) bool { return r.text(&t.AccountID) }},
	{"orgId", optional, func(r *reader, t *Tombstone) bool { return r.text(&t.OrgID) }},
	{"orgName", optional, func(r *reader, t *Tombstone) bool { return r.text(&t.OrgName) }},
	{"cause", optional, func(r *reader, t *Tombstone) bool { return r.text(&t.Cause) }},
	{"disabledAtMs", optional, func(r *reader, t *Tombstone) bool { return r.time(&t.DisabledAt) }},
}

func decodeDisabled(op string, body []byte) ([]Tombstone, error) {
	var ts []Tombstone
	if err := decodeDocument(newReader(op, body, nil), &ts, disabledFields); err != nil {
		return nil, err
	}
	return ts, nil
}

var errorFields = []field[string]{{"error", optional, (*reader).plain}}

// errorMessage is the "error" text of an error answer, "" when the body
// is not such an answer (a proxy's HTML page, say).
func errorMessage(body []byte) string {
	var msg string
	if decodeDocument(newReader("", body, nil), &msg, errorFields) != nil {
		return ""
	}
	return msg
}
