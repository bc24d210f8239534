package broker

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"
)

// randomReads returns at most a random number of bytes per Read, like a
// socket, and ends with err.
type randomReads struct {
	data []byte
	rng  *rand.Rand
	err  error
}

func (r *randomReads) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := min(len(p), len(r.data), 1+r.rng.IntN(3000))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

func (r *randomReads) Close() error { return nil }

// TestEventChunkerOnlyResizesReads: the bytes come out unchanged and in
// order, each Read ends at or before the first blank line it meets, and
// the body's error comes after all its bytes.
func TestEventChunkerOnlyResizesReads(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var stream []byte
	for i := range 500 {
		switch i % 7 {
		case 0:
			stream = append(stream, ": keepalive\n\n"...)
		case 1:
			stream = append(stream, "event: entry\r\ndata: {\"crlf\":true}\r\n\r\n"...)
		default:
			stream = append(stream, sseBytes(FrameEntry, benchEntryFrame(i, 7, "tok"))...)
		}
	}
	stream = append(stream, "event: entry\ndata: {\"cut\":"...) // unterminated tail
	for _, end := range []error{io.EOF, io.ErrUnexpectedEOF} {
		c := &eventChunker{ReadCloser: &randomReads{data: stream, rng: rng, err: end}}
		var out []byte
		var err error
		for {
			p := make([]byte, 1+rng.IntN(8192))
			var n int
			n, err = c.Read(p)
			if i := bytes.Index(p[:n], blankLine); i >= 0 && i+len(blankLine) != n {
				t.Fatalf("a read went past a blank line: %q", p[:n])
			}
			out = append(out, p[:n]...)
			if err != nil {
				break
			}
		}
		if !errors.Is(err, end) {
			t.Fatalf("ended with %v, want %v", err, end)
		}
		if !bytes.Equal(out, stream) {
			t.Fatal("bytes changed on the way through")
		}
	}
	if err := iotest.TestReader(&eventChunker{ReadCloser: io.NopCloser(bytes.NewReader(stream))}, stream); err != nil {
		t.Fatal(err)
	}
}

// TestEventChunkerHoldsLittle: however large the reads r3labs asks for
// (its buffer grows to the largest event), once the chunker has handed out
// what it read it keeps no buffer larger than maxKeptBuffer.
func TestEventChunkerHoldsLittle(t *testing.T) {
	var pass []byte
	for i := 0; len(pass) < 4<<20; i++ {
		pass = append(pass, sseBytes(FrameEntry, benchEntryFrame(i, 7, "tok"))...)
	}
	c := &eventChunker{ReadCloser: io.NopCloser(bytes.NewReader(pass))}
	p := make([]byte, 8<<20)
	var out []byte
	held := 0
	for {
		n, err := c.Read(p)
		out = append(out, p[:n]...)
		held = max(held, cap(c.buf))
		if len(c.pending) == 0 && cap(c.buf) > maxKeptBuffer {
			t.Fatalf("the chunker keeps a %d-byte buffer with nothing pending", cap(c.buf))
		}
		if err != nil {
			break
		}
	}
	if !bytes.Equal(out, pass) {
		t.Fatal("bytes changed on the way through")
	}
	if held <= maxKeptBuffer {
		t.Fatalf("the pass never went through a large buffer (%d bytes): the test no longer exercises the release", held)
	}
}

// BenchmarkEventChunker is the chunker's own cost per frame of a pass.
func BenchmarkEventChunker(b *testing.B) {
	var pass []byte
	for i := range 1000 {
		pass = append(pass, sseBytes(FrameEntry, benchEntryFrame(i, 7, "tok"))...)
	}
	p := make([]byte, 64<<10)
	b.SetBytes(int64(len(pass)))
	for b.Loop() {
		c := &eventChunker{ReadCloser: io.NopCloser(bytes.NewReader(pass))}
		for {
			if _, err := c.Read(p); err != nil {
				break
			}
		}
	}
}
