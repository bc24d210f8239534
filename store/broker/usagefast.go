package broker

import (
	"bytes"
	"encoding/json"
	"hash/maphash"
	"strconv"
	"strings"
	"time"
)

// decodeUsageFast decodes the usual /v1/usage answer without reflection.
// Through encoding/json a 10k-report answer costs about half a second and
// 57 MB of allocations, most of it reflection and the wire form of every
// report (a map per metadata object, a pointer per number); the usage
// fetch runs next to scrapes, so that time is taken from them.
//
// Like decodeDeltaFast it only accepts what it fully understands: a valid
// document whose known keys are spelled exactly, unescaped and once each,
// with values of the expected kind. Unknown keys are skipped, as the
// general path skips them. Anything else returns ok=false and decodeUsage
// takes the general path, which gives the same result or the canonical
// error (a differential test and a fuzz target check both).
//
// With a decoder d, a report whose bytes hash like those of a report of
// the answer d decoded last is taken from that answer instead of being
// decoded again (see UsageDecoder).
func decodeUsageFast(body []byte, d *UsageDecoder) (*UsageResponse, bool) {
	gen, reports, ok := usageSkeleton(body)
	if !ok || reports == nil {
		return nil, false
	}
	out := &UsageResponse{Reports: make([]UsageReport, 0, len(reports))}
	if t, ok := numberOrNull(gen); !ok {
		return nil, false
	} else if t != nil {
		out.GeneratedAt, _ = msTimeBytes(t)
	}
	rd := &usageDecoder{}
	var keys []reportKey
	if d != nil {
		keys = make([]reportKey, 0, len(reports))
	}
	for _, raw := range reports {
		var k reportKey
		if d != nil {
			k = reportKeyOf(raw)
			keys = append(keys, k)
			if prev, ok := d.seen[k]; ok {
				// The same bytes as a report of the previous answer, which
				// were valid: not even validated again.
				out.Reports = append(out.Reports, *prev)
				continue
			}
		}
		if !json.Valid(raw) {
			return nil, false
		}
		r, ok := rd.report(raw)
		if !ok {
			return nil, false
		}
		out.Reports = append(out.Reports, r)
	}
	if d != nil {
		d.remember(keys, out.Reports)
	}
	return out, true
}

// usageSkeleton walks the top level of a /v1/usage answer strictly:
// punctuation, the two known keys (exact, once each), a valid generatedAt
// value, and the reports array, whose elements it returns as raw objects
// for the caller to validate (or to recognise as bytes it validated
// before). A body it accepts whose every report is valid JSON is valid
// JSON. reports is nil when the body has no reports array.
func usageSkeleton(body []byte) (gen []byte, reports [][]byte, ok bool) {
	var seen fieldSet
	i := skipWS(body, 0)
	if i >= len(body) || body[i] != '{' {
		return nil, nil, false
	}
	i = skipWS(body, i+1)
	for i >= len(body) || body[i] != '}' { // members, until the closing brace
		end := stringEnd(body, i)
		if end < 0 || !json.Valid(body[i:end]) {
			return nil, nil, false
		}
		k, ok := seen.field(body[i+1:end-1], usageFields)
		if !ok {
			return nil, nil, false
		}
		if i = skipWS(body, end); i >= len(body) || body[i] != ':' {
			return nil, nil, false
		}
		i = skipWS(body, i+1)
		if k == 1 {
			if reports, i, ok = reportSpans(body, i); !ok {
				return nil, nil, false
			}
		} else {
			vend := skipValue(body, i)
			if vend <= i || !json.Valid(body[i:vend]) {
				return nil, nil, false
			}
			if k == 0 {
				gen = body[i:vend]
			}
			i = vend
		}
		if i = skipWS(body, i); i < len(body) && body[i] == ',' {
			if i = skipWS(body, i+1); i < len(body) && body[i] == '}' {
				return nil, nil, false // a trailing comma
			}
		} else if i >= len(body) || body[i] != '}' {
			return nil, nil, false
		}
	}
	if skipWS(body, i+1) != len(body) {
		return nil, nil, false
	}
	return gen, reports, true
}

