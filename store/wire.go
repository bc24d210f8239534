package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ProtocolError reports a response or frame the broker should never send:
// malformed JSON, missing required fields, an unexpected content type, an
// oversized frame. Its text never quotes the offending payload, which may
// carry token material.
type ProtocolError struct {
	Op     string // e.g. "GET /v1/snapshot" or "stream"
	Detail string
}

func (e *ProtocolError) Error() string {
	return "auth-broker " + e.Op + ": invalid response: " + e.Detail
}

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

// numberLiteral: true for a number, false for null or nothing, an error
// for anything else (as jsonNumber).
func numberLiteral(val []byte, field string) (bool, error) {
	if len(val) == 0 || val[0] == 'n' {
		return false, nil
	}
	if !isNumber(val) {
		return false, missing(field)
	}
	return true, nil
}

// msTimeBytes is msTime of a number literal, without allocating for the
// usual integer.
func msTimeBytes(val []byte) (time.Time, bool) {
	if v, ok := smallInt(val); ok {
		return time.UnixMilli(v), true
	}
	return msTime(json.Number(val))
}

// smallInt parses an integer literal of up to 18 digits.
func smallInt(b []byte) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var v int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	if neg {
		v = -v
	}
	return v, true
}

// stringPool hands out one copy of the strings a stream keeps sending: an
// entry frame repeats the provider, identity key, email and account id of
// the entry it replaces, and a lookup by bytes allocates nothing. It holds
// two generations of stringPoolGen strings; when the current one fills it
// becomes the old one, so the pool stays bounded under churn. A nil pool
// just converts.
type stringPool struct {
	cur, old map[string]string
}

const stringPoolGen = 1 << 16

func (p *stringPool) get(b []byte) string {
	if p == nil {
		return string(b)
	}
	if s, ok := p.cur[string(b)]; ok {
		return s
	}
	s, ok := p.old[string(b)]
	if !ok {
		s = string(b)
	}
	p.add(s)
	return s
}

// share returns the pooled copy of s, pooling s when it is new.
func (p *stringPool) share(s string) string {
	if x, ok := p.cur[s]; ok {
		return x
	}
	if x, ok := p.old[s]; ok {
		s = x
	}
	p.add(s)
	return s
}

func (p *stringPool) add(s string) {
	if len(p.cur) >= stringPoolGen {
		p.old, p.cur = p.cur, nil
	}
	if p.cur == nil {
		p.cur = make(map[string]string)
	}
	p.cur[s] = s
}

// jsonString decodes an optional string value; null is "".
func jsonString(val []byte, field string) (string, error) {
	return (*stringPool)(nil).jsonString(val, field)
}

// jsonString is the package jsonString, drawing plain strings from p.
func (p *stringPool) jsonString(val []byte, field string) (string, error) {
	if len(val) == 0 || val[0] == 'n' {
		return "", nil
	}
	if val[0] != '"' {
		return "", missing(field)
	}
	inner := val[1 : len(val)-1]
	if bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
		return p.get(inner), nil
	}
	var s string
	if err := json.Unmarshal(val, &s); err != nil {
		return "", missing(field)
	}
	return s, nil
}

// walkObject calls fn for each member of a JSON object already known to be
// syntactically valid (encoding/json checks the whole document before it
// calls an UnmarshalJSON method). Keys are compared raw, so an escaped key
// never matches a known field.
func walkObject(data []byte, fn func(key, val []byte) error) error {
	i := skipWS(data, 1)
	if i < len(data) && data[i] == '}' {
		return nil
	}
	for i < len(data) {
		if data[i] != '"' {
			return missing("object key")
		}
		end := skipString(data, i)
		key := data[i+1 : end-1]
		i = skipWS(data, end)
		if i >= len(data) || data[i] != ':' {
			return missing("object member")
		}
		i = skipWS(data, i+1)
		vend := skipValue(data, i)
		if vend <= i {
			return missing("object value")
		}
		if err := fn(key, data[i:vend]); err != nil {
			return err
		}
		i = skipWS(data, vend)
		if i >= len(data) {
			break
		}
		if data[i] == '}' {
			return nil
		}
		if data[i] != ',' {
			return missing("object separator")
		}
		i = skipWS(data, i+1)
	}
	return missing("object end")
}

