package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func newTestClient(t *testing.T, url string, opts ClientOptions) *Client {
	t.Helper()
	opts.URL = url
	if opts.Token == nil {
		opts.Token = StaticToken(canaryToken)
	}
	c, err := NewClient(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

const okEntry = `{"entry":{"id":7,"provider":"muse-code","credential":{"type":"oauth","access":"` + canaryAccess + `","refresh":"__remote__","expires":8640000000000000,"email":"spec-muse@example.invalid"},"identityKey":"email:spec-muse@example.invalid"}}`

func TestNewClientValidatesURL(t *testing.T) {
	for _, u := range []string{"", "127.0.0.1:8765", "ftp://x", "http://", "://bad"} {
		if _, err := NewClient(ClientOptions{URL: u}); err == nil {
			t.Errorf("URL %q accepted", u)
		}
	}
	c, err := NewClient(ClientOptions{URL: " http://127.0.0.1:8765/// "})
	if err != nil || c.base != "http://127.0.0.1:8765" {
		t.Fatalf("base %q err %v", c.base, err)
	}
}

func TestClientHeadersPerRoute(t *testing.T) {
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		switch r.URL.Path {
		case "/v1/healthz":
			jsonReply(w, 200, `{"ok":true,"version":"18.2.3"}`)
		case "/v1/snapshot":
			w.Header().Set("ETag", `"14"`)
			jsonReply(w, 200, liveSnapshot)
		case "/v1/usage":
			jsonReply(w, 200, `{"generatedAt":1,"reports":[]}`)
		case "/v1/credential/7/refresh":
			jsonReply(w, 200, okEntry)
		case "/v1/credential/7/disable":
			jsonReply(w, 200, `{"ok":true}`)
		case "/v1/credentials/disabled":
			jsonReply(w, 200, `{"generatedAt":1,"disabled":[]}`)
		default:
			jsonReply(w, 404, `{"error":"No route"}`)
		}
	})
	c := newTestClient(t, srv.URL+"/", ClientOptions{})
	ctx := context.Background()
	h, err := c.Healthz(ctx)
	if err != nil || h != (Health{OK: true, Version: "18.2.3"}) {
		t.Fatalf("healthz %+v %v", h, err)
	}
	if _, err := c.Snapshot(ctx, SnapshotRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Usage(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Refresh(ctx, 7); err != nil {
		t.Fatal(err)
	}
	if err := c.Disable(ctx, 7, "manual"); err != nil {
		t.Fatal(err)
	}
	if err := c.Disable(ctx, 7, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Disabled(ctx, "anthropic"); err != nil {
		t.Fatal(err)
	}

	type want struct {
		method, path, query string
		auth, caps, ctype   bool
		body                string
	}
	wants := []want{
		{"GET", "/v1/healthz", "", false, false, false, ""},
		{"GET", "/v1/snapshot", "", true, true, false, ""},
		{"GET", "/v1/usage", "", true, false, false, ""},
		{"POST", "/v1/credential/7/refresh", "", true, false, false, ""},
		{"POST", "/v1/credential/7/disable", "", true, false, true, `{"cause":"manual"}`},
		{"POST", "/v1/credential/7/disable", "", true, false, false, ""},
		{"GET", "/v1/credentials/disabled", "provider=anthropic", true, false, false, ""},
	}
	got := srv.Requests()
	if len(got) != len(wants) {
		t.Fatalf("%d requests, want %d", len(got), len(wants))
	}
	for i, w := range wants {
		g := got[i]
		if g.Method != w.method || g.Path != w.path || g.Query != w.query || g.Body != w.body {
			t.Errorf("request %d = %s %s?%s %s, want %s %s?%s %s", i, g.Method, g.Path, g.Query, g.Body, w.method, w.path, w.query, w.body)
		}
		if g.Header.Get("Accept") != "application/json" {
			t.Errorf("%s: Accept %q", w.path, g.Header.Get("Accept"))
		}
		if a := g.Header.Get("Authorization"); (a == "Bearer "+canaryToken) != w.auth || (!w.auth && a != "") {
			t.Errorf("%s: Authorization present=%v, want %v", w.path, a != "", w.auth)
		}
		if cp := g.Header.Get(capabilitiesHeader); (cp == "codex-meter-block-scopes") != w.caps {
			t.Errorf("%s: capabilities %q", w.path, cp)
		}
		if ct := g.Header.Get("Content-Type"); (ct == "application/json") != w.ctype {
			t.Errorf("%s: Content-Type %q", w.path, ct)
		}
	}
}

func TestClientRetriesOnlyTransportErrors(t *testing.T) {
	cases := []struct {
		name     string
		handle   func(w http.ResponseWriter, r *http.Request, n int)
		attempts int
		check    func(t *testing.T, err error)
	}{
		{"one hang-up then success", func(w http.ResponseWriter, r *http.Request, n int) {
			if n == 1 {
				hangUp(w)
				return
			}
			jsonReply(w, 200, okEntry)
		}, 2, func(t *testing.T, err error) {
			if err != nil {
				t.Fatal(err)
			}
		}},
		{"two hang-ups give up", func(w http.ResponseWriter, r *http.Request, n int) { hangUp(w) }, 2, func(t *testing.T, err error) {
			var ne *NetError
			if !errors.As(err, &ne) || ne.Timeout || CallReason(err) != ReasonNetwork {
				t.Fatalf("want network NetError, got %v", err)
			}
		}},
		{"500 is not retried", func(w http.ResponseWriter, r *http.Request, n int) {
			jsonReply(w, 500, `{"error":"OAuth token refresh timed out for provider: muse-code"}`)
		}, 1, func(t *testing.T, err error) {
			var he *HTTPError
			if !errors.As(err, &he) || he.Status != 500 || he.Message != "OAuth token refresh timed out for provider: muse-code" || CallReason(err) != ReasonUpstream {
				t.Fatalf("got %v", err)
			}
		}},
		{"404 is not retried", func(w http.ResponseWriter, r *http.Request, n int) {
			jsonReply(w, 404, `{"error":"No credential with id=7"}`)
		}, 1, func(t *testing.T, err error) {
			if CallReason(err) != ReasonNotFound || !strings.Contains(err.Error(), "No credential with id=7") {
				t.Fatalf("got %v", err)
			}
		}},
		{"bad body is not retried", func(w http.ResponseWriter, r *http.Request, n int) {
			jsonReply(w, 200, `{"entry":`)
		}, 1, func(t *testing.T, err error) {
			if CallReason(err) != ReasonInvalidResponse {
				t.Fatalf("got %v", err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newRecServer(t, tc.handle)
			c := newTestClient(t, srv.URL, ClientOptions{})
			_, err := c.Refresh(context.Background(), 7)
			tc.check(t, err)
			if n := len(srv.Requests()); n != tc.attempts {
				t.Fatalf("%d attempts, want %d", n, tc.attempts)
			}
		})
	}
}

func TestClientAttemptTimeout(t *testing.T) {
	t.Run("first attempt times out, retry succeeds", func(t *testing.T) {
		srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
			if n == 1 {
				<-r.Context().Done()
				return
			}
			jsonReply(w, 200, okEntry)
		})
		c := newTestClient(t, srv.URL, ClientOptions{RequestTimeout: 50 * time.Millisecond})
		if _, err := c.Refresh(context.Background(), 7); err != nil {
			t.Fatal(err)
		}
		if n := len(srv.Requests()); n != 2 {
			t.Fatalf("%d attempts", n)
		}
	})
	t.Run("both attempts time out", func(t *testing.T) {
		srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, n int) { <-r.Context().Done() })
		c := newTestClient(t, srv.URL, ClientOptions{RequestTimeout: 20 * time.Millisecond})
		err := c.Disable(context.Background(), 7, "")
		var ne *NetError
		if !errors.As(err, &ne) || !ne.Timeout || CallReason(err) != ReasonTimeout || SyncReason(err) != SyncReasonTimeout {
			t.Fatalf("got %v", err)
		}
		if n := len(srv.Requests()); n != 2 {
			t.Fatalf("%d attempts", n)
		}
	})
	t.Run("caller cancel is never retried", func(t *testing.T) {
		arrived := make(chan struct{}, 2)
		srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
			arrived <- struct{}{}
			<-r.Context().Done()
		})
		c := newTestClient(t, srv.URL, ClientOptions{})
		ctx, cancel := context.WithCancel(context.Background())
		go func() { <-arrived; cancel() }()
		_, err := c.Refresh(ctx, 7)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v", err)
		}
		if n := len(srv.Requests()); n != 1 {
			t.Fatalf("%d attempts", n)
		}
	})
}

