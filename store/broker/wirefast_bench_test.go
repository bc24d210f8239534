package broker

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/authbroker/authbroker_exporter/store/internal/testkit"
)

// deltaVariants derives frames from well-formed entry and removed frames:
// every way the fast path could disagree with encoding/json (key case,
// duplicates, unknown keys, nulls, quoted numbers, escapes, blocks,
// whitespace, truncation).
func deltaVariants() [][]byte {
	bases := []string{sseEntry, sseRemoved, string(benchEntryFrame(42, 9, "tok")),
		`{"kind":"entry","generation":3,"serverNowMs":1795751777704.5,"refresher":{"enabled":false,"intervalMs":60000,"skewMs":300000,"nextSweepInMs":9007199254740991},"entry":{"id":7,"provider":"gemini","credential":{"type":"api_key","key":"k"},"identityKey":null,"rotatesInMs":null,"blocks":[]}}`,
		`{"kind":"entry","generation":3,"serverNowMs":1,"refresher":{"enabled":true,"intervalMs":1,"skewMs":1,"nextSweepInMs":1},"entry":{"id":8,"provider":"openai-codex","credential":{"type":"oauth","access":"a","refresh":"__remote__","expires":8.64e15,"orgId":"O","projectId":"p"},"identityKey":"email:x","rotatesInMs":-5,"blocks":[{"providerKey":"openai-codex:oauth","blockScope":"chat","blockedUntilMs":1795751777704,"updatedAtMs":1795751777000}]}}`,
	}
	swaps := [][2]string{
		{`"kind"`, `"Kind"`}, {`"generation"`, `"Generation"`}, {`"entry":{`, `"ENTRY":{`}, {`"provider"`, `"Provider"`},
		{`"identityKey"`, `"identitykey"`}, {`"rotatesInMs"`, `"RotatesInMs"`}, {`"enabled"`, `"Enabled"`},
		{`"kind":"entry"`, `"kind":"Entry"`}, {`"kind":"entry"`, `"kind":"snapshot"`}, {`"kind":"removed"`, `"kind":"entry"`},
		{`"kind":"entry"`, `"kind":"removed"`}, {`"kind":"entry"`, `"kind":"\u0065ntry"`},
		{`"generation":`, `"generation":"`}, {`"generation":21`, `"generation":"21"`}, {`"generation":21`, `"generation":null`},
		{`"generation":21`, `"generation":2.1e1`}, {`"generation":21`, `"generation":-21`}, {`"generation":21`, `"generation":1e400`},
		{`"serverNowMs":`, `"serverNowMs":null,"x":`}, {`"refresher":{`, `"refresher":null,"r":{`},
		{`"enabled":true`, `"enabled":null`}, {`"enabled":true`, `"enabled":1`}, {`"intervalMs":60000`, `"intervalMs":"60000"`},
		{`"nextSweepInMs":42275`, `"nextSweepInMs":42275,"extra":1`}, {`"id":5`, `"id":"5"`}, {`"id":5`, `"id":5.5`},
		{`"id":5`, `"id":null`}, {`"id":4`, `"id":"4"`}, {`"id":4`, `"id":null`},
		{`"provider":"anthropic"`, `"provider":""`}, {`"provider":"anthropic"`, `"provider":null`}, {`"provider":"anthropic"`, `"provider":"anth\u00e9ropic"`},
		{`"provider":"anthropic"`, `"provider":"an\"t"`}, {`"provider":"anthropic"`, `"provider":7`},
		{`"identityKey":null`, `"identityKey":"email:a@b"`}, {`"identityKey":null`, `"identityKey":5`}, {`"identityKey":null`, `"identityKey":"\ud83d\ude00"`},
		{`"rotatesInMs":1000`, `"rotatesInMs":"1000"`}, {`"rotatesInMs":1000`, `"rotatesInMs":1e30`}, {`"rotatesInMs":1000`, `"rotatesInMs":null`},
		{`"rotatesInMs":1000`, `"rotatesInMs":1000,"blocks":[]`}, {`"rotatesInMs":1000`, `"rotatesInMs":1000,"blocks":null`},
		{`"rotatesInMs":1000`, `"rotatesInMs":1000,"blocks":{}`}, {`"rotatesInMs":1000`, `"rotatesInMs":1000,"rotatesInMs":5`},
		{`"type":"oauth"`, `"type":"OAUTH"`}, {`"type":"oauth"`, `"type":"api_key"`}, {`"type":"oauth"`, `"type":"oa\u0075th"`},
		{`"expires":`, `"expires":null,"e":`}, {`"credential":{`, `"credential":null,"c":{`}, {`"credential":{`, `"credential":{"EMAIL":"x",`},
		{`{"kind"`, ` {"kind"`}, {`{"kind"`, `{ "kind" `}, {`}}`, `} }`}, {`,"`, `, "`},
		{`"kind":"entry",`, `"kind":"entry","kind":"entry",`}, {`"kind":"removed",`, `"kind":"removed","entry":null,`},
		{`"kind":"removed",`, `"kind":"removed","entry":{"id":1},`}, {`"kind":"entry",`, `"kind":"entry","id":3,`},
		{`"kind":"removed",`, `"kind":"removed","entry":{"credential":5},`}, {`"kind":"entry",`, `"kind":"entry","id":"x",`},
		// rotatesInMs where the unchanged-entry path does not look for it.
		{`"type":"oauth"`, `"type":"oauth","rotatesInMs":7`}, {`"rotatesInMs":1000`, `"rotatesInMs" :1000`},
		{`"rotatesInMs":1000`, `"rotatesInMs": 1000`}, {`"rotatesInMs":3300000`, `"rotatesInMs" :3300000`},
		{`"access":"tok"`, `"access":"tok\"rotatesInMs\":9"`},
		// encoding/json merges a repeated object key into one value.
		{`"entry":{`, `"entry":{"rotatesInMs":5,"identityKey":"dup"},"entry":{`},
		{`"refresher":{`, `"refresher":{"nextSweepInMs":1},"refresher":{`},
		{`"credential":{`, `"credential":{"email":"first@x"},"credential":{`},
	}
	var out [][]byte
	for _, b := range bases {
		out = append(out, []byte(b))
		for _, sw := range swaps {
			if strings.Contains(b, sw[0]) {
				out = append(out, []byte(strings.Replace(b, sw[0], sw[1], 1)))
			}
		}
		for _, cut := range []int{1, len(b) / 2, len(b) - 1} {
			out = append(out, []byte(b[:cut]))
		}
	}
	return out
}

