package broker

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// Defaults of the reference client (docs/broker-protocol.md).
const (
	DefaultRequestTimeout = 10 * time.Second
	DefaultMaxFrameBytes  = 16 << 20
	// DefaultMaxUsageBytes fits about 50,000 usage reports of four limits
	// (a 10,000-report answer is about 12.5 MB).
	DefaultMaxUsageBytes     = 128 << 20
	DefaultStreamIdleTimeout = 60 * time.Second

	capabilitiesHeader = "OMP-Auth-Broker-Capabilities"
	capabilities       = "codex-meter-block-scopes"
	maxErrorBody       = 64 << 10
	maxErrorMessage    = 256
)

// ClientOptions configure a Client. Only URL is required.
type ClientOptions struct {
	URL   string      // base URL; a trailing "/" is stripped
	Token TokenSource // nil sends no Authorization (healthz only)
	// Transport defaults to one with dial and TLS-handshake timeouts (plus a
	// response-header timeout for the stream only: a long-poll legitimately
	// waits 30 s for its headers). No http.Client total timeout is used (it
	// would kill the stream); each request attempt is bounded by
	// RequestTimeout, or the long-poll budget, through its context.
	Transport      http.RoundTripper
	RequestTimeout time.Duration // per attempt; default 10 s
	// MaxFrameBytes bounds one SSE frame and one response body other than
	// usage; default 16 MiB (a full snapshot frame must fit).
	MaxFrameBytes int
	// MaxUsageBytes bounds a /v1/usage answer; default 128 MiB.
	MaxUsageBytes int
	// StreamIdleTimeout: a stream that delivers no byte for this long is
	// dropped (the broker sends a keepalive every 20 s); default 60 s.
	StreamIdleTimeout time.Duration
	UserAgent         string
	Clock             Clock // receipt times and the idle watchdog; nil = wall clock
}

// Client speaks the broker's HTTP protocol. It is safe for concurrent use.
type Client struct {
	base      string
	token     TokenSource
	transport http.RoundTripper
	streamRT  http.RoundTripper
	owned     []*http.Transport
	httpc     *http.Client
	timeout   time.Duration
	maxBody   int
	maxUsage  int
	idle      time.Duration
	userAgent string
	clock     Clock
}

// NewClient validates the options and builds a Client.
func NewClient(opts ClientOptions) (*Client, error) {
	base := strings.TrimRight(strings.TrimSpace(opts.URL), "/")
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("auth-broker URL must be an absolute http(s) URL")
	}
	// A non-positive limit or timeout takes its default.
	c := &Client{
		base:      base,
		token:     opts.Token,
		transport: opts.Transport,
		timeout:   cmp.Or(max(opts.RequestTimeout, 0), DefaultRequestTimeout),
		maxBody:   cmp.Or(max(opts.MaxFrameBytes, 0), DefaultMaxFrameBytes),
		maxUsage:  cmp.Or(max(opts.MaxUsageBytes, 0), DefaultMaxUsageBytes),
		idle:      cmp.Or(max(opts.StreamIdleTimeout, 0), DefaultStreamIdleTimeout),
		userAgent: cmp.Or(opts.UserAgent, "authbroker_exporter"),
		clock:     opts.Clock,
	}
	c.streamRT = c.transport
	if c.transport == nil {
		rt := &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout: 10 * time.Second,
			IdleConnTimeout:     90 * time.Second,
			MaxIdleConnsPerHost: 4,
			ForceAttemptHTTP2:   true,
		}
		st := rt.Clone()
		st.ResponseHeaderTimeout = 10 * time.Second
		c.transport, c.streamRT = rt, st
		c.owned = []*http.Transport{rt, st}
	}
	if c.clock == nil {
		c.clock = WallClock{}
	}
	c.httpc = &http.Client{Transport: c.transport}
	return c, nil
}

