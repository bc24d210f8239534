package brokertest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// TestRealBrokerShapes replays, against the fake, the scenario that
// testdata/real/capture.sh ran against a real omp 18.2.3 broker, and
// compares every response: status, the headers clients depend on, and the
// JSON bodies recursively (same keys, same value types, same values except
// for wall-clock dependent fields). The stream is compared frame by frame,
// including the order of entry/removed frames.
func TestRealBrokerShapes(t *testing.T) {
	dir := filepath.Join("testdata", "real")
	real := func(name string) capture { return loadCapture(t, dir, name) }

	// The uploads reuse the captured expiry instants, so expires and
	// blockedUntilMs compare by value.
	exp1 := jsonPath(t, real("upload-anthropic").body, "entries", "0", "credential", "expires").(float64)
	exp2 := jsonPath(t, real("upload-codex").body, "entries", "0", "credential", "expires").(float64)
	clk := &clock{t: time.UnixMilli(int64(jsonPath(t, real("snapshot").body, "generatedAt").(float64)))}
	f := newFixture(t, Options{Now: clk.Now})
	f.clk = clk
	// Offline, the real broker cannot reach Anthropic's token endpoint.
	f.b.SetRefreshError(2, 500, real("refresh-oauth").errorText(t))

	type step struct {
		name, method, path, body string
		auth                     bool
		headers                  []string
		before                   func()
	}
	steps := []step{
		{name: "healthz", method: "GET", path: "/v1/healthz"},
		{name: "unauthorized", method: "GET", path: "/v1/snapshot"},
		{name: "unauthorized-unknown", method: "GET", path: "/v1/nope"},
		{name: "no-route", method: "GET", path: "/v1/nope", auth: true},
		{name: "no-route-delete", method: "DELETE", path: "/v1/credential/1", auth: true},
		{name: "upload-apikey", method: "POST", path: "/v1/credential", auth: true, body: `{"provider":"openai","credential":{"type":"api_key","key":"sk-fake-capture-1"}}`},
		{name: "upload-anthropic", method: "POST", path: "/v1/credential", auth: true, body: fmt.Sprintf(`{"provider":"anthropic","credential":{"type":"oauth","access":"fake-access-anthropic","refresh":"fake-refresh-anthropic","expires":%.0f,"email":"Alice@Example.com","accountId":"acct-A"}}`, exp1)},
		{name: "upload-codex", method: "POST", path: "/v1/credential", auth: true, body: fmt.Sprintf(`{"provider":"openai-codex","credential":{"type":"oauth","access":"fake-access-codex","refresh":"fake-refresh-codex","expires":%.0f,"accountId":"acct-B","email":"b@example.com","orgId":"org-X","orgName":"Org X"}}`, exp2)},
		{name: "upload-mcp", method: "POST", path: "/v1/credential", auth: true, body: `{"provider":"mcp-thing","credential":{"type":"oauth","access":"fake-access-mcp","refresh":"fake-refresh-mcp","expires":8640000000000000,"clientSecret":"fake-client-secret","clientId":"cid","tokenUrl":"http://127.0.0.1:1/token"}}`},
		{name: "snapshot", method: "GET", path: "/v1/snapshot", auth: true},
		{name: "snapshot-304", method: "GET", path: "/v1/snapshot?wait=200", auth: true, headers: []string{"If-None-Match", `"5"`}},
	}
	streamSteps := []step{
		{name: "upload-apikey2", method: "POST", path: "/v1/credential", auth: true, body: `{"provider":"openai","credential":{"type":"api_key","key":"sk-fake-capture-2"}}`},
		{name: "block", method: "POST", path: "/v1/credential/2/block", auth: true, body: fmt.Sprintf(`{"providerKey":"anthropic:oauth","blockScope":"","blockedUntilMs":%.0f}`, exp1)},
		{name: "disable", method: "POST", path: "/v1/credential/5/disable", auth: true, body: `{"cause":"spot check"}`},
	}
	after := []step{
		{name: "disable-again", method: "POST", path: "/v1/credential/5/disable", auth: true},
		{name: "disable-bad-cause", method: "POST", path: "/v1/credential/1/disable", auth: true, body: `{"cause":5}`},
		{name: "disabled", method: "GET", path: "/v1/credentials/disabled", auth: true},
		{name: "disabled-provider", method: "GET", path: "/v1/credentials/disabled?provider=anthropic", auth: true},
		{name: "refresh-unknown", method: "POST", path: "/v1/credential/999/refresh", auth: true},
		{name: "refresh-apikey", method: "POST", path: "/v1/credential/1/refresh", auth: true},
		{name: "refresh-oauth", method: "POST", path: "/v1/credential/2/refresh", auth: true},
		{name: "usage", method: "GET", path: "/v1/usage", auth: true},
		{name: "upload-sentinel", method: "POST", path: "/v1/credential", auth: true, body: `{"provider":"x","credential":{"type":"oauth","access":"a","refresh":"__remote__","expires":1}}`},
		{name: "upload-extra-key", method: "POST", path: "/v1/credential", auth: true, body: `{"provider":"x","credential":{"type":"api_key","key":"k","foo":1}}`},
		{name: "upload-empty", method: "POST", path: "/v1/credential", auth: true},
		{name: "block-missing", method: "POST", path: "/v1/credential/1/block", auth: true, body: `{}`},
		{name: "block-codex-chat", method: "POST", path: "/v1/credential/3/block", auth: true, body: fmt.Sprintf(`{"providerKey":"openai-codex:oauth","blockScope":"chat","blockedUntilMs":%.0f}`, exp1)},
		{name: "block-codex-shared", method: "POST", path: "/v1/credential/3/block", auth: true, body: fmt.Sprintf(`{"providerKey":"openai-codex:oauth","blockScope":"shared","blockedUntilMs":%.0f}`, exp1+1000)},
		{name: "snapshot-codex-caps", method: "GET", path: "/v1/snapshot", auth: true, headers: []string{"OMP-Auth-Broker-Capabilities", "codex-meter-block-scopes"}},
		{name: "snapshot-codex-nocaps", method: "GET", path: "/v1/snapshot", auth: true},
		{name: "delete-blocks", method: "DELETE", path: "/v1/credential/3/blocks", auth: true},
		{name: "snapshot-after-restart", method: "GET", path: "/v1/snapshot", auth: true, before: f.b.Restart},
	}

	run := func(st step) {
		t.Helper()
		if st.before != nil {
			st.before()
		}
		clk.Advance(300 * time.Millisecond) // time passes between requests, as it did live
		got := f.do(st.method, st.path, st.body, st.auth, st.headers...)
		compareCapture(t, st.name, real(st.name), got)
	}
	for _, st := range steps {
		run(st)
	}

	// Live, the steps were 300 ms apart so each made its own pass; here
	// each step's frames are read before the next step runs, otherwise the
	// fake would (rightly) coalesce them.
	want := parseStream(t, filepath.Join(dir, "stream.txt"))
	var groups [][]rawFrame // frames of one pass share a generation
	for i, w := range want {
		if i == 0 || w.generation != want[i-1].generation {
			groups = append(groups, nil)
		}
		groups[len(groups)-1] = append(groups[len(groups)-1], w)
	}
	if len(groups) != 1+len(streamSteps) {
		t.Fatalf("capture has %d passes for %d steps", len(groups)-1, len(streamSteps))
	}
	s := f.openStream()
	n := 0
	expect := func(group []rawFrame) {
		t.Helper()
		for _, w := range group {
			fr := s.nextFrame()
			if !regexp.MustCompile(`^event: (snapshot|entry|removed)\ndata: \{.*\}\n\n$`).MatchString(fr.raw) {
				t.Errorf("stream frame %d framing: %q", n, fr.raw)
			}
			if fr.event != w.event {
				t.Errorf("stream frame %d: event %q, real %q", n, fr.event, w.event)
			}
			var a, b any
			if err := json.Unmarshal([]byte(w.data), &a); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(fr.data), &b); err != nil {
				t.Fatalf("frame %d: %v", n, err)
			}
			for _, d := range diffJSON(fmt.Sprintf("stream[%d]", n), a, b) {
				t.Error(d)
			}
			n++
		}
	}
	expect(groups[0])
	for i, st := range streamSteps {
		run(st)
		expect(groups[i+1])
	}
	f.b.Keepalive() // nothing else may be queued before this comment
	if fr := s.nextFrame(); fr.comment != "keepalive" {
		t.Errorf("fake sent more frames than the real broker: %q", fr.raw)
	}
	realStream := real("stream")
	compareHeaders(t, "stream", realStream.headers, s.resp.StatusCode, s.resp.Header, s.resp.TransferEncoding)
	s.close()

	for _, st := range after {
		run(st)
	}
}

