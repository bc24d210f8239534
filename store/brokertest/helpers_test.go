package brokertest

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Canary secrets: tests assert they never show up where they must not.
const (
	canaryAccess = "canary-access-7f3a"
	canaryKey    = "sk-canary-key-91be"
	canarySecret = "canary-client-secret-55d0"
	canaryToken  = "canary-bearer-token-c0ff"
)

// clock is an injected broker clock that moves only when told to.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.UnixMilli(1795751638608)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	t      *testing.T
	b      *Broker
	clk    *clock
	client *http.Client
}

func newFixture(t *testing.T, opts Options) *fixture {
	t.Helper()
	clk := newClock()
	if opts.Now == nil {
		opts.Now = clk.Now
	}
	if opts.Token == "" {
		opts.Token = canaryToken
	}
	if opts.KeepaliveInterval == 0 {
		opts.KeepaliveInterval = -1
	}
	b := New(opts)
	tr := &http.Transport{}
	f := &fixture{t: t, b: b, clk: clk, client: &http.Client{Transport: tr}}
	t.Cleanup(func() {
		b.Close()
		tr.CloseIdleConnections()
	})
	return f
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v: %q", err, r.body)
	}
	return m
}

func (r response) errorText(t *testing.T) string {
	t.Helper()
	m := r.json(t)
	if len(m) != 1 {
		t.Fatalf("error body must have exactly the key error: %s", r.body)
	}
	s, ok := m["error"].(string)
	if !ok {
		t.Fatalf("error is not a string: %s", r.body)
	}
	return s
}

// do sends one request; headers are name, value pairs. auth=true adds the
// broker's token.
func (f *fixture) do(method, path, body string, auth bool, headers ...string) response {
	return f.doCtx(context.Background(), method, path, body, auth, headers...)
}

func (f *fixture) doCtx(ctx context.Context, method, path, body string, auth bool, headers ...string) response {
	f.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, f.b.URL+path, rd)
	if err != nil {
		f.t.Fatal(err)
	}
	if auth {
		req.Header.Set("Authorization", "Bearer "+f.b.Token())
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return response{status: -1, body: []byte(err.Error())}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: data}
}

// sse is a minimal reader of the broker's SSE framing that keeps the raw
// bytes of each frame so tests can check the exact framing.
type sse struct {
	t      *testing.T
	resp   *http.Response
	r      *bufio.Reader
	cancel context.CancelFunc
	frames chan frame
	wg     sync.WaitGroup
}

type frame struct {
	raw     string // the exact bytes, blank line included
	event   string
	data    string
	comment string
	err     error
}

func (fr frame) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(fr.data), &m); err != nil {
		t.Fatalf("frame data is not JSON: %v: %q", err, fr.data)
	}
	return m
}

func (f *fixture) openStream(headers ...string) *sse {
	f.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.b.URL+"/v1/snapshot/stream", nil)
	if err != nil {
		f.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+f.b.Token())
	req.Header.Set("Accept", "text/event-stream")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	resp, err := f.client.Do(req)
	if err != nil {
		cancel()
		f.t.Fatal(err)
	}
	s := &sse{t: f.t, resp: resp, r: bufio.NewReader(resp.Body), cancel: cancel, frames: make(chan frame, 1024)}
	s.wg.Add(1)
	go s.read()
	f.t.Cleanup(s.close)
	return s
}

func (s *sse) read() {
	defer s.wg.Done()
	defer close(s.frames)
	var raw strings.Builder
	var fr frame
	for {
		line, err := s.r.ReadString('\n')
		raw.WriteString(line)
		if err != nil {
			s.frames <- frame{raw: raw.String(), err: err}
			return
		}
		body := strings.TrimSuffix(line, "\n")
		switch {
		case body == "":
			fr.raw = raw.String()
			s.frames <- fr
			fr = frame{}
			raw.Reset()
		case strings.HasPrefix(body, ":"):
			fr.comment = strings.TrimSpace(body[1:])
		case strings.HasPrefix(body, "event: "):
			fr.event = body[len("event: "):]
		case strings.HasPrefix(body, "data: "):
			fr.data = body[len("data: "):]
		default:
			fr.event = "<unparsed:" + body + ">"
		}
	}
}

// next returns the next frame; a test that waits more than a minute for
// one has hung, which is a failure, not a timing assertion.
func (s *sse) next() frame {
	s.t.Helper()
	select {
	case fr, ok := <-s.frames:
		if !ok {
			s.t.Fatal("stream closed")
		}
		return fr
	case <-time.After(time.Minute):
		s.t.Fatal("no frame within a minute")
		return frame{}
	}
}

func (s *sse) nextFrame() frame {
	s.t.Helper()
	fr := s.next()
	if fr.err != nil {
		s.t.Fatalf("stream error: %v (partial %q)", fr.err, fr.raw)
	}
	return fr
}

func (s *sse) close() {
	s.cancel()
	s.resp.Body.Close()
	s.wg.Wait()
}

func keysOf(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sortStrings(out)
	return out
}

func sameKeys(t *testing.T, what string, m map[string]any, want ...string) {
	t.Helper()
	sortStrings(want)
	got := keysOf(m)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("%s keys = %v, want %v", what, got, want)
	}
}

func numOf(t *testing.T, v any) int64 {
	t.Helper()
	f, ok := v.(float64)
	if !ok {
		t.Fatalf("%v (%T) is not a number", v, v)
	}
	return int64(f)
}
