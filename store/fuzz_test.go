package store

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
	"strings"
	"testing"
)

// Fuzz targets for everything that turns broker bytes into state: the SSE
// stream (raw bytes through r3labs and the frame decoder), frame and
// snapshot JSON, /v1/usage bodies, and usage matching. scripts/fuzz.sh runs
// each for a bounded time; testdata/fuzz/<Fuzz...>/ holds the seed corpus
// (shapes of the real 18.2.3 captures) and every input that ever failed.

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
	case EventSnapshot:
		if f.Snapshot == nil || f.Snapshot.Generation != f.Generation || f.Entry != nil {
			t.Fatalf("snapshot frame %+v", f)
		}
		for _, e := range f.Snapshot.Entries {
			checkEntry(t, e)
		}
	case EventEntry:
		if f.Snapshot != nil {
			t.Fatal("entry frame with a snapshot")
		}
		checkEntry(t, f.Entry)
	case EventRemoved:
		if f.Entry != nil || f.Snapshot != nil {
			t.Fatal("removed frame with a body")
		}
	default:
		t.Fatalf("frame kind %q", f.Kind)
	}
}

// decodeTwice decodes data, and a copy that is then overwritten: the two
// results must agree (deterministic, and nothing aliases the input buffer,
// which r3labs reuses).
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

func FuzzDecodeFrame(f *testing.F) {
	f.Add([]byte(sseSnapshot))
	f.Add([]byte(sseEntry))
	f.Add([]byte(sseRemoved))
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := decodeTwice(t, data, func(b []byte) (*StreamFrame, error) { return decodeFrame(b, epoch, nil) })
		checkNoSecrets(t, data, "decoded frame", fr, err)
		if err != nil {
			checkProtoErr(t, err)
			return
		}
		checkFrame(t, fr)
	})
}

func FuzzDecodeSnapshot(f *testing.F) {
	f.Add([]byte(strings.Replace(sseSnapshot, `"kind":"snapshot",`, "", 1)))
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
		// Adopting it never fails, whatever it holds (duplicate ids, odd
		// numbers): the mirror ends with one entry per distinct id.
		st := ruleStore(t, newFakeClock(nil))
		st.adoptSnapshot(s, true)
		distinct := map[int64]bool{}
		for _, e := range s.Entries {
			distinct[e.ID] = true
		}
		if v := st.Snapshot(); len(v.Entries) != len(distinct) || v.Generation != s.Generation {
			t.Fatalf("adopted %d entries of %d distinct ids, generation %d of %d", len(v.Entries), len(distinct), v.Generation, s.Generation)
		}
	})
}

// canonicalSSE matches streams written the way the broker writes them:
// blocks of "event: <kind>\ndata: <one line>\n\n" and ": comment\n\n".
var canonicalSSE = regexp.MustCompile(`^(?:(?:event: [a-z]+\n)?data: [^\n\r]*\n\n|: [^\n\r]*\n\n)*$`)

// FuzzStreamBytes feeds raw bytes, as the broker's response body, through
// the real client: r3labs' SSE reader and the frame decoder. The stream
// must end with ErrStreamEnded or a ProtocolError, hand over a snapshot
// first, and, for streams in the broker's own framing, hand over exactly
// the frames an independent reading of that framing yields.
func FuzzStreamBytes(f *testing.F) {
	f.Add([]byte(sseFrame("snapshot", sseSnapshot) + ": keepalive\n\n" + sseFrame("entry", sseEntry) + sseFrame("removed", sseRemoved)))
	f.Add([]byte(sseFrame("snapshot", sseSnapshot) + "data: {\"kind\":\"entry\"\n\n"))
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
		if len(frames) > 0 && frames[0].Kind != EventSnapshot {
			t.Fatalf("first frame handed over is %s", frames[0].Kind)
		}
		for _, fr := range frames {
			checkFrame(t, fr)
		}
		if !canonicalSSE.Match(raw) {
			return
		}
		// The broker's framing, read independently.
		var want []string
		wantErr := false
		for _, block := range strings.SplitAfter(string(raw), "\n\n") {
			if block == "" || strings.HasPrefix(block, ":") {
				continue
			}
			_, data, _ := strings.Cut(block, "data: ")
			data = strings.TrimSuffix(data, "\n\n")
			if data == "" {
				continue // an event without data is ignored
			}
			if len(block) > maxFrame {
				wantErr = true
				break
			}
			fr, err := decodeFrame([]byte(data), epoch, nil)
			if err == nil && len(want) == 0 && fr.Kind != EventSnapshot {
				err = errors.New("first frame not a snapshot")
			}
			if err != nil {
				wantErr = true
				break
			}
			want = append(want, fr.Kind)
		}
		var got []string
		for _, fr := range frames {
			got = append(got, fr.Kind)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) || (err != ErrStreamEnded) != wantErr {
			t.Fatalf("frames %v (%v), want %v (error %v)", got, err, want, wantErr)
		}
	})
}

