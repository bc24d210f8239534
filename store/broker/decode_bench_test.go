package broker

import (
	"bytes"
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// decodeFrame decodes one frame with a decoder of its own.
func decodeFrame(data []byte, recv time.Time) (*StreamFrame, error) {
	return new(FrameDecoder).Decode(data, recv)
}

// BenchmarkDecodeFrame is one entry frame decoded by its connection's
// decoder, as on the stream.
func BenchmarkDecodeFrame(b *testing.B) {
	frame := benchEntryFrame(4242, 7, "access-token")
	d := &FrameDecoder{}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.Decode(frame, time.Now()); err != nil {
			b.Fatal(fmt.Sprint(err))
		}
	}
}

// TestDecodeFrameAllocations bounds what an entry frame costs on a
// connection that has seen its provider: the frame, its entry, and the
// strings of the credential's own (here email, account id and identity
// key; the type and the provider come from the pool).
func TestDecodeFrameAllocations(t *testing.T) {
	frame := benchEntryFrame(4242, 7, "access-token")
	d := &FrameDecoder{}
	if _, err := d.Decode(frame, epoch); err != nil {
		t.Fatal(err)
	}
	n := testing.AllocsPerRun(100, func() {
		if _, err := d.Decode(frame, epoch); err != nil {
			t.Fatal(err)
		}
	})
	if n > 5 {
		t.Fatalf("an entry frame costs %v allocations, want at most 5", n)
	}
}

// TestStringPool: a repeated string costs no allocation; the pool stays
// within its bound however many distinct strings pass through.
func TestStringPool(t *testing.T) {
	p := &stringPool{}
	p.get([]byte("user@example.com"))
	key := []byte("user@example.com")
	if n := testing.AllocsPerRun(100, func() { p.get(key) }); n != 0 {
		t.Fatalf("a pooled string allocates %v times", n)
	}
	for i := range 3 * stringPoolMax {
		p.get([]byte(strconv.Itoa(i)))
	}
	if n := len(p.m); n > stringPoolMax {
		t.Fatalf("pool holds %d strings, bound %d", n, stringPoolMax)
	}
}

// TestFrameDecoderLetsGoOfData: a connection's decoder keeps nothing of
// the frame it decoded, which may be a snapshot of megabytes, until the
// next one arrives.
func TestFrameDecoderLetsGoOfData(t *testing.T) {
	d := &FrameDecoder{}
	data := bytes.Clone(benchSnapshotFrame(100, 7))
	collected := make(chan struct{})
	runtime.AddCleanup(&data[0], func(ch chan struct{}) { close(ch) }, collected)
	if f, err := d.Decode(data, epoch); err != nil || len(f.Snapshot.Entries) != 100 {
		t.Fatal(err)
	}
	data = nil
	for range 100 {
		runtime.GC()
		select {
		case <-collected:
			runtime.KeepAlive(d) // the decoder lives on, for the next frame
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
	runtime.KeepAlive(d)
	t.Fatal("the decoder still holds the frame's bytes")
}
