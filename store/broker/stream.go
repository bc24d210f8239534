package broker

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// ErrStreamEnded is returned by Client.Stream when the broker closed the
// stream without the caller cancelling; ErrStreamIdle when no byte (not
// even a keepalive) arrived within the idle timeout.
var (
	ErrStreamEnded = errors.New("auth-broker snapshot stream ended unexpectedly")
	ErrStreamIdle  = errors.New("auth-broker snapshot stream idle (no data, no keepalive)")
)

const streamPath = "/v1/snapshot/stream"

// checkStream checks the answer to the stream request: a 200 of
// text/event-stream, ErrStreamUnsupported for a 404, an HTTPError else.
func (c *Client) checkStream(r *request, resp *http.Response) error {
	if resp.StatusCode == http.StatusOK {
		if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/event-stream" {
			return protoErr(r.op(), "Content-Type %s is not text/event-stream", quoteShort(resp.Header.Get("Content-Type")))
		}
		return nil
	}
	if resp.StatusCode == http.StatusNotFound {
		return ErrStreamUnsupported
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	return c.statusErr(r, &response{status: resp.StatusCode, body: body})
}

// readEvents reads an event stream (the text/event-stream format of the
// WHATWG HTML standard) and calls dispatch with the data of each event
// that has some, valid until dispatch returns. The broker writes an
// "event:" and a "data:" line per event, each ending in LF
// (docs/broker-protocol.md §6.1); CRLF ends a line too, a lone CR does not.
// Comments and the fields other than data are skipped. An event of more
// than limit bytes (its lines and the blank line that ends it) is a
// protocol error. It returns dispatch's error, or the body's (io.EOF at
// its end): an event the body ends in the middle of is discarded, as the
// standard says.
func readEvents(body io.Reader, limit int, dispatch func(data []byte) error) error {
	br := bufio.NewReaderSize(body, 64<<10)
	var data []byte                // the event's data lines so far, each ending in LF
	size := 0                      // the event's bytes so far
	inLine, isData := false, false // the line goes on in the next part; it is a data line
	for {
		part, err := br.ReadSlice('\n')
		if err != nil && err != bufio.ErrBufferFull {
			return err
		}
		if size += len(part); size > limit {
			return &ProtocolError{Op: "stream", Detail: fmt.Sprintf("frame larger than %d bytes", limit), TooLarge: true}
		}
		first := !inLine
		if inLine = err != nil; first && (string(part) == "\n" || string(part) == "\r\n") {
			// A blank line ends the event.
			if len(data) > 1 {
				if err := dispatch(data[:len(data)-1]); err != nil {
					return err
				}
			}
			if data, size = data[:0], 0; cap(data) > 64<<10 {
				data = nil // a snapshot's megabytes are not kept for the connection's life
			}
			continue
		}
		if first {
			part, isData = dataValue(part)
		}
		if isData {
			if data = append(data, part...); !inLine {
				data = append(bytes.TrimSuffix(bytes.TrimSuffix(data, []byte("\n")), []byte("\r")), '\n')
			}
		}
	}
}

// dataValue returns the value of a data line from the line's first part,
// false for any other line.
func dataValue(part []byte) ([]byte, bool) {
	rest, ok := bytes.CutPrefix(part, []byte("data"))
	if value, colon := bytes.CutPrefix(rest, []byte(":")); ok && colon {
		return bytes.TrimPrefix(value, []byte(" ")), true
	}
	return rest, ok && (string(rest) == "\n" || string(rest) == "\r\n")
}

// seenReader calls seen after every read that returned bytes.
type seenReader struct {
	io.Reader
	seen func()
}

func (r seenReader) Read(p []byte) (int, error) {
	n, err := r.Reader.Read(p)
	if n > 0 {
		r.seen()
	}
	return n, err
}

// streamConfig is per call so the store can pass its own clock and idle
// timeout; onBytes is a test hook.
type streamConfig struct {
	idle    time.Duration
	clock   Clock
	onBytes func()
}

