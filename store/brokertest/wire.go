package brokertest

import (
	"bytes"
	"encoding/json"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// object is a JSON object that keeps its key order, so frames come out in
// the same order as the broker's JSON.stringify output.
type object []field

type field struct {
	k string
	v any
}

func (o object) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('{')
	for i, f := range o {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(mustJSON(f.k))
		buf.WriteByte(':')
		buf.Write(mustJSON(f.v))
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// mustJSON marshals without HTML escaping (JSON.stringify does not escape
// <, > or &). Every value the fake marshals is built by the fake itself.
func mustJSON(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic("brokertest: marshal: " + err.Error())
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'})
}

// ms is an epoch-millisecond timestamp; the zero time is 0.
func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// maxSafeInteger is Number.MAX_SAFE_INTEGER, the broker's nextSweepInMs
// while the refresher is disabled.
const maxSafeInteger = 1<<53 - 1

var jsDecimal = regexp.MustCompile(`^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$`)

// jsNumber mirrors JavaScript's Number(string): surrounding whitespace is
// ignored, "" is 0, 0x/0o/0b prefixes and Infinity are accepted; anything
// else is NaN. The broker parses both `wait` and the If-None-Match tag
// with it, so "+5", "5.0", " 5 " and "0x5" are all 5.
func jsNumber(s string) float64 {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0
	}
	switch s {
	case "Infinity", "+Infinity":
		return math.Inf(1)
	case "-Infinity":
		return math.Inf(-1)
	}
	if len(s) > 2 && s[0] == '0' {
		base := 0
		switch s[1] {
		case 'x', 'X':
			base = 16
		case 'o', 'O':
			base = 8
		case 'b', 'B':
			base = 2
		}
		if base != 0 {
			digits := s[2:]
			if strings.ContainsAny(digits, "_+-") {
				return math.NaN()
			}
			n, err := strconv.ParseUint(digits, base, 64)
			if err != nil {
				return math.NaN()
			}
			return float64(n)
		}
	}
	if !jsDecimal.MatchString(s) {
		return math.NaN()
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !math.IsInf(f, 0) {
		return math.NaN()
	}
	return f
}

// parseGenerationTag is the broker's If-None-Match parser: trim, drop a
// leading W/, drop one pair of quotes, then Number(); a non-integer or
// negative result counts as absent.
func parseGenerationTag(header string) (int64, bool) {
	if header == "" {
		return 0, false
	}
	v := strings.TrimSpace(header)
	if strings.HasPrefix(v, "W/") {
		v = strings.TrimSpace(v[2:])
	}
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	}
	f := jsNumber(v)
	if math.IsNaN(f) || math.IsInf(f, 0) || f != math.Trunc(f) || f < 0 || f > maxSafeInteger {
		return 0, false
	}
	return int64(f), true
}

// parseWaitMs: absent or non-finite is 0; truncated and clamped to [0, 30000].
func parseWaitMs(raw string, present bool) time.Duration {
	if !present {
		return 0
	}
	f := jsNumber(raw)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	f = math.Max(0, math.Min(maxWaitMs, math.Trunc(f)))
	return time.Duration(f) * time.Millisecond
}

const maxWaitMs = 30000

// isDefinitiveOAuthFailure is the broker's test for a dead grant: such a
// refresh failure also disables the row.
var (
	definitiveFailure = regexp.MustCompile(`(?i)invalid_grant|invalid_token|unauthorized_client|\brevoked\b|refresh[\s_]?token.*expired`)
	transientFailure  = regexp.MustCompile(`(?i)timeout|network|fetch failed|ECONN(?:REFUSED|RESET)|ETIMEDOUT|EAI_AGAIN|socket hang up|\b(?:408|425|429|5\d{2})\b|rate.?limit|too many requests|temporar|unavailable|forbidden|permission_denied|cloudflare|captcha`)
	httpAuthFailure   = regexp.MustCompile(`\b401\b`)
)

func isDefinitiveOAuthFailure(msg string) bool {
	if definitiveFailure.MatchString(msg) {
		return true
	}
	return httpAuthFailure.MatchString(msg) && !transientFailure.MatchString(msg)
}
