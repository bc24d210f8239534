package broker

import (
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// usageFastBase is an answer with every field the decoders read, saved
// resets and metadata the matching ignores included.
const usageFastBase = `{"generatedAt":1795755808604,"reports":[` + exampleUsageReport + `,
 {"provider":"openai-codex","fetchedAt":1795751800000.5,"metadata":{"email":"  B@Example.com ","account_id":"acct-B","project_id":"p","orgId":"org-1","orgName":"Team","nested":{"email":"x"}},
  "resetCredits":{"availableCount":2,"redeemableCount":1,"cooldownUntil":"2026-12-01T00:00:00Z","credits":[{"expiresAt":1795760000000,"clears":["codex:7d"]}]},
  "limits":[{"id":"codex:7d","label":"Weekly","scope":{"provider":"openai-codex","accountId":"acct-B","projectId":"p","orgId":"org-1","modelId":"m","tier":"team","windowId":"7d","shared":false},
   "window":{"id":"7d","label":"7 Day","durationMs":604800000,"resetsAt":1795760000000,"resetLabel":"Mon"},
   "amount":{"used":7,"limit":null,"unit":"requests"},"status":"exhausted"},
   {"id":"codex:x","window":null,"scope":null,"amount":null},
   {"id":"codex:y","amount":{"usedFraction":-0,"remainingFraction":1e-3}}]},
 {"provider":"github-copilot","limits":null,"metadata":null,"resetCredits":null,"fetchedAt":null}]}`

// usageVariants are usageFastBase with one value replaced (by values of
// every kind), one key re-spelled, repeated or escaped, or the document
// cut short: what the fast path must either decode exactly as the general
// path does, or leave to it.
func usageVariants() [][]byte {
	base := usageFastBase
	values := []string{"null", `""`, `" x "`, `"a\u0062c"`, `"\ud800"`, "\"\xff\"", "0", "-1", "1.5", "1e400", `"5"`,
		"true", "false", "{}", "[]", "[null]", "[{}]", `{"id":"q"}`,
		// Not JSON: every one must send the answer to the general path.
		"tru", "nul", "01", "1.", "-", `{"a" 1}`, `{"a":1,}`, "[1,]", "{,}", `"a\x"`, "\"a\x01\"", `"open`, `[null`, `{"q":`}
	var out [][]byte
	out = append(out, []byte(base))
	keys := regexp.MustCompile(`"([A-Za-z_]+)":`).FindAllStringSubmatchIndex(base, -1)
	for _, k := range keys {
		at := k[1] // the value's start
		end := skipValue([]byte(base), at)
		for _, v := range values {
			out = append(out, []byte(base[:at]+v+base[end:]))
		}
		name := base[k[2]:k[3]]
		for _, alias := range []string{strings.ToUpper(name[:1]) + name[1:], `\u00` + hex2(name[0]) + name[1:], name + "x"} {
			out = append(out, []byte(base[:k[2]]+alias+base[k[3]:]))
		}
		// The member repeated, with another value.
		out = append(out, []byte(base[:end]+`,"`+name+`":null`+base[end:]))
	}
	for _, cut := range []int{0, 1, len(base) / 3, len(base) - 1} {
		out = append(out, []byte(base[:cut]))
	}
	// Broken punctuation around and between valid parts.
	for _, tail := range []string{"x", "}", ",", " {}", "]", `"`} {
		out = append(out, []byte(base+tail))
	}
	for _, sep := range []string{":", ",", "{", "["} {
		for _, to := range []string{"", " ", sep + sep, ";"} {
			for _, at := range []int{strings.Index(base, sep), strings.LastIndex(base, sep)} {
				out = append(out, []byte(base[:at]+to+base[at+1:]))
			}
		}
	}
	return append(out, []byte(`[]`), []byte(`null`), []byte(`{"reports":{}}`), []byte(` {"reports":[]} `))
}

func hex2(c byte) string { return string("0123456789abcdef"[c>>4]) + string("0123456789abcdef"[c&15]) }

// checkUsageFastAgrees: what the fast path accepts, the general path
// accepts too and decodes to the very same reports.
func checkUsageFastAgrees(t *testing.T, body []byte) bool {
	t.Helper()
	// A decoder that decoded the base answer takes its reports where the
	// bytes are the same, without validating them again, and decodes the
	// rest: it must accept exactly what a fresh decode accepts.
	d := &UsageDecoder{}
	if _, err := d.Decode([]byte(usageFastBase)); err != nil {
		t.Fatal(err)
	}
	primed, primedOK := decodeUsageFast(body, d)
	fast, ok := decodeUsageFast(body, nil)
	if ok != primedOK {
		t.Fatalf("a primed decoder's fast path accepts (%v) what a fresh one accepts (%v) differently:\n%s", primedOK, ok, body)
	}
	if !ok {
		return false
	}
	slow, err := decodeUsageGeneral("usage", body)
	if err != nil {
		t.Fatalf("fast path accepted what the general path rejects (%v):\n%s", err, body)
	}
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("fast and general paths disagree on\n%s\nfast:    %+v\ngeneral: %+v", body, fast, slow)
	}
	if !reflect.DeepEqual(primed, slow) {
		t.Fatalf("a primed decoder disagrees with the general path on\n%s\nprimed:  %+v\ngeneral: %+v", body, primed, slow)
	}
	return true
}

