package health

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
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
	rep := h.report(r.Context())
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if r.URL.Path == APIPath {
		h.serveJSON(w, rep)
		return
	}
	h.servePage(w, rep)
}

func (h *handler) report(ctx context.Context) Report {
	var in Input
	if h.opts.Source != nil {
		in = h.opts.Source(ctx)
	}
	if in.Now.IsZero() {
		in.Now = time.Now()
	}
	rep := Evaluate(in, h.opts.Thresholds, h.opts.Redactor)
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

func (h *handler) serveJSON(w http.ResponseWriter, rep Report) {
	body, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		http.Error(w, "encoding health report failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(HTTPStatus(rep.Status))
	w.Write(append(body, '\n'))
}

func (h *handler) servePage(w http.ResponseWriter, rep Report) {
	links := []Link{
		{"Metrics", h.opts.MetricsPath},
		{"Health JSON", APIPath},
		{"/-/healthy", "/-/healthy"},
		{"/-/ready", "/-/ready"},
	}
	links = append(links, h.opts.Links...)
	data := pageData{R: rep, Links: links, RefreshSeconds: int(h.opts.Refresh.Round(time.Second) / time.Second)}
	var buf bytes.Buffer
	if err := pageTmpl.Execute(&buf, data); err != nil {
		http.Error(w, "rendering status page failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	// The page has no script and loads nothing: say so to the browser.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	w.WriteHeader(http.StatusOK)
	w.Write(buf.Bytes())
}

type pageData struct {
	R              Report
	Links          []Link
	RefreshSeconds int
}

//go:embed page.html.tmpl
var pageSource string

var pageTmpl = template.Must(template.New("page").Funcs(template.FuncMap{
	"rel":      relTime,
	"relsecs":  relSecs,
	"utc":      func(t *time.Time) string { return utc(t) },
	"utcv":     func(t time.Time) string { return utc(&t) },
	"pct":      pct,
	"barwidth": barWidth,
	"skew":     skewText,
	"dur":      func(s float64) string { return human(time.Duration(s * float64(time.Second))) },
	"identity": identityText,
	"dash":     dash,
	"sev":      func(v Verdict) string { return string(v) },
	"reasonsOf": func(r Report, sev Verdict) []Reason {
		var out []Reason
		for _, x := range r.Reasons {
			if x.Severity == sev {
				out = append(out, x)
			}
		}
		return out
	},
	"upper": strings.ToUpper,
	"ptr":   func(t time.Time) *time.Time { return &t },
	"deref": func(f *float64) float64 {
		if f == nil {
			return 0
		}
		return *f
	},
}).Parse(pageSource))

func utc(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// relTime phrases t relative to now: "in 3m05s", "12s ago", "now", "—".
func relTime(now time.Time, t *time.Time) string {
	if t == nil {
		return "—"
	}
	return relDur(t.Sub(now))
}

func relSecs(s *float64) string {
	if s == nil {
		return "—"
	}
	return relDur(time.Duration(*s * float64(time.Second)))
}

func relDur(d time.Duration) string {
	switch {
	case d > -time.Second/2 && d < time.Second/2:
		return "now"
	case d > 0:
		return "in " + human(d)
	}
	return human(-d) + " ago"
}

func skewText(s *float64) string {
	if s == nil {
		return "—"
	}
	d := time.Duration(*s * float64(time.Second))
	if d >= 0 {
		return fmt.Sprintf("exporter %s ahead", roundDur(d))
	}
	return fmt.Sprintf("exporter %s behind", roundDur(-d))
}

func pct(f *float64) string {
	if f == nil {
		return "?"
	}
	return fmt.Sprintf("%.0f%%", *f*100)
}

// barWidth is the CSS width in percent, clamped so an overage fills the bar
// instead of overflowing it.
func barWidth(f *float64) float64 {
	if f == nil || *f <= 0 {
		return 0
	}
	if *f >= 1 {
		return 100
	}
	return float64(int(*f*1000)) / 10
}

func identityText(c CredentialHealth) string {
	for _, s := range []string{c.Identity, c.Email, c.Account} {
		if s != "" {
			return s
		}
	}
	return "—"
}

func dash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}
