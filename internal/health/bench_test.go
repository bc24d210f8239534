package health

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/authbroker/authbroker_exporter/internal/identity"
	"github.com/authbroker/authbroker_exporter/store"
	"github.com/authbroker/authbroker_exporter/store/broker"
)

// The health benchmarks use the fixture of the collector's render
// benchmarks (collector/render_bench_test.go) so the figures compare with
// a /metrics scrape: n OAuth credentials over four providers, each with
// its own usage report of four limits, reports listed in reverse order.
// Every 50th credential has a problem (see scaleInput).

var benchProviders = []string{"anthropic", "openai-codex", "google-gemini-cli", "github-copilot"}

var benchSizes = []int{1000, 10000, 30000}

func sizeName(n int) string {
	if n%1000 == 0 {
		return strconv.Itoa(n/1000) + "k"
	}
	return strconv.Itoa(n)
}

// scaleInput is a healthy broker with n credentials and n matching usage
// reports. One credential in 50 has a problem, cycling through expired,
// expiring, rotation overdue, blocked and exhausted usage.
func scaleInput(n int) Input {
	in := healthy()
	entries := make([]store.Entry, n)
	in.View.Entries = make([]*store.Entry, 0, n)
	for i := range entries {
		p := benchProviders[i%len(benchProviders)]
		email := fmt.Sprintf("user%d@example.com", i)
		e := &entries[i]
		*e = store.Entry{Entry: &broker.Entry{ID: int64(i + 1), Provider: p, IdentityKey: "email:" + email, Credential: broker.Credential{Type: broker.TypeOAuth, Expires: t0.Add(time.Hour), HasExpires: true,
			Email: email, AccountID: fmt.Sprintf("acct-%d", i)}, RotatesIn: 55 * time.Minute, HasRotatesIn: true, ReceivedAt: t0}, LastRotation: t0.Add(-time.Hour), Rotations: 3}
		if i%50 == 7 {
			switch (i / 50) % 5 {
			case 0:
				e.Credential.Expires = t0.Add(-10 * time.Minute)
			case 1:
				e.Credential.Expires = t0.Add(2 * time.Minute)
			case 2:
				e.RotatesIn = -5 * time.Minute
			case 3:
				e.Blocks = []broker.Block{{ProviderKey: p + ":oauth", Scope: "chat", BlockedUntil: t0.Add(20 * time.Minute)}}
			}
		}
		in.View.Entries = append(in.View.Entries, e)
	}
	reports := make([]broker.UsageReport, 0, n)
	for i := n - 1; i >= 0; i-- {
		e := &entries[i]
		r := broker.UsageReport{Provider: e.Provider, FetchedAt: t0.Add(-time.Minute),
			Metadata: broker.UsageMetadata{Email: e.Credential.Email, AccountID: e.Credential.AccountID}}
		for j, w := range []string{"5h", "7d", "7d-opus", "30d"} {
			used := float64((i + j) % 80)
			if i%50 == 7 && (i/50)%5 == 4 && j == 0 {
				used = 100
			}
			r.Limits = append(r.Limits, broker.UsageLimit{
				ID: e.Provider + ":" + w, Label: w,
				Window: &broker.UsageWindow{ID: w, Label: w, Duration: 5 * time.Hour, ResetsAt: t0.Add(3 * time.Hour)},
				Amount: broker.UsageAmount{Used: f64(used), Limit: f64(100), Remaining: f64(100 - used),
					UsedFraction: f64(used / 100), Unit: "percent"},
				Status: "ok",
			})
		}
		reports = append(reports, r)
	}
	in.Usage = store.NewUsage(reports, t0, in.View.Entries)
	return in
}

func benchRedactor(b *testing.B) *identity.Redactor {
	ids, err := identity.New(identity.Hashed, []byte("bench-key"))
	if err != nil {
		b.Fatal(err)
	}
	return ids
}

// BenchmarkEvaluate is one evaluation of n credentials with n matching
// usage reports; ns/cred stays flat when evaluation is linear.
func BenchmarkEvaluate(b *testing.B) {
	for _, n := range benchSizes {
		b.Run("creds="+sizeName(n), func(b *testing.B) {
			in := scaleInput(n)
			ids := benchRedactor(b)
			b.ReportAllocs()
			for b.Loop() {
				Evaluate(in, Thresholds{}, ids)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/cred")
		})
	}
}

// discardResponse keeps only the byte count of an answer.
type discardResponse struct {
	h http.Header
	n int64
}

func (d *discardResponse) Header() http.Header         { return d.h }
func (d *discardResponse) WriteHeader(int)             {}
func (d *discardResponse) Write(p []byte) (int, error) { d.n += int64(len(p)); return len(p), nil }

// BenchmarkHandler is one request to the status page or the health API,
// gzip-compressed as a browser or curl --compressed asks, over n
// credentials with n matching usage reports: evaluation, listing and
// encoding. wire-bytes is the compressed size; compare ns/op with the
// collector's BenchmarkScrape (creds=…/gzip) run side by side.
func BenchmarkHandler(b *testing.B) {
	for _, n := range benchSizes {
		for _, path := range []struct{ name, url string }{
			{"page", "/"},
			{"api", APIPath},
			{"api-full", APIPath + "?view=full"},
		} {
			if path.name == "api-full" && n > 10000 {
				continue // tens of MB per op; 1k and 10k show its slope
			}
			b.Run("creds="+sizeName(n)+"/"+path.name, func(b *testing.B) {
				in := scaleInput(n)
				h := NewHandler(HandlerOptions{Source: func(context.Context) Input { return in }, Redactor: benchRedactor(b), Version: "bench"})
				req := httptest.NewRequest("GET", path.url, nil)
				req.Header.Set("Accept-Encoding", "gzip")
				b.ReportAllocs()
				var wire int64
				for b.Loop() {
					w := &discardResponse{h: http.Header{}}
					h.ServeHTTP(w, req)
					wire = w.n
				}
				b.ReportMetric(float64(wire), "wire-bytes")
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/cred")
			})
		}
	}
}
