package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

// One fuzz target per broker document: the snapshot, the stream frame
// (raw SSE bytes through the client's event reader and the frame decoder), the usage answer,
// and the refresh and disable answers (usage matching has its own, in
// package store). scripts/fuzz.sh runs each for a bounded time;
// testdata/fuzz/<Fuzz...>/ holds the seed corpus (shapes of the real
// 18.2.3 captures) and every input that ever failed.

// memTransport answers every request with one canned response, so the
// fuzzed bytes go through the real client without a network.
type memTransport struct {
	status int
	ctype  string
	body   []byte
}

func (m memTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: m.status, Status: http.StatusText(m.status), Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {m.ctype}}, Body: io.NopCloser(bytes.NewReader(m.body)), Request: r,
		ContentLength: int64(len(m.body))}, nil
}

func memClient(t *testing.T, m memTransport, maxFrame int) *Client {
	t.Helper()
	c, err := NewClient(ClientOptions{URL: "http://broker.invalid", Token: StaticToken(canaryToken), Transport: m,
		MaxFrameBytes: maxFrame, Clock: newFakeClock(nil)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// secretStrings returns the string values a broker document holds as
// secrets (access, key, unknown credential fields), minus any that also
// occur as a non-secret value or a key: only the former must never show.
func secretStrings(data []byte) []string {
	var doc any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if dec.Decode(&doc) != nil {
		return nil
	}
	known := map[string]bool{"type": true, "expires": true, "email": true, "accountId": true, "projectId": true, "orgId": true,
		"orgName": true, "enterpriseUrl": true, "apiEndpoint": true, "authorizedAt": true, "source": true, "refresh": true}
	secret, public := map[string]bool{}, map[string]bool{}
	var walk func(v any, inCred bool)
	walk = func(v any, inCred bool) {
		switch x := v.(type) {
		case map[string]any:
			for k, y := range x {
				public[k] = true
				if k == "credential" {
					walk(y, true)
					continue
				}
				if s, ok := y.(string); ok && inCred && !known[k] {
					secret[s] = true
					continue
				}
				walk(y, inCred && !known[k])
			}
		case []any:
			for _, y := range x {
				walk(y, inCred)
			}
		case string:
			if inCred {
				secret[x] = true
			} else {
				public[x] = true
			}
		}
	}
	walk(doc, false)
	var out []string
	for s := range secret {
		if len(s) >= 6 && !public[s] {
			leaks := false
			for p := range public {
				if strings.Contains(p, s) {
					leaks = true // shows legitimately inside a public value
					break
				}
			}
			if !leaks {
				out = append(out, s)
			}
		}
	}
	return out
}

func checkNoSecrets(t *testing.T, data []byte, what string, v any, err error) {
	t.Helper()
	secrets := secretStrings(data)
	if len(secrets) == 0 {
		return
	}
	var texts []string
	if err != nil {
		texts = append(texts, err.Error(), fmt.Sprintf("%#v", err))
	}
	if v != nil && !reflect.ValueOf(v).IsNil() {
		texts = append(texts, fmt.Sprintf("%+v", v), fmt.Sprintf("%#v", v))
	}
	for _, s := range secrets {
		for _, text := range texts {
			if strings.Contains(text, s) {
				t.Fatalf("%s shows the secret %q: %s", what, s, text)
			}
		}
	}
}

func checkProtoErr(t *testing.T, err error) {
	t.Helper()
	var pe *ProtocolError
	if !errors.As(err, &pe) {
		t.Fatalf("error %T %v is not a ProtocolError", err, err)
	}
}

func checkEntry(t *testing.T, e *Entry) {
	t.Helper()
	if e == nil || e.Provider == "" {
		t.Fatalf("entry without provider: %+v", e)
	}
	switch e.Credential.Type {
	case TypeOAuth:
		if e.Credential.fingerprint == 0 {
			t.Fatal("OAuth entry without token fingerprint")
		}
	case TypeAPIKey:
		if e.Credential.fingerprint == 0 {
			t.Fatal("API key entry without key fingerprint")
		}
	default:
		t.Fatalf("credential type %q", e.Credential.Type)
	}
	if e.HasRotatesIn {
		if _, ok := e.RotationDeadline(); !ok {
			t.Fatal("rotation deadline")
		}
	}
}

func checkFrame(t *testing.T, f *StreamFrame) {
	t.Helper()
	switch f.Kind {
	case FrameSnapshot:
		if f.Snapshot == nil || f.Snapshot.Generation != f.Generation || f.Entry != nil {
			t.Fatalf("snapshot frame %+v", f)
		}
		for _, e := range f.Snapshot.Entries {
			checkEntry(t, e)
		}
	case FrameEntry:
		if f.Snapshot != nil {
			t.Fatal("entry frame with a snapshot")
		}
		checkEntry(t, f.Entry)
	case FrameRemoved:
		if f.Entry != nil || f.Snapshot != nil {
			t.Fatal("removed frame with a body")
		}
	default:
		t.Fatalf("frame kind %q", f.Kind)
	}
}

// decodeTwice decodes data, and a copy that is then overwritten: the two
// results must agree (deterministic, and nothing aliases the input buffer,
// which the event reader reuses).
func decodeTwice[T any](t *testing.T, data []byte, decode func([]byte) (T, error)) (T, error) {
	t.Helper()
	v, err := decode(data)
	buf := bytes.Clone(data)
	w, err2 := decode(buf)
	for i := range buf {
		buf[i] = 'x'
	}
	if (err == nil) != (err2 == nil) || (err != nil && err.Error() != err2.Error()) {
		t.Fatalf("not deterministic: %v vs %v", err, err2)
	}
	if !reflect.DeepEqual(v, w) {
		t.Fatalf("not deterministic, or aliases its input:\n%+v\n%+v", v, w)
	}
	return v, err
}

func FuzzSnapshot(f *testing.F) {
	f.Add([]byte(strings.Replace(sseSnapshot, `"kind":"snapshot",`, "", 1)))
	f.Add([]byte(strings.Replace(sseSnapshot, `"provider":"openai"`, `"provider":"openai \udc00"`, 1)))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := decodeTwice(t, data, func(b []byte) (*Snapshot, error) { return decodeSnapshot("GET /v1/snapshot", b, epoch) })
		checkNoSecrets(t, data, "decoded snapshot", s, err)
		if err != nil {
			checkProtoErr(t, err)
			return
		}
		for _, e := range s.Entries {
			checkEntry(t, e)
		}
	})
}

// canonicalSSE matches streams written the way the broker writes them:
// blocks of "event: <kind>\ndata: <one line>\n\n" and ": comment\n\n".
var canonicalSSE = regexp.MustCompile(`^(?:(?:event: [a-z]+\n)?data: [^\n\r]*\n\n|: [^\n\r]*\n\n)*$`)

// FuzzStreamFrame feeds raw bytes, as the broker's stream body, through
// the real client: its event reader and the frame decoder. The stream
// must end with ErrStreamEnded or a ProtocolError, hand over a snapshot
// first, and, for streams in the broker's own framing, hand over exactly
// the frames an independent reading of that framing decodes to (so the
// decoder neither depends on nor aliases the reader's reused buffers).
func FuzzStreamFrame(f *testing.F) {
	f.Add([]byte(sseFrame("snapshot", sseSnapshot) + ": keepalive\n\n" + sseFrame("entry", sseEntry) + sseFrame("removed", sseRemoved)))
	f.Add([]byte(sseFrame("snapshot", sseSnapshot) + "data: {\"kind\":\"entry\"\n\n"))
	f.Add([]byte(sseFrame("snapshot", sseSnapshot) + sseFrame("entry", strings.Replace(sseEntry, `"refresh"`, `"email":"\ud800@x","refresh"`, 1))))
	f.Fuzz(func(t *testing.T, raw []byte) {
		const maxFrame = 8 << 10
		c := memClient(t, memTransport{status: 200, ctype: "text/event-stream", body: raw}, maxFrame)
		var frames []*StreamFrame
		err := c.Stream(context.Background(), func(fr *StreamFrame) error {
			frames = append(frames, fr)
			return nil
		})
		var pe *ProtocolError
		if !errors.Is(err, ErrStreamEnded) && !errors.As(err, &pe) {
			t.Fatalf("stream ended with %T %v", err, err)
		}
		checkNoSecrets(t, raw, "stream error", nil, err)
		if len(frames) > 0 && frames[0].Kind != FrameSnapshot {
			t.Fatalf("first frame handed over is %s", frames[0].Kind)
		}
		for _, fr := range frames {
			checkFrame(t, fr)
			checkNoSecrets(t, raw, "decoded frame", fr, nil)
		}
		if !canonicalSSE.Match(raw) {
			return
		}
		// The broker's framing, read independently.
		var want []*StreamFrame
		wantErr := false
		for _, block := range strings.SplitAfter(string(raw), "\n\n") {
			if len(block) > maxFrame {
				wantErr = true
				break
			}
			if block == "" || strings.HasPrefix(block, ":") {
				continue
			}
			_, data, _ := strings.Cut(block, "data: ")
			data = strings.TrimSuffix(data, "\n\n")
			if data == "" {
				continue // an event without data is ignored
			}
			fr, err := decodeTwice(t, []byte(data), func(b []byte) (*StreamFrame, error) { return decodeFrame(b, epoch) })
			if err == nil && len(want) == 0 && fr.Kind != FrameSnapshot {
				err = errors.New("first frame not a snapshot")
			}
			if err != nil {
				wantErr = true
				break
			}
			want = append(want, fr)
		}
		if !reflect.DeepEqual(frames, want) || (err != ErrStreamEnded) != wantErr {
			t.Fatalf("frames %+v (%v), want %+v (error %v)", frames, err, want, wantErr)
		}
	})
}

// FuzzUsage feeds bodies of GET /v1/usage through the real client.
func FuzzUsage(f *testing.F) {
	f.Add([]byte(`{"generatedAt":1795755808604,"reports":[]}`))
	f.Add([]byte(`{"generatedAt":1,"reports":[` + exampleUsageReport + `]}`))
	f.Add([]byte(`{"generatedAt":1,"reports":[` + strings.Replace(exampleUsageReport, `"a@example.com"`, `"\udc00a@example.com"`, 1) + `]}`))
	// A key that differs only in case, far enough into the answer that the
	// streamed decoder's buffer is full-grown and is refilled in place
	// while its value is skipped, before the key is judged.
	f.Add([]byte(`{"generatedAt":1,"reports":[` + strings.Repeat(`{"provider":"p"},`, 600) + `{"provider":"p","x":"","Limits":1}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		c := memClient(t, memTransport{status: 200, ctype: "application/json", body: body}, 1<<20)
		resp, err := c.Usage(context.Background(), 1)
		checkNoSecrets(t, body, "usage", resp, err)
		// Read a byte at a time, the answer decodes as it does in one piece.
		bytewise, bErr := readUsage("GET /v1/usage", iotest.OneByteReader(bytes.NewReader(body)))
		if fmt.Sprint(err) != fmt.Sprint(bErr) || err == nil && !reflect.DeepEqual(resp, bytewise) {
			t.Fatalf("in one piece: %v; a byte at a time: %v", err, bErr)
		}
		if err != nil {
			checkProtoErr(t, err)
			return
		}
		if resp.Size != len(body) {
			t.Fatalf("Size %d for a %d-byte answer", resp.Size, len(body))
		}
		resp2, err2 := c.Usage(context.Background(), 1)
		if err2 != nil || !reflect.DeepEqual(resp, resp2) {
			t.Fatalf("not deterministic: %v", err2)
		}
		for _, r := range resp.Reports {
			if r.Provider == "" {
				t.Fatal("report without provider")
			}
			for _, s := range []string{r.Metadata.Email, r.Metadata.AccountID, r.Metadata.ProjectID, r.Metadata.OrgID} {
				if s != strings.TrimSpace(s) {
					t.Fatalf("metadata value %q not trimmed", s)
				}
			}
			for _, l := range r.Limits {
				if frac, ok := l.Amount.EffectiveUsedFraction(); ok && math.IsNaN(frac) {
					t.Fatalf("NaN used fraction from %+v", l.Amount)
				}
			}
			if sr := r.Resets; sr != nil {
				for _, n := range []float64{sr.Available, sr.Redeemable} {
					if math.IsNaN(n) || math.IsInf(n, 0) {
						t.Fatalf("saved-reset count %v", n)
					}
				}
				for _, c := range sr.Credits {
					if slices.Contains(c.Clears, "") {
						t.Fatalf("empty limit id in clears %q", c.Clears)
					}
				}
			}
		}
	})
}

// FuzzCallAnswer feeds one body through the real client as the answer of
// a refresh ({"entry": CredentialEntry}) and of a disable ({"ok": true}).
func FuzzCallAnswer(f *testing.F) {
	entry := sseEntry[strings.Index(sseEntry, `"entry":`)+len(`"entry":`) : len(sseEntry)-1]
	f.Add([]byte(`{"entry":` + entry + `}`))
	f.Add([]byte(`{"entry":` + strings.Replace(entry, `"anthropic"`, `"anthropic\udfff"`, 1) + `}`))
	f.Add([]byte(`{"ok":true}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		c := memClient(t, memTransport{status: 200, ctype: "application/json", body: body}, 1<<20)
		e, err := c.Refresh(context.Background(), 5)
		checkNoSecrets(t, body, "refresh answer", e, err)
		if err != nil {
			checkProtoErr(t, err)
		} else {
			checkEntry(t, e)
		}
		err = c.Disable(context.Background(), 5, "")
		checkNoSecrets(t, body, "disable answer", nil, err)
		if err != nil {
			checkProtoErr(t, err)
		}
	})
}

const exampleUsageReport = `{"provider":"anthropic","fetchedAt":1795751800000,"metadata":{"endpoint":"x","accountId":"acct-A","email":"a@example.com"},
 "limits":[{"id":"anthropic:5h","label":"Claude 5 Hour","scope":{"provider":"anthropic","windowId":"5h","shared":true},
  "window":{"id":"5h","label":"5 Hour","durationMs":18000000,"resetsAt":1795760000000},
  "amount":{"used":42,"limit":100,"remaining":58,"usedFraction":0.42,"remainingFraction":0.58,"unit":"percent"},"status":"ok"}]}`
