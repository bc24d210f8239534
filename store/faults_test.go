package store

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestStreamHangUpIsNetwork: a broker that takes the connection and closes
// it without answering cannot be reached (network), like a refused
// connection and like every other route; only an answered stream that
// stops is eof.
func TestStreamHangUpIsNetwork(t *testing.T) {
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, n int) { hangUp(w) })
	c := newTestClient(t, srv.URL, ClientOptions{})
	_, err := collect(t, c, context.Background(), streamConfig{})
	var ne *NetError
	if !errors.As(err, &ne) || errors.Is(err, ErrStreamEnded) || syncReason(err) != SyncReasonNetwork {
		t.Fatalf("hang-up before any answer: %v (reason %s), want a network error", err, syncReason(err))
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
			if len(frames) != tc.frames || syncReason(err) != tc.reason {
				t.Fatalf("%d frames, %v (reason %s); want %d frames, reason %s", len(frames), err, syncReason(err), tc.frames, tc.reason)
			}
		})
	}
}
