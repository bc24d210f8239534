package broker

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"
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
// accept and decode to the very same frame.
func checkFastAgrees(t *testing.T, data []byte) bool {
	t.Helper()
	recv := time.UnixMilli(1795751800000)
	fast, ok := decodeDeltaFast(data, recv, nil)
	if !ok {
		return false
	}
	slow, err := decodeFrameGeneral(data, recv)
	if err != nil {
		t.Fatalf("fast path accepted what the general path rejects (%v):\n%s", err, data)
	}
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("fast and general paths disagree on\n%s\nfast:    %+v %+v\ngeneral: %+v %+v", data, fast, fast.Entry, slow, slow.Entry)
	}
	// With a string pool, on first sight and on a repeat.
	pool := &stringPool{}
	for range 2 {
		pooled, ok := decodeDeltaFast(data, recv, pool)
		if !ok || !reflect.DeepEqual(pooled, slow) {
			t.Fatalf("pooled fast path disagrees on\n%s\npooled:  %+v\ngeneral: %+v", data, pooled, slow)
		}
	}
	return true
}

func TestDecodeDeltaFastAgreesWithGeneral(t *testing.T) {
	accepted, rejected := 0, 0
	for _, v := range deltaVariants() {
		if checkFastAgrees(t, v) {
			accepted++
		} else {
			rejected++
		}
	}
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
		{"fast+pool", func() func([]byte, time.Time) (*StreamFrame, error) {
			pool := &stringPool{}
			return func(b []byte, t time.Time) (*StreamFrame, error) { return decodeFrame(b, t, pool) }
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
