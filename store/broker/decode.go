package broker

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
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
// none is kept but what the caller copies out: a value read is valid only
// until the next read, as the input may be streamed.
type reader struct {
	dec  jsontext.Decoder
	in   bytes.Buffer // the document; jsontext reads a bytes.Buffer in place
	op   string
	recv time.Time   // when the document arrived
	pool *stringPool // nil: plain strings
	err  error
	seen uint64 // the fields of the object read last that were there and valid
	buf  []byte // scratch for unquoting
	// Chunks the values of a usage answer are carved from (carve).
	windows []UsageWindow
	floats  []float64
}

// decodeOptions: JSON.stringify writes a lone surrogate of a string (an
// account name, say) as a \udXXX escape, which RFC 7493 rejects; it
// decodes to U+FFFD, as encoding/json would decode it.
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

// newStreamReader reads a document from in as it arrives, through a
// buffer of a few kilobytes: a large answer is never held whole.
func newStreamReader(op string, in io.Reader, pool *stringPool) *reader {
	r := &reader{op: op, pool: pool}
	r.dec.Reset(in, decodeOptions...)
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
	var se *jsontext.SyntacticError
	switch {
	case r.err != nil:
	case err == nil:
		r.err = protoErr(r.op, "malformed JSON: data after the document")
	case errors.Is(err, io.ErrUnexpectedEOF), err == io.EOF:
		r.err = protoErr(r.op, "truncated JSON")
	case errors.As(err, &se) && se.Err == jsontext.ErrDuplicateName:
		r.err = protoErr(r.op, "%s: duplicate key", fieldPath(se.JSONPointer, ""))
	case errors.As(err, &se):
		r.err = protoErr(r.op, "malformed JSON at offset %d", se.ByteOffset)
	default:
		r.err = protoErr(r.op, "malformed JSON")
	}
}

