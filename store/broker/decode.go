package broker

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// reader is the one strict, single-pass JSON reader every broker document
// is decoded with (docs/broker-protocol.md §1). On top of jsontext, which
// rejects malformed JSON and duplicate keys, it rejects a key that differs
// only in case from a known one, a value of the wrong type (a quoted number
// included) and, through require, a missing field. The first failure
// sticks: every read after it returns a zero value, and err is a
// ProtocolError naming the field path. Values are parsed as they are read;
// none is kept but what the caller copies out.
type reader struct {
	dec  jsontext.Decoder
	in   bytes.Buffer // the document; jsontext reads a bytes.Buffer in place
	op   string
	pool *stringPool // nil: plain strings
	err  error
	name []byte // the key of the member being read
	buf  []byte // scratch for unquoting
}

// decodeOptions: JSON.stringify writes a lone surrogate of a string (an
// account name, say) as a \udXXX escape, which RFC 7493 rejects; it
// decodes to U+FFFD as in JavaScript's own JSON.parse round trip.
var decodeOptions = []jsontext.Options{jsontext.AllowInvalidUTF8(true)}

func (r *reader) reset(op string, data []byte) {
	r.in = *bytes.NewBuffer(data)
	r.dec.Reset(&r.in, decodeOptions...)
	r.op, r.err = op, nil
}

func newReader(op string, data []byte, pool *stringPool) *reader {
	r := &reader{pool: pool}
	r.reset(op, data)
	return r
}

// finish checks that nothing but whitespace follows the document and
// returns the reader's error.
func (r *reader) finish() error {
	if r.err == nil {
		if _, err := r.dec.ReadToken(); err != io.EOF {
			r.syntax(err)
		}
	}
	return r.err
}

// syntax records a jsontext error. Its own text may quote the input,
// which may be token material, so only its location and kind are kept.
func (r *reader) syntax(err error) {
	if r.err != nil {
		return
	}
	var se *jsontext.SyntacticError
	switch {
	case err == nil:
		r.err = protoErr(r.op, "malformed JSON: data after the document")
	case errors.Is(err, io.ErrUnexpectedEOF), err == io.EOF:
		r.err = protoErr(r.op, "truncated JSON")
	case errors.As(err, &se) && se.Err == jsontext.ErrDuplicateName:
		r.err = protoErr(r.op, "%s: duplicate key", fieldPath(se.JSONPointer))
	case errors.As(err, &se):
		r.err = protoErr(r.op, "malformed JSON at offset %d", se.ByteOffset)
	default:
		r.err = protoErr(r.op, "malformed JSON")
	}
}

// fail records a failure of the value just read (or, after an object's
// end, of that object) with field appended to its path.
func (r *reader) fail(field, format string, args ...any) {
	if r.err == nil {
		path := fieldPath(r.dec.StackPointer())
		if field != "" {
			path = joinPath(path, field)
		}
		if path == "" {
			path = "document"
		}
		r.err = protoErr(r.op, "%s: %s", path, fmt.Sprintf(format, args...))
	}
}

// require fails unless ok: called after an object's end for each of its
// required fields (an invalid value counts as missing).
func (r *reader) require(ok bool, field string) bool {
	if !ok {
		r.fail(field, "missing or invalid")
	}
	return ok
}

// fieldPath writes a JSON pointer as a path: credentials[3].credential.expires.
func fieldPath(p jsontext.Pointer) string {
	path := ""
	for tok := range p.Tokens() {
		path = joinPath(path, tok)
	}
	return path
}

func joinPath(path, tok string) string {
	if _, err := strconv.ParseUint(tok, 10, 32); err == nil {
		return path + "[" + tok + "]"
	}
	if len(tok) > 40 {
		tok = tok[:40] + "…"
	}
	if strings.ContainsFunc(tok, func(c rune) bool { return c <= ' ' || c == '.' || c == '[' || c == '"' || c >= utf8.RuneSelf }) {
		tok = strconv.Quote(tok)
	}
	if path == "" {
		return tok
	}
	return path + "." + tok
}

// peek returns the kind of the next token; 0 after a failure, which it
// records when it is the tokenizer's.
func (r *reader) peek() jsontext.Kind {
	if r.err != nil {
		return 0
	}
	k := r.dec.PeekKind()
	if k == 0 { // jsontext defers the error to the next read
		_, err := r.dec.ReadToken()
		r.syntax(err)
	}
	return k
}

// value reads a scalar; nil after a failure.
func (r *reader) value() jsontext.Value {
	if r.err != nil {
		return nil
	}
	v, err := r.dec.ReadValue()
	if err != nil {
		r.syntax(err)
		return nil
	}
	return v
}

func (r *reader) skip() {
	if r.err == nil {
		if err := r.dec.SkipValue(); err != nil {
			r.syntax(err)
		}
	}
}

// open starts the object or array at the reader's position (kind '{' or
// '['). It returns false for null (read, as absent) and for any other
// value (a failure).
func (r *reader) open(kind jsontext.Kind) bool {
	switch r.peek() {
	case kind:
		if _, err := r.dec.ReadToken(); err != nil {
			r.syntax(err)
			return false
		}
		return true
	case 'n':
		r.value()
	case 0:
	default:
		want := "an object"
		if kind == '[' {
			want = "an array"
		}
		r.wrongType(want)
	}
	return false
}