// Stream follows GET /v1/snapshot/stream until ctx ends, the connection
// fails, or handle returns an error (returned as is). The first frame must
// be a snapshot. It returns ErrStreamUnsupported on 404, *HTTPError for
// other statuses, *ProtocolError for bad frames, ErrStreamIdle, ErrStreamEnded,
// *NetError, or ctx.Err().
func (c *Client) Stream(ctx context.Context, handle func(*StreamFrame) error) error {
	return c.stream(ctx, streamConfig{idle: c.idle, clock: c.clock}, handle)
}

func (c *Client) stream(ctx context.Context, cfg streamConfig, handle func(*StreamFrame) error) error {
	return c.withToken(false, func(tok string) (bool, error) {
		err := c.streamOnce(ctx, cfg, tok, handle)
		var he *HTTPError
		return errors.As(err, &he) && he.Status == http.StatusUnauthorized, err
	})
}

func (c *Client) streamOnce(ctx context.Context, cfg streamConfig, tok string, handle func(*StreamFrame) error) error {
	cfg.idle = cmp.Or(max(cfg.idle, 0), c.idle)
	if cfg.clock == nil {
		cfg.clock = c.clock
	}
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	var lastByte atomic.Int64
	seen := func() {
		lastByte.Store(cfg.clock.Now().UnixNano())
		if cfg.onBytes != nil {
			cfg.onBytes()
		}
	}
	lastByte.Store(cfg.clock.Now().UnixNano())
	wctx, stopWatchdog := context.WithCancel(sctx)
	var wg sync.WaitGroup
	wg.Go(func() { c.watchdog(wctx, cfg, &lastByte, cancel) })
	defer func() {
		stopWatchdog()
		wg.Wait()
	}()

	r := &request{method: http.MethodGet, path: streamPath, timeout: c.timeout}
	req, err := http.NewRequestWithContext(sctx, r.method, c.base+r.path, nil)
	if err != nil {
		return fmt.Errorf("auth-broker %s: building request: %w", r.op(), err)
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	req.Header.Set("User-Agent", c.userAgent)
	req.Header.Set(capabilitiesHeader, capabilities)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	// No Timeout: the body is read for hours.
	resp, err := (&http.Client{Transport: c.streamRT}).Do(req)
	var handlerErr error
	if err == nil {
		seen()
		defer resp.Body.Close()
		// Not every transport ties the body to the request context; closing
		// it is what ends a read when the watchdog or ctx ends the connection.
		defer context.AfterFunc(sctx, func() { resp.Body.Close() })()
		if err = c.checkStream(r, resp); err == nil {
			first, dec := true, &FrameDecoder{} // this connection's: a new one starts with no history
			err = readEvents(seenReader{resp.Body, seen}, c.maxBody, func(data []byte) error {
				f, err := dec.Decode(data, cfg.clock.Now())
				if err == nil && first && f.Kind != FrameSnapshot {
					err = protoErr("stream", "first frame is %s, not snapshot", quoteShort(f.Kind))
				}
				if err == nil {
					first = false
					err = handle(f)
				}
				handlerErr = err
				return err
			})
		}
	}
	switch {
	case handlerErr != nil:
		return handlerErr
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(context.Cause(sctx), ErrStreamIdle):
		return ErrStreamIdle
	case errors.Is(err, ErrStreamUnsupported), errors.As(err, new(*ProtocolError)), errors.As(err, new(*HTTPError)):
		return err
	case resp != nil && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)):
		return ErrStreamEnded
	}
	// A connection closed before any answer is a broker that cannot be
	// reached, as for every other route.
	return c.netErr(r, sctx, err)
}

// watchdog cancels the connection with ErrStreamIdle once no byte has
// arrived for cfg.idle. It sleeps on the injected clock, so tests drive it.
func (c *Client) watchdog(ctx context.Context, cfg streamConfig, lastByte *atomic.Int64, cancel context.CancelCauseFunc) {
	for {
		idleFor := cfg.clock.Now().Sub(time.Unix(0, lastByte.Load()))
		if idleFor >= cfg.idle {
			cancel(ErrStreamIdle)
			return
		}
		if cfg.clock.Sleep(ctx, cfg.idle-idleFor) != nil {
			return
		}
	}
}