// FuzzDecodeUsage feeds bodies of GET /v1/usage through the real client.
func FuzzDecodeUsage(f *testing.F) {
	f.Add([]byte(`{"generatedAt":1795755808604,"reports":[]}`))
	f.Add([]byte(`{"generatedAt":1,"reports":[` + exampleUsageReport + `]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		c := memClient(t, memTransport{status: 200, ctype: "application/json", body: body}, 1<<20)
		resp, err := c.Usage(context.Background(), 1)
		checkNoSecrets(t, body, "usage", resp, err)
		if err != nil {
			checkProtoErr(t, err)
			return
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
		}
	})
}

const exampleUsageReport = `{"provider":"anthropic","fetchedAt":1795751800000,"metadata":{"endpoint":"x","accountId":"acct-A","email":"a@example.com"},
 "limits":[{"id":"anthropic:5h","label":"Claude 5 Hour","scope":{"provider":"anthropic","windowId":"5h","shared":true},
  "window":{"id":"5h","label":"5 Hour","durationMs":18000000,"resetsAt":1795760000000},
  "amount":{"used":42,"limit":100,"remaining":58,"usedFraction":0.42,"remainingFraction":0.58,"unit":"percent"},"status":"ok"}]}`

// usageKeys are the keys the decoder reads; encoding/json folds case when
// it matches them to struct fields, the broker client does not.
var usageKeys = []string{"generatedAt", "reports", "provider", "fetchedAt", "limits", "metadata", "id", "label", "scope",
	"window", "amount", "status", "accountId", "projectId", "orgId", "modelId", "tier", "windowId", "shared", "durationMs",
	"resetsAt", "resetLabel", "used", "limit", "remaining", "usedFraction", "remainingFraction", "unit"}

// caseFolded reports a key that differs from a known key only by case
// (outside metadata, which is a map and matched exactly).
func caseFolded(v any) bool {
	switch x := v.(type) {
	case map[string]any:
		for k, y := range x {
			for _, want := range usageKeys {
				if k != want && strings.EqualFold(k, want) {
					return true
				}
			}
			if k != "metadata" && caseFolded(y) {
				return true
			}
		}
	case []any:
		for _, y := range x {
			if caseFolded(y) {
				return true
			}
		}
	}
	return false
}

// refMatch is protocol §8 (18.2.3), written from the text, over the raw
// JSON reports: the index of the matching report, or -1.
func refMatch(reports []any, provider string, typ, email, account, project, org string) int {
	if typ != TypeOAuth {
		return -1
	}
	lower := func(s string) string { return strings.ToLower(strings.TrimSpace(s)) }
	cEmail, cAccount, cProject, cOrg := lower(email), lower(account), lower(project), lower(org)
	meta := func(r map[string]any, key string) string {
		m, _ := r["metadata"].(map[string]any)
		s, _ := m[key].(string)
		return strings.ToLower(strings.TrimSpace(s))
	}
	metaAlias := func(r map[string]any, key, alias string) string {
		if v := meta(r, key); v != "" {
			return v
		}
		return meta(r, alias)
	}
	scopes := func(r map[string]any, key string) []string {
		var out []string
		ls, _ := r["limits"].([]any)
		for _, l := range ls {
			lm, _ := l.(map[string]any)
			sc, _ := lm["scope"].(map[string]any)
			if s, ok := sc[key].(string); ok && s != "" {
				out = append(out, strings.ToLower(s))
			}
		}
		return out
	}
	identityMatch := func(r map[string]any) bool {
		if cAccount != "" && (metaAlias(r, "accountId", "account_id") == cAccount || contains(scopes(r, "accountId"), cAccount)) {
			return true
		}
		if cEmail != "" && meta(r, "email") == cEmail {
			return true
		}
		return cProject != "" && (metaAlias(r, "projectId", "project_id") == cProject || contains(scopes(r, "projectId"), cProject))
	}
	var all []int
	for i, x := range reports {
		r, _ := x.(map[string]any)
		if p, _ := r["provider"].(string); p == provider {
			all = append(all, i)
		}
	}
	if len(all) == 0 {
		return -1
	}
	rep := func(i int) map[string]any { r, _ := reports[i].(map[string]any); return r }
	hasIdentity := cEmail != "" || cAccount != "" || cProject != ""
	if cOrg != "" {
		var same []int
		for _, i := range all {
			if o := meta(rep(i), "orgId"); o != "" && o == cOrg {
				same = append(same, i)
			}
		}
		if !hasIdentity {
			if len(same) == 1 {
				return same[0]
			}
			return -1
		}
		for _, i := range same {
			if identityMatch(rep(i)) {
				return i
			}
		}
		return -1
	}
	var candidates []int
	for _, i := range all {
		if meta(rep(i), "orgId") == "" {
			candidates = append(candidates, i)
		}
	}
	if len(candidates) == 0 {
		return -1
	}
	if len(all) == 1 {
		return all[0]
	}
	for _, i := range candidates {
		if identityMatch(rep(i)) {
			return i
		}
	}
	return -1
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

// FuzzMatchUsage checks MatchUsageReport (and the UsageIndex built on it)
// against refMatch: a match is a report of the credential's provider, API
// keys never match, the answer is deterministic and is protocol §8's.
func FuzzMatchUsage(f *testing.F) {
	two := `{"generatedAt":1,"reports":[` + exampleUsageReport + `,{"provider":"anthropic","metadata":{"email":"b@example.com","orgId":"Org-1"},"limits":[]}]}`
	f.Add([]byte(two), "anthropic", false, "A@Example.com ", "", "", "")
	f.Add([]byte(two), "anthropic", false, "b@example.com", "", "", "org-1")
	f.Add([]byte(two), "anthropic", true, "", "acct-A", "", "")
	f.Add([]byte(`{"reports":[{"provider":"gemini","metadata":{"project_id":" P1 "},"limits":[{"scope":{"accountId":"X"}}]}]}`), "gemini", false, "", "x", "p1", "")
	f.Fuzz(func(t *testing.T, body []byte, provider string, apiKey bool, email, account, project, org string) {
		var w wireUsage
		if decode("usage", body, &w) != nil {
			return
		}
		resp, err := w.convert()
		if err != nil {
			return
		}
		var raw struct {
			Reports []any `json:"reports"`
		}
		var doc any
		if json.Unmarshal(body, &raw) != nil || json.Unmarshal(body, &doc) != nil || caseFolded(doc) {
			return // the reference reads keys exactly; see usageKeys
		}
		typ := TypeOAuth
		if apiKey {
			typ = TypeAPIKey
		}
		e := &Entry{ID: 1, Provider: provider, Credential: Credential{Type: typ, Email: email, AccountID: account, ProjectID: project, OrgID: org}}
		r, ok := MatchUsageReport(resp.Reports, e)
		if ok != (r != nil) {
			t.Fatalf("ok %v with report %v", ok, r)
		}
		got := -1
		if ok {
			for i := range resp.Reports {
				if &resp.Reports[i] == r {
					got = i
				}
			}
			if got < 0 {
				t.Fatal("the match is not one of the reports")
			}
			if r.Provider != provider {
				t.Fatalf("credential of %q matched a report of %q", provider, r.Provider)
			}
			if apiKey {
				t.Fatal("an API key matched a usage report")
			}
		}
		if r2, ok2 := MatchUsageReport(resp.Reports, e); r2 != r || ok2 != ok {
			t.Fatal("not deterministic")
		}
		if r3, ok3 := NewUsageIndex(resp.Reports).Match(e); r3 != r || ok3 != ok {
			t.Fatalf("UsageIndex picked %p,%v; MatchUsageReport %p,%v", r3, ok3, r, ok)
		}
		if want := refMatch(raw.Reports, provider, typ, email, account, project, org); got != want {
			t.Fatalf("matched report %d, protocol §8 says %d", got, want)
		}
	})
}