// wrongType fails on the value at the reader's position, then reads it so
// that the path names it.
func (r *reader) wrongType(want string) {
	got := kindName(r.peek())
	r.skip()
	r.fail("", "want %s, got %s", want, got)
}

func kindName(k jsontext.Kind) string {
	switch k {
	case '"':
		return "a string"
	case '0':
		return "a number"
	case 't', 'f':
		return "a boolean"
	case '{':
		return "an object"
	case '[':
		return "an array"
	}
	return "null"
}

// member reports whether the open object has another member, and reads
// its key into r.name; at the object's end it reads the end.
func (r *reader) member() bool {
	if !r.more() {
		return false
	}
	r.name = r.unquote(r.value())
	return r.err == nil
}

// more reports whether the open array (or object) has another element,
// and reads the end when not.
func (r *reader) more() bool {
	switch r.peek() {
	case 0:
		return false
	case '}', ']':
		if _, err := r.dec.ReadToken(); err != nil {
			r.syntax(err)
		}
		return false
	}
	return true
}

// unknown skips the value of a member whose key is not one of known,
// unless the key is one of them but for case (encoding/json would once
// have taken it for that field).
func (r *reader) unknown(known []string) {
	for _, k := range known {
		if string(r.name) != k && strings.EqualFold(string(r.name), k) {
			r.skip()
			r.fail("", "key differs only in case from %q", k)
			return
		}
	}
	r.skip()
}

// unquote returns the content of a JSON string token, in r.buf when it
// has escapes; it is valid until the next read.
func (r *reader) unquote(raw []byte) []byte {
	if len(raw) < 2 {
		return nil
	}
	if inner := raw[1 : len(raw)-1]; bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
		return inner
	}
	// Invalid UTF-8 and lone surrogates become U+FFFD; that is all the
	// error can report, as the tokenizer accepted the string.
	r.buf, _ = jsontext.AppendUnquote(r.buf[:0], raw)
	return r.buf
}

// str reads a string; null is "".
func (r *reader) str() string {
	if k := r.peek(); k != '"' {
		if k == 'n' {
			r.value()
		} else if k != 0 {
			r.wrongType("a string")
		}
		return ""
	}
	return r.pool.get(r.unquote(r.value()))
}

// plainStr is str without the pool, for strings nothing else repeats.
func (r *reader) plainStr() string {
	if r.peek() == '"' {
		return string(r.unquote(r.value()))
	}
	return r.str()
}

// boolean reads true or false; ok is false for null.
func (r *reader) boolean() (v, ok bool) {
	switch r.peek() {
	case 't', 'f':
		return r.value()[0] == 't', true
	case 'n':
		r.value()
	case 0:
	default:
		r.wrongType("a boolean")
	}
	return false, false
}

// number reads a number literal; nil for null.
func (r *reader) number() []byte {
	switch r.peek() {
	case '0':
		return r.value()
	case 'n':
		r.value()
	case 0:
	default:
		r.wrongType("a number")
	}
	return nil
}

// Numbers. The broker is JavaScript: any number may be fractional or
// written with an exponent (docs/broker-protocol.md §1).

// numInt accepts an integer or a float and truncates toward zero; false
// for nil and for a value out of int64's range.
func numInt(b []byte) (int64, bool) {
	if v, ok := smallInt(b); ok {
		return v, true
	}
	f, ok := numFloat(b)
	if !ok || f >= math.MaxInt64 || f <= math.MinInt64 {
		return 0, false
	}
	return int64(f), true
}

// numFloat: false for nil and for a value out of float64's range.
func numFloat(b []byte) (float64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

// smallInt parses an integer literal of up to 18 digits, without
// allocating.
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

// msTime converts epoch milliseconds (integer or fractional) to a time.
func msTime(b []byte) (time.Time, bool) {
	if v, ok := smallInt(b); ok {
		return time.UnixMilli(v), true
	}
	f, ok := numFloat(b)
	if !ok || f >= math.MaxInt64 || f <= math.MinInt64 {
		return time.Time{}, false
	}
	whole := math.Floor(f)
	return time.UnixMilli(int64(whole)).Add(time.Duration((f - whole) * 1e6)), true
}

const maxDurationMs = int64(math.MaxInt64 / int64(time.Millisecond))

// msDuration converts milliseconds to a Duration, saturating instead of
// overflowing (a disabled refresher sends 2^53-1).
func msDuration(b []byte) (time.Duration, bool) {
	v, ok := numInt(b)
	switch {
	case !ok:
		return 0, false
	case v > maxDurationMs:
		return math.MaxInt64, true
	case v < -maxDurationMs:
		return math.MinInt64, true
	}
	return time.Duration(v) * time.Millisecond, true
}

// stringPool hands out one copy of the strings a stream or a usage answer
// keeps repeating (providers, emails, limit ids, labels); a lookup by
// bytes allocates nothing. It holds two generations of stringPoolGen
// strings, so it stays bounded under churn. A nil pool just converts.
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
	if len(p.cur) >= stringPoolGen {
		p.old, p.cur = p.cur, nil
	}
	if p.cur == nil {
		p.cur = make(map[string]string)
	}
	p.cur[s] = s
	return s
}
