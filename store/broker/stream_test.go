package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/authbroker/authbroker_exporter/store/internal/testkit"
)

const sseSnapshot = `{"kind":"snapshot","generation":20,"generatedAt":1795751762512,"serverNowMs":1795751762512,"refresher":{"enabled":true,"intervalMs":60000,"skewMs":300000,"nextSweepInMs":57467},"credentials":[{"id":4,"provider":"openai","credential":{"type":"api_key","key":"` + canaryKey + `"},"identityKey":null,"rotatesInMs":null}]}`
const sseEntry = `{"kind":"entry","generation":21,"serverNowMs":1795751777704,"refresher":{"enabled":true,"intervalMs":60000,"skewMs":300000,"nextSweepInMs":42275},"entry":{"id":5,"provider":"anthropic","credential":{"type":"oauth","access":"` + canaryAccess + `","refresh":"__remote__","expires":1795755013000},"identityKey":null,"rotatesInMs":1000}}`
const sseRemoved = `{"kind":"removed","generation":43,"serverNowMs":1795751866545,"refresher":{"enabled":true,"intervalMs":60000,"skewMs":300000,"nextSweepInMs":13434},"id":4}`

func sseFrame(kind, data string) string { return "event: " + kind + "\ndata: " + data + "\n\n" }

// sseServer answers the stream route with a scripted body; the body is
// written at once and the connection closed unless hold is set.
func sseServer(t *testing.T, status int, ctype, body string, hold bool) *testkit.RecServer {
	return newRecServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if status != 200 {
			jsonReply(w, status, `{"error":"nope"}`)
			return
		}
		w.Header().Set("Content-Type", ctype)
		w.WriteHeader(200)
		_, _ = io.WriteString(w, body)
		w.(http.Flusher).Flush()
		if hold {
			<-r.Context().Done()
		}
	})
}

func collect(t *testing.T, c *Client, ctx context.Context, cfg streamConfig) ([]*StreamFrame, error) {
	var frames []*StreamFrame
	err := c.stream(ctx, cfg, func(f *StreamFrame) error {
		frames = append(frames, f)
		return nil
	})
	return frames, err
}

func TestStreamFramesAndEnd(t *testing.T) {
	body := ": keepalive\n\n" + sseFrame("snapshot", sseSnapshot) + ": keepalive\n\n" +
		"event: entry\n\n" + "data:\n\n" + sseFrame("entry", sseEntry) + sseFrame("removed", sseRemoved)
	srv := sseServer(t, 200, "text/event-stream; charset=utf-8", body, false)
	c := newTestClient(t, srv.URL, ClientOptions{})
	frames, err := collect(t, c, context.Background(), streamConfig{})
	if !errors.Is(err, ErrStreamEnded) || SyncReason(err) != SyncReasonEOF {
		t.Fatalf("want ErrStreamEnded, got %v", err)
	}
	if len(frames) != 3 || frames[0].Kind != FrameSnapshot || frames[1].Kind != FrameEntry || frames[2].Kind != FrameRemoved {
		t.Fatalf("frames: %d", len(frames))
	}
	if frames[0].Snapshot.Generation != 20 || frames[1].Entry.ID != 5 || frames[2].RemovedID != 4 {
		t.Fatal("frame contents")
	}
	r := srv.Requests()[0]
	if r.Path != "/v1/snapshot/stream" || r.Header.Get("Accept") != "text/event-stream" ||
		r.Header.Get(capabilitiesHeader) != "codex-meter-block-scopes" || r.Header.Get("Authorization") != "Bearer "+canaryToken {
		t.Fatalf("request %+v", r)
	}
}