// String and Format (which fmt prefers for every verb, %#v included) keep
// fmt from walking into the client's fields (the token source sits behind
// an unexported field, where fmt would ignore its own redacting Format).
func (c Client) String() string             { return "broker.Client(" + c.base + ")" }
func (c Client) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, c.String()) }

// RequestTimeout bounds one request attempt.
func (c *Client) RequestTimeout() time.Duration { return c.timeout }

// CloseIdleConnections releases idle keep-alive connections.
func (c *Client) CloseIdleConnections() {
	c.httpc.CloseIdleConnections()
	for _, t := range c.owned {
		t.CloseIdleConnections()
	}
}

type request struct {
	method, path string
	query        url.Values
	body         []byte
	header       http.Header
	timeout      time.Duration
	maxBody      int // 0 = the client's MaxFrameBytes; never negative
	noAuth       bool
	// plainRetry turns the retry of a long-poll into an unconditional GET:
	// after a transport error the broker may have restarted and reused the
	// generation the request carries (docs/broker-protocol.md §11).
	plainRetry bool
	// read, when set, decodes the body of a 200 as it arrives, instead of
	// the body being read whole first: a usage answer is tens of megabytes.
	read func(op string, body io.Reader) error
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r *request) op() string { return r.method + " " + r.path }

// withToken calls call with the bearer token ("" with noAuth or without a
// token source). When call reports a 401 and the token source reloads a
// changed token, it calls once more, with the new token.
func (c *Client) withToken(noAuth bool, call func(tok string) (unauthorized bool, err error)) error {
	auth := !noAuth && c.token != nil
	for retried := false; ; retried = true {
		tok := ""
		if auth {
			var err error
			if tok, err = c.token.Token(); err != nil {
				return &TokenError{Err: err}
			}
		}
		unauthorized, err := call(tok)
		if !auth || retried || !unauthorized {
			return err
		}
		if changed, rerr := c.token.Reload(); rerr != nil || !changed {
			return err
		}
	}
}