// TestUsageDecoderReusesUnchangedReports: a report sent again byte for
// byte is the previous answer's (its limits are the same array); a changed
// one is decoded anew; an answer only the general path decodes makes the
// decoder forget.
func TestUsageDecoderReusesUnchangedReports(t *testing.T) {
	body := usageBody(3)
	d := &UsageDecoder{}
	first, err := d.Decode(body)
	if err != nil {
		t.Fatal(err)
	}
	changed := []byte(strings.Replace(string(body), `"email":"user1@`, `"email":"other1@`, 1))
	second, err := d.Decode(changed)
	if err != nil {
		t.Fatal(err)
	}
	same := func(a, b *UsageReport) bool { return &a.Limits[0] == &b.Limits[0] }
	if !same(&first.Reports[0], &second.Reports[0]) || !same(&first.Reports[2], &second.Reports[2]) {
		t.Fatal("unchanged reports were decoded again")
	}
	if same(&first.Reports[1], &second.Reports[1]) || second.Reports[1].Metadata.Email != "other1@example.com" {
		t.Fatalf("a changed report was taken from the previous answer: %+v", second.Reports[1].Metadata)
	}
	if want, _ := DecodeUsage(changed); !reflect.DeepEqual(second, want) {
		t.Fatal("the decoder's answer differs from a fresh decode")
	}
	// Upper-case keys: only the general path decodes this answer.
	if _, err := d.Decode([]byte(strings.ReplaceAll(string(body), `"provider":`, `"Provider":`))); err != nil {
		t.Fatal(err)
	}
	if d.seen != nil {
		t.Fatal("the decoder kept reports across an answer the general path decoded")
	}
}

func TestDecodeUsageFastAgreesWithGeneral(t *testing.T) {
	accepted, declined := tally(usageVariants(), func(v []byte) bool { return checkUsageFastAgrees(t, v) })
	// The fast path must carry the usual answers, not decline everything.
	for _, body := range [][]byte{[]byte(usageFastBase), usageBody(3)} {
		if _, ok := decodeUsageFast(body, nil); !ok {
			t.Fatalf("fast path declined a plain answer:\n%s", body)
		}
	}
	t.Logf("%d variants decoded by the fast path, %d left to the general path", accepted, declined)
	if accepted < 100 || declined < 100 {
		t.Fatalf("variants: %d accepted, %d declined; the corpus no longer exercises both", accepted, declined)
	}
}

func FuzzDecodeUsageFast(f *testing.F) {
	for _, v := range usageVariants() {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkUsageFastAgrees(t, body) })
}

// tally counts the variants a fast path took (check returns true) and
// those it left to the general path.
func tally(variants [][]byte, check func([]byte) bool) (taken, left int) {
	for _, v := range variants {
		if check(v) {
			taken++
		} else {
			left++
		}
	}
	return taken, left
}

// TestStringEnd: a string closed by the data's last byte is told apart
// from one the data cuts off, escaped quotes and backslashes included.
func TestStringEnd(t *testing.T) {
	for in, want := range map[string]int{
		`"a"`: 3, `"a",`: 3, `""`: 2, `"a\"b"`: 6, `"a\\"`: 5, `"a\\\""`: 7,
		`"`: -1, `"a`: -1, `"a\"`: -1, `"a\\\"`: -1, `x"a"`: -1, ``: -1,
	} {
		if got := stringEnd([]byte(in), 0); got != want {
			t.Errorf("stringEnd(%s) = %d, want %d", in, got, want)
		}
	}
}
