package broker

import (
	"bytes"
	"cmp"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/go-json-experiment/json/jsontext"
)

// UsageReport is a decoded /v1/usage report. Metadata is reduced to the
// identity fields matching needs; it is never kept wholesale.
type UsageReport struct {
	Provider  string
	FetchedAt time.Time
	Limits    []UsageLimit
	Metadata  UsageMetadata
	Resets    *SavedResets // nil when the report has no resetCredits
}

// SavedResets is a report's resetCredits (docs/broker-protocol.md §13.1):
// saved usage resets an account may redeem. Every field is optional on the
// wire; a field of the wrong type reads as absent.
type SavedResets struct {
	Available, Redeemable       float64
	HasAvailable, HasRedeemable bool
	CooldownUntil               time.Time // zero when absent or unreadable
	Credits                     []ResetCredit
}

// ResetCredit is one saved reset.
type ResetCredit struct {
	ExpiresAt time.Time // zero when absent or unreadable
	// Usable is the credit's own word when it has one; otherwise a credit
	// is usable until it expires.
	Usable, HasUsable bool
	Clears            []string // limit ids the reset clears
}

// UsableAt reports whether the credit can be redeemed at now.
func (c *ResetCredit) UsableAt(now time.Time) bool {
	if c.HasUsable {
		return c.Usable
	}
	return c.ExpiresAt.IsZero() || c.ExpiresAt.After(now)
}

// UsageMetadata holds the string identity fields of a report's metadata,
// trimmed; "" when absent or not a non-blank string.
type UsageMetadata struct {
	Email     string
	AccountID string // accountId, else account_id
	ProjectID string // projectId, else project_id
	OrgID     string
	OrgName   string
}

// UsageLimit is one limit of a usage report.
type UsageLimit struct {
	ID     string
	Label  string
	Scope  UsageScope
	Window *UsageWindow
	Amount UsageAmount
	Status string // ok, warning, exhausted, unknown, or ""
}

// UsageScope holds the scope ids usage matching reads; like Metadata, a
// scope is reduced to them (a 10k-report answer has 40k scopes).
type UsageScope struct {
	AccountID string
	ProjectID string
}

type UsageWindow struct {
	ID       string
	Label    string
	Duration time.Duration
	ResetsAt time.Time // zero when absent
}

// UsageAmount: nil pointers are absent fields.
type UsageAmount struct {
	Used              *float64
	Limit             *float64
	Remaining         *float64
	UsedFraction      *float64
	RemainingFraction *float64
	Unit              string
}

// EffectiveUsedFraction follows the broker client's precedence:
// usedFraction; else used/limit when limit > 0; else used/100 for percent;
// else 1 - remainingFraction. ok is false when none applies.
func (a UsageAmount) EffectiveUsedFraction() (fraction float64, ok bool) {
	switch {
	case a.UsedFraction != nil:
		return *a.UsedFraction, true
	case a.Used != nil && a.Limit != nil && *a.Limit > 0:
		return *a.Used / *a.Limit, true
	case a.Used != nil && a.Unit == "percent":
		return *a.Used / 100, true
	case a.RemainingFraction != nil:
		return 1 - *a.RemainingFraction, true
	}
	return 0, false
}

// UsageResponse is the answer of GET /v1/usage.
type UsageResponse struct {
	GeneratedAt time.Time
	Reports     []UsageReport
	Size        int // bytes of the answer's body (0 when not from the wire)
}

// DecodeUsage decodes a /v1/usage answer.
func DecodeUsage(body []byte) (*UsageResponse, error) { return decodeUsage("usage", body) }

func decodeUsage(op string, body []byte) (*UsageResponse, error) {
	return readUsage(op, bytes.NewBuffer(body)) // jsontext reads a bytes.Buffer in place
}

// readUsage decodes a /v1/usage answer in one pass as it arrives. Thousands
// of reports repeat the same providers, limit ids, labels and units, and
// the answer is kept for the usage TTL, so those strings are kept once
// each.
func readUsage(op string, in io.Reader) (*UsageResponse, error) {
	out := &UsageResponse{}
	r := newStreamReader(op, in, &stringPool{})
	if err := decodeDocument(r, out, usageFields); err != nil {
		return nil, err
	}
	out.Size = int(r.dec.InputOffset())
	return out, nil
}