// reportSpans reads the array at body[i] whose elements must be objects,
// and returns them and the index past the array. It checks the array's
// own punctuation; the objects are the caller's to validate.
func reportSpans(body []byte, i int) (spans [][]byte, next int, ok bool) {
	if i >= len(body) || body[i] != '[' {
		return nil, 0, false
	}
	spans = [][]byte{}
	i = skipWS(body, i+1)
	if i < len(body) && body[i] == ']' {
		return spans, i + 1, true
	}
	for {
		if i >= len(body) || body[i] != '{' {
			return nil, 0, false
		}
		vend := skipValue(body, i)
		if vend > len(body) || body[vend-1] != '}' {
			return nil, 0, false
		}
		spans = append(spans, body[i:vend])
		switch i = skipWS(body, vend); {
		case i < len(body) && body[i] == ',':
			i = skipWS(body, i+1)
		case i < len(body) && body[i] == ']':
			return spans, i + 1, true
		default:
			return nil, 0, false
		}
	}
}

// UsageDecoder decodes the successive /v1/usage answers of one broker.
// The broker caches each report for about 5 minutes
// (docs/broker-protocol.md §8) while the exporter asks every 10 s, so
// nearly every report of an answer is, byte for byte, one of the answer
// before: the decoder takes those from its previous result (reports are
// immutable) instead of decoding them again. Not safe for concurrent use.
type UsageDecoder struct {
	seen map[reportKey]*UsageReport // the previous answer's reports
}

// reportKey identifies a report's bytes: their hash and length.
type reportKey struct {
	sum    uint64
	length int
}

var reportSeed = maphash.MakeSeed()

func reportKeyOf(raw []byte) reportKey {
	return reportKey{sum: maphash.Bytes(reportSeed, raw), length: len(raw)}
}

// Decode decodes a /v1/usage answer, reusing what it can of the previous
// one.
func (d *UsageDecoder) Decode(body []byte) (*UsageResponse, error) {
	return decodeUsageWith("usage", body, d)
}

// remember keeps reports, keyed by their bytes, for the next answer.
func (d *UsageDecoder) remember(keys []reportKey, reports []UsageReport) {
	d.seen = make(map[reportKey]*UsageReport, len(keys))
	for i, k := range keys {
		d.seen[k] = &reports[i]
	}
}

// The fields the general path reads, per object of the answer.
var (
	usageFields  = []string{"generatedAt", "reports"}
	reportFields = []string{"provider", "fetchedAt", "limits", "metadata", "resetCredits"}
	limitFields  = []string{"id", "label", "scope", "window", "amount", "status"}
	scopeFields  = []string{"provider", "accountId", "projectId", "orgId", "modelId", "tier", "windowId", "shared"}
	windowFields = []string{"id", "label", "durationMs", "resetsAt", "resetLabel"}
	amountFields = []string{"used", "limit", "remaining", "usedFraction", "remainingFraction", "unit"}
)

// metadataKeys are the metadata members identity matching reads.
var metadataKeys = []string{"email", "accountId", "projectId", "orgId", "orgName", "account_id", "project_id"}

// usageDecoder shares the strings thousands of reports repeat (provider,
// limit ids, labels, units, windows), as the general path does.
type usageDecoder struct {
	pool stringPool
}

func (d *usageDecoder) report(obj []byte) (UsageReport, bool) {
	var r UsageReport
	if obj[0] != '{' {
		return r, false
	}
	var limits, meta, resets []byte
	ok := members(obj, reportFields, func(k int, val []byte) (ok bool) {
		switch k {
		case 0:
			r.Provider, ok = d.str(val)
		case 1:
			r.FetchedAt, ok = msTimeOrNull(val)
		case 2:
			limits, ok = val, true
		case 3:
			meta, ok = val, true
		case 4:
			resets, ok = val, true
		}
		return ok
	})
	if !ok || r.Provider == "" || !d.metadata(meta, &r.Metadata) {
		return r, false
	}
	r.Resets = savedResets(resets, &d.pool)
	r.Limits = make([]UsageLimit, 0, 4)
	if len(limits) == 0 || isNull(limits) {
		return r, true
	}
	if limits[0] != '[' {
		return r, false
	}
	for it := newArrayIter(limits); it.more(); {
		var l UsageLimit
		if !members(it.next(), limitFields, func(k int, val []byte) bool { return d.limit(k, val, &l) }) {
			return r, false
		}
		r.Limits = append(r.Limits, l)
	}
	return r, true
}

