package broker

import (
	"encoding/json"
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
func decodeDeltaFast(data []byte, recv time.Time, pool *stringPool) (*StreamFrame, bool) {
	if len(data) == 0 || data[0] != '{' || !json.Valid(data) {
		return nil, false
	}
	var kind, gen, now, refresher, entry, id []byte
	ok := true
	err := walkObject(data, func(key, val []byte) error {
		var dst *[]byte
		switch string(key) {
		case "kind":
			dst = &kind
		case "generation":
			dst = &gen
		case "serverNowMs":
			dst = &now
		case "refresher":
			dst = &refresher
		case "entry":
			dst = &entry
		case "id":
			dst = &id
		}
		if dst == nil || *dst != nil {
			ok = false // unknown or repeated key
			return errStopWalk
		}
		*dst = val
		return nil
	})
	if !ok || err != nil {
		return nil, false
	}
	// Numbers must be bare literals: the general path also accepts quoted
	// ones, and reports the errors.
	if !isNumber(gen) || !isNumber(now) || refresher == nil {
		return nil, false
	}
	// The entry is allocated on its own: the mirror keeps it for long,
	// the frame is dropped after it is applied.
	f := &StreamFrame{ReceivedAt: recv}
	switch string(kind) {
	case `"entry"`:
		if id != nil || entry == nil || entry[0] != '{' {
			return nil, false
		}
		f.Kind = FrameEntry
	case `"removed"`:
		if entry != nil || !isNumber(id) {
			return nil, false
		}
		f.Kind = FrameRemoved
	default:
		return nil, false
	}
	if f.Generation, ok = numInt(json.Number(gen)); !ok {
		return nil, false
	}
	if f.ServerNow, ok = msTime(json.Number(now)); !ok {
		return nil, false
	}
	if f.Refresher, ok = refresherFast(refresher, recv); !ok {
		return nil, false
	}
	if f.Kind == FrameRemoved {
		if f.RemovedID, ok = numInt(json.Number(id)); !ok {
			return nil, false
		}
		return f, true
	}
	e := new(Entry)
	if !entryFast(entry, e, recv, pool) {
		return nil, false
	}
	f.Entry = e
	return f, true
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

func refresherFast(data []byte, recv time.Time) (Refresher, bool) {
	if data[0] != '{' {
		return Refresher{}, false
	}
	var enabled, interval, skew, next []byte
	ok := true
	walkObject(data, func(key, val []byte) error {
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
	if !ok || !isNumber(interval) || !isNumber(skew) || !isNumber(next) {
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

func entryFast(data []byte, e *Entry, recv time.Time, pool *stringPool) bool {
	var id, provider, cred, identity, rotates, blocks []byte
	ok := true
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
		return false
	}
	// Blocks take the general path (they are rare; only "no blocks" here).
	if blocks != nil && string(blocks) != "null" && string(blocks) != "[]" {
		return false
	}
	// What wireEntry.convert does, without a wireEntry (whose fields
	// would all escape to the heap through it).
	eid, ok := numInt(json.Number(id))
	if !ok {
		return false
	}
	p, err := pool.jsonString(provider, "entry provider")
	if err != nil || p == "" {
		return false
	}
	wc := wireCredential{pool: pool}
	if wc.UnmarshalJSON(cred) != nil {
		return false
	}
	c, err := wc.convert()
	if err != nil {
		return false
	}
	*e = Entry{ID: eid, Provider: p, Credential: c, ReceivedAt: recv}
	switch {
	case identity == nil || string(identity) == "null":
	case identity[0] == '"':
		if e.IdentityKey, err = pool.jsonString(identity, "entry identityKey"); err != nil {
			return false
		}
	default:
		return false
	}
	switch {
	case rotates == nil || string(rotates) == "null":
	case isNumber(rotates):
		if e.RotatesIn, ok = msDuration(json.Number(rotates)); !ok {
			return false
		}
		e.HasRotatesIn = true
	default:
		return false
	}
	return true
}
