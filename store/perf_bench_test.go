package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// The mirror benchmarks use frames shaped like the broker's (the 18.2.3
// keys, a 2 KB-ish access token is not needed: the token is only hashed).
// Sizes are credentials in the mirror when the frame arrives.

var benchProviders = []string{"anthropic", "openai-codex", "google-gemini-cli", "github-copilot"}

const benchRefresher = `{"enabled":true,"intervalMs":60000,"skewMs":300000,"nextSweepInMs":42275}`

func benchEntryJSON(buf *bytes.Buffer, id int, access string) {
	fmt.Fprintf(buf, `{"id":%d,"provider":%q,"credential":{"type":"oauth","access":%q,"refresh":"__remote__","expires":1795755013000,"email":"user%d@example.com","accountId":"acct-%d"},"identityKey":"email:user%d@example.com","rotatesInMs":3300000}`,
		id, benchProviders[id%len(benchProviders)], access, id, id, id)
}

func benchSnapshotFrame(n int, gen int64) []byte {
	var buf bytes.Buffer
	fmt.Fprintf(&buf, `{"kind":"snapshot","generation":%d,"generatedAt":1795751762512,"serverNowMs":1795751762512,"refresher":%s,"credentials":[`, gen, benchRefresher)
	for i := 1; i <= n; i++ {
		if i > 1 {
			buf.WriteByte(',')
		}
		benchEntryJSON(&buf, i, "access-"+strconv.Itoa(i))
	}
	buf.WriteString("]}")
	return buf.Bytes()
}

func benchEntryFrame(id int, gen int64, access string) []byte {
	var buf bytes.Buffer
	fmt.Fprintf(&buf, `{"kind":"entry","generation":%d,"serverNowMs":1795751777704,"refresher":%s,"entry":`, gen, benchRefresher)
	benchEntryJSON(&buf, id, access)
	buf.WriteByte('}')
	return buf.Bytes()
}

// benchEntryFrames returns frames that rotate the token of ids spread over
// the whole mirror; consecutive passes alternate the token, so every
// applied frame is a real rotation.
func benchEntryFrames(n int, gen int64) [][]byte {
	const k = 1024
	out := make([][]byte, 0, 2*k)
	for pass := range 2 {
		for j := range k {
			id := 1 + (j*7919)%n
			out = append(out, benchEntryFrame(id, gen, fmt.Sprintf("rotated-%d-%d", pass, id)))
		}
	}
	return out
}

var benchStoreSizes = []int{10000, 100000}

func benchSize(n int) string { return strconv.Itoa(n/1000) + "k" }

func benchStore(b *testing.B, n int) *Store {
	c, err := NewClient(ClientOptions{URL: "http://127.0.0.1:1"})
	if err != nil {
		b.Fatal(err)
	}
	s := newStore(Options{Client: c, Stream: true})
	if n > 0 {
		f, err := decodeFrame(benchSnapshotFrame(n, 7), time.Now(), nil)
		if err != nil {
			b.Fatal(err)
		}
		s.applyFrame(f)
	}
	return s
}

// BenchmarkStreamDelta is one entry frame, decoded and applied to a mirror
// of n credentials, as the sync loop does it (r3labs framing excluded; see
// BenchmarkStreamDeltaSSE).
func BenchmarkStreamDelta(b *testing.B) {
	for _, n := range benchStoreSizes {
		b.Run("creds="+benchSize(n), func(b *testing.B) {
			s := benchStore(b, n)
			frames := benchEntryFrames(n, 7)
			pool := &stringPool{} // the connection's, as in the stream
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				f, err := decodeFrame(frames[i%len(frames)], time.Now(), pool)
				if err != nil {
					b.Fatal(err)
				}
				s.applyFrame(f)
				i++
			}
			if got := s.Counters().StreamEvents[[2]string{EventEntry, EventApplied}]; got != uint64(i) {
				b.Fatalf("%d of %d frames applied", got, i)
			}
		})
	}
}

// pipeTransport answers the stream request with a body the benchmark
// writes to, so the whole client path (r3labs framing included) runs
// without a socket.
type pipeTransport struct{ body io.ReadCloser }

func (t *pipeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"text/event-stream"}},
		Body: t.body, Request: req}, nil
}

var errBenchDone = errors.New("benchmark done")

func sseBytes(kind string, data []byte) []byte {
	out := make([]byte, 0, len(data)+32)
	out = append(out, "event: "+kind+"\ndata: "...)
	out = append(out, data...)
	return append(out, "\n\n"...)
}