// fail records a failure of the value just read (or, after an object's
// end, of that object's field).
func (r *reader) fail(field, format string, args ...any) {
	if r.err == nil {
		r.err = protoErr(r.op, "%s: %s", fieldPath(r.dec.StackPointer(), field), fmt.Sprintf(format, args...))
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

// fieldPath writes a JSON pointer, and a field of the value it points
// to, as a path: credentials[3].credential.expires.
func fieldPath(p jsontext.Pointer, field string) string {
	path := ""
	for tok := range p.Tokens() {
		if _, err := strconv.ParseUint(tok, 10, 32); err == nil {
			path += "[" + tok + "]"
			continue
		}
		path += "." + tok
	}
	if field != "" {
		path += "." + field
	}
	if path = strings.TrimPrefix(path, "."); path == "" {
		return "document"
	}
	return path
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

// value reads a value whole; nil after a failure.
func (r *reader) value() jsontext.Value {
	if r.err != nil {
		return nil
	}
	v, err := r.dec.ReadValue()
	if err != nil {
		r.syntax(err)
	}
	return v
}

// skip skips a value; after a failure, what it skips is never read.
func (r *reader) skip() {
	if err := r.dec.SkipValue(); err != nil {
		r.syntax(err)
	}
}

var kindNames = map[jsontext.Kind]string{'"': "a string", '0': "a number", 't': "a boolean", 'f': "a boolean",
	'{': "an object", '[': "an array"}

// expect checks that the next value is an object or an array (want '{'
// or '['), leaving it unread: false for null, which is read as absent,
// and for any other kind, which is a failure.
func (r *reader) expect(want jsontext.Kind) bool {
	k := r.peek()
	if k != want && k != 0 {
		r.is(want, r.value())
	}
	return k == want
}

// scalar reads a string, a number or a boolean (want '"', '0' or 't')
// whole; nil for null, which is read as absent, and for any other kind.
func (r *reader) scalar(want jsontext.Kind) jsontext.Value {
	if v := r.value(); r.is(want, v) {
		return v
	}
	return nil
}

// is reports whether v, a value read whole, is of kind want; null is not,
// and any other kind is a failure.
func (r *reader) is(want jsontext.Kind, v jsontext.Value) bool {
	switch k := v.Kind(); {
	case k == want || want == 't' && k == 'f':
		return true
	case v != nil && k != 'n':
		r.fail("", "want %s, got %s", kindNames[want], kindNames[k])
	}
	return false
}

// A field is a key of an object a decoder reads. read decodes the value
// into v and reports whether it was there and valid; a required field
// that was not is a failure once the object ends.
type field[T any] struct {
	key      string
	required bool
	read     func(r *reader, v *T) bool
}

const (
	optional = false
	required = true
)

// readObject reads the object at the reader's position into v through
// fields; it returns false for null (read as absent) and after a failure.
// A key not among fields is skipped, unless it differs only in case from
// one of them (encoding/json would once have taken it for that field).
func readObject[T any](r *reader, v *T, fields []field[T]) bool {
	if !r.expect('{') {
		return false
	}
	r.dec.ReadToken()
	var seen uint64
next:
	for r.more() {
		name := r.unquote(r.value())
		for i := range fields {
			if string(name) == fields[i].key {
				if fields[i].read(r, v) {
					seen |= 1 << i
				}
				continue next
			}
		}
		fold := slices.IndexFunc(fields, func(f field[T]) bool { return strings.EqualFold(string(name), f.key) })
		r.skip() // name is not valid after it
		if fold >= 0 {
			r.fail("", "key differs only in case from %q", fields[fold].key)
		}
	}
	for i, f := range fields {
		if f.required && seen&(1<<i) == 0 {
			r.require(false, f.key)
		}
	}
	r.seen = seen
	return r.err == nil
}

// has reports whether the object read last had key, there and valid.
func has[T any](r *reader, fields []field[T], key string) bool {
	i := slices.IndexFunc(fields, func(f field[T]) bool { return f.key == key })
	return r.seen&(1<<i) != 0
}

// decodeDocument decodes a whole document, an object read through fields.
func decodeDocument[T any](r *reader, v *T, fields []field[T]) error {
	r.require(readObject(r, v, fields), "")
	return r.finish()
}

// array reads the array at the reader's position (false for null),
// calling read for each element.
func (r *reader) array(read func()) bool {
	if !r.expect('[') {
		return false
	}
	r.dec.ReadToken()
	for r.more() {
		read()
	}
	return r.err == nil
}

// objects reads an array of objects through fields, appending them to
// *dst (false for null); each element must be a valid object.
func objects[T any](r *reader, dst *[]T, fields []field[T]) bool {
	return r.array(func() {
		*dst = append(*dst, *new(T))
		r.require(readObject(r, &(*dst)[len(*dst)-1], fields), "")
	})
}

// more reports whether the open object or array has another member or
// element, and reads its end when not.
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

// unquote returns the content of a JSON string token, in r.buf when it
// has escapes; it is valid until the next read.
func (r *reader) unquote(raw []byte) []byte {
	if len(raw) < 2 {
		return nil
	}
	if inner := raw[1 : len(raw)-1]; bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
		return inner
	}
	// The tokenizer accepted the string: the only error left to report is
	// invalid UTF-8, which becomes U+FFFD.
	r.buf, _ = jsontext.AppendUnquote(r.buf[:0], raw)
	return r.buf
}

// number reads a number literal; nil for null.
func (r *reader) number() []byte {
	return r.scalar('0')
}

// The readers of a field's value into dst report whether the value was
// there (not null) and valid.

// text reads a string that many objects repeat (a provider, a limit id),
// shared through the pool; null is "".
func (r *reader) text(dst *string) bool { return r.string(dst, r.pool) }

// plain reads a string of one object's own (an email, an account id):
// pooling those would cost a lookup in a large map for each.
func (r *reader) plain(dst *string) bool { return r.string(dst, nil) }

func (r *reader) string(dst *string, pool *stringPool) bool {
	v := r.scalar('"')
	*dst = pool.get(r.unquote(v))
	return v != nil
}

func (r *reader) bool(dst *bool) bool {
	v := r.scalar('t')
	*dst = len(v) > 0 && v[0] == 't'
	return v != nil
}

func (r *reader) int(dst *int64) (ok bool) {
	*dst, ok = numInt(r.number())
	return ok
}

func (r *reader) time(dst *time.Time) (ok bool) {
	*dst, ok = msTime(r.number())
	return ok
}

func (r *reader) duration(dst *time.Duration) (ok bool) {
	*dst, ok = msDuration(r.number())
	return ok
}

// Numbers. The broker is JavaScript: any number may be fractional or
// written with an exponent (docs/broker-protocol.md §1).

// numInt accepts an integer or a float and truncates toward zero; false
// for nil and for a value out of int64's range.
func numInt(b []byte) (int64, bool) {
	if v, err := strconv.ParseInt(string(b), 10, 64); err == nil {
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
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

// msTime converts epoch milliseconds (integer or fractional) to a time.
func msTime(b []byte) (time.Time, bool) {
	if v, err := strconv.ParseInt(string(b), 10, 64); err == nil {
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
// bytes allocates nothing. It starts over once it holds stringPoolMax
// strings, so it stays bounded under churn. A nil pool just converts.
type stringPool struct{ m map[string]string }

const stringPoolMax = 1 << 17

func (p *stringPool) get(b []byte) string {
	if p == nil {
		return string(b)
	}
	if s, ok := p.m[string(b)]; ok {
		return s
	}
	if p.m == nil || len(p.m) >= stringPoolMax {
		p.m = make(map[string]string)
	}
	s := string(b)
	p.m[s] = s
	return s
}