func TestStreamFailures(t *testing.T) {
	cases := []struct {
		name   string
		status int
		ctype  string
		body   string
		max    int
		check  func(error) bool
		reason string
	}{
		{"404 latches", 404, "", "", 0, func(err error) bool { return errors.Is(err, ErrStreamUnsupported) }, SyncReason4xx},
		{"401", 401, "", "", 0, func(err error) bool {
			var he *HTTPError
			return errors.As(err, &he) && he.Status == 401 && he.Path == "/v1/snapshot/stream"
		}, SyncReasonUnauthorized},
		{"503", 503, "", "", 0, func(err error) bool { var he *HTTPError; return errors.As(err, &he) && he.Status == 503 }, SyncReason5xx},
		{"json content type", 200, "application/json", sseFrame("snapshot", sseSnapshot), 0, isProto("text/event-stream"), SyncReasonProtocol},
		{"first frame not a snapshot", 200, "text/event-stream", sseFrame("entry", sseEntry), 0, isProto("first frame"), SyncReasonProtocol},
		{"malformed frame", 200, "text/event-stream", sseFrame("snapshot", sseSnapshot) + "event: entry\ndata: {\"kind\":\"entry\",\"access\":\"" + canaryAccess + "\n\n", 0, isProto("truncated"), SyncReasonProtocol},
		{"unknown kind", 200, "text/event-stream", sseFrame("snapshot", sseSnapshot) + sseFrame("bogus", `{"kind":"bogus"}`), 0, isProto("unknown frame kind"), SyncReasonProtocol},
		{"oversized frame", 200, "text/event-stream", sseFrame("snapshot", sseSnapshot) + "data: " + strings.Repeat("x", 8192) + "\n\n", 4096, isProto("larger than 4096"), SyncReasonProtocol},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := sseServer(t, tc.status, tc.ctype, tc.body, true)
			c := newTestClient(t, srv.URL, ClientOptions{MaxFrameBytes: tc.max})
			_, err := collect(t, c, context.Background(), streamConfig{})
			if !tc.check(err) {
				t.Fatalf("unexpected error %v", err)
			}
			if r := SyncReason(err); r != tc.reason {
				t.Fatalf("reason %s, want %s", r, tc.reason)
			}
			for _, verb := range []string{"%v", "%+v", "%#v"} {
				assertNoCanary(t, "stream error", fmt.Sprintf(verb, err))
			}
		})
	}
}

func isProto(substr string) func(error) bool {
	return func(err error) bool {
		var pe *ProtocolError
		return errors.As(err, &pe) && strings.Contains(err.Error(), substr)
	}
}

func TestStreamCallerCancel(t *testing.T) {
	srv := sseServer(t, 200, "text/event-stream", sseFrame("snapshot", sseSnapshot), true)
	c := newTestClient(t, srv.URL, ClientOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	err := c.stream(ctx, streamConfig{}, func(f *StreamFrame) error {
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
}

func TestStreamHandlerErrorStopsStream(t *testing.T) {
	srv := sseServer(t, 200, "text/event-stream", sseFrame("snapshot", sseSnapshot)+sseFrame("entry", sseEntry), true)
	c := newTestClient(t, srv.URL, ClientOptions{})
	stop := errors.New("stop")
	calls := 0
	err := c.stream(context.Background(), streamConfig{}, func(f *StreamFrame) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("err %v calls %d", err, calls)
	}
}

// TestStreamIdleWatchdog: no byte for the idle timeout drops the stream;
// any byte (a keepalive) pushes the deadline.
func TestStreamIdleWatchdog(t *testing.T) {
	sig := newSignal()
	clk := newFakeClock(sig)
	keepalive := make(chan struct{})
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, sseFrame("snapshot", sseSnapshot))
		w.(http.Flusher).Flush()
		for {
			select {
			case <-keepalive:
				_, _ = io.WriteString(w, ": keepalive\n\n")
				w.(http.Flusher).Flush()
			case <-r.Context().Done():
				return
			}
		}
	})
	c := newTestClient(t, srv.URL, ClientOptions{Clock: clk})
	var mu sync.Mutex
	reads := 0
	cfg := streamConfig{idle: time.Minute, clock: clk, onBytes: func() {
		mu.Lock()
		reads++
		mu.Unlock()
		sig.Fire()
	}}
	readCount := func() int { mu.Lock(); defer mu.Unlock(); return reads }
	done := make(chan error, 1)
	first := make(chan struct{})
	go func() {
		done <- c.stream(context.Background(), cfg, func(f *StreamFrame) error {
			if f.Kind == FrameSnapshot {
				close(first)
			}
			return nil
		})
	}()
	<-first
	if d := clk.WaitSleep(t, time.Minute); d != time.Minute {
		t.Fatalf("watchdog sleeps %v", d)
	}
	clk.Advance(59 * time.Second)
	before := readCount()
	keepalive <- struct{}{}
	sig.WaitFor(t, "keepalive read", func() bool { return readCount() > before })
	clk.Advance(time.Second) // the original deadline: not idle, 1 s since the keepalive
	if d := clk.WaitSleep(t, 59*time.Second); d != 59*time.Second {
		t.Fatalf("watchdog re-armed for %v, want 59s", d)
	}
	select {
	case err := <-done:
		t.Fatalf("stream ended early: %v", err)
	default:
	}
	clk.Advance(59 * time.Second)
	err := <-done
	if !errors.Is(err, ErrStreamIdle) || SyncReason(err) != SyncReasonIdle {
		t.Fatalf("want ErrStreamIdle, got %v", err)
	}
}

