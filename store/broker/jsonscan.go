package broker

import (
	"bytes"
	"encoding/json"
	"time"
	"unicode/utf8"
)

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
	_, err := walkMembers(data, fn)
	return err
}

// walkMembers is walkObject that also returns the index just past the
// object's closing brace. On input not known to be valid it checks the
// object's own punctuation (keys are strings, a colon after each, commas
// between members, a closing brace) but not the values: a caller that
// skips json.Valid must check each value it uses.
func walkMembers(data []byte, fn func(key, val []byte) error) (int, error) {
	i := skipWS(data, 1)
	if i < len(data) && data[i] == '}' {
		return i + 1, nil
	}
	for i < len(data) {
		if data[i] != '"' {
			return 0, missing("object key")
		}
		end := skipString(data, i)
		if end-1 <= i {
			return 0, missing("object key") // unterminated at the end of data
		}
		key := data[i+1 : end-1]
		i = skipWS(data, end)
		if i >= len(data) || data[i] != ':' {
			return 0, missing("object member")
		}
		i = skipWS(data, i+1)
		vend := skipValue(data, i)
		if vend <= i {
			return 0, missing("object value")
		}
		if err := fn(key, data[i:vend]); err != nil {
			return 0, err
		}
		i = skipWS(data, vend)
		if i >= len(data) {
			break
		}
		if data[i] == '}' {
			return i + 1, nil
		}
		if data[i] != ',' {
			return 0, missing("object separator")
		}
		i = skipWS(data, i+1)
	}
	return 0, missing("object end")
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

// stringEnd returns the index just past the string starting at data[i],
// or -1 when there is no string there or the data cuts it off (which
// skipString, on the hot path, does not tell apart from a string closed
// by the last byte).
func stringEnd(data []byte, i int) int {
	if i >= len(data) || data[i] != '"' {
		return -1
	}
	end := skipString(data, i)
	if end < len(data) {
		return end
	}
	// The last byte closes the string if it is a quote that no backslash
	// escapes: one after an even run of them.
	last, run := end-1, 0
	for k := last - 1; k > i && data[k] == '\\'; k-- {
		run++
	}
	if last > i && data[last] == '"' && run%2 == 0 {
		return end
	}
	return -1
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
