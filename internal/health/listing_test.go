package health

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func decodeReport(t *testing.T, body string) Report {
	t.Helper()
	var rep Report
	if err := json.Unmarshal([]byte(body), &rep); err != nil {
		t.Fatalf("not a report: %v", err)
	}
	return rep
}

// TestAPIViews: the API answers a summary unless asked for the list, and
// its filters narrow the lists but never the verdict or the counts.
func TestAPIViews(t *testing.T) {
	h := handlerFor(t, showcase())
	full := decodeReport(t, mustServe(t, h, APIPath+"?view=full"))

	sum := decodeReport(t, mustServe(t, h, APIPath))
	if sum.Listing.View != ViewSummary || len(sum.Credentials) != 0 || len(sum.Disabled) != 0 {
		t.Errorf("default view lists %d credentials, %d tombstones (%+v)", len(sum.Credentials), len(sum.Disabled), sum.Listing)
	}
	if sum.Status != full.Status || sum.Summary.Credentials != 8 || sum.Summary.Disabled != 4 || sum.Listing.Credentials.Matching != 8 {
		t.Errorf("summary %s %+v listing %+v", sum.Status, sum.Summary, sum.Listing)
	}
	if len(sum.Reasons) != len(full.Reasons) || sum.Summary.ByReason[ReasonRotationOverdue] != 2 {
		t.Errorf("summary reasons %d, full %d; by reason %v", len(sum.Reasons), len(full.Reasons), sum.Summary.ByReason)
	}
	if got := sum.Summary.ByProvider["anthropic"]; got[StateExpired] != 1 || got[StateUsageExhausted] != 1 || got[StateOK] != 1 || got[StateDisabled] != 1 {
		t.Errorf("anthropic counts %v", got)
	}
	if len(full.Credentials) != 8 || len(full.Disabled) != 4 || full.Listing.View != ViewFull {
		t.Errorf("full lists %d credentials, %d tombstones", len(full.Credentials), len(full.Disabled))
	}
	if old := decodeReport(t, mustServe(t, h, APIPath+"?credentials=1")); len(old.Credentials) != 8 {
		t.Errorf("credentials=1 lists %d", len(old.Credentials))
	}

	for _, tc := range []struct {
		query       string
		creds       []int64
		tombs       []int64
		reasonsOnly []int64 // credential ids of the listed credential reasons
	}{
		{"state=expired", []int64{4}, nil, []int64{4}},
		{"state=usage_warning", []int64{2}, nil, []int64{2}},
		{"state=disabled", nil, []int64{11, 12, 13, 14}, []int64{11}},
		{"provider=openai-codex", []int64{3, 6}, []int64{13}, []int64{3, 3, 6}},
		{"id=7", []int64{7}, nil, []int64{7}},
		{"id=12", nil, []int64{12}, nil},
		{"provider=anthropic&state=ok", []int64{2}, nil, []int64{2}},
		{"limit=2", []int64{8, 2}, []int64{11, 12}, []int64{4, 7, 2, 5, 3, 3, 6, 11}},
	} {
		rep := decodeReport(t, mustServe(t, h, APIPath+"?view=full&"+tc.query))
		if got := credIDs(rep); !equalIDs(got, tc.creds) {
			t.Errorf("%s: credentials %v, want %v", tc.query, got, tc.creds)
		}
		var tombs, reasons []int64
		for _, d := range rep.Disabled {
			tombs = append(tombs, d.ID)
		}
		for _, r := range rep.Reasons {
			if r.CredentialID != nil {
				reasons = append(reasons, *r.CredentialID)
			}
		}
		if !equalIDs(tombs, tc.tombs) {
			t.Errorf("%s: tombstones %v, want %v", tc.query, tombs, tc.tombs)
		}
		if !sameIDSet(reasons, tc.reasonsOnly) {
			t.Errorf("%s: credential reasons for %v, want %v", tc.query, reasons, tc.reasonsOnly)
		}
		if rep.Status != full.Status || rep.Summary.Credentials != 8 {
			t.Errorf("%s: a filter changed the verdict or the counts: %s %+v", tc.query, rep.Status, rep.Summary)
		}
	}

	// A summary caps the credential reasons, never the broker ones.
	in := showcase()
	in.Broker.Up = false
	capped := decodeReport(t, mustServe(t, handlerFor(t, in), APIPath+"?limit=1"))
	var global, perCred int
	for _, r := range capped.Reasons {
		if r.CredentialID == nil {
			global++
		} else {
			perCred++
		}
	}
	if global != 1 || perCred != 1 || capped.Listing.Reasons.Matching != 9 || capped.Listing.Reasons.Listed != 2 {
		t.Errorf("capped summary: %d broker reasons, %d credential reasons, listing %+v", global, perCred, capped.Listing.Reasons)
	}
}

