package collector

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
)

// HandlerOpts configure the /metrics handler.
type HandlerOpts struct {
	Logger log.Logger
	// MaxRequestsInFlight answers further concurrent scrapes 503 (0 = no
	// limit, as node_exporter's --web.max-requests=0).
	MaxRequestsInFlight int
	// Instrument, when set, gets the handler's self-metrics,
	// promhttp_metric_handler_requests_total{code} and
	// promhttp_metric_handler_requests_in_flight; they count every scrape,
	// the ones refused by the in-flight cap included (code="503"). Pass
	// the registry g gathers so they are served on /metrics too.
	Instrument prometheus.Registerer
}

// contentType is the one format /metrics speaks: every Prometheus version
// accepts it, whatever its Accept header prefers.
const contentType = string(expfmt.FmtText)

// gzipLevel: at 320k series, default compression takes 155 ms of CPU to
// level 1's 60 ms for a body half the size (1.6 vs 3.0 MB); scrape CPU is
// the scarcer resource on a broker host.
const gzipLevel = gzip.BestSpeed

// Handler serves /metrics: g's families (runtime, build, sync, operations;
// see Register) through client_golang's encoder, then the per-credential
// families written straight as text. Scrapes asking for gzip that arrive
// while one is being rendered share its body, so N Prometheus servers
// cost one render.
func (c *Collectors) Handler(g prometheus.Gatherer, o HandlerOpts) http.Handler {
	if o.Logger == nil {
		o.Logger = log.NewNopLogger()
	}
	h := &metricsHandler{c: c, g: g, log: o.Logger}
	if o.MaxRequestsInFlight > 0 {
		h.slots = make(chan struct{}, o.MaxRequestsInFlight)
	}
	if o.Instrument != nil {
		// Outside the cap, so a refused scrape is counted as well.
		return promhttp.InstrumentMetricHandler(o.Instrument, h)
	}
	return h
}

type metricsHandler struct {
	c     *Collectors
	g     prometheus.Gatherer
	log   log.Logger
	slots chan struct{} // nil: no limit

	mu  sync.Mutex
	cur *gzipRender // the gzip render in progress, nil when none
	// spare is the body of an earlier render once every scrape that shared
	// it has written it: the next render writes into it, so a steady
	// scrape does not allocate a new 2 MB body each time.
	spare *bytes.Buffer
	// Only the render in progress uses these, so renders reuse them: the
	// compressor alone is ~1 MB of state. lastSize presizes the body.
	zw       *gzip.Writer
	zbuf     *bufio.Writer
	lastSize int
}

// gzipRender is one gzip render and the scrapes that share its body.
type gzipRender struct {
	done  chan struct{} // closed when body is complete
	body  *bytes.Buffer
	users int // scrapes yet to finish writing body; under metricsHandler.mu
}

func (h *metricsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.slots != nil {
		select {
		case h.slots <- struct{}{}:
			defer func() { <-h.slots }()
		default:
			http.Error(w, fmt.Sprintf("Limit of concurrent requests reached (%d), try again later.", cap(h.slots)), http.StatusServiceUnavailable)
			return
		}
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Add("Vary", "Accept-Encoding")
	if !acceptsGzip(r.Header.Get("Accept-Encoding")) {
		bw := bufio.NewWriterSize(w, 64<<10)
		h.render(bw)
		bw.Flush()
		return
	}
	g := h.shareGzip()
	w.Header().Set("Content-Encoding", "gzip")
	w.Header().Set("Content-Length", strconv.Itoa(g.body.Len()))
	w.Write(g.body.Bytes())
	h.release(g)
}

// shareGzip returns the body of the gzip render in progress, or renders
// one. Every caller hands the body back to release once it is written.
func (h *metricsHandler) shareGzip() *gzipRender {
	h.mu.Lock()
	g := h.cur
	if g != nil {
		g.users++
		h.mu.Unlock()
		<-g.done
		return g
	}
	g = &gzipRender{done: make(chan struct{}), body: h.spare, users: 1}
	h.cur, h.spare = g, nil
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		h.cur = nil
		h.mu.Unlock()
		close(g.done)
	}()
	if g.body == nil {
		g.body = bytes.NewBuffer(make([]byte, 0, h.lastSize*9/8))
	}
	g.body.Reset()
	if h.zw == nil {
		h.zw, _ = gzip.NewWriterLevel(g.body, gzipLevel)
		h.zbuf = bufio.NewWriterSize(h.zw, 64<<10)
	} else {
		h.zw.Reset(g.body)
		h.zbuf.Reset(h.zw)
	}
	h.render(h.zbuf)
	h.zbuf.Flush()
	h.zw.Close()
	h.lastSize = g.body.Len()
	return g
}

// release marks one scrape done with g's body; after the last one the
// body is the next render's to write into.
func (h *metricsHandler) release(g *gzipRender) {
	h.mu.Lock()
	if g.users--; g.users == 0 {
		h.spare = g.body
	}
	h.mu.Unlock()
}

// render writes the whole exposition. As with promhttp's ContinueOnError,
// a failing collector is logged and the rest is still served.
func (h *metricsHandler) render(w *bufio.Writer) {
	mfs, err := h.g.Gather()
	if err != nil {
		level.Error(h.log).Log("msg", "error gathering metrics", "err", err)
	}
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(w, mf); err != nil {
			level.Error(h.log).Log("msg", "error encoding metric family", "family", mf.GetName(), "err", err)
		}
	}
	ts := newTextSink(w)
	for _, d := range h.c.direct {
		d.write(ts)
	}
	if ts.err != nil {
		level.Error(h.log).Log("msg", "error writing metrics", "err", ts.err)
	}
}

// acceptsGzip reads an Accept-Encoding header: gzip (or *) listed with a
// non-zero q.
func acceptsGzip(header string) bool {
	for part := range strings.SplitSeq(header, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		name = strings.ToLower(strings.TrimSpace(name))
		if name != "gzip" && name != "*" {
			continue
		}
		for p := range strings.SplitSeq(params, ";") {
			k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
			if strings.EqualFold(k, "q") {
				if q, err := strconv.ParseFloat(v, 64); err == nil && q == 0 {
					return false
				}
			}
		}
		return true
	}
	return false
}