func TestStreamTokenRotation(t *testing.T) {
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
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, sseFrame("snapshot", sseSnapshot))
	})
	path := filepath.Join(t.TempDir(), "token")
	writeFile(t, path, canaryToken)
	c := newTestClient(t, srv.URL, ClientOptions{Token: FileToken(path)})
	_, err := collect(t, c, context.Background(), streamConfig{})
	if SyncReason(err) != SyncReasonUnauthorized || len(srv.Requests()) != 1 {
		t.Fatalf("got %v after %d requests", err, len(srv.Requests()))
	}
	writeFile(t, path, canaryToken2)
	frames, err := collect(t, c, context.Background(), streamConfig{})
	if !errors.Is(err, ErrStreamEnded) || len(frames) != 1 || len(srv.Requests()) != 3 {
		t.Fatalf("got %v, %d frames after %d requests", err, len(frames), len(srv.Requests()))
	}
}

// TestStreamHangUpIsNetwork: a broker that takes the connection and closes
// it without answering cannot be reached (network), like a refused
// connection and like every other route; only an answered stream that
// stops is eof.
func TestStreamHangUpIsNetwork(t *testing.T) {
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, n int) { hangUp(w) })
	c := newTestClient(t, srv.URL, ClientOptions{})
	_, err := collect(t, c, context.Background(), streamConfig{})
	var ne *NetError
	if !errors.As(err, &ne) || errors.Is(err, ErrStreamEnded) || SyncReason(err) != SyncReasonNetwork {
		t.Fatalf("hang-up before any answer: %v (reason %s), want a network error", err, SyncReason(err))
	}
}

