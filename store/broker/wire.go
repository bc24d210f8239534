package broker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"math"
	"strconv"
	"time"
)

// ProtocolError reports a response or frame the broker should never send:
// malformed JSON, missing required fields, an unexpected content type, an
// oversized frame. Its text never quotes the offending payload, which may
// carry token material.
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

// fieldError is raised inside decoding; decode() attaches the operation.
type fieldError struct{ detail string }

func (e *fieldError) Error() string { return e.detail }

func missing(what string) error { return &fieldError{detail: "missing or invalid " + what} }

// decode unmarshals a broker body into v and turns every failure into a
// ProtocolError whose text is built from field names only.
func decode(op string, data []byte, v any) error {
	err := json.Unmarshal(data, v)
	if err == nil {
		return nil
	}
	return jsonProtoErr(op, err)
}

func jsonProtoErr(op string, err error) error {
	var (
		se *json.SyntaxError
		te *json.UnmarshalTypeError
		fe *fieldError
		pe *ProtocolError
	)
	switch {
	case errors.As(err, &pe):
		return pe
	case errors.As(err, &fe):
		return protoErr(op, "%s", fe.detail)
	case errors.As(err, &se):
		return protoErr(op, "malformed JSON at offset %d", se.Offset)
	case errors.As(err, &te):
		return protoErr(op, "field %q has the wrong type", te.Field)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return protoErr(op, "truncated JSON")
	default:
		return protoErr(op, "malformed JSON")
	}
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

// wireCredential is decoded by hand with exact (case-sensitive) key
// matching: encoding/json would fold an unknown extension key such as
// "EMAIL" into Email. Token material (access, key) is reduced to a
// fingerprint on the spot; unknown keys are skipped without being copied.
type wireCredential struct {
	Type        string
	Fingerprint uint64
	HasSecret   bool
	// expires and authorizedAt are parsed on the spot; hasExpires: the
	// key was there with a number, expiresOK: a representable one.
	hasExpires, expiresOK bool
	expires, authorizedAt time.Time
	Email                 string
	AccountID             string
	ProjectID             string
	OrgID                 string
	OrgName               string
	EnterpriseURL         string
	APIEndpoint           string
	Source                string
	// pool, when set, supplies strings the stream has sent before.
	pool *stringPool
}

func (w *wireCredential) UnmarshalJSON(data []byte) error {
	p := w.pool
	*w = wireCredential{pool: p}
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return missing("credential object")
	}
	return walkObject(data, func(key, val []byte) error {
		var err error
		switch string(key) {
		case "type":
			w.Type, err = credentialType(val)
		case "access", "key":
			if len(val) == 0 || val[0] != '"' {
				return missing("credential." + string(key))
			}
			w.Fingerprint, w.HasSecret = fingerprint(val), true
		case "expires":
			var ok bool
			if ok, err = numberLiteral(val, "credential.expires"); ok {
				w.hasExpires = true
				w.expires, w.expiresOK = msTimeBytes(val)
			}
		case "authorizedAt":
			var ok bool
			if ok, err = numberLiteral(val, "credential.authorizedAt"); ok {
				w.authorizedAt, _ = msTimeBytes(val)
			}
		case "email":
			w.Email, err = p.jsonString(val, "credential.email")
		case "accountId":
			w.AccountID, err = p.jsonString(val, "credential.accountId")
		case "projectId":
			w.ProjectID, err = p.jsonString(val, "credential.projectId")
		case "orgId":
			w.OrgID, err = p.jsonString(val, "credential.orgId")
		case "orgName":
			w.OrgName, err = p.jsonString(val, "credential.orgName")
		case "enterpriseUrl":
			w.EnterpriseURL, err = p.jsonString(val, "credential.enterpriseUrl")
		case "apiEndpoint":
			w.APIEndpoint, err = p.jsonString(val, "credential.apiEndpoint")
		case "source":
			w.Source, err = p.jsonString(val, "credential.source")
		}
		return err
	})
}

type wireBlock struct {
	ProviderKey    *string     `json:"providerKey"`
	BlockScope     string      `json:"blockScope"`
	BlockedUntilMs json.Number `json:"blockedUntilMs"`
	UpdatedAtMs    json.Number `json:"updatedAtMs"`
}

