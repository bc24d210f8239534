package broker

import (
	"bytes"
	"encoding/json"
	"hash/maphash"
	"math"
	"time"
)

// decodeDeltaFast decodes the common entry and removed frames without
// reflection: encoding/json costs ~20 allocations per frame (a string per
// number, a pointer per optional field), this path ~6 (the frame, and the
// strings the entry keeps). It only accepts what it fully understands: a
// valid document whose keys are all known, spelled exactly and unique, with
// plain values. Anything else, malformed input included, returns ok=false
// and decodeFrame takes the general path, which gives the same result or
// the canonical error. So the fast path can never accept what the general
// path rejects, nor decode a frame differently (a differential test and a
// fuzz target check both).
//
// With a decoder d, an entry whose bytes, the rotatesInMs value cut out,
// hash like those of the last entry d decoded for the same id is not
// decoded again (see unchanged): the broker re-sends every OAuth entry on
// every generation bump, nearly always unchanged but for rotatesInMs
// (docs/broker-protocol.md §4).
func decodeDeltaFast(data []byte, recv time.Time, d *FrameDecoder) (*StreamFrame, bool) {
	if len(data) == 0 || data[0] != '{' {
		return nil, false
	}
	var fr frameFields
	if !fr.split(data) {
		return nil, false
	}
	var key entryKey
	if d != nil && string(fr.kind) == `"entry"` && len(fr.entry) > 0 && fr.entry[0] == '{' {
		key = entryKeyOf(fr.entry)
		if f, ok := d.unchanged(&fr, &key, recv); ok {
			return f, true
		}
	}
	if !json.Valid(data) {
		return nil, false
	}
	// Numbers must be bare literals: the general path also accepts quoted
	// ones, and reports the errors.
	if !isNumber(fr.gen) || !isNumber(fr.now) || fr.refresher == nil {
		return nil, false
	}
	// The entry is allocated on its own: the mirror keeps it for long,
	// the frame is dropped after it is applied.
	f := &StreamFrame{ReceivedAt: recv}
	switch string(fr.kind) {
	case `"entry"`:
		if fr.id != nil || fr.entry == nil || fr.entry[0] != '{' {
			return nil, false
		}
		f.Kind = FrameEntry
	case `"removed"`:
		if fr.entry != nil || !isNumber(fr.id) {
			return nil, false
		}
		f.Kind = FrameRemoved
	default:
		return nil, false
	}
	if !fr.header(f, recv) {
		return nil, false
	}
	if f.Kind == FrameRemoved {
		var ok bool
		if f.RemovedID, ok = numInt(json.Number(fr.id)); !ok {
			return nil, false
		}
		if d != nil {
			delete(d.seen, f.RemovedID)
		}
		return f, true
	}
	var pool *stringPool
	if d != nil {
		pool = &d.pool
	}
	e := new(Entry)
	rotAt, ok := entryFast(fr.entry, e, recv, pool)
	if !ok {
		return nil, false
	}
	f.Entry = e
	if d != nil {
		d.remember(&key, e, rotAt)
	}
	return f, true
}

// frameFields are the raw values of an entry or removed frame's members.
type frameFields struct{ kind, gen, now, refresher, entry, id []byte }

// split finds the members of a frame that may not be valid JSON: it checks
// the object's punctuation, that every key is known, spelled exactly and
// unique, and that only whitespace follows the object. The values are
// left unchecked.
func (fr *frameFields) split(data []byte) bool {
	ok := true
	end, err := walkMembers(data, func(key, val []byte) error {
		var dst *[]byte
		switch string(key) {
		case "kind":
			dst = &fr.kind
		case "generation":
			dst = &fr.gen
		case "serverNowMs":
			dst = &fr.now
		case "refresher":
			dst = &fr.refresher
		case "entry":
			dst = &fr.entry
		case "id":
			dst = &fr.id
		}
		if dst == nil || *dst != nil {
			ok = false // unknown or repeated key
			return errStopWalk
		}
		*dst = val
		return nil
	})
	return ok && err == nil && skipWS(data, end) == len(data)
}

// header fills the frame-level fields from number literals and a
// refresher object known to be valid JSON.
func (fr *frameFields) header(f *StreamFrame, recv time.Time) bool {
	var ok bool
	if f.Generation, ok = numInt(json.Number(fr.gen)); !ok {
		return false
	}
	if f.ServerNow, ok = msTime(json.Number(fr.now)); !ok {
		return false
	}
	f.Refresher, ok = refresherFast(fr.refresher, recv)
	return ok
}

// seenEntry is what a FrameDecoder keeps of an entry it decoded: the key
// of its bytes and the Entry they decoded to.
type seenEntry struct {
	sum    uint64
	rotAt  int32 // offset of the rotatesInMs value, -1 without one
	length int32 // the entry's length without that value
	entry  *Entry
}

// entryKey identifies an entry's bytes but for its rotatesInMs value.
type entryKey struct {
	ok     bool
	id     int64
	sum    uint64
	rotAt  int32
	length int32
	rot    []byte // the rotatesInMs value; nil without one
}