func TestQueryErrors(t *testing.T) {
	h := handlerFor(t, healthy())
	for _, q := range []string{"state=nope", "id=x", "limit=-1", "limit=many", "view=everything"} {
		for _, path := range []string{"/?" + q, APIPath + "?" + q} {
			if strings.HasPrefix(q, "view=") && path[0:2] == "/?" {
				continue // the page has no views
			}
			if res, body := serve(t, h, "GET", path); res.StatusCode != 400 || strings.Contains(body, "<") {
				t.Errorf("%s: %d %q", path, res.StatusCode, body)
			}
		}
	}
}

func mustServe(t *testing.T, h http.Handler, path string) string {
	t.Helper()
	res, body := serve(t, h, "GET", path)
	if res.StatusCode != 200 && res.StatusCode != 503 {
		t.Fatalf("%s: status %d: %s", path, res.StatusCode, body)
	}
	return body
}

func credIDs(r Report) []int64 {
	var ids []int64
	for _, c := range r.Credentials {
		ids = append(ids, c.ID)
	}
	return ids
}

func equalIDs(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func sameIDSet(a, b []int64) bool {
	count := map[int64]int{}
	for _, x := range a {
		count[x]++
	}
	for _, x := range b {
		count[x]--
	}
	for _, n := range count {
		if n != 0 {
			return false
		}
	}
	return true
}

// TestGzip: both the page and the API compress when asked, and say that
// the answer depends on it.
func TestGzip(t *testing.T) {
	h := handlerFor(t, showcase())
	for _, path := range []string{"/", APIPath, APIPath + "?view=full"} {
		_, plain := serve(t, h, "GET", path)
		for _, tc := range []struct {
			accept string
			gz     bool
		}{
			{"gzip", true}, {"deflate, gzip;q=0.5", true}, {"*", true}, {"gzip;q=0", false}, {"identity", false}, {"", false},
		} {
			req := httptest.NewRequest("GET", path, nil)
			if tc.accept != "" {
				req.Header.Set("Accept-Encoding", tc.accept)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			res := rec.Result()
			if v := res.Header.Get("Vary"); v != "Accept-Encoding" {
				t.Errorf("%s %q: Vary %q", path, tc.accept, v)
			}
			body, _ := io.ReadAll(res.Body)
			if got := res.Header.Get("Content-Encoding") == "gzip"; got != tc.gz {
				t.Errorf("%s %q: gzip %v, want %v", path, tc.accept, got, tc.gz)
				continue
			}
			if tc.gz {
				zr, err := gzip.NewReader(bytes.NewReader(body))
				if err != nil {
					t.Fatalf("%s: %v", path, err)
				}
				body, err = io.ReadAll(zr)
				if err != nil {
					t.Fatalf("%s: %v", path, err)
				}
			}
			// The page and the API carry the time only through the fixed
			// clock of the fixture, so two answers are identical.
			if string(body) != plain {
				t.Errorf("%s %q: body differs from the plain answer", path, tc.accept)
			}
		}
	}
}

var rowRE = regexp.MustCompile(`<tr class="cred" id="cred-(\d+)" data-state="([a-z_]+)"`)

// TestPageAt10k: at 10k credentials the default page stays under 1 MB,
// leads with the reasons and the counts, lists problem credentials first
// and at most PageRows rows, and links to the rest.
func TestPageAt10k(t *testing.T) {
	in := scaleInput(10000)
	h := handlerFor(t, in)
	page := mustServe(t, h, "/")
	if len(page) >= 1<<20 {
		t.Errorf("default page is %d bytes, want < 1 MB", len(page))
	}
	t.Logf("default page at 10k credentials: %d bytes", len(page))
	reasons, counts, creds := strings.Index(page, `id="reasons"`), strings.Index(page, `id="counts"`), strings.Index(page, `id="credentials"`)
	if reasons < 0 || counts < reasons || creds < counts {
		t.Errorf("sections out of order: reasons %d, counts %d, credentials %d", reasons, counts, creds)
	}
	rows := rowRE.FindAllStringSubmatch(page, -1)
	if len(rows) != PageRows {
		t.Fatalf("%d rows, want %d", len(rows), PageRows)
	}
	for _, want := range []string{
		`<strong>40 credentials</strong>`, `href="?state=expired"`, `href="?provider=openai-codex&amp;state=expired"`,
		`showing 200 of 10000, problems first; 9800 more not shown`, `href="?id=8"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}

	// With room for more rows, every problem credential comes before the
	// first ok one, worst state first.
	rows = rowRE.FindAllStringSubmatch(mustServe(t, h, "/?limit=300"), -1)
	if len(rows) != 300 {
		t.Fatalf("limit=300: %d rows", len(rows))
	}
	rank := map[string]int{StateExpired: 0, StateUsageExhausted: 1, StateExpiring: 2, StateRotationOverdue: 3, StateBlocked: 4, StateOK: 5}
	for i := 1; i < len(rows); i++ {
		if rank[rows[i][2]] < rank[rows[i-1][2]] {
			t.Fatalf("row %d (%s) after row %d (%s)", i, rows[i][2], i-1, rows[i-1][2])
		}
	}
	if rows[199][2] == StateOK || rows[200][2] != StateOK {
		t.Errorf("the 200 problem credentials are not the first 200 rows: %s, %s", rows[199][2], rows[200][2])
	}
	if n := len(rowRE.FindAllStringSubmatch(mustServe(t, h, "/?limit=100000"), -1)); n != MaxPageRows {
		t.Errorf("limit is capped at %d rows, got %d", MaxPageRows, n)
	}

	// A filter link lists its credentials.
	rows = rowRE.FindAllStringSubmatch(mustServe(t, h, "/?provider=openai-codex&state=expired"), -1)
	if len(rows) != 20 {
		t.Errorf("openai-codex expired: %d rows, want 20", len(rows))
	}
	for _, r := range rows {
		if r[2] != StateExpired {
			t.Errorf("filtered row %s is %s", r[1], r[2])
		}
	}

	api := mustServe(t, h, APIPath)
	if len(api) > 128<<10 {
		t.Errorf("summary at 10k is %d bytes", len(api))
	}
	if rep := decodeReport(t, api); rep.Summary.Credentials != 10000 || rep.Summary.ByState[StateExpired] != 40 || len(rep.Credentials) != 0 {
		t.Errorf("summary at 10k: %+v, %d listed", rep.Summary.ByState, len(rep.Credentials))
	}
}

// TestPageUsageNotes: a credential without limits says why: no usage data
// at all, or data without a report for it.
func TestPageUsageNotes(t *testing.T) {
	cell := regexp.MustCompile(`(?s)id="cred-4".*?data-label="Usage"><div class="v"><span class="muted">([^<]*)</span>`)
	in := showcase()
	if m := cell.FindStringSubmatch(mustServe(t, handlerFor(t, in), "/")); m == nil || m[1] != "no report" {
		t.Errorf("usage data, no report: %v", m)
	}
	in.Usage = nil
	if m := cell.FindStringSubmatch(mustServe(t, handlerFor(t, in), "/")); m == nil || m[1] != "no data" {
		t.Errorf("no usage data: %v", m)
	}
}