func skipWS(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipString returns the index just past the string starting at data[i].
func skipString(data []byte, i int) int {
	for j := i + 1; j < len(data); j++ {
		switch data[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(data)
}

func skipValue(data []byte, i int) int {
	if i >= len(data) {
		return i
	}
	switch data[i] {
	case '"':
		return skipString(data, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(data); j++ {
			switch data[j] {
			case '"':
				j = skipString(data, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return len(data)
	default:
		j := i
		for j < len(data) {
			switch data[j] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return j
			}
			j++
		}
		return j
	}
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
	Kind       string // EventSnapshot, EventEntry or EventRemoved
	Generation int64
	ServerNow  time.Time
	ReceivedAt time.Time
	Refresher  Refresher
	Snapshot   *Snapshot // Kind == EventSnapshot
	Entry      *Entry    // Kind == EventEntry
	RemovedID  int64     // Kind == EventRemoved
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

// decodeFrame decodes one stream frame; pool (optional) is the
// connection's string pool.
func decodeFrame(data []byte, recv time.Time, pool *stringPool) (*StreamFrame, error) {
	if f, ok := decodeDeltaFast(data, recv, pool); ok {
		return f, nil
	}
	return decodeFrameGeneral(data, recv)
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
	case EventSnapshot:
		s, err := w.snapshot(recv)
		if err != nil {
			return nil, err
		}
		f.Generation, f.ServerNow, f.Refresher, f.Snapshot = s.Generation, s.ServerNow, s.Refresher, s
		return f, nil
	case EventEntry, EventRemoved:
		var err error
		if f.Generation, f.ServerNow, f.Refresher, err = w.header(recv); err != nil {
			return nil, err
		}
		if w.Kind == EventRemoved {
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

type wireEntriesResponse struct {
	Entries []wireEntry `json:"entries"`
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

// Usage wire types. Reports and limits are open objects on the wire; only
// the fields below are read, and metadata only for its identity strings.

type wireUsage struct {
	GeneratedAt json.Number `json:"generatedAt"`
	Reports     *reportList `json:"reports"`
}

type wireReport struct {
	Provider  string                     `json:"provider"`
	FetchedAt json.Number                `json:"fetchedAt"`
	Limits    []wireLimit                `json:"limits"`
	Metadata  map[string]json.RawMessage `json:"metadata"`
}

type wireLimit struct {
	ID     string      `json:"id"`
	Label  string      `json:"label"`
	Scope  wireScope   `json:"scope"`
	Window *wireWindow `json:"window"`
	Amount wireAmount  `json:"amount"`
	Status string      `json:"status"`
}

type wireScope struct {
	Provider  string `json:"provider"`
	AccountID string `json:"accountId"`
	ProjectID string `json:"projectId"`
	OrgID     string `json:"orgId"`
	ModelID   string `json:"modelId"`
	Tier      string `json:"tier"`
	WindowID  string `json:"windowId"`
	Shared    bool   `json:"shared"`
}

type wireWindow struct {
	ID         string      `json:"id"`
	Label      string      `json:"label"`
	DurationMs json.Number `json:"durationMs"`
	ResetsAt   json.Number `json:"resetsAt"`
	ResetLabel string      `json:"resetLabel"`
}

type wireAmount struct {
	Used              *float64 `json:"used"`
	Limit             *float64 `json:"limit"`
	Remaining         *float64 `json:"remaining"`
	UsedFraction      *float64 `json:"usedFraction"`
	RemainingFraction *float64 `json:"remainingFraction"`
	Unit              string   `json:"unit"`
}

// UsageResponse is the answer of GET /v1/usage.
type UsageResponse struct {
	GeneratedAt time.Time
	Reports     []UsageReport
}

// metaString reads a metadata value the way the broker client does: only a
// string with non-blank content counts, and it is trimmed.
func metaString(m map[string]json.RawMessage, key string) string {
	raw, ok := m[key]
	if !ok || len(raw) == 0 || raw[0] != '"' {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return strings.TrimSpace(s)
}

func (w *wireUsage) convert() (*UsageResponse, error) {
	if w.Reports == nil {
		return nil, missing("reports")
	}
	out := &UsageResponse{Reports: w.Reports.reports}
	if out.Reports == nil {
		out.Reports = []UsageReport{}
	}
	if w.GeneratedAt != "" {
		out.GeneratedAt, _ = msTime(w.GeneratedAt)
	}
	return out, nil
}

// reportList decodes the reports array one report at a time and
// converts each as it goes: a 10k-report answer never exists in full in
// wire form (maps of raw metadata, duplicate strings) next to its result.
type reportList struct {
	reports []UsageReport
}

func (u *reportList) UnmarshalJSON(data []byte) error {
	u.reports = nil // a repeated key: the last one wins, as in JSON.parse
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil {
		return err
	} else if t != json.Delim('[') {
		return missing("reports")
	}
	// Thousands of reports repeat the same provider, limit ids, labels,
	// units and windows; the answer is kept for the usage TTL, so those
	// strings are kept once each.
	in := &stringPool{}
	for dec.More() {
		var wr wireReport
		if err := dec.Decode(&wr); err != nil {
			return err
		}
		r, err := wr.convert(in)
		if err != nil {
			return err
		}
		u.reports = append(u.reports, r)
	}
	_, err := dec.Token()
	return err
}

func (wr *wireReport) convert(in *stringPool) (UsageReport, error) {
	if wr.Provider == "" {
		return UsageReport{}, missing("report provider")
	}
	r := UsageReport{Provider: in.share(wr.Provider)}
	if wr.FetchedAt != "" {
		r.FetchedAt, _ = msTime(wr.FetchedAt)
	}
	r.Metadata = UsageMetadata{
		Email:     metaString(wr.Metadata, "email"),
		AccountID: metaString(wr.Metadata, "accountId"),
		ProjectID: metaString(wr.Metadata, "projectId"),
		OrgID:     metaString(wr.Metadata, "orgId"),
		OrgName:   metaString(wr.Metadata, "orgName"),
	}
	if r.Metadata.AccountID == "" {
		r.Metadata.AccountID = metaString(wr.Metadata, "account_id")
	}
	if r.Metadata.ProjectID == "" {
		r.Metadata.ProjectID = metaString(wr.Metadata, "project_id")
	}
	r.Limits = make([]UsageLimit, 0, len(wr.Limits))
	for _, wl := range wr.Limits {
		l := UsageLimit{
			ID: in.share(wl.ID), Label: in.share(wl.Label), Status: in.share(wl.Status),
			Scope: UsageScope(wl.Scope),
			Amount: UsageAmount{
				Used: wl.Amount.Used, Limit: wl.Amount.Limit, Remaining: wl.Amount.Remaining,
				UsedFraction: wl.Amount.UsedFraction, RemainingFraction: wl.Amount.RemainingFraction,
				Unit: in.share(wl.Amount.Unit),
			},
		}
		sc := &l.Scope
		sc.Provider, sc.ModelID, sc.Tier, sc.WindowID = in.share(sc.Provider), in.share(sc.ModelID), in.share(sc.Tier), in.share(sc.WindowID)
		if ww := wl.Window; ww != nil {
			win := &UsageWindow{ID: in.share(ww.ID), Label: in.share(ww.Label), ResetLabel: in.share(ww.ResetLabel)}
			if d, ok := msDuration(ww.DurationMs); ok {
				win.Duration = d
			}
			if ww.ResetsAt != "" {
				win.ResetsAt, _ = msTime(ww.ResetsAt)
			}
			l.Window = win
		}
		r.Limits = append(r.Limits, l)
	}
	return r, nil
}