// entrySeed keys the entry hashes. Like the fingerprints' seed it is
// random per process and never leaves it: the bytes hashed include token
// material, and a collision cannot be aimed at.
var entrySeed = maphash.MakeSeed()

// entryKeyOf computes the key of an entry object that may not be valid
// JSON (the hash is only ever compared with that of an entry that was).
// The broker writes the id first and rotatesInMs last
// (docs/broker-protocol.md §4); the rotatesInMs value is found as the last
// `"rotatesInMs":` in the bytes, a few bytes from their end (searching from
// the front crossed every quote of the entry: 7 % of a delta), and
// remember only accepts it where it is the entry's own member. ok is false
// for an entry in another shape.
func entryKeyOf(entry []byte) entryKey {
	k := entryKey{rotAt: -1}
	if !bytes.HasPrefix(entry, entryIDKey) || len(entry) > math.MaxInt32 {
		return k
	}
	comma := bytes.IndexByte(entry, ',')
	if comma < 0 {
		return k
	}
	var ok bool
	if k.id, ok = smallInt(entry[len(entryIDKey):comma]); !ok {
		return k
	}
	var h maphash.Hash
	h.SetSeed(entrySeed)
	if i := bytes.LastIndex(entry, rotatesKey); i < 0 {
		h.Write(entry)
		k.length = int32(len(entry))
	} else {
		at := i + len(rotatesKey)
		end := skipValue(entry, at)
		if end <= at {
			return k
		}
		k.rot = entry[at:end]
		h.Write(entry[:at])
		h.Write(entry[end:])
		k.rotAt, k.length = int32(at), int32(len(entry)-len(k.rot))
	}
	k.sum, k.ok = h.Sum64(), true
	return k
}

var (
	entryIDKey = []byte(`{"id":`)
	rotatesKey = []byte(`"rotatesInMs":`)
)

// remember records that the entry with key k decoded to e; rotAt is the
// offset of the entry's own rotatesInMs value (-1 without one).
func (d *FrameDecoder) remember(k *entryKey, e *Entry, rotAt int) {
	if !k.ok || k.id != e.ID || int(k.rotAt) != rotAt {
		delete(d.seen, e.ID)
		return
	}
	if d.seen == nil {
		d.seen = make(map[int64]seenEntry)
	}
	d.seen[e.ID] = seenEntry{sum: k.sum, rotAt: k.rotAt, length: k.length, entry: e}
}

// forget drops what a frame decoded by the general path makes stale: the
// entry of a removed id, an entry re-sent in a shape the fast path does
// not decode, everything on a new snapshot.
func (d *FrameDecoder) forget(f *StreamFrame) {
	switch f.Kind {
	case FrameSnapshot:
		clear(d.seen)
	case FrameRemoved:
		delete(d.seen, f.RemovedID)
	case FrameEntry:
		delete(d.seen, f.Entry.ID)
	}
}

// unchanged decodes an entry frame whose entry has the key of the last
// one d decoded for its id, without json.Valid over the frame and without
// decoding the entry. Equal keys mean equal bytes but for the
// rotatesInMs value (with a 64-bit keyed hash, a false match has odds of
// 2^-64 and cannot be aimed at): bytes that were a valid entry, and that
// decode to the same Entry but for RotatesIn and ReceivedAt, whatever the
// mirror did with it. What the hash does not cover is checked here as
// json.Valid would: the rotatesInMs value, and each frame-level value
// (split checked the frame's punctuation).
func (d *FrameDecoder) unchanged(fr *frameFields, k *entryKey, recv time.Time) (*StreamFrame, bool) {
	if !k.ok {
		return nil, false
	}
	prev, ok := d.seen[k.id]
	if !ok || prev.sum != k.sum || prev.rotAt != k.rotAt || prev.length != k.length {
		return nil, false
	}
	var rotatesIn time.Duration
	hasRotatesIn := false
	if k.rot != nil && string(k.rot) != "null" {
		if !validNumber(k.rot) {
			return nil, false
		}
		if rotatesIn, ok = msDurationBytes(k.rot); !ok {
			return nil, false
		}
		hasRotatesIn = true
	}
	if fr.id != nil || !validNumber(fr.gen) || !validNumber(fr.now) {
		return nil, false
	}
	// One allocation for the frame and its entry: the mirror copies the
	// entry, and neither is kept.
	fe := &frameWithEntry{StreamFrame: StreamFrame{Kind: FrameEntry, ReceivedAt: recv}, entry: *prev.entry}
	f := &fe.StreamFrame
	if !fr.header(f, recv) { // refresherFast checks the refresher
		return nil, false
	}
	e := &fe.entry
	e.RotatesIn, e.HasRotatesIn, e.ReceivedAt = rotatesIn, hasRotatesIn, recv
	f.Entry = e
	return f, true
}

type frameWithEntry struct {
	StreamFrame
	entry Entry
}

// validNumber: b is exactly one JSON number (RFC 8259 §6), as json.Valid
// would accept it.
func validNumber(b []byte) bool {
	i := 0
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i >= len(b):
		return false
	case b[i] == '0':
		i++
	case b[i] >= '1' && b[i] <= '9':
		i = skipDigits(b, i)
	default:
		return false
	}
	if i < len(b) && b[i] == '.' {
		j := skipDigits(b, i+1)
		if j == i+1 {
			return false
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := skipDigits(b, i)
		if j == i {
			return false
		}
		i = j
	}
	return i == len(b)
}