type wireEntry struct {
	ID          json.Number     `json:"id"`
	Provider    string          `json:"provider"`
	Credential  *wireCredential `json:"credential"`
	IdentityKey *string         `json:"identityKey"`
	RotatesInMs json.Number     `json:"rotatesInMs"`
	Blocks      []wireBlock     `json:"blocks"`
}

type wireRefresher struct {
	Enabled       *bool       `json:"enabled"`
	IntervalMs    json.Number `json:"intervalMs"`
	SkewMs        json.Number `json:"skewMs"`
	NextSweepInMs json.Number `json:"nextSweepInMs"`
}

// wireFrame is a SnapshotResponse, a stream frame of any kind, or both.
type wireFrame struct {
	Kind        string         `json:"kind"`
	Generation  json.Number    `json:"generation"`
	GeneratedAt json.Number    `json:"generatedAt"`
	ServerNowMs json.Number    `json:"serverNowMs"`
	Refresher   *wireRefresher `json:"refresher"`
	Credentials []wireEntry    `json:"credentials"`
	Entry       *wireEntry     `json:"entry"`
	ID          json.Number    `json:"id"`
}

// numInt accepts an integer or a float (the broker is JavaScript: 8.64e15
// is a valid expires) and truncates toward zero.
func numInt(n json.Number) (int64, bool) {
	if n == "" {
		return 0, false
	}
	if v, err := strconv.ParseInt(string(n), 10, 64); err == nil {
		return v, true
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f >= math.MaxInt64 || f <= math.MinInt64 {
		return 0, false
	}
	return int64(f), true
}

func numFloat(n json.Number) (float64, bool) {
	if n == "" {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

// msTime converts epoch milliseconds (integer or fractional) to a time.
func msTime(n json.Number) (time.Time, bool) {
	if v, err := strconv.ParseInt(string(n), 10, 64); err == nil {
		return time.UnixMilli(v), true
	}
	f, ok := numFloat(n)
	if !ok || f >= math.MaxInt64 || f <= math.MinInt64 {
		return time.Time{}, false
	}
	whole := math.Floor(f)
	return time.UnixMilli(int64(whole)).Add(time.Duration((f - whole) * 1e6)), true
}

const maxDurationMs = int64(math.MaxInt64 / int64(time.Millisecond))

// msDuration converts milliseconds to a Duration, saturating instead of
// overflowing (a disabled refresher sends 2^53-1).
func msDuration(n json.Number) (time.Duration, bool) {
	v, ok := numInt(n)
	if !ok {
		return 0, false
	}
	if v > maxDurationMs {
		return math.MaxInt64, true
	}
	if v < -maxDurationMs {
		return math.MinInt64, true
	}
	return time.Duration(v) * time.Millisecond, true
}

// addSat adds d to t unless that would leave time.Time's range of
// sensible values; ok is false for effectively-never instants.
func addSat(t time.Time, d time.Duration) (time.Time, bool) {
	if d == math.MaxInt64 || d == math.MinInt64 {
		return time.Time{}, false
	}
	return t.Add(d), true
}

func (w *wireRefresher) convert(recv time.Time) (Refresher, error) {
	if w == nil || w.Enabled == nil {
		return Refresher{}, missing("refresher")
	}
	interval, ok1 := msDuration(w.IntervalMs)
	skew, ok2 := msDuration(w.SkewMs)
	next, ok3 := msDuration(w.NextSweepInMs)
	if !ok1 || !ok2 || !ok3 {
		return Refresher{}, missing("refresher schedule")
	}
	r := Refresher{Enabled: *w.Enabled, Interval: interval, Skew: skew}
	if r.Enabled {
		r.NextSweep, _ = addSat(recv, next)
	}
	return r, nil
}

func (w *wireCredential) convert() (Credential, error) {
	c := Credential{
		Type:          w.Type,
		Email:         w.Email,
		AccountID:     w.AccountID,
		ProjectID:     w.ProjectID,
		OrgID:         w.OrgID,
		OrgName:       w.OrgName,
		EnterpriseURL: w.EnterpriseURL,
		APIEndpoint:   w.APIEndpoint,
		Source:        w.Source,
		fingerprint:   w.Fingerprint,
	}
	switch w.Type {
	case TypeOAuth:
		if !w.HasSecret {
			return Credential{}, missing("credential.access")
		}
		if !w.hasExpires {
			return Credential{}, missing("credential.expires")
		}
		c.Expires, c.HasExpires = w.expires, w.expiresOK
		c.AuthorizedAt = w.authorizedAt
	case TypeAPIKey:
		if !w.HasSecret {
			return Credential{}, missing("credential.key")
		}
	case "":
		return Credential{}, missing("credential.type")
	default:
		return Credential{}, &fieldError{detail: "unknown credential type " + quoteShort(w.Type)}
	}
	return c, nil
}

// convert fills e from the wire entry. Entries coming from refresh/upload
// responses carry no rotatesInMs; they simply get HasRotatesIn false.
func (w *wireEntry) convert(e *Entry, recv time.Time) error {
	id, ok := numInt(w.ID)
	if !ok {
		return missing("entry id")
	}
	if w.Provider == "" {
		return missing("entry provider")
	}
	if w.Credential == nil {
		return missing("entry credential")
	}
	cred, err := w.Credential.convert()
	if err != nil {
		return err
	}
	*e = Entry{ID: id, Provider: w.Provider, Credential: cred, ReceivedAt: recv}
	if w.IdentityKey != nil {
		e.IdentityKey = *w.IdentityKey
	}
	if w.RotatesInMs != "" {
		if e.RotatesIn, ok = msDuration(w.RotatesInMs); !ok {
			return missing("entry rotatesInMs")
		}
		e.HasRotatesIn = true
	}
	if len(w.Blocks) > 0 {
		e.Blocks = make([]Block, len(w.Blocks))
		for i := range w.Blocks {
			wb := &w.Blocks[i]
			if wb.ProviderKey == nil {
				return missing("block providerKey")
			}
			until, ok := msTime(wb.BlockedUntilMs)
			if !ok {
				return missing("block blockedUntilMs")
			}
			b := Block{ProviderKey: *wb.ProviderKey, Scope: wb.BlockScope, BlockedUntil: until}
			if wb.UpdatedAtMs != "" {
				b.UpdatedAt, _ = msTime(wb.UpdatedAtMs)
			}
			e.Blocks[i] = b
		}
	}
	return nil
}

func quoteShort(s string) string {
	if len(s) > 32 {
		s = s[:32] + "…"
	}
	return strconv.Quote(s)
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

func (w *wireFrame) header(recv time.Time) (gen int64, now time.Time, r Refresher, err error) {
	var ok bool
	if gen, ok = numInt(w.Generation); !ok {
		return 0, time.Time{}, Refresher{}, missing("generation")
	}
	if now, ok = msTime(w.ServerNowMs); !ok {
		return 0, time.Time{}, Refresher{}, missing("serverNowMs")
	}
	r, err = w.Refresher.convert(recv)
	return gen, now, r, err
}

func (w *wireFrame) snapshot(recv time.Time) (*Snapshot, error) {
	gen, now, r, err := w.header(recv)
	if err != nil {
		return nil, err
	}
	generatedAt, ok := msTime(w.GeneratedAt)
	if !ok {
		return nil, missing("generatedAt")
	}
	if w.Credentials == nil {
		return nil, missing("credentials")
	}
	s := &Snapshot{Generation: gen, GeneratedAt: generatedAt, ServerNow: now, ReceivedAt: recv, Refresher: r,
		Entries: make([]*Entry, len(w.Credentials))}
	// One allocation for all entries: a full snapshot replaces them together.
	slab := make([]Entry, len(w.Credentials))
	for i := range w.Credentials {
		if err := w.Credentials[i].convert(&slab[i], recv); err != nil {
			return nil, err
		}
		s.Entries[i] = &slab[i]
	}
	return s, nil
}

func decodeSnapshot(op string, data []byte, recv time.Time) (*Snapshot, error) {
	var w wireFrame
	if err := decode(op, data, &w); err != nil {
		return nil, err
	}
	s, err := w.snapshot(recv)
	if err != nil {
		return nil, jsonProtoErr(op, err)
	}
	return s, nil
}

// FrameDecoder decodes the frames of one stream connection; the strings
// the frames repeat (providers, emails, ids) are kept once, and an entry
// the broker re-sends unchanged but for rotatesInMs is recognised from its
// bytes (see decodeDeltaFast). Not safe for concurrent use.
type FrameDecoder struct {
	pool stringPool
	// seen holds, per credential id, the last entry the fast path decoded
	// on this connection: a keyed hash of its bytes without the
	// rotatesInMs value, and the Entry they decoded to. Never token bytes.
	seen map[int64]seenEntry
}

// Decode decodes one frame received at recv.
func (d *FrameDecoder) Decode(data []byte, recv time.Time) (*StreamFrame, error) {
	return decodeFrame(data, recv, d)
}

// decodeFrame decodes one stream frame; d (optional) is the connection's
// decoder.
func decodeFrame(data []byte, recv time.Time, d *FrameDecoder) (*StreamFrame, error) {
	if f, ok := decodeDeltaFast(data, recv, d); ok {
		return f, nil
	}
	f, err := decodeFrameGeneral(data, recv)
	if err == nil && d != nil {
		d.forget(f)
	}
	return f, err
}

func decodeFrameGeneral(data []byte, recv time.Time) (*StreamFrame, error) {
	const op = "stream"
	var w wireFrame
	if err := decode(op, data, &w); err != nil {
		return nil, err
	}
	f, err := w.frame(recv)
	if err != nil {
		return nil, jsonProtoErr(op, err)
	}
	return f, nil
}

func (w *wireFrame) frame(recv time.Time) (*StreamFrame, error) {
	f := &StreamFrame{Kind: w.Kind, ReceivedAt: recv}
	switch w.Kind {
	case FrameSnapshot:
		s, err := w.snapshot(recv)
		if err != nil {
			return nil, err
		}
		f.Generation, f.ServerNow, f.Refresher, f.Snapshot = s.Generation, s.ServerNow, s.Refresher, s
		return f, nil
	case FrameEntry, FrameRemoved:
		var err error
		if f.Generation, f.ServerNow, f.Refresher, err = w.header(recv); err != nil {
			return nil, err
		}
		if w.Kind == FrameRemoved {
			id, ok := numInt(w.ID)
			if !ok {
				return nil, missing("removed id")
			}
			f.RemovedID = id
			return f, nil
		}
		if w.Entry == nil {
			return nil, missing("entry")
		}
		f.Entry = new(Entry)
		if err := w.Entry.convert(f.Entry, recv); err != nil {
			return nil, err
		}
		return f, nil
	case "":
		return nil, missing("kind")
	default:
		return nil, &fieldError{detail: "unknown frame kind " + quoteShort(w.Kind)}
	}
}

// Responses of the other routes.

type wireHealth struct {
	OK      bool   `json:"ok"`
	Version string `json:"version"`
}

// Health is the answer of GET /v1/healthz.
type Health struct {
	OK      bool
	Version string
}

type wireEntryResponse struct {
	Entry *wireEntry `json:"entry"`
}

type wireError struct {
	Error string `json:"error"`
}

type wireTombstone struct {
	ID           json.Number `json:"id"`
	Provider     string      `json:"provider"`
	Type         string      `json:"type"`
	Email        string      `json:"email"`
	AccountID    string      `json:"accountId"`
	OrgID        string      `json:"orgId"`
	OrgName      string      `json:"orgName"`
	Cause        string      `json:"cause"`
	DisabledAtMs json.Number `json:"disabledAtMs"`
}

type wireDisabled struct {
	Disabled []wireTombstone `json:"disabled"`
}

func (w *wireDisabled) convert() ([]Tombstone, error) {
	if w.Disabled == nil {
		return nil, missing("disabled")
	}
	out := make([]Tombstone, 0, len(w.Disabled))
	for _, t := range w.Disabled {
		id, ok := numInt(t.ID)
		if !ok || t.Provider == "" {
			return nil, missing("tombstone id/provider")
		}
		ts := Tombstone{ID: id, Provider: t.Provider, Type: t.Type, Email: t.Email, AccountID: t.AccountID,
			OrgID: t.OrgID, OrgName: t.OrgName, Cause: t.Cause}
		if t.DisabledAtMs != "" {
			ts.DisabledAt, _ = msTime(t.DisabledAtMs)
		}
		out = append(out, ts)
	}
	return out, nil
}