// checkFastAgrees: whatever the fast path accepts, the general path must
// accept and decode to the very same frame. With a connection's decoder
// that has seen the frame's entry before (the unchanged-entry path), the
// same holds for the frame itself, for it with other rotatesInMs values,
// and for its entry under a different frame.
func checkFastAgrees(t *testing.T, data []byte) bool {
	t.Helper()
	recv := time.UnixMilli(1795751800000)
	fast, ok := decodeDeltaFast(data, recv, nil)
	if ok {
		slow, err := decodeFrameGeneral(data, recv)
		if err != nil {
			t.Fatalf("fast path accepted what the general path rejects (%v):\n%s", err, data)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("fast and general paths disagree on\n%s\nfast:    %+v %+v\ngeneral: %+v %+v", data, fast, fast.Entry, slow, slow.Entry)
		}
		// With a decoder, on first sight and on a repeat (the second
		// decode is the unchanged-entry path).
		d := &FrameDecoder{}
		for range 2 {
			pooled, ok := decodeDeltaFast(data, recv, d)
			if !ok || !reflect.DeepEqual(pooled, slow) {
				t.Fatalf("decoder's fast path disagrees on\n%s\npooled:  %+v\ngeneral: %+v", data, pooled, slow)
			}
		}
	}
	// The unchanged-entry path: a decoder that decoded this frame's entry
	// (in a plain frame, and in this frame) meets this frame and variants
	// of it that differ only in rotatesInMs.
	var fr frameFields
	if !fr.split(data) || len(fr.entry) == 0 {
		return ok
	}
	d := &FrameDecoder{}
	_, _ = decodeFrame(primeFrame(fr.entry), recv, d)
	checkDecoderAgrees(t, d, data, recv)
	_, _ = decodeFrame(data, recv, d)
	for _, v := range rotatesVariants(data) {
		checkDecoderAgrees(t, d, v, recv)
	}
	return ok
}

// checkDecoderAgrees: what decoder d's fast path accepts, the general path
// decodes to the same frame.
func checkDecoderAgrees(t *testing.T, d *FrameDecoder, data []byte, recv time.Time) {
	t.Helper()
	got, ok := decodeDeltaFast(data, recv, d)
	if !ok {
		return
	}
	want, err := decodeFrameGeneral(data, recv)
	if err != nil {
		t.Fatalf("decoder's fast path accepted what the general path rejects (%v):\n%s", err, data)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decoder's fast path and general path disagree on\n%s\nfast:    %+v %+v\ngeneral: %+v %+v", data, got, got.Entry, want, want.Entry)
	}
}

// primeFrame wraps an entry in a plain entry frame.
func primeFrame(entry []byte) []byte {
	return []byte(`{"kind":"entry","generation":1,"serverNowMs":1,"refresher":{"enabled":true,"intervalMs":1,"skewMs":1,"nextSweepInMs":1},"entry":` +
		string(entry) + `}`)
}