// TestStreamCutMidFrame: a connection that breaks in the middle of a frame
// ended (eof); the unterminated remainder is discarded, as the SSE spec
// says, not decoded into a protocol error. A complete bad frame is still a
// protocol error, even when a cut follows it.
func TestStreamCutMidFrame(t *testing.T) {
	entry := sseFrame("entry", sseEntry)
	half := entry[:len(entry)/2]
	bad := sseFrame("entry", `{"kind":"entry","generation":`)
	cases := []struct {
		name   string
		body   string
		abort  bool // drop the connection instead of ending the body
		frames int
		reason string
	}{
		{"body ends mid-frame", sseFrame("snapshot", sseSnapshot) + half, false, 1, SyncReasonEOF},
		{"connection drops mid-frame", sseFrame("snapshot", sseSnapshot) + half, true, 1, SyncReasonEOF},
		{"connection drops mid-snapshot", sseFrame("snapshot", sseSnapshot)[:100], true, 0, SyncReasonEOF},
		{"CRLF framing, drop mid-frame", strings.ReplaceAll(sseFrame("snapshot", sseSnapshot), "\n", "\r\n") + half, true, 1, SyncReasonEOF},
		{"drop after a complete frame", sseFrame("snapshot", sseSnapshot) + entry, true, 2, SyncReasonEOF},
		{"bad complete frame, then a drop mid-frame", sseFrame("snapshot", sseSnapshot) + bad + half, true, 1, SyncReasonProtocol},
		{"bad complete frame, then the end", sseFrame("snapshot", sseSnapshot) + bad, false, 1, SyncReasonProtocol},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
				w.Header().Set("Content-Type", "text/event-stream")
				_, _ = io.WriteString(w, tc.body)
				w.(http.Flusher).Flush()
				if tc.abort {
					panic(http.ErrAbortHandler)
				}
			})
			c := newTestClient(t, srv.URL, ClientOptions{})
			frames, err := collect(t, c, context.Background(), streamConfig{})
			if len(frames) != tc.frames || SyncReason(err) != tc.reason {
				t.Fatalf("%d frames, %v (reason %s); want %d frames, reason %s", len(frames), err, SyncReason(err), tc.frames, tc.reason)
			}
		})
	}
}

// TestReadEvents: the event stream format as the standard defines it, read
// in one-byte reads and whole: the data of each event with data, LF or
// CRLF line ends (a CRLF split across two buffer fills included), comments
// and other fields skipped, an unterminated last event discarded, and the
// size limit on an event, the blank line that ends it included.
func TestReadEvents(t *testing.T) {
	long := strings.Repeat("x", 64<<10-len("data: ")-1) // its CR ends the reader's first 64 KiB
	cases := []struct {
		name, in string
		limit    int
		want     []string
		err      string
	}{
		{"broker framing", "event: snapshot\ndata: {\"a\":1}\n\n: keepalive\n\nevent: entry\ndata: {}\n\n", 100, []string{`{"a":1}`, "{}"}, "EOF"},
		{"CRLF", "event: entry\r\ndata: A\r\n\r\n: c\r\n\r\n", 100, []string{"A"}, "EOF"},
		{"CRLF across fills", "data: " + long + "\r\n\r\n", 1 << 20, []string{long}, "EOF"},
		{"data lines join with LF", "data: A\ndata:B\ndata:  C\ndata\n\n", 100, []string{"A\nB\n C\n"}, "EOF"},
		{"events without data", "event: entry\n\ndata\n\ndata:\n\n", 100, nil, "EOF"},
		{"other fields", "id: 7\nretry: 10\ndatum: X\ndata2: Y\nfoo\ndata: A\n\n", 100, []string{"A"}, "EOF"},
		{"a lone CR is no line end", "data: A\rdata: B\n\n", 100, []string{"A\rdata: B"}, "EOF"},
		{"cut mid-event", "data: A\n\ndata: B\n", 100, []string{"A"}, "EOF"},
		{"event over the limit", "data: A\n\nevent: entry\ndata: 0123456789\n\n", 30, []string{"A"}, "larger than 30 bytes"},
		{"the limit is per event", strings.Repeat("data: A\n\n", 5), 9, []string{"A", "A", "A", "A", "A"}, "EOF"},
		{"the limit counts the blank line", "data: 0123\n\n", 11, nil, "larger than 11 bytes"},
		{"a comment counts", "data: A\n\n: " + strings.Repeat("c", 30) + "\n\n", 30, []string{"A"}, "larger than 30 bytes"},
	}
	for _, tc := range cases {
		for _, oneByte := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/one-byte=%v", tc.name, oneByte), func(t *testing.T) {
				var in io.Reader = strings.NewReader(tc.in)
				if oneByte {
					in = iotest.OneByteReader(in)
				}
				var got []string
				err := readEvents(in, tc.limit, func(data []byte) error {
					got = append(got, string(data))
					return nil
				})
				if !slices.Equal(got, tc.want) || err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %q, %v; want %q, an error with %q", got, err, tc.want, tc.err)
				}
			})
		}
	}
}