// metadata reads the identity strings as metaString does: a map, so the
// last of a repeated key wins and the names are exact.
func (d *usageDecoder) metadata(obj []byte, m *UsageMetadata) bool {
	if len(obj) == 0 || isNull(obj) {
		return true
	}
	if obj[0] != '{' {
		return false
	}
	var vals [7][]byte
	for it := newObjectIter(obj); it.more(); {
		key, val := it.next()
		if bytes.IndexByte(key, '\\') >= 0 {
			return false
		}
		for i, name := range metadataKeys {
			if string(key) == name {
				vals[i] = val
			}
		}
	}
	meta := func(i int) string {
		if len(vals[i]) == 0 || vals[i][0] != '"' {
			return ""
		}
		s, _ := jsonString(vals[i], "")
		return strings.TrimSpace(s)
	}
	*m = UsageMetadata{Email: meta(0), AccountID: meta(1), ProjectID: meta(2), OrgID: meta(3), OrgName: meta(4)}
	if m.AccountID == "" {
		m.AccountID = meta(5)
	}
	if m.ProjectID == "" {
		m.ProjectID = meta(6)
	}
	return true
}

// limit decodes member k of a limit into l.
func (d *usageDecoder) limit(k int, val []byte, l *UsageLimit) (ok bool) {
	switch k {
	case 0:
		l.ID, ok = d.str(val)
	case 1:
		l.Label, ok = d.str(val)
	case 2:
		s := &l.Scope
		ok = members(val, scopeFields, func(k int, val []byte) (ok bool) {
			if k == 7 {
				s.Shared = string(val) == "true"
				return s.Shared || string(val) == "false" || isNull(val)
			}
			dst := [...]*string{&s.Provider, &s.AccountID, &s.ProjectID, &s.OrgID, &s.ModelID, &s.Tier, &s.WindowID}[k]
			if k >= 1 && k <= 3 { // each report's own: not pooled
				*dst, ok = plainStr(val)
			} else {
				*dst, ok = d.str(val)
			}
			return ok
		})
	case 3:
		l.Window, ok = d.window(val)
	case 4:
		ok = d.amount(val, &l.Amount)
	case 5:
		l.Status, ok = d.str(val)
	}
	return ok
}

func (d *usageDecoder) window(obj []byte) (*UsageWindow, bool) {
	if isNull(obj) {
		return nil, true
	}
	w := &UsageWindow{}
	return w, members(obj, windowFields, func(k int, val []byte) (ok bool) {
		if dst := [...]*string{&w.ID, &w.Label, nil, nil, &w.ResetLabel}[k]; dst != nil {
			*dst, ok = d.str(val)
			return ok
		}
		if k == 3 {
			w.ResetsAt, ok = msTimeOrNull(val)
			return ok
		}
		t, ok := numberOrNull(val) // durationMs
		if t != nil {
			if dur, known := msDurationBytes(t); known {
				w.Duration = dur
			}
		}
		return ok
	})
}

func (d *usageDecoder) amount(obj []byte, a *UsageAmount) bool {
	var nums *[5]float64 // the amounts of one limit, allocated together
	return members(obj, amountFields, func(k int, val []byte) (ok bool) {
		if k == 5 {
			a.Unit, ok = d.str(val)
			return ok
		}
		if isNull(val) {
			return true
		}
		if !isNumber(val) {
			return false
		}
		f, err := strconv.ParseFloat(string(val), 64)
		if err != nil {
			return false // out of range: the general path reports it
		}
		if nums == nil {
			nums = new([5]float64)
		}
		nums[k] = f
		switch p := &nums[k]; k {
		case 0:
			a.Used = p
		case 1:
			a.Limit = p
		case 2:
			a.Remaining = p
		case 3:
			a.UsedFraction = p
		case 4:
			a.RemainingFraction = p
		}
		return true
	})
}