type capture struct {
	status  int
	headers map[string]string // lower-case name -> value
	body    []byte
}

func (c capture) errorText(t *testing.T) string {
	t.Helper()
	var m map[string]string
	if err := json.Unmarshal(c.body, &m); err != nil {
		t.Fatalf("capture body %q: %v", c.body, err)
	}
	return m["error"]
}

func loadCapture(t *testing.T, dir, name string) capture {
	t.Helper()
	read := func(ext string, optional bool) []byte {
		data, err := os.ReadFile(filepath.Join(dir, name+ext))
		if err != nil && !(optional && os.IsNotExist(err)) {
			t.Fatalf("capture %s: %v", name, err)
		}
		return data
	}
	var c capture
	if _, err := fmt.Sscanf(string(read(".status", false)), "%d", &c.status); err != nil {
		t.Fatalf("capture %s status: %v", name, err)
	}
	c.headers = map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(read(".headers", false))), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			c.headers[strings.ToLower(k)] = strings.TrimSpace(v)
		}
	}
	c.body = read(".body", true)
	return c
}

// comparedHeaders are the response headers clients look at; capture.sh
// keeps exactly these.
var comparedHeaders = []string{"content-type", "etag", "cache-control", "vary", "connection", "x-accel-buffering", "transfer-encoding", "www-authenticate"}