// rotatesVariants replaces the value of the first "rotatesInMs": in data by
// values valid and not, and drops the key.
func rotatesVariants(data []byte) [][]byte {
	const key = `"rotatesInMs":`
	i := strings.Index(string(data), key)
	if i < 0 {
		return nil
	}
	at := i + len(key)
	end := skipValue(data, at)
	var out [][]byte
	for _, v := range []string{"0", "-1", "3299999", "-0", "1.5", "2e3", "1E+2", "9007199254740991", "1e30", "null",
		"01", "1.", "-", "+1", ".5", "1e", `"5"`, "true", "{}", "1 ", " 1", "0x10", "NaN", ""} {
		out = append(out, []byte(string(data[:at])+v+string(data[end:])))
	}
	if j := strings.LastIndex(string(data[:i]), ","); j >= 0 {
		out = append(out, []byte(string(data[:j])+string(data[end:]))) // key removed
	}
	return out
}

func TestDecodeDeltaFastAgreesWithGeneral(t *testing.T) {
	accepted, rejected := tally(deltaVariants(), func(v []byte) bool { return checkFastAgrees(t, v) })
	// The fast path must carry the common frames, not bail on everything.
	for _, b := range []string{sseEntry, sseRemoved, string(benchEntryFrame(42, 9, "tok"))} {
		if _, ok := decodeDeltaFast([]byte(b), time.Now(), nil); !ok {
			t.Fatalf("fast path declined a plain frame:\n%s", b)
		}
	}
	if accepted < 20 || rejected < 20 {
		t.Fatalf("variants: %d accepted, %d declined; the corpus no longer exercises both", accepted, rejected)
	}
}

// unchangedHit reports whether d would take the unchanged-entry path for
// data.
func unchangedHit(d *FrameDecoder, data []byte) bool {
	var fr frameFields
	if !fr.split(data) || string(fr.kind) != `"entry"` {
		return false
	}
	k := entryKeyOf(fr.entry)
	_, ok := d.unchanged(&fr, &k, time.Now())
	return ok
}

