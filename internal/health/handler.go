package health

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/authbroker/authbroker_exporter/internal/identity"
)

// Link is one entry of the page's footer.
type Link struct {
	Text string
	URL  string
}

// HandlerOptions configure NewHandler.
type HandlerOptions struct {
	// Source gathers the current Input; it is called once per request and
	// should not block on the network (read cached state).
	Source     func(ctx context.Context) Input
	Thresholds Thresholds
	Redactor   *identity.Redactor
	Version    string // exporter version shown on the page and in the JSON
	// MetricsPath is linked from the page (default /metrics).
	MetricsPath string
	// Links are extra footer links; /-/healthy, /-/ready and the JSON API
	// are always listed.
	Links []Link
	// Refresh is the page's self-refresh period (default 15s).
	Refresh time.Duration
}

// APIPath is where NewHandler serves the JSON report.
const APIPath = "/api/v1/health"

// NewHandler serves the status page on "/" and the JSON report on APIPath.
// Mount it at the server root; every other path is 404.
func NewHandler(opts HandlerOptions) http.Handler {
	if opts.MetricsPath == "" {
		opts.MetricsPath = "/metrics"
	}
	if opts.Refresh <= 0 {
		opts.Refresh = 15 * time.Second
	}
	return &handler{opts: opts}
}

type handler struct{ opts HandlerOptions }

// Page and API listing bounds: the page shows at most PageRows credentials
// (and tombstones) unless ?limit= asks for more, up to MaxPageRows; a
// summary from the API lists at most SummaryReasons credential reasons
// unless ?limit= says otherwise.
const (
	PageRows       = 200
	MaxPageRows    = 1000
	SummaryReasons = 200
)

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" && r.URL.Path != APIPath {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	api := r.URL.Path == APIPath
	q, err := ParseQuery(r.URL.Query(), api)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rep := h.report(r.Context(), q)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if api {
		h.serveJSON(w, r, rep)
		return
	}
	h.servePage(w, r, rep, q)
}

// ParseQuery reads the filters of the page (api false) and the JSON API:
// state, provider, id, limit, and for the API view (summary, the default,
// or full; credentials=1 is view=full). The page always lists, problems
// first, at most PageRows rows by default.
func ParseQuery(v url.Values, api bool) (Query, error) {
	q := Query{State: v.Get("state"), Provider: v.Get("provider")}
	if q.State != "" && !slices.Contains(FilterStates(), q.State) {
		return q, fmt.Errorf("state: want one of %s", strings.Join(FilterStates(), ", "))
	}
	if s := v.Get("id"); s != "" {
		id, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return q, errors.New("id: want an integer")
		}
		q.ID, q.HasID = id, true
	}
	limit, hasLimit := 0, false
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return q, errors.New("limit: want a non-negative integer")
		}
		limit, hasLimit = n, true
	}
	if !api {
		q.View, q.ProblemsFirst, q.Limit = ViewFull, true, PageRows
		if hasLimit && limit > 0 {
			q.Limit = min(limit, MaxPageRows)
		}
		return q, nil
	}
	switch view := v.Get("view"); {
	case view == ViewFull, view == "" && truthy(v.Get("credentials")):
		q.View = ViewFull
	case view == "" || view == ViewSummary:
		q.View, q.Limit = ViewSummary, SummaryReasons
	default:
		return q, errors.New("view: want summary or full")
	}
	if hasLimit {
		q.Limit = limit
	}
	return q, nil
}

func truthy(s string) bool {
	b, err := strconv.ParseBool(s)
	return err == nil && b
}

func (h *handler) report(ctx context.Context, q Query) Report {
	var in Input
	if h.opts.Source != nil {
		in = h.opts.Source(ctx)
	}
	if in.Now.IsZero() {
		in.Now = time.Now()
	}
	rep := EvaluateQuery(in, h.opts.Thresholds, h.opts.Redactor, q)
	rep.ExporterVersion = h.opts.Version
	return rep
}

// HTTPStatus is the status code the JSON API answers for v: uptime checkers
// that only look at the code see critical as down, degraded as up.
func HTTPStatus(v Verdict) int {
	if v == Critical {
		return http.StatusServiceUnavailable
	}
	return http.StatusOK
}

func (h *handler) serveJSON(w http.ResponseWriter, r *http.Request, rep Report) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rep); err != nil {
		http.Error(w, "encoding health report failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	writeBody(w, r, HTTPStatus(rep.Status), buf.Bytes())
}

func (h *handler) servePage(w http.ResponseWriter, r *http.Request, rep Report, q Query) {
	links := []Link{
		{"Metrics", h.opts.MetricsPath},
		{"Health JSON", APIPath},
		{"/-/healthy", "/-/healthy"},
		{"/-/ready", "/-/ready"},
	}
	links = append(links, h.opts.Links...)
	data := newPageData(rep, q)
	data.Links, data.RefreshSeconds = links, int(h.opts.Refresh.Round(time.Second)/time.Second)
	var buf bytes.Buffer
	if err := pageTmpl.Execute(&buf, data); err != nil {
		http.Error(w, "rendering status page failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	// The page has no script and loads nothing: say so to the browser.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	writeBody(w, r, http.StatusOK, buf.Bytes())
}

// writeBody answers body, gzip-compressed when the client accepts it.
func writeBody(w http.ResponseWriter, r *http.Request, status int, body []byte) {
	w.Header().Add("Vary", "Accept-Encoding")
	if !acceptsGzip(r.Header.Get("Accept-Encoding")) {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(status)
		w.Write(body)
		return
	}
	w.Header().Set("Content-Encoding", "gzip")
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}
	// BestSpeed: a full 10k-credential JSON is tens of MB; the page and a
	// summary are small either way.
	zw, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
	zw.Write(body)
	zw.Close()
}

// acceptsGzip reads an Accept-Encoding header: gzip (or *) with a
// non-zero quality.
func acceptsGzip(header string) bool {
	for part := range strings.SplitSeq(header, ",") {
		coding, params, _ := strings.Cut(part, ";")
		coding = strings.ToLower(strings.TrimSpace(coding))
		if coding != "gzip" && coding != "*" {
			continue
		}
		if k, v, ok := strings.Cut(strings.TrimSpace(params), "="); ok && strings.TrimSpace(k) == "q" {
			if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && f == 0 {
				continue
			}
		}
		return true
	}
	return false
}
