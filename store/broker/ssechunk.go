package broker

import (
	"bytes"
	"io"
)

// eventChunker hands r3labs the stream at most one event per Read.
//
// r3labs splits events by searching its whole unread buffer for five
// blank-line patterns, once per event. When the broker writes a pass of
// thousands of entry frames at once (it re-sends every OAuth entry on
// every change), that buffer holds a socket read's worth of frames, and
// finding each frame costs a scan of all the frames after it: quadratic in
// the pass. Ending every Read at the first "\n\n" keeps r3labs' buffer to
// about one event. Only the sizes of the reads change, never the bytes,
// so framing is what it would be for any chunking the network produces.
type eventChunker struct {
	io.ReadCloser
	buf     []byte // holds pending
	pending []byte // read from the body, not yet handed out
	err     error  // the body's error, returned once pending is empty
}

var blankLine = []byte("\n\n")

// maxKeptBuffer is the largest buf kept once its bytes are handed out.
const maxKeptBuffer = 64 << 10

func (c *eventChunker) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		chunk := c.pending
		if i := bytes.Index(chunk, blankLine); i >= 0 {
			chunk = chunk[:i+len(blankLine)]
		}
		n := copy(p, chunk)
		c.pending = c.pending[n:]
		if len(c.pending) == 0 && cap(c.buf) > maxKeptBuffer {
			// A burst (the first snapshot and a pass behind it) is handed
			// out: do not keep its megabytes for the connection's life.
			c.buf = nil
		}
		return n, nil
	}
	if c.err != nil {
		err := c.err
		c.err = nil
		return 0, err
	}
	// Read straight into p, so a large frame arrives in reads as large as
	// r3labs asks for (its scanner looks for the end of an event in all it
	// holds after every read: small reads of a large event would make that
	// quadratic); keep what follows the first blank line for later.
	n, err := c.ReadCloser.Read(p)
	if i := bytes.Index(p[:n], blankLine); i >= 0 && i+len(blankLine) < n {
		end := i + len(blankLine)
		if cap(c.buf) < n-end {
			c.buf = make([]byte, n-end)
		}
		c.pending = append(c.buf[:0], p[end:n]...)
		c.err = err
		return end, nil
	}
	return n, err
}