// BenchmarkStreamDeltaSSE is one entry frame through the client's SSE
// reader (r3labs), decoding and the mirror, per frame.
func BenchmarkStreamDeltaSSE(b *testing.B) {
	for _, n := range benchStoreSizes {
		b.Run("creds="+benchSize(n), func(b *testing.B) {
			frames := benchEntryFrames(n, 7)
			events := make([][]byte, len(frames))
			for i, f := range frames {
				events[i] = sseBytes(EventEntry, f)
			}
			snap := sseBytes(EventSnapshot, benchSnapshotFrame(n, 7))
			pr, pw := io.Pipe()
			c, err := NewClient(ClientOptions{URL: "http://127.0.0.1:1", Transport: &pipeTransport{body: pr},
				MaxFrameBytes: 64 << 20})
			if err != nil {
				b.Fatal(err)
			}
			s := newStore(Options{Client: c, Stream: true})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()

			ready := make(chan struct{})
			todo := 0
			writeErr := make(chan error, 1)
			go func() {
				if _, err := pw.Write(snap); err != nil {
					writeErr <- err
					return
				}
				<-ready
				for i := range todo {
					if _, err := pw.Write(events[i%len(events)]); err != nil {
						writeErr <- err
						return
					}
				}
				writeErr <- nil
			}()
			b.ReportAllocs()
			got := 0
			err = c.Stream(ctx, func(f *StreamFrame) error {
				s.applyFrame(f)
				if f.Kind == EventSnapshot {
					// Timing starts once the mirror holds n credentials.
					todo = b.N
					b.ResetTimer()
					close(ready)
					if todo == 0 {
						return errBenchDone
					}
					return nil
				}
				got++
				if got == todo {
					b.StopTimer()
					return errBenchDone
				}
				return nil
			})
			if !errors.Is(err, errBenchDone) {
				b.Fatal(err)
			}
			pw.Close()
			if err := <-writeErr; err != nil && !errors.Is(err, io.ErrClosedPipe) {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkSnapshotFrame is a full snapshot frame decoded and adopted by a
// mirror that already holds the same credentials (a reconnect).
func BenchmarkSnapshotFrame(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		b.Run("creds="+benchSize(n), func(b *testing.B) {
			s := benchStore(b, n)
			frame := benchSnapshotFrame(n, 8)
			b.SetBytes(int64(len(frame)))
			b.ReportAllocs()
			for b.Loop() {
				f, err := decodeFrame(frame, time.Now(), nil)
				if err != nil {
					b.Fatal(err)
				}
				s.applyFrame(f)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/cred")
		})
	}
}

// BenchmarkView is what every scrape starts with: the immutable view.
func BenchmarkView(b *testing.B) {
	for _, n := range benchStoreSizes {
		b.Run("creds="+benchSize(n), func(b *testing.B) {
			s := benchStore(b, n)
			b.ReportAllocs()
			for b.Loop() {
				if v := s.Snapshot(); len(v.Entries) != n {
					b.Fatalf("%d entries", len(v.Entries))
				}
			}
		})
	}
}

// BenchmarkStreamPass is what one broker change costs the exporter: the
// broker re-sends every OAuth entry (rotatesInMs moved) and writes the
// whole pass at once, so the client reads many frames per socket read.
// One op is one frame; the pass is the n frames of a mirror of n.
func BenchmarkStreamPass(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run("creds="+benchSize(n), func(b *testing.B) {
			var pass []byte
			for i := 1; i <= n; i++ {
				pass = append(pass, sseBytes(EventEntry, benchEntryFrame(i, 7, fmt.Sprintf("pass-%d", i)))...)
			}
			snap := sseBytes(EventSnapshot, benchSnapshotFrame(n, 7))
			pr, pw := io.Pipe()
			c, err := NewClient(ClientOptions{URL: "http://127.0.0.1:1", Transport: &pipeTransport{body: pr},
				MaxFrameBytes: 64 << 20})
			if err != nil {
				b.Fatal(err)
			}
			s := newStore(Options{Client: c, Stream: true})
			ready := make(chan struct{})
			passes := 0
			writeErr := make(chan error, 1)
			go func() {
				if _, err := pw.Write(snap); err != nil {
					writeErr <- err
					return
				}
				<-ready
				for range passes {
					if _, err := pw.Write(pass); err != nil {
						writeErr <- err
						return
					}
				}
				writeErr <- nil
			}()
			b.ReportAllocs()
			todo, got := 0, 0
			err = c.Stream(context.Background(), func(f *StreamFrame) error {
				s.applyFrame(f)
				if f.Kind == EventSnapshot {
					passes = (b.N + n - 1) / n
					todo = passes * n
					b.ResetTimer()
					close(ready)
					return nil
				}
				got++
				if got == todo {
					b.StopTimer()
					return errBenchDone
				}
				return nil
			})
			if !errors.Is(err, errBenchDone) {
				b.Fatal(err)
			}
			pw.Close()
			if err := <-writeErr; err != nil && !errors.Is(err, io.ErrClosedPipe) {
				b.Fatal(err)
			}
			// Per frame, whatever whole number of passes b.N rounded up to.
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(todo), "ns/frame")
		})
	}
}

// BenchmarkSnapshotSSE is a stream's first frame, a full snapshot of n
// credentials, through the SSE reader, decoder and mirror.
func BenchmarkSnapshotSSE(b *testing.B) {
	for _, n := range []int{10000, 100000} {
		b.Run("creds="+benchSize(n), func(b *testing.B) {
			snap := sseBytes(EventSnapshot, benchSnapshotFrame(n, 7))
			b.SetBytes(int64(len(snap)))
			b.ReportAllocs()
			for b.Loop() {
				c, err := NewClient(ClientOptions{URL: "http://127.0.0.1:1", MaxFrameBytes: 64 << 20,
					Transport: &pipeTransport{body: io.NopCloser(bytes.NewReader(snap))}})
				if err != nil {
					b.Fatal(err)
				}
				s := newStore(Options{Client: c, Stream: true})
				err = c.Stream(context.Background(), func(f *StreamFrame) error {
					s.applyFrame(f)
					return errBenchDone
				})
				if !errors.Is(err, errBenchDone) {
					b.Fatal(err)
				}
			}
		})
	}
}