// members calls fn with the index in names and the value of each known
// member of obj, an object or null (which has none, as for the general
// path). It returns false for any other value, for a key only the general
// path can place (fieldSet.field), and when fn does.
func members(obj []byte, names []string, fn func(k int, val []byte) bool) bool {
	if isNull(obj) {
		return true
	}
	if obj[0] != '{' {
		return false
	}
	var seen fieldSet
	for it := newObjectIter(obj); it.more(); {
		key, val := it.next()
		k, ok := seen.field(key, names)
		if !ok || k >= 0 && !fn(k, val) {
			return false
		}
	}
	return true
}

// str reads an optional string, shared through the pool; ok is false for
// a value of another kind.
func (d *usageDecoder) str(val []byte) (string, bool) {
	if isNull(val) {
		return "", true
	}
	if val[0] != '"' {
		return "", false
	}
	s, err := d.pool.jsonString(val, "")
	return s, err == nil
}

// plainStr is str for the strings each report has its own of.
func plainStr(val []byte) (string, bool) {
	if isNull(val) {
		return "", true
	}
	if val[0] != '"' {
		return "", false
	}
	s, err := jsonString(val, "")
	return s, err == nil
}

func isNull(val []byte) bool { return string(val) == "null" }

// msTimeOrNull reads an optional epoch-millisecond time as the general
// path does: absent, null or out of range is the zero time.
func msTimeOrNull(val []byte) (time.Time, bool) {
	n, ok := numberOrNull(val)
	if n == nil {
		return time.Time{}, ok
	}
	t, _ := msTimeBytes(n)
	return t, true
}

// numberOrNull returns a bare number literal, nil for null or an absent
// value, and ok=false for anything else (the general path also takes a
// quoted number, and reports the rest).
func numberOrNull(val []byte) ([]byte, bool) {
	switch {
	case len(val) == 0 || isNull(val):
		return nil, true
	case isNumber(val):
		return val, true
	}
	return nil, false
}

// fieldSet records which of an object's known names were seen.
type fieldSet uint32

// field places key among names: its index, or -1 for a key both paths
// ignore. ok is false for a repeated name, and for a key only the general
// path can place: an escaped one, or a name but for case (encoding/json
// matches names case-insensitively).
func (s *fieldSet) field(key []byte, names []string) (int, bool) {
	for i, n := range names {
		if string(key) == n {
			if *s&(1<<i) != 0 {
				return i, false
			}
			*s |= 1 << i
			return i, true
		}
	}
	if bytes.IndexByte(key, '\\') >= 0 {
		return -1, false
	}
	for _, n := range names {
		if strings.EqualFold(string(key), n) {
			return -1, false
		}
	}
	return -1, true
}

// objectIter walks the members of an object in a document known to be
// valid.
type objectIter struct {
	data []byte
	i    int
}

func newObjectIter(obj []byte) objectIter { return objectIter{obj, skipWS(obj, 1)} }

func (it *objectIter) more() bool { return it.i < len(it.data) && it.data[it.i] == '"' }

func (it *objectIter) next() (key, val []byte) {
	d := it.data
	end := skipString(d, it.i)
	key = d[it.i+1 : end-1]
	i := skipWS(d, skipWS(d, end)+1) // past the colon
	vend := skipValue(d, i)
	val = d[i:vend]
	if i = skipWS(d, vend); i < len(d) && d[i] == ',' {
		i = skipWS(d, i+1)
	}
	it.i = i
	return key, val
}

// arrayIter walks the elements of an array in a document known to be
// valid.
type arrayIter struct {
	data []byte
	i    int
}

func newArrayIter(arr []byte) arrayIter { return arrayIter{arr, skipWS(arr, 1)} }

func (it *arrayIter) more() bool { return it.i < len(it.data) && it.data[it.i] != ']' }

func (it *arrayIter) next() []byte {
	d := it.data
	vend := skipValue(d, it.i)
	val := d[it.i:vend]
	i := skipWS(d, vend)
	if i < len(d) && d[i] == ',' {
		i = skipWS(d, i+1)
	}
	it.i = i
	return val
}