// deadlineTransport records each request's deadline relative to its start.
type deadlineTransport struct {
	mu   sync.Mutex
	left []time.Duration
}

func (d *deadlineTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	dl, ok := r.Context().Deadline()
	d.mu.Lock()
	if ok {
		d.left = append(d.left, time.Until(dl))
	} else {
		d.left = append(d.left, -1)
	}
	d.mu.Unlock()
	return &http.Response{StatusCode: 304, Header: http.Header{"Etag": {`"5"`}}, Body: io.NopCloser(strings.NewReader("")), Request: r}, nil
}

func TestClientTimeoutBudgets(t *testing.T) {
	dt := &deadlineTransport{}
	c := newTestClient(t, "http://127.0.0.1:1", ClientOptions{Transport: dt})
	ctx := context.Background()
	_, _ = c.Snapshot(ctx, SnapshotRequest{})
	_, _ = c.Snapshot(ctx, SnapshotRequest{LongPoll: true, Generation: 5, Wait: 30 * time.Second})
	_, _ = c.Snapshot(ctx, SnapshotRequest{LongPoll: true, Generation: 5, Wait: 2 * time.Second})
	_, _ = c.Usage(ctx, 3)
	budgets := []time.Duration{10 * time.Second, 31 * time.Second, 10 * time.Second, 40 * time.Second}
	if len(dt.left) != len(budgets) {
		t.Fatalf("%d requests", len(dt.left))
	}
	for i, b := range budgets {
		// The deadline is set just before the round trip: it must be the
		// budget, never more, and not a whole second less.
		if dt.left[i] > b || dt.left[i] < b-time.Second {
			t.Errorf("request %d: deadline %v ahead, want %v", i, dt.left[i], b)
		}
	}
}