func compareHeaders(t *testing.T, name string, want map[string]string, status int, got http.Header, te []string) {
	t.Helper()
	for _, k := range comparedHeaders {
		g := got.Get(k)
		if k == "transfer-encoding" {
			g = strings.Join(te, ", ") // net/http moves it out of Header
		}
		if g != want[k] {
			t.Errorf("%s: header %s = %q, real broker %q", name, k, g, want[k])
		}
	}
}

func compareCapture(t *testing.T, name string, want capture, got response) {
	t.Helper()
	if got.status != want.status {
		t.Errorf("%s: status %d, real broker %d (%s)", name, got.status, want.status, got.body)
		return
	}
	var te []string
	if got.header.Get("Transfer-Encoding") != "" {
		te = []string{got.header.Get("Transfer-Encoding")}
	}
	compareHeaders(t, name, want.headers, got.status, got.header, te)
	if len(want.body) == 0 || len(got.body) == 0 {
		if len(want.body) != len(got.body) {
			t.Errorf("%s: body %q, real broker %q", name, got.body, want.body)
		}
		return
	}
	var a, b any
	if err := json.Unmarshal(want.body, &a); err != nil {
		t.Fatalf("%s: capture body: %v", name, err)
	}
	if err := json.Unmarshal(got.body, &b); err != nil {
		t.Errorf("%s: fake body is not JSON: %q", name, got.body)
		return
	}
	for _, d := range diffJSON(name, a, b) {
		t.Error(d)
	}
}

// clockKeys depend on when the request ran (wall clock, sweep schedule);
// only their JSON type is compared.
var clockKeys = map[string]bool{
	"generatedAt": true, "serverNowMs": true, "nextSweepInMs": true, "rotatesInMs": true,
	"updatedAtMs": true, "disabledAtMs": true,
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case float64:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

// diffJSON compares real (a) and fake (b) recursively: key sets, value
// types, array lengths, and values for every key that does not depend on
// the clock.
func diffJSON(path string, a, b any) []string {
	if jsonType(a) != jsonType(b) {
		return []string{fmt.Sprintf("%s: type %s, real broker %s", path, jsonType(b), jsonType(a))}
	}
	var out []string
	switch x := a.(type) {
	case map[string]any:
		y := b.(map[string]any)
		keys := map[string]bool{}
		for k := range x {
			keys[k] = true
		}
		for k := range y {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			av, aok := x[k]
			bv, bok := y[k]
			switch {
			case !aok:
				out = append(out, fmt.Sprintf("%s.%s: extra key in the fake", path, k))
			case !bok:
				out = append(out, fmt.Sprintf("%s.%s: missing in the fake", path, k))
			case clockKeys[k]:
				if jsonType(av) != jsonType(bv) {
					out = append(out, fmt.Sprintf("%s.%s: type %s, real broker %s", path, k, jsonType(bv), jsonType(av)))
				}
			default:
				out = append(out, diffJSON(path+"."+k, av, bv)...)
			}
		}
	case []any:
		y := b.([]any)
		if len(x) != len(y) {
			return []string{fmt.Sprintf("%s: %d elements, real broker %d", path, len(y), len(x))}
		}
		for i := range x {
			out = append(out, diffJSON(fmt.Sprintf("%s[%d]", path, i), x[i], y[i])...)
		}
	default:
		if a != b {
			out = append(out, fmt.Sprintf("%s: %v, real broker %v", path, b, a))
		}
	}
	return out
}

func jsonPath(t *testing.T, body []byte, path ...string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatal(err)
	}
	for _, p := range path {
		switch x := v.(type) {
		case map[string]any:
			v = x[p]
		case []any:
			var i int
			fmt.Sscanf(p, "%d", &i)
			v = x[i]
		}
	}
	return v
}

type rawFrame struct {
	event, data string
	generation  float64
}

func parseStream(t *testing.T, file string) []rawFrame {
	t.Helper()
	fh, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var out []rawFrame
	var cur rawFrame
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur.event != "" {
				var m struct{ Generation float64 }
				if err := json.Unmarshal([]byte(cur.data), &m); err != nil {
					t.Fatalf("capture frame %q: %v", cur.data, err)
				}
				cur.generation = m.Generation
				out = append(out, cur)
			}
			cur = rawFrame{}
		case strings.HasPrefix(line, "event: "):
			cur.event = line[len("event: "):]
		case strings.HasPrefix(line, "data: "):
			cur.data = line[len("data: "):]
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 || out[0].event != "snapshot" {
		t.Fatalf("capture stream has no snapshot frame")
	}
	return out
}