func skipDigits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

// msDurationBytes is msDuration of a number literal, without allocating
// for the usual integer.
func msDurationBytes(val []byte) (time.Duration, bool) {
	if v, ok := smallInt(val); ok && v <= maxDurationMs && v >= -maxDurationMs {
		return time.Duration(v) * time.Millisecond, true
	}
	return msDuration(json.Number(val))
}

// errStopWalk ends a walk early; the caller knows why.
var errStopWalk = &fieldError{detail: "stop"}

// credentialType returns the wire type without allocating for the two
// known types.
func credentialType(val []byte) (string, error) {
	switch string(val) {
	case `"` + TypeOAuth + `"`:
		return TypeOAuth, nil
	case `"` + TypeAPIKey + `"`:
		return TypeAPIKey, nil
	}
	return jsonString(val, "credential.type")
}

// isNumber: a bare JSON number literal (the document is already valid).
func isNumber(v []byte) bool {
	return len(v) > 0 && (v[0] == '-' || v[0] >= '0' && v[0] <= '9')
}

// refresherFast decodes a refresher object. It checks all of it as
// json.Valid would (punctuation, exact keys, literals), so the frame around
// it need not have been validated.
func refresherFast(data []byte, recv time.Time) (Refresher, bool) {
	if len(data) == 0 || data[0] != '{' {
		return Refresher{}, false
	}
	var enabled, interval, skew, next []byte
	ok := true
	end, err := walkMembers(data, func(key, val []byte) error {
		var dst *[]byte
		switch string(key) {
		case "enabled":
			dst = &enabled
		case "intervalMs":
			dst = &interval
		case "skewMs":
			dst = &skew
		case "nextSweepInMs":
			dst = &next
		}
		if dst == nil || *dst != nil {
			ok = false
			return errStopWalk
		}
		*dst = val
		return nil
	})
	if !ok || err != nil || end != len(data) || !validNumber(interval) || !validNumber(skew) || !validNumber(next) {
		return Refresher{}, false
	}
	var on bool
	switch string(enabled) {
	case "true":
		on = true
	case "false":
	default:
		return Refresher{}, false
	}
	w := wireRefresher{Enabled: &on, IntervalMs: json.Number(interval), SkewMs: json.Number(skew), NextSweepInMs: json.Number(next)}
	r, err := w.convert(recv)
	return r, err == nil
}

// entryFast decodes an entry object of a valid document; rotAt is the
// offset of its rotatesInMs value in data, -1 without one.
func entryFast(data []byte, e *Entry, recv time.Time, pool *stringPool) (rotAt int, ok bool) {
	var id, provider, cred, identity, rotates, blocks []byte
	ok = true
	walkObject(data, func(key, val []byte) error {
		var dst *[]byte
		switch string(key) {
		case "id":
			dst = &id
		case "provider":
			dst = &provider
		case "credential":
			dst = &cred
		case "identityKey":
			dst = &identity
		case "rotatesInMs":
			dst = &rotates
		case "blocks":
			dst = &blocks
		}
		if dst == nil || *dst != nil {
			ok = false
			return errStopWalk
		}
		*dst = val
		return nil
	})
	if !ok || !isNumber(id) || len(provider) == 0 || provider[0] != '"' || len(cred) == 0 || cred[0] != '{' {
		return -1, false
	}
	// Blocks take the general path (they are rare; only "no blocks" here).
	if blocks != nil && string(blocks) != "null" && string(blocks) != "[]" {
		return -1, false
	}
	// What wireEntry.convert does, without a wireEntry (whose fields
	// would all escape to the heap through it).
	eid, ok := numInt(json.Number(id))
	if !ok {
		return -1, false
	}
	p, err := pool.jsonString(provider, "entry provider")
	if err != nil || p == "" {
		return -1, false
	}
	wc := wireCredential{pool: pool}
	if wc.UnmarshalJSON(cred) != nil {
		return -1, false
	}
	c, err := wc.convert()
	if err != nil {
		return -1, false
	}
	*e = Entry{ID: eid, Provider: p, Credential: c, ReceivedAt: recv}
	switch {
	case identity == nil || string(identity) == "null":
	case identity[0] == '"':
		if e.IdentityKey, err = pool.jsonString(identity, "entry identityKey"); err != nil {
			return -1, false
		}
	default:
		return -1, false
	}
	switch {
	case rotates == nil || string(rotates) == "null":
	case isNumber(rotates):
		if e.RotatesIn, ok = msDuration(json.Number(rotates)); !ok {
			return -1, false
		}
		e.HasRotatesIn = true
	default:
		return -1, false
	}
	rotAt = -1
	if rotates != nil {
		// rotates is data[rotAt:...]: a subslice's capacity runs to the
		// end of the array it shares with data.
		rotAt = cap(data) - cap(rotates)
	}
	return rotAt, true
}