// TestDecoderUnchangedEntry: an entry re-sent with only rotatesInMs (and
// the frame's generation, serverNowMs, refresher) moved takes the
// unchanged-entry path; one that differs in anything else is decoded in
// full; a removed frame or a new snapshot forgets what was seen.
func TestDecoderUnchangedEntry(t *testing.T) {
	base := string(benchEntryFrame(42, 9, canaryAccess))
	primed := func() *FrameDecoder {
		d := &FrameDecoder{}
		if _, err := d.Decode([]byte(base), epoch); err != nil {
			t.Fatal(err)
		}
		return d
	}
	d := primed()
	if unchangedHit(d, []byte(strings.Replace(base, `"id":42`, `"id":43`, 1))) {
		t.Fatal("an id never seen took the unchanged path")
	}
	hits := []string{
		base,
		strings.Replace(base, `"rotatesInMs":3300000`, `"rotatesInMs":3299000`, 1),
		strings.Replace(base, `"rotatesInMs":3300000`, `"rotatesInMs":-12.5`, 1),
		strings.Replace(base, `"rotatesInMs":3300000`, `"rotatesInMs":null`, 1),
		strings.Replace(base, `"generation":9`, `"generation":11`, 1),
		strings.Replace(base, `"serverNowMs":1795751777704`, `"serverNowMs":1795751837704`, 1),
		strings.Replace(base, `"nextSweepInMs":42275`, `"nextSweepInMs":1000`, 1),
		strings.Replace(base, `"enabled":true`, `"enabled":false`, 1),
		strings.Replace(base, `{"kind"`, `{ "kind"`, 1) + "\n",
	}
	misses := []string{
		strings.Replace(base, canaryAccess, canaryAccess+"x", 1),                                   // token
		strings.Replace(base, `"expires":1795755013000`, `"expires":1795755013001`, 1),             // expiry
		strings.Replace(base, `"rotatesInMs":3300000`, `"rotatesInMs":3300000,"blocks":[]`, 1),     // blocks key
		strings.Replace(base, `"identityKey":"email:user42@example.com"`, `"identityKey":null`, 1), // identity
		strings.Replace(base, `"email":"user42@example.com"`, `"email":"User42@example.com"`, 1),   // email
		strings.Replace(base, `"rotatesInMs":3300000`, `"rotatesInMs":"3300000"`, 1),               // quoted
		strings.Replace(base, `"rotatesInMs":3300000`, `"rotatesInMs":03300000`, 1),                // not JSON
		strings.Replace(base, `"rotatesInMs":3300000`, `"rotatesInMs":1e30`, 1),                    // out of range
		strings.Replace(base, `"id":42,`, ``, 1),                                                   // no id
		strings.Replace(base, `"generation":9`, `"generation":09`, 1),
		strings.Replace(base, `"generation":9`, `"generation":"9"`, 1),
		strings.Replace(base, `"serverNowMs":1795751777704`, `"serverNowMs":1795751777704.`, 1),
		strings.Replace(base, `"enabled":true`, `"enabled":tru`, 1),
		strings.Replace(base, `"intervalMs":60000`, `"intervalMs":060000`, 1),
		strings.Replace(base, `"nextSweepInMs":42275`, `"nextSweepInMs":4.e2`, 1),
		strings.Replace(base, `"kind":"entry"`, `"kind":"entry","id":42`, 1),
		base + "x",
		base[:len(base)-1],
	}
	// Each on a decoder that has seen only base: a miss decoded in full
	// replaces what the decoder saw.
	for _, m := range hits {
		if !unchangedHit(primed(), []byte(m)) {
			t.Errorf("declined the unchanged path:\n%s", m)
		}
		checkDecoderAgrees(t, primed(), []byte(m), epoch)
	}
	for _, m := range misses {
		if unchangedHit(primed(), []byte(m)) {
			t.Errorf("took the unchanged path:\n%s", m)
		}
		checkDecoderAgrees(t, primed(), []byte(m), epoch)
	}
	// A changed entry decoded in full replaces what was seen.
	if _, err := d.Decode([]byte(misses[0]), epoch); err != nil {
		t.Fatal(err)
	}
	if unchangedHit(d, []byte(base)) || !unchangedHit(d, []byte(misses[0])) {
		t.Fatal("a rotated entry did not replace the one seen before")
	}
	// A removed frame forgets the id; a snapshot forgets everything.
	if _, err := d.Decode([]byte(`{"kind":"removed","generation":12,"serverNowMs":1,"refresher":`+testkit.BenchRefresher+`,"id":42}`), epoch); err != nil {
		t.Fatal(err)
	}
	if unchangedHit(d, []byte(misses[0])) {
		t.Fatal("a removed id took the unchanged path")
	}
	if _, err := d.Decode([]byte(base), epoch); err != nil || !unchangedHit(d, []byte(base)) {
		t.Fatal("entry not seen again", err)
	}
	if _, err := d.Decode(benchSnapshotFrame(3, 13), epoch); err != nil {
		t.Fatal(err)
	}
	if unchangedHit(d, []byte(base)) || len(d.seen) != 0 {
		t.Fatal("a snapshot frame did not reset what the decoder has seen")
	}
}

func FuzzDecodeDeltaFast(f *testing.F) {
	for _, v := range deltaVariants() {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkFastAgrees(t, data) })
}

// BenchmarkDecodeFrame compares the two decoders on one entry frame.
func BenchmarkDecodeFrame(b *testing.B) {
	frame := benchEntryFrame(4242, 7, "access-token")
	for _, path := range []struct {
		name string
		fn   func([]byte, time.Time) (*StreamFrame, error)
	}{
		{"fast", func(b []byte, t time.Time) (*StreamFrame, error) { return decodeFrame(b, t, nil) }},
		{"fast+decoder", func() func([]byte, time.Time) (*StreamFrame, error) {
			d := &FrameDecoder{}
			return func(b []byte, t time.Time) (*StreamFrame, error) { return decodeFrame(b, t, d) }
		}()},
		{"general", decodeFrameGeneral},
	} {
		b.Run(path.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := path.fn(frame, time.Now()); err != nil {
					b.Fatal(fmt.Sprint(err))
				}
			}
		})
	}
}

// TestStringPool: a repeated string costs no allocation and comes back as
// the pooled copy, by bytes or by string; the pool stays within two
// generations however many distinct strings pass through.
func TestStringPool(t *testing.T) {
	p := &stringPool{}
	first := p.get([]byte("user@example.com"))
	key := []byte("user@example.com")
	if n := testing.AllocsPerRun(100, func() { p.get(key) }); n != 0 {
		t.Fatalf("a pooled string allocates %v times", n)
	}
	if got := p.share(string(key)); unsafe.StringData(got) != unsafe.StringData(first) {
		t.Fatal("share returned a new copy of a pooled string")
	}
	for i := range 3 * stringPoolGen {
		p.get([]byte(strconv.Itoa(i)))
	}
	if n := len(p.cur) + len(p.old); n > 2*stringPoolGen {
		t.Fatalf("pool holds %d strings, bound %d", n, 2*stringPoolGen)
	}
}