func TestClientSnapshotGeneration(t *testing.T) {
	cases := []struct {
		name     string
		status   int
		etag     string
		req      SnapshotRequest
		wantGen  int64
		notMod   bool
		wantWait string
		wantINM  string
	}{
		{"etag wins over body", 200, `"57"`, SnapshotRequest{}, 57, false, "", ""},
		{"weak etag", 200, `W/"58"`, SnapshotRequest{}, 58, false, "", ""},
		{"no etag: body generation", 200, "", SnapshotRequest{}, 14, false, "", ""},
		{"garbage etag: body generation", 200, `"abc"`, SnapshotRequest{}, 14, false, "", ""},
		{"long-poll 304 keeps etag", 304, `"9"`, SnapshotRequest{LongPoll: true, Generation: 9, Wait: 30 * time.Second}, 9, true, "wait=30000", `"9"`},
		{"long-poll 304 without etag keeps request generation", 304, "", SnapshotRequest{LongPoll: true, Generation: 0, Wait: 1500 * time.Millisecond}, 0, true, "wait=1500", `"0"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
				if tc.etag != "" {
					w.Header().Set("ETag", tc.etag)
				}
				if tc.status == 304 {
					w.WriteHeader(304)
					return
				}
				jsonReply(w, 200, liveSnapshot)
			})
			c := newTestClient(t, srv.URL, ClientOptions{})
			res, err := c.Snapshot(context.Background(), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if res.Generation != tc.wantGen || res.NotModified != tc.notMod || (res.Snapshot == nil) != tc.notMod {
				t.Fatalf("%+v", res)
			}
			if !tc.notMod && res.Snapshot.Generation != tc.wantGen {
				t.Fatalf("snapshot generation %d", res.Snapshot.Generation)
			}
			r := srv.Requests()[0]
			if r.Query != tc.wantWait || r.Header.Get("If-None-Match") != tc.wantINM {
				t.Fatalf("query %q If-None-Match %q", r.Query, r.Header.Get("If-None-Match"))
			}
		})
	}
}

func TestClientDisabled404IsEmpty(t *testing.T) {
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		jsonReply(w, 404, `{"error":"No route: GET /v1/credentials/disabled"}`)
	})
	c := newTestClient(t, srv.URL, ClientOptions{})
	ts, err := c.Disabled(context.Background(), "")
	if err != nil || ts == nil || len(ts) != 0 {
		t.Fatalf("%v %v", ts, err)
	}
}

// TestClientTokenRotation: after a 401 the token file is re-read and the
// request retried once, only when the token changed.
func TestClientTokenRotation(t *testing.T) {
	var mu sync.Mutex
	accepted := canaryToken2
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		mu.Lock()
		ok := r.Header.Get("Authorization") == "Bearer "+accepted
		mu.Unlock()
		if !ok {
			jsonReply(w, 401, `{"error":"unauthorized"}`)
			return
		}
		jsonReply(w, 200, `{"generatedAt":1,"disabled":[]}`)
	})
	path := filepath.Join(t.TempDir(), "auth-broker.token")
	writeFile(t, path, canaryToken+"\n")
	c := newTestClient(t, srv.URL, ClientOptions{Token: FileToken(path)})
	ctx := context.Background()

	_, err := c.Disabled(ctx, "")
	var he *HTTPError
	if !errors.As(err, &he) || he.Status != 401 || CallReason(err) != ReasonUnauthorized || SyncReason(err) != SyncReasonUnauthorized {
		t.Fatalf("want 401, got %v", err)
	}
	if n := len(srv.Requests()); n != 1 {
		t.Fatalf("unchanged token must not be retried: %d requests", n)
	}
	assertNoCanary(t, "401 error", err.Error())

	writeFile(t, path, "  "+canaryToken2+"\n")
	if _, err := c.Disabled(ctx, ""); err != nil {
		t.Fatalf("rotated token not picked up: %v", err)
	}
	reqs := srv.Requests()
	if len(reqs) != 3 || reqs[1].Header.Get("Authorization") != "Bearer "+canaryToken || reqs[2].Header.Get("Authorization") != "Bearer "+canaryToken2 {
		t.Fatalf("requests: %d", len(reqs))
	}
	// The new token is kept: the next call succeeds first time.
	if _, err := c.Disabled(ctx, ""); err != nil || len(srv.Requests()) != 4 {
		t.Fatalf("%v %d", err, len(srv.Requests()))
	}

	// A missing token file is a TokenError naming the file, not the token.
	c2 := newTestClient(t, srv.URL, ClientOptions{Token: FileToken(filepath.Join(t.TempDir(), "missing"))})
	_, err = c2.Disabled(ctx, "")
	var te *TokenError
	if !errors.As(err, &te) || CallReason(err) != ReasonUnauthorized || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("got %v", err)
	}
}

func TestClientErrorsNeverEchoSecrets(t *testing.T) {
	cases := []struct {
		name   string
		status int
		body   string
		want   string
	}{
		{"error quoting the bearer token", 500, `{"error":"bad token ` + canaryToken + `\nsecond line"}`, "bad token [REDACTED] second line"},
		{"non-JSON error body", 502, `<html>` + canaryAccess + `</html>`, "Bad Gateway"},
		{"success body that is not JSON", 200, `oops ` + canaryAccess, "invalid response"},
		{"success body with wrong shape", 200, `{"entry":{"credential":{"type":"oauth","access":"` + canaryAccess + `"}}}`, "invalid response"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, n int) { jsonReply(w, tc.status, tc.body) })
			c := newTestClient(t, srv.URL, ClientOptions{})
			_, err := c.Refresh(context.Background(), 7)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%q does not contain %q", err, tc.want)
			}
			for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
				assertNoCanary(t, "error "+verb, fmt.Sprintf(verb, err))
			}
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("multi-line error %q", err)
			}
		})
	}
}

func TestClientOversizedResponse(t *testing.T) {
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		jsonReply(w, 200, `{"generatedAt":1,"reports":[`+strings.Repeat(`{"provider":"p","limits":[]},`, 100)+`{"provider":"p"}]}`)
	})
	c := newTestClient(t, srv.URL, ClientOptions{MaxFrameBytes: 256, MaxUsageBytes: 512})
	_, err := c.Usage(context.Background(), 0)
	var pe *ProtocolError
	if !errors.As(err, &pe) || !pe.TooLarge || !strings.Contains(err.Error(), "larger than 512 bytes") {
		t.Fatalf("got %v", err)
	}
	// Other routes keep the frame limit.
	if _, err := c.Snapshot(context.Background(), SnapshotRequest{}); !errors.As(err, &pe) || !pe.TooLarge {
		t.Fatalf("snapshot: got %v", err)
	}
}

// TestClientUsageCutMidBody: the usage answer is decoded as it arrives; a
// connection that drops halfway through it is a network error, retried
// once like any other, not bad JSON.
func TestClientUsageCutMidBody(t *testing.T) {
	body := `{"generatedAt":1,"reports":[` + strings.Repeat(`{"provider":"p","limits":[]},`, 500) + `{"provider":"p"}]}`
	cut := func(w http.ResponseWriter) {
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body[:len(body)/2])
		buf.Flush()
		conn.Close()
	}
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n <= 3 {
			cut(w)
			return
		}
		jsonReply(w, 200, body)
	})
	c := newTestClient(t, srv.URL, ClientOptions{})
	_, err := c.Usage(context.Background(), 0)
	var ne *NetError
	if !errors.As(err, &ne) || CallReason(err) != ReasonNetwork || len(srv.Requests()) != 2 {
		t.Fatalf("two cut answers: got %v after %d attempts, want a network error after 2", err, len(srv.Requests()))
	}
	u, err := c.Usage(context.Background(), 0) // cut once more, then whole
	if err != nil || len(u.Reports) != 501 || u.Size != len(body) || len(srv.Requests()) != 4 {
		t.Fatalf("got %v, %d attempts", err, len(srv.Requests()))
	}
}

func TestClientLongPollRetryIsUnconditional(t *testing.T) {
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 1 {
			hangUp(w)
			return
		}
		w.Header().Set("ETag", `"14"`)
		jsonReply(w, 200, liveSnapshot)
	})
	c := newTestClient(t, srv.URL, ClientOptions{})
	res, err := c.Snapshot(context.Background(), SnapshotRequest{LongPoll: true, Generation: 14, Wait: 30 * time.Second})
	if err != nil || res.NotModified || res.Generation != 14 {
		t.Fatalf("%+v %v", res, err)
	}
	reqs := srv.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests", len(reqs))
	}
	if reqs[0].Header.Get("If-None-Match") != `"14"` || reqs[0].Query != "wait=30000" {
		t.Fatalf("first attempt not a long-poll: %+v", reqs[0])
	}
	if reqs[1].Header.Get("If-None-Match") != "" || reqs[1].Query != "" || reqs[1].Header.Get(capabilitiesHeader) == "" {
		t.Fatalf("retry after a transport error must be an unconditional GET: %+v", reqs[1])
	}
}

// TestClientDefaultTransportLongPoll: the default transport must let a
// long-poll wait longer than the stream's response-header timeout.
func TestClientDefaultTransportLongPoll(t *testing.T) {
	c, err := NewClient(ClientOptions{URL: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	rt := c.transport.(*http.Transport)
	st := c.streamRT.(*http.Transport)
	if rt.ResponseHeaderTimeout != 0 || st.ResponseHeaderTimeout != 10*time.Second || st.TLSHandshakeTimeout == 0 || c.httpc.Timeout != 0 {
		t.Fatalf("request header timeout %v, stream header timeout %v", rt.ResponseHeaderTimeout, st.ResponseHeaderTimeout)
	}
}