var usageFields = []field[UsageResponse]{
	{"generatedAt", optional, func(r *reader, u *UsageResponse) bool { return r.time(&u.GeneratedAt) }},
	{"reports", required, func(r *reader, u *UsageResponse) bool {
		u.Reports = []UsageReport{}
		return r.array(func() {
			u.Reports = append(u.Reports, UsageReport{Limits: make([]UsageLimit, 0, 4)})
			r.require(readObject(r, &u.Reports[len(u.Reports)-1], reportFields), "")
		})
	}},
}

var reportFields = []field[UsageReport]{
	{"provider", required, func(r *reader, u *UsageReport) bool { return r.text(&u.Provider) && u.Provider != "" }},
	{"fetchedAt", optional, func(r *reader, u *UsageReport) bool { return r.time(&u.FetchedAt) }},
	{"limits", optional, func(r *reader, u *UsageReport) bool { return objects(r, &u.Limits, limitFields) }},
	{"metadata", optional, func(r *reader, u *UsageReport) bool { return r.metadata(&u.Metadata) }},
	{"resetCredits", optional, func(r *reader, u *UsageReport) bool {
		r.loose('{', func() {
			u.Resets = &SavedResets{}
			readObject(r, u.Resets, resetFields)
		})
		return true
	}},
}

var limitFields = []field[UsageLimit]{
	{"id", optional, func(r *reader, l *UsageLimit) bool { return r.text(&l.ID) }},
	{"label", optional, func(r *reader, l *UsageLimit) bool { return r.text(&l.Label) }},
	{"status", optional, func(r *reader, l *UsageLimit) bool { return r.text(&l.Status) }},
	{"scope", optional, func(r *reader, l *UsageLimit) bool { return readObject(r, &l.Scope, scopeFields) }},
	{"window", optional, func(r *reader, l *UsageLimit) bool {
		w := carve(&r.windows)
		if readObject(r, w, windowFields) {
			l.Window = w
		}
		return true
	}},
	{"amount", optional, func(r *reader, l *UsageLimit) bool { return readObject(r, &l.Amount, amountFields) }},
}

// scopeFields keep accountId and projectId; the other fields of a scope
// are checked for their type and dropped.
var scopeFields = []field[UsageScope]{
	{"accountId", optional, func(r *reader, s *UsageScope) bool { return r.plain(&s.AccountID) }},
	{"projectId", optional, func(r *reader, s *UsageScope) bool { return r.plain(&s.ProjectID) }},
	{"provider", optional, dropped[UsageScope]('"')},
	{"orgId", optional, dropped[UsageScope]('"')},
	{"modelId", optional, dropped[UsageScope]('"')},
	{"tier", optional, dropped[UsageScope]('"')},
	{"windowId", optional, dropped[UsageScope]('"')},
	{"shared", optional, dropped[UsageScope]('t')},
}

// dropped reads a field that nothing keeps: a value of kind want (or
// null) is skipped, any other is a failure.
func dropped[T any](want jsontext.Kind) func(r *reader, _ *T) bool {
	return func(r *reader, _ *T) bool {
		r.scalar(want)
		return true
	}
}

var windowFields = []field[UsageWindow]{
	{"id", optional, func(r *reader, w *UsageWindow) bool { return r.text(&w.ID) }},
	{"label", optional, func(r *reader, w *UsageWindow) bool { return r.text(&w.Label) }},
	{"resetLabel", optional, dropped[UsageWindow]('"')}, // nothing shows it
	{"durationMs", optional, func(r *reader, w *UsageWindow) bool { return r.duration(&w.Duration) }},
	{"resetsAt", optional, func(r *reader, w *UsageWindow) bool { return r.time(&w.ResetsAt) }},
}

var amountFields = []field[UsageAmount]{
	{"used", optional, func(r *reader, a *UsageAmount) bool { a.Used = r.float(); return true }},
	{"limit", optional, func(r *reader, a *UsageAmount) bool { a.Limit = r.float(); return true }},
	{"remaining", optional, func(r *reader, a *UsageAmount) bool { a.Remaining = r.float(); return true }},
	{"usedFraction", optional, func(r *reader, a *UsageAmount) bool { a.UsedFraction = r.float(); return true }},
	{"remainingFraction", optional, func(r *reader, a *UsageAmount) bool { a.RemainingFraction = r.float(); return true }},
	{"unit", optional, func(r *reader, a *UsageAmount) bool { return r.text(&a.Unit) }},
}

