package broker

import (
	"bufio"
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

	"github.com/r3labs/sse/v2"
	"gopkg.in/cenkalti/backoff.v1"
)

// ErrStreamEnded is returned by Client.Stream when the broker closed the
// stream without the caller cancelling; ErrStreamIdle when no byte (not
// even a keepalive) arrived within the idle timeout.
var (
	ErrStreamEnded = errors.New("auth-broker snapshot stream ended unexpectedly")
	ErrStreamIdle  = errors.New("auth-broker snapshot stream idle (no data, no keepalive)")
)

var errStreamStopped = errors.New("stream stopped by handler")

const streamPath = "/v1/snapshot/stream"

// newSSEClient is r3labs/sse reading one connection to the stream with
// tok, through transport. Its Subscribe returns nil when the server closed
// the stream (or ctx ended).
func (c *Client) newSSEClient(tok string, transport http.RoundTripper) *sse.Client {
	sc := sse.NewClient(c.base+streamPath, sse.ClientMaxBufferSize(c.maxBody))
	sc.Connection = &http.Client{Transport: transport} // no Timeout: the body is read for hours
	sc.Headers[capabilitiesHeader] = capabilities
	sc.Headers["User-Agent"] = c.userAgent
	if tok != "" {
		sc.Headers["Authorization"] = "Bearer " + tok
	}
	// One connection per Subscribe: the store runs its own context-aware
	// backoff, and must see a 404 to latch long-poll mode.
	sc.ReconnectStrategy = &backoff.StopBackOff{}
	sc.ResponseValidator = c.validateStream
	return sc
}

// validateStream runs before r3labs reads the body; on error it must close
// the body itself. Errors are permanent so r3labs never retries; r3labs
// returns them unwrapped.
func (c *Client) validateStream(_ *sse.Client, resp *http.Response) error {
	if resp.StatusCode == http.StatusOK {
		mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		if mt == "text/event-stream" {
			return nil
		}
		resp.Body.Close()
		return backoff.Permanent(protoErr("GET "+streamPath, "Content-Type %s is not text/event-stream",
			quoteShort(resp.Header.Get("Content-Type"))))
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return backoff.Permanent(ErrStreamUnsupported)
	}
	r := &request{method: http.MethodGet, path: streamPath}
	return backoff.Permanent(c.statusErr(r, &response{status: resp.StatusCode, body: body}))
}

// observedBody reports every successful read to the idle watchdog, and
// a body that ends (EOF or error) part-way through an event.
type observedBody struct {
	io.ReadCloser
	onRead func()
	onCut  func()
	tail   [3]byte // the last bytes read
	n      int
}

func (b *observedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.onRead()
		for _, c := range p[max(0, n-3):n] {
			b.tail = [3]byte{b.tail[1], b.tail[2], c}
			b.n++
		}
	}
	if err != nil && !b.atBoundary() {
		b.onCut()
	}
	return n, err
}

// atBoundary: nothing read yet, or the bytes so far end with a blank line
// (any of the SSE line endings).
func (b *observedBody) atBoundary() bool {
	t := b.tail
	return b.n == 0 || t[1] == '\n' && t[2] == '\n' || t[1] == '\r' && t[2] == '\r' ||
		b.n >= 3 && t == [3]byte{'\n', '\r', '\n'}
}

type observingTransport struct {
	base   http.RoundTripper
	onRead func()
	onCut  func()
}

func (t *observingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	t.onRead()
	body := resp.Body
	// Not every transport ties the body to the request context; closing it
	// is what unblocks r3labs' reader when the watchdog or the handler ends
	// the connection.
	context.AfterFunc(req.Context(), func() { body.Close() })
	resp.Body = &eventChunker{ReadCloser: &observedBody{ReadCloser: body, onRead: t.onRead, onCut: t.onCut}}
	return resp, nil
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

	var (
		lastByte atomic.Int64
		answered atomic.Bool // the broker sent a response, not just a hang-up
		cut      atomic.Bool // the body ended in the middle of an event
	)
	lastByte.Store(cfg.clock.Now().UnixNano())
	onRead := func() {
		answered.Store(true)
		lastByte.Store(cfg.clock.Now().UnixNano())
		if cfg.onBytes != nil {
			cfg.onBytes()
		}
	}

	wctx, stopWatchdog := context.WithCancel(sctx)
	var wg sync.WaitGroup
	wg.Go(func() { c.watchdog(wctx, cfg, &lastByte, cancel) })
	defer func() {
		stopWatchdog()
		wg.Wait()
	}()

	sc := c.newSSEClient(tok, &observingTransport{base: c.streamRT, onRead: onRead, onCut: func() { cut.Store(true) }})

	var (
		handlerErr error
		first      = true
		// cutFrame failed to decode after the connection broke mid-event.
		// If nothing follows it, it is the unterminated remainder r3labs
		// hands over at EOF, which the SSE spec discards: the connection
		// ended (eof), the broker sent nothing wrong. If another event
		// follows, it was a complete bad frame after all.
		cutFrame error
	)
	dec := &FrameDecoder{} // this connection's: a new connection starts with no history
	err := sc.SubscribeRawWithContext(sctx, func(ev *sse.Event) {
		// Keepalive comments never reach here; events without data do, and
		// are skipped, as are those queued after the handler stopped the stream.
		if len(ev.Data) == 0 || handlerErr != nil {
			return
		}
		if cutFrame != nil {
			handlerErr = cutFrame
			cancel(errStreamStopped)
			return
		}
		f, err := dec.Decode(ev.Data, cfg.clock.Now())
		if err != nil && cut.Load() {
			cutFrame = err
			return
		}
		if err == nil && first && f.Kind != FrameSnapshot {
			err = protoErr("stream", "first frame is %s, not snapshot", quoteShort(f.Kind))
		}
		if err == nil {
			first = false
			err = handle(f)
		}
		if err != nil {
			handlerErr = err
			cancel(errStreamStopped)
		}
	})
	switch {
	case handlerErr != nil:
		return handlerErr
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(context.Cause(sctx), ErrStreamIdle):
		return ErrStreamIdle
	case err == nil:
		return ErrStreamEnded
	case errors.Is(err, ErrStreamUnsupported), errors.As(err, new(*ProtocolError)), errors.As(err, new(*HTTPError)):
		return err
	case errors.Is(err, bufio.ErrTooLong):
		return &ProtocolError{Op: "stream", Detail: fmt.Sprintf("frame larger than %d bytes", c.maxBody), TooLarge: true}
	case (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) && answered.Load():
		return ErrStreamEnded
	}
	// A connection closed before any answer is a broker that cannot be
	// reached, as for every other route.
	return c.netErr(&request{method: http.MethodGet, path: streamPath, timeout: c.timeout}, sctx, err)
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
