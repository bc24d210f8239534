package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/authbroker/authbroker_exporter/store/broker"
)

var benchStoreSizes = []int{10000, 100000}

func benchSize(n int) string { return strconv.Itoa(n/1000) + "k" }

func benchStore(b *testing.B, n int) *Store {
	c, err := broker.NewClient(broker.ClientOptions{URL: "http://127.0.0.1:1"})
	if err != nil {
		b.Fatal(err)
	}
	s := newStore(Options{Broker: c, Stream: true})
	if n > 0 {
		f, err := new(broker.FrameDecoder).Decode(benchSnapshotFrame(n, 7), time.Now())
		if err != nil {
			b.Fatal(err)
		}
		s.applyFrame(f)
	}
	return s
}

// BenchmarkStreamDelta is one entry frame, decoded and applied to a mirror
// of n credentials, as the sync loop does it (the event reader excluded;
// see BenchmarkStreamDeltaSSE).
func BenchmarkStreamDelta(b *testing.B) {
	for _, n := range benchStoreSizes {
		b.Run("creds="+benchSize(n), func(b *testing.B) {
			s := benchStore(b, n)
			frames := benchEntryFrames(n, 7)
			dec := &broker.FrameDecoder{} // the connection's, as in the stream
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				f, err := dec.Decode(frames[i%len(frames)], time.Now())
				if err != nil {
					b.Fatal(err)
				}
				s.applyFrame(f)
				i++
			}
			if got := s.Counters().StreamEvents[FrameOutcome{broker.FrameEntry, FrameApplied}]; got != uint64(i) {
				b.Fatalf("%d of %d frames applied", got, i)
			}
		})
	}
}

var errBenchDone = errors.New("benchmark done")

// BenchmarkStreamDeltaSSE is one entry frame through the client's event
// reader, decoding and the mirror, per frame.
func BenchmarkStreamDeltaSSE(b *testing.B) {
	for _, n := range benchStoreSizes {
		b.Run("creds="+benchSize(n), func(b *testing.B) {
			frames := benchEntryFrames(n, 7)
			events := make([][]byte, len(frames))
			for i, f := range frames {
				events[i] = sseBytes(broker.FrameEntry, f)
			}
			snap := sseBytes(broker.FrameSnapshot, benchSnapshotFrame(n, 7))
			pr, pw := io.Pipe()
			c, err := broker.NewClient(broker.ClientOptions{URL: "http://127.0.0.1:1", Transport: &pipeTransport{Body: pr},
				MaxFrameBytes: 64 << 20})
			if err != nil {
				b.Fatal(err)
			}
			s := newStore(Options{Broker: c, Stream: true})
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
			err = c.Stream(ctx, func(f *broker.StreamFrame) error {
				s.applyFrame(f)
				if f.Kind == broker.FrameSnapshot {
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
				f, err := new(broker.FrameDecoder).Decode(frame, time.Now())
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
			// Consecutive passes differ in every entry's rotatesInMs only,
			// as a live broker's do.
			var passes2 [2][]byte
			for i := 1; i <= n; i++ {
				frame := benchEntryFrame(i, 7, fmt.Sprintf("pass-%d", i))
				passes2[0] = append(passes2[0], sseBytes(broker.FrameEntry, frame)...)
				frame = bytes.Replace(frame, []byte(`"rotatesInMs":3300000`), []byte(`"rotatesInMs":3240000`), 1)
				passes2[1] = append(passes2[1], sseBytes(broker.FrameEntry, frame)...)
			}
			snap := sseBytes(broker.FrameSnapshot, benchSnapshotFrame(n, 7))
			pr, pw := io.Pipe()
			c, err := broker.NewClient(broker.ClientOptions{URL: "http://127.0.0.1:1", Transport: &pipeTransport{Body: pr},
				MaxFrameBytes: 64 << 20})
			if err != nil {
				b.Fatal(err)
			}
			s := newStore(Options{Broker: c, Stream: true})
			ready := make(chan struct{})
			passes := 0
			writeErr := make(chan error, 1)
			go func() {
				if _, err := pw.Write(snap); err != nil {
					writeErr <- err
					return
				}
				<-ready
				for p := range passes {
					if _, err := pw.Write(passes2[p%2]); err != nil {
						writeErr <- err
						return
					}
				}
				writeErr <- nil
			}()
			b.ReportAllocs()
			todo, got := 0, 0
			var cpu0, cpu time.Duration
			err = c.Stream(context.Background(), func(f *broker.StreamFrame) error {
				s.applyFrame(f)
				if f.Kind == broker.FrameSnapshot {
					passes = (b.N + n - 1) / n
					todo = passes * n
					cpu0 = processCPU()
					b.ResetTimer()
					close(ready)
					return nil
				}
				got++
				if got == todo {
					b.StopTimer()
					cpu = processCPU() - cpu0
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
			// CPU time of the whole process (every goroutine, GC included):
			// steadier than wall time on a shared machine.
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(todo), "cpu-ns/frame")
		})
	}
}

// BenchmarkSnapshotSSE is a stream's first frame, a full snapshot of n
// credentials, through the SSE reader, decoder and mirror.
func BenchmarkSnapshotSSE(b *testing.B) {
	for _, n := range []int{10000, 100000} {
		b.Run("creds="+benchSize(n), func(b *testing.B) {
			snap := sseBytes(broker.FrameSnapshot, benchSnapshotFrame(n, 7))
			b.SetBytes(int64(len(snap)))
			b.ReportAllocs()
			for b.Loop() {
				c, err := broker.NewClient(broker.ClientOptions{URL: "http://127.0.0.1:1", MaxFrameBytes: 64 << 20,
					Transport: &pipeTransport{Body: io.NopCloser(bytes.NewReader(snap))}})
				if err != nil {
					b.Fatal(err)
				}
				s := newStore(Options{Broker: c, Stream: true})
				err = c.Stream(context.Background(), func(f *broker.StreamFrame) error {
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

// processCPU is the user and system CPU time the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