// do runs one logical request: at most two attempts for transport errors,
// and one more after a 401 when the token source yields a new token.
func (c *Client) do(ctx context.Context, r *request) (resp *response, err error) {
	if r.timeout <= 0 {
		r.timeout = c.timeout
	}
	err = c.withToken(r.noAuth, func(tok string) (bool, error) {
		resp, err = c.attempts(ctx, r, tok)
		return err == nil && resp.status == http.StatusUnauthorized, err
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (c *Client) attempts(ctx context.Context, r *request, tok string) (*response, error) {
	for attempt := 1; ; attempt++ {
		resp, err := c.once(ctx, r, tok)
		switch {
		case err == nil:
			return resp, nil
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case attempt == 2 || !errors.As(err, new(*NetError)):
			return nil, err
		}
		if r.plainRetry {
			plain := *r
			plain.query, plain.timeout = nil, c.timeout
			plain.header = r.header.Clone()
			plain.header.Del("If-None-Match")
			r = &plain
		}
	}
}

func (c *Client) once(ctx context.Context, r *request, tok string) (*response, error) {
	actx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	target := c.base + r.path
	if len(r.query) > 0 {
		target += "?" + r.query.Encode()
	}
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(actx, r.method, target, body)
	if err != nil {
		return nil, fmt.Errorf("auth-broker %s: building request: %w", r.op(), err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if r.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	maps.Copy(req.Header, r.header)
	resp, err := c.httpc.Do(req)
	if err != nil {
		return nil, c.netErr(r, actx, err)
	}
	defer resp.Body.Close()
	limit := cmp.Or(r.maxBody, c.maxBody)
	if resp.StatusCode >= 300 {
		limit = maxErrorBody
	}
	if r.read != nil && resp.StatusCode == http.StatusOK {
		body := &countingReader{r: io.LimitReader(resp.Body, int64(limit)+1)}
		err := r.read(r.op(), body)
		switch {
		case body.n > int64(limit):
			return nil, tooLarge(r, limit)
		case body.err != nil:
			return nil, c.netErr(r, actx, body.err)
		case err != nil:
			return nil, err
		}
		return &response{status: resp.StatusCode, header: resp.Header}, nil
	}
	// Sized from Content-Length when the broker sends one: a 10k-entry
	// snapshot is megabytes, and growing a buffer to that by doubling
	// allocates twice over.
	var buf bytes.Buffer
	if n := resp.ContentLength; n > 0 && n <= int64(limit) {
		buf.Grow(int(n) + bytes.MinRead)
	}
	_, err = buf.ReadFrom(io.LimitReader(resp.Body, int64(limit)+1))
	b := buf.Bytes()
	switch {
	case err != nil:
		return nil, c.netErr(r, actx, err)
	case len(b) > limit && resp.StatusCode < 300:
		return nil, tooLarge(r, limit)
	}
	// An error answer over its limit is cut: only its message is read.
	return &response{status: resp.StatusCode, header: resp.Header, body: b[:min(len(b), limit)]}, nil
}

func tooLarge(r *request, limit int) error {
	return &ProtocolError{Op: r.op(), Detail: fmt.Sprintf("response larger than %d bytes", limit), TooLarge: true}
}

// countingReader counts the bytes read through it and keeps the first
// read error other than EOF: a failing connection, not bad JSON.
type countingReader struct {
	r   io.Reader
	n   int64
	err error
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && err != io.EOF && c.err == nil {
		c.err = err
	}
	return n, err
}

func (c *Client) netErr(r *request, actx context.Context, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // url.Error repeats the full URL
	}
	timeout := errors.Is(actx.Err(), context.DeadlineExceeded)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		timeout = true
	}
	if timeout && errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("no answer within %s", r.timeout)
	}
	return &NetError{Method: r.method, Path: r.path, Timeout: timeout, Err: err}
}

// statusErr builds the HTTPError for a non-success response.
func (c *Client) statusErr(r *request, resp *response) *HTTPError {
	return &HTTPError{Method: r.method, Path: r.path, Status: resp.status, Message: c.scrub(errorMessage(resp.body))}
}

// scrub removes the bearer token from a broker message, flattens it to
// one line and bounds its length.
func (c *Client) scrub(msg string) string {
	if c.token != nil {
		if tok, err := c.token.Token(); err == nil && tok != "" {
			msg = strings.ReplaceAll(msg, tok, redacted)
		}
	}
	msg = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, msg)
	if len(msg) > maxErrorMessage {
		cut := maxErrorMessage
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut] + "…"
	}
	return msg
}

// call sends r and decodes the body of a 200 with decode. Every other
// status becomes an *HTTPError with the broker's message.
func call[T any](ctx context.Context, c *Client, r *request, decode func(op string, body []byte) (T, error)) (T, error) {
	resp, err := c.do(ctx, r)
	if err == nil && resp.status != http.StatusOK {
		err = c.statusErr(r, resp)
	}
	if err != nil {
		var zero T
		return zero, err
	}
	return decode(r.op(), resp.body)
}

// Healthz calls GET /v1/healthz (no token).
func (c *Client) Healthz(ctx context.Context) (Health, error) {
	return call(ctx, c, &request{method: http.MethodGet, path: "/v1/healthz", noAuth: true}, decodeHealth)
}

// SnapshotRequest selects a plain GET (zero value) or a long-poll: with
// LongPoll the request carries If-None-Match: "<Generation>" and wait=Wait,
// and the broker answers 304 when the generation did not move in time. The
// retry after a transport error is an unconditional GET.
type SnapshotRequest struct {
	LongPoll   bool
	Generation int64
	Wait       time.Duration
}

// SnapshotResult is a 200 (Snapshot set) or a 304 (NotModified). Generation
// comes from the ETag, falling back to the body (200) or the request (304).
type SnapshotResult struct {
	NotModified bool
	Generation  int64
	Snapshot    *Snapshot
}