// float reads a number into a float carved from the reader's chunk; nil
// for null.
func (r *reader) float() *float64 {
	raw := r.number()
	if raw == nil {
		return nil
	}
	f, ok := numFloat(raw)
	if !ok {
		r.fail("", "out of range")
		return nil
	}
	p := carve(&r.floats)
	*p = f
	return p
}

// carve returns a zero T from the end of *chunk, starting a new chunk when
// it is full: the tens of thousands of windows and amounts of a usage
// answer take one allocation per chunk instead of one each. A chunk stays
// alive while any of its values does, which is as long as the answer.
func carve[T any](chunk *[]T) *T {
	if len(*chunk) == cap(*chunk) {
		*chunk = make([]T, 0, 512)
	}
	*chunk = append(*chunk, *new(T))
	return &(*chunk)[len(*chunk)-1]
}

// metadataKeys: the identity strings usage matching reads, then their
// aliases.
var metadataKeys = []string{"email", "accountId", "projectId", "orgId", "orgName", "account_id", "project_id"}

// metadata reads the identity strings of a report's free-form metadata
// (docs/broker-protocol.md §9.1): a value counts only as a string with
// non-blank content, trimmed; any other member is skipped.
func (r *reader) metadata(m *UsageMetadata) bool {
	var vals [7]string
	if !r.expect('{') {
		return false
	}
	r.dec.ReadToken()
	for r.more() {
		i := slices.Index(metadataKeys, string(r.unquote(r.value())))
		if i < 0 || r.peek() != '"' {
			r.skip()
			continue
		}
		r.plain(&vals[i])
		vals[i] = strings.TrimSpace(vals[i])
	}
	*m = UsageMetadata{Email: vals[0], AccountID: cmp.Or(vals[1], vals[5]), ProjectID: cmp.Or(vals[2], vals[6]),
		OrgID: vals[3], OrgName: vals[4]}
	return true
}

// resetFields and creditFields read resetCredits field by field
// (docs/broker-protocol.md §8.4, §13.1): a field of an unexpected type
// reads as absent, and so does a resetCredits or a credit that is not an
// object.
var resetFields = []field[SavedResets]{
	{"availableCount", optional, func(r *reader, s *SavedResets) bool { s.Available, s.HasAvailable = r.looseNumber(); return true }},
	{"redeemableCount", optional, func(r *reader, s *SavedResets) bool { s.Redeemable, s.HasRedeemable = r.looseNumber(); return true }},
	{"cooldownUntil", optional, func(r *reader, s *SavedResets) bool { s.CooldownUntil = r.looseTime(); return true }},
	{"credits", optional, func(r *reader, s *SavedResets) bool {
		r.loose('[', func() {
			r.array(func() {
				r.loose('{', func() {
					s.Credits = append(s.Credits, ResetCredit{})
					readObject(r, &s.Credits[len(s.Credits)-1], creditFields)
				})
			})
		})
		return true
	}},
}

var creditFields = []field[ResetCredit]{
	{"expiresAt", optional, func(r *reader, c *ResetCredit) bool { c.ExpiresAt = r.looseTime(); return true }},
	{"usable", optional, func(r *reader, c *ResetCredit) bool {
		r.loose('t', func() { c.HasUsable = r.bool(&c.Usable) })
		return true
	}},
	{"clears", optional, func(r *reader, c *ResetCredit) bool {
		r.loose('[', func() {
			r.array(func() {
				var id string
				if r.loose('"', func() { r.text(&id) }); id != "" {
					c.Clears = append(c.Clears, id)
				}
			})
		})
		return true
	}},
}

// loose calls read when the next value is of kind want (true or false for
// 't'), and skips it otherwise.
func (r *reader) loose(want jsontext.Kind, read func()) {
	if k := r.peek(); k == want || want == 't' && k == 'f' {
		read()
	} else {
		r.skip()
	}
}

// looseNumber reads a finite number; anything else is skipped as absent.
func (r *reader) looseNumber() (f float64, ok bool) {
	r.loose('0', func() { f, ok = numFloat(r.value()) })
	return f, ok
}

// looseTime reads epoch milliseconds or an ISO-8601 (RFC 3339) string;
// anything else is the zero time.
func (r *reader) looseTime() (t time.Time) {
	switch r.peek() {
	case '0':
		t, _ = msTime(r.value())
	case '"':
		var s string
		r.plain(&s)
		t, _ = time.Parse(time.RFC3339Nano, strings.TrimSpace(s))
	default:
		r.skip()
	}
	return t
}
