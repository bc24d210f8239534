package broker

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"time"
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

// Usage wire types. Reports and limits are open objects on the wire; only
// the fields below are read, and metadata only for its identity strings.

type wireUsage struct {
	GeneratedAt json.Number `json:"generatedAt"`
	Reports     *reportList `json:"reports"`
}

type wireReport struct {
	Provider     string                     `json:"provider"`
	FetchedAt    json.Number                `json:"fetchedAt"`
	Limits       []wireLimit                `json:"limits"`
	Metadata     map[string]json.RawMessage `json:"metadata"`
	ResetCredits json.RawMessage            `json:"resetCredits"`
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
	Size        int // bytes of the answer's body (0 when not from the wire)
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

// DecodeUsage decodes a /v1/usage answer.
func DecodeUsage(body []byte) (*UsageResponse, error) { return decodeUsage("usage", body) }

func decodeUsage(op string, body []byte) (*UsageResponse, error) {
	return decodeUsageWith(op, body, nil)
}

// decodeUsageWith decodes through the fast path, with d when not nil, and
// through encoding/json what the fast path leaves (d then forgets the
// previous answer).
func decodeUsageWith(op string, body []byte, d *UsageDecoder) (*UsageResponse, error) {
	if out, ok := decodeUsageFast(body, d); ok {
		return out, nil
	}
	if d != nil {
		d.seen = nil
	}
	return decodeUsageGeneral(op, body)
}

// decodeUsageGeneral decodes any answer through encoding/json.
func decodeUsageGeneral(op string, body []byte) (*UsageResponse, error) {
	var w wireUsage
	if err := decode(op, body, &w); err != nil {
		return nil, err
	}
	out, err := w.convert()
	if err != nil {
		return nil, jsonProtoErr(op, err)
	}
	return out, nil
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
	r.Resets = savedResets(wr.ResetCredits, in)
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

// savedResets reads resetCredits field by field, so that one field of an
// unexpected type costs that field, not the report: a resetCredits that is
// not an object reads as absent (nil), and so does a credit that is not one.
func savedResets(raw json.RawMessage, in *stringPool) *SavedResets {
	var m map[string]json.RawMessage
	if len(raw) == 0 || raw[0] != '{' || json.Unmarshal(raw, &m) != nil {
		return nil
	}
	sr := &SavedResets{}
	sr.Available, sr.HasAvailable = rawNumber(m["availableCount"])
	sr.Redeemable, sr.HasRedeemable = rawNumber(m["redeemableCount"])
	sr.CooldownUntil = rawTime(m["cooldownUntil"])
	var credits []json.RawMessage
	if json.Unmarshal(m["credits"], &credits) != nil {
		return sr
	}
	for _, raw := range credits {
		var c map[string]json.RawMessage
		if len(raw) == 0 || raw[0] != '{' || json.Unmarshal(raw, &c) != nil {
			continue
		}
		rc := ResetCredit{ExpiresAt: rawTime(c["expiresAt"])}
		rc.HasUsable = json.Unmarshal(c["usable"], &rc.Usable) == nil && len(c["usable"]) > 0 && c["usable"][0] != 'n'
		var clears []json.RawMessage
		if json.Unmarshal(c["clears"], &clears) == nil {
			for _, raw := range clears {
				var id string
				if json.Unmarshal(raw, &id) == nil && id != "" {
					rc.Clears = append(rc.Clears, in.share(id))
				}
			}
		}
		sr.Credits = append(sr.Credits, rc)
	}
	return sr
}

// rawNumber reads a finite JSON number.
func rawNumber(raw json.RawMessage) (float64, bool) {
	var f float64
	if len(raw) == 0 || raw[0] == 'n' || json.Unmarshal(raw, &f) != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, false
	}
	return f, true
}

// rawTime reads epoch milliseconds or an ISO-8601 (RFC 3339) string;
// anything else is the zero time.
func rawTime(raw json.RawMessage) time.Time {
	if len(raw) == 0 {
		return time.Time{}
	}
	if raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return time.Time{}
		}
		t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(s))
		if err != nil {
			return time.Time{}
		}
		return t
	}
	if t, ok := msTime(json.Number(bytes.TrimSpace(raw))); ok && isNumber(raw) {
		return t
	}
	return time.Time{}
}