// Snapshot calls GET /v1/snapshot.
func (c *Client) Snapshot(ctx context.Context, sr SnapshotRequest) (*SnapshotResult, error) {
	r := &request{method: http.MethodGet, path: "/v1/snapshot", header: http.Header{capabilitiesHeader: {capabilities}}}
	if sr.LongPoll {
		wait := max(sr.Wait, 0)
		r.query = url.Values{"wait": {strconv.FormatInt(wait.Milliseconds(), 10)}}
		r.header.Set("If-None-Match", `"`+strconv.FormatInt(sr.Generation, 10)+`"`)
		r.timeout = max(c.timeout, wait+time.Second)
		r.plainRetry = true
	}
	resp, err := c.do(ctx, r)
	if err != nil {
		return nil, err
	}
	switch resp.status {
	case http.StatusNotModified:
		return &SnapshotResult{NotModified: true, Generation: parseETag(resp.header.Get("ETag"), sr.Generation)}, nil
	case http.StatusOK:
		s, err := decodeSnapshot(r.op(), resp.body, c.clock.Now())
		if err != nil {
			return nil, err
		}
		s.Generation = parseETag(resp.header.Get("ETag"), s.Generation)
		return &SnapshotResult{Generation: s.Generation, Snapshot: s}, nil
	default:
		return nil, c.statusErr(r, resp)
	}
}

// parseETag follows the broker's own If-None-Match parsing: trim, drop W/,
// drop one pair of quotes, a non-negative integer; otherwise, fallback.
func parseETag(v string, fallback int64) int64 {
	v = strings.TrimSpace(v)
	v = strings.TrimPrefix(v, "W/")
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return fallback
	}
	return n
}

// Usage calls GET /v1/usage. The broker fans out to every provider, so the
// attempt timeout is RequestTimeout × (maxAccountsPerProvider + 1) like the
// broker client's.
func (c *Client) Usage(ctx context.Context, maxAccountsPerProvider int) (*UsageResponse, error) {
	var u *UsageResponse
	r := &request{method: http.MethodGet, path: "/v1/usage", maxBody: c.maxUsage,
		timeout: c.timeout * time.Duration(max(maxAccountsPerProvider, 0)+1),
		read:    func(op string, body io.Reader) (err error) { u, err = readUsage(op, body); return err }}
	return call(ctx, c, r, func(string, []byte) (*UsageResponse, error) { return u, nil }) // read decoded it
}

// Refresh calls POST /v1/credential/:id/refresh and returns the redacted
// entry (no rotatesInMs, no blocks).
func (c *Client) Refresh(ctx context.Context, id int64) (*Entry, error) {
	r := &request{method: http.MethodPost, path: "/v1/credential/" + strconv.FormatInt(id, 10) + "/refresh"}
	return call(ctx, c, r, func(op string, body []byte) (*Entry, error) {
		return decodeEntryAnswer(op, body, c.clock.Now())
	})
}

// Disable calls POST /v1/credential/:id/disable; an empty cause lets the
// broker use its default.
func (c *Client) Disable(ctx context.Context, id int64, cause string) error {
	r := &request{method: http.MethodPost, path: "/v1/credential/" + strconv.FormatInt(id, 10) + "/disable"}
	if cause != "" {
		quoted, _ := jsontext.AppendQuote(nil, cause) // invalid UTF-8 becomes U+FFFD
		r.body = append(append([]byte(`{"cause":`), quoted...), '}')
	}
	_, err := call(ctx, c, r, decodeOKAnswer)
	return err
}

// Disabled calls GET /v1/credentials/disabled (provider "" = all). An old
// broker without the route (404) has no tombstones.
func (c *Client) Disabled(ctx context.Context, provider string) ([]Tombstone, error) {
	r := &request{method: http.MethodGet, path: "/v1/credentials/disabled"}
	if provider != "" {
		r.query = url.Values{"provider": {provider}}
	}
	ts, err := call(ctx, c, r, decodeDisabled)
	if he := (*HTTPError)(nil); errors.As(err, &he) && he.Status == http.StatusNotFound {
		return []Tombstone{}, nil
	}
	return ts, err
}
