package broker

import (
	"cmp"
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

type UsageScope struct {
	Provider  string
	AccountID string
	ProjectID string
	OrgID     string
	ModelID   string
	Tier      string
	WindowID  string
	Shared    bool
}

type UsageWindow struct {
	ID         string
	Label      string
	Duration   time.Duration
	ResetsAt   time.Time // zero when absent
	ResetLabel string
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

// The keys of each usage object the decoder reads; any other key is
// skipped.
var (
	usageFields  = []string{"generatedAt", "reports"}
	reportFields = []string{"provider", "fetchedAt", "limits", "metadata", "resetCredits"}
	limitFields  = []string{"id", "label", "scope", "window", "amount", "status"}
	scopeFields  = []string{"provider", "accountId", "projectId", "orgId", "modelId", "tier", "windowId", "shared"}
	windowFields = []string{"id", "label", "durationMs", "resetsAt", "resetLabel"}
	// amountFields: the five numbers in UsageAmount's order, then the unit.
	amountFields = []string{"used", "limit", "remaining", "usedFraction", "remainingFraction", "unit"}
	// metadataKeys: the identity strings matching reads, and their aliases.
	metadataKeys = []string{"email", "accountId", "projectId", "orgId", "orgName", "account_id", "project_id"}
)

// DecodeUsage decodes a /v1/usage answer.
func DecodeUsage(body []byte) (*UsageResponse, error) { return decodeUsage("usage", body) }

// decodeUsage decodes a /v1/usage answer in one pass. Thousands of reports
// repeat the same providers, limit ids, labels and units, and the answer
// is kept for the usage TTL, so those strings are kept once each.
func decodeUsage(op string, body []byte) (*UsageResponse, error) {
	r := newReader(op, body, &stringPool{})
	out := &UsageResponse{Size: len(body)}
	r.object(usageFields, func(key string) {
		if key == "generatedAt" {
			out.GeneratedAt, _ = msTime(r.number())
			return
		}
		reports := []UsageReport{}
		if r.array(func() {
			reports = append(reports, UsageReport{})
			r.report(&reports[len(reports)-1])
		}) {
			out.Reports = reports
		}
	})
	r.require(out.Reports != nil, "reports")
	if err := r.finish(); err != nil {
		return nil, err
	}
	return out, nil
}

func (r *reader) report(rep *UsageReport) {
	rep.Limits = make([]UsageLimit, 0, 4)
	r.object(reportFields, func(key string) {
		switch key {
		case "provider":
			rep.Provider = r.str()
		case "fetchedAt":
			rep.FetchedAt, _ = msTime(r.number())
		case "limits":
			r.array(func() {
				rep.Limits = append(rep.Limits, UsageLimit{})
				r.limit(&rep.Limits[len(rep.Limits)-1])
			})
		case "metadata":
			r.metadata(&rep.Metadata)
		case "resetCredits":
			rep.Resets = r.savedResets()
		}
	})
	r.require(rep.Provider != "", "provider")
}

// metadata reads the identity strings of a report's free-form metadata
// (docs/broker-protocol.md §9.1): a value counts only as a string with
// non-blank content, trimmed; any other member is skipped.
func (r *reader) metadata(m *UsageMetadata) {
	var vals [7]string
	if !r.expect('{') {
		return
	}
	r.dec.ReadToken()
	for r.more() {
		i := slices.Index(metadataKeys, string(r.unquote(r.value())))
		if i < 0 || r.peek() != '"' {
			r.skip()
			continue
		}
		vals[i] = strings.TrimSpace(r.plainStr())
	}
	*m = UsageMetadata{Email: vals[0], AccountID: cmp.Or(vals[1], vals[5]), ProjectID: cmp.Or(vals[2], vals[6]),
		OrgID: vals[3], OrgName: vals[4]}
}

func (r *reader) limit(l *UsageLimit) {
	r.object(limitFields, func(key string) {
		switch key {
		case "id":
			l.ID = r.str()
		case "label":
			l.Label = r.str()
		case "status":
			l.Status = r.str()
		case "scope":
			r.scope(&l.Scope)
		case "window":
			l.Window = r.window()
		case "amount":
			r.amount(&l.Amount)
		}
	})
}

func (r *reader) scope(s *UsageScope) {
	r.object(scopeFields, func(key string) {
		switch key {
		case "provider":
			s.Provider = r.str()
		case "accountId": // each report's own: not pooled
			s.AccountID = r.plainStr()
		case "projectId":
			s.ProjectID = r.plainStr()
		case "orgId":
			s.OrgID = r.plainStr()
		case "modelId":
			s.ModelID = r.str()
		case "tier":
			s.Tier = r.str()
		case "windowId":
			s.WindowID = r.str()
		case "shared":
			s.Shared, _ = r.boolean()
		}
	})
}

func (r *reader) window() *UsageWindow {
	if r.peek() != '{' {
		r.expect('{')
		return nil
	}
	w := &UsageWindow{}
	r.object(windowFields, func(key string) {
		switch key {
		case "id":
			w.ID = r.str()
		case "label":
			w.Label = r.str()
		case "resetLabel":
			w.ResetLabel = r.str()
		case "durationMs":
			w.Duration, _ = msDuration(r.number())
		case "resetsAt":
			w.ResetsAt, _ = msTime(r.number())
		}
	})
	return w
}

func (r *reader) amount(a *UsageAmount) {
	var nums *[5]float64 // the amounts of one limit, allocated together
	r.object(amountFields, func(key string) {
		if key == "unit" {
			a.Unit = r.str()
			return
		}
		i := slices.Index(amountFields, key)
		dst := [...]**float64{&a.Used, &a.Limit, &a.Remaining, &a.UsedFraction, &a.RemainingFraction}[i]
		*dst = nil
		if raw := r.number(); raw != nil {
			f, ok := numFloat(raw)
			if !ok {
				r.fail("", "out of range")
				return
			}
			if nums == nil {
				nums = new([5]float64)
			}
			nums[i] = f
			*dst = &nums[i]
		}
	})
}

// savedResets reads resetCredits field by field (docs/broker-protocol.md
// §8.4, §13.1): a field of an unexpected type reads as absent, and so
// does a resetCredits or a credit that is not an object.
func (r *reader) savedResets() *SavedResets {
	if r.peek() != '{' {
		r.skip()
		return nil
	}
	sr := &SavedResets{}
	r.object([]string{"availableCount", "redeemableCount", "cooldownUntil", "credits"}, func(key string) {
		switch key {
		case "availableCount":
			sr.Available, sr.HasAvailable = r.looseNumber()
		case "redeemableCount":
			sr.Redeemable, sr.HasRedeemable = r.looseNumber()
		case "cooldownUntil":
			sr.CooldownUntil = r.looseTime()
		case "credits":
			r.loose('[', func() {
				r.array(func() { r.loose('{', func() { sr.Credits = append(sr.Credits, r.resetCredit()) }) })
			})
		}
	})
	return sr
}

func (r *reader) resetCredit() ResetCredit {
	var c ResetCredit
	r.object([]string{"expiresAt", "usable", "clears"}, func(key string) {
		switch key {
		case "expiresAt":
			c.ExpiresAt = r.looseTime()
		case "usable":
			r.loose('t', func() { c.Usable, c.HasUsable = r.boolean() })
		case "clears":
			r.loose('[', func() {
				r.array(func() {
					r.loose('"', func() {
						if id := r.str(); id != "" {
							c.Clears = append(c.Clears, id)
						}
					})
				})
			})
		}
	})
	return c
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
		t, _ = time.Parse(time.RFC3339Nano, strings.TrimSpace(r.plainStr()))
	default:
		r.skip()
	}
	return t
}
