//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// get fetches url and returns the body; non-2xx is an error that names the
// status only (bodies may hold secrets).
func get(ctx context.Context, hc *http.Client, u string, hdr map[string]string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return b, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return b, nil
}

// ---- the real broker's API ----

type brokerAPI struct {
	hc    *http.Client
	url   string
	token string
}

func (b *brokerAPI) do(ctx context.Context, method, path string, body any, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		buf, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(buf)
	}
	req, err := http.NewRequestWithContext(ctx, method, b.url+path, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+b.token)
	req.Header.Set("OMP-Auth-Broker-Capabilities", "codex-meter-block-scopes")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode/100 != 2 {
		// The broker's error messages should carry no token material, but
		// redact anyway: this text may reach the test output.
		var e struct{ Error string }
		_ = json.Unmarshal(raw, &e)
		return resp.StatusCode, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, canaries.redact(e.Error))
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: decode: %v", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

// snapCred keeps only the non-secret fields: access, key and extra fields
// are dropped at decode time.
type snapCred struct {
	Type      string   `json:"type"`
	Expires   *float64 `json:"expires"`
	Email     string   `json:"email"`
	AccountID string   `json:"accountId"`
	ProjectID string   `json:"projectId"`
	OrgID     string   `json:"orgId"`
}

type snapBlock struct {
	ProviderKey    string  `json:"providerKey"`
	BlockScope     string  `json:"blockScope"`
	BlockedUntilMs float64 `json:"blockedUntilMs"`
}

type snapEntry struct {
	ID          int64       `json:"id"`
	Provider    string      `json:"provider"`
	Credential  snapCred    `json:"credential"`
	IdentityKey *string     `json:"identityKey"`
	RotatesInMs *float64    `json:"rotatesInMs"`
	Blocks      []snapBlock `json:"blocks"`
}

type snapshot struct {
	Generation  int64   `json:"generation"`
	GeneratedAt float64 `json:"generatedAt"`
	ServerNowMs float64 `json:"serverNowMs"`
	Refresher   struct {
		Enabled       bool    `json:"enabled"`
		IntervalMs    float64 `json:"intervalMs"`
		SkewMs        float64 `json:"skewMs"`
		NextSweepInMs float64 `json:"nextSweepInMs"`
	} `json:"refresher"`
	Credentials []snapEntry `json:"credentials"`
	fetched     time.Time
}

func (s *snapshot) byID() map[int64]snapEntry {
	out := map[int64]snapEntry{}
	for _, e := range s.Credentials {
		out[e.ID] = e
	}
	return out
}

func (s *snapshot) ids() []int64 {
	out := make([]int64, 0, len(s.Credentials))
	for _, e := range s.Credentials {
		out = append(out, e.ID)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func (b *brokerAPI) snapshot(ctx context.Context) (*snapshot, error) {
	var s snapshot
	if _, err := b.do(ctx, http.MethodGet, "/v1/snapshot", nil, &s); err != nil {
		return nil, err
	}
	s.fetched = time.Now()
	return &s, nil
}

type tombstone struct {
	ID       int64  `json:"id"`
	Provider string `json:"provider"`
	Cause    string `json:"cause"`
}

func (b *brokerAPI) disabled(ctx context.Context) ([]tombstone, error) {
	var out struct {
		Disabled []tombstone `json:"disabled"`
	}
	_, err := b.do(ctx, http.MethodGet, "/v1/credentials/disabled", nil, &out)
	return out.Disabled, err
}

// upload posts a credential and returns the id the broker gave the row
// matching pick (the response lists every active row of the provider).
func (b *brokerAPI) upload(ctx context.Context, provider string, cred map[string]any, pick func(snapEntry) bool) (int64, error) {
	var out struct {
		Entries []snapEntry `json:"entries"`
	}
	if _, err := b.do(ctx, http.MethodPost, "/v1/credential", map[string]any{"provider": provider, "credential": cred}, &out); err != nil {
		return 0, err
	}
	for _, e := range out.Entries {
		if pick(e) {
			return e.ID, nil
		}
	}
	return 0, fmt.Errorf("upload %s: no matching row in the response", provider)
}

// ---- the exporter's /metrics ----

type sample struct {
	labels map[string]string
	value  float64
}

type metrics map[string][]sample

func scrape(ctx context.Context, hc *http.Client, u string) (metrics, []byte, error) {
	body, err := get(ctx, hc, u, nil)
	if err != nil {
		return nil, body, err
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return nil, body, fmt.Errorf("parse %s: %v", u, err)
	}
	out := metrics{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			s := sample{labels: map[string]string{}}
			for _, lp := range m.GetLabel() {
				s.labels[lp.GetName()] = lp.GetValue()
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				s.value = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				s.value = m.GetGauge().GetValue()
			case dto.MetricType_UNTYPED:
				s.value = m.GetUntyped().GetValue()
			default:
				continue // summaries/histograms are not read by the suite
			}
			out[name] = append(out[name], s)
		}
	}
	return out, body, nil
}

// find returns the samples of name whose labels include every kv pair.
func (m metrics) find(name string, kv ...string) []sample {
	var out []sample
	for _, s := range m[name] {
		ok := true
		for i := 0; i+1 < len(kv); i += 2 {
			if s.labels[kv[i]] != kv[i+1] {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, s)
		}
	}
	return out
}

// one returns the value of the single sample matching kv.
func (m metrics) one(name string, kv ...string) (float64, error) {
	ss := m.find(name, kv...)
	if len(ss) != 1 {
		return 0, fmt.Errorf("%s%s: want 1 series, have %d", name, fmtKV(kv), len(ss))
	}
	return ss[0].value, nil
}

// seriesWithID lists "name{...}" of every series carrying id=<id>.
func (m metrics) seriesWithID(id string) []string {
	var out []string
	for name, ss := range m {
		for _, s := range ss {
			if s.labels["id"] == id {
				out = append(out, name+fmtLabels(s.labels))
			}
		}
	}
	sort.Strings(out)
	return out
}

func fmtKV(kv []string) string {
	var parts []string
	for i := 0; i+1 < len(kv); i += 2 {
		parts = append(parts, fmt.Sprintf("%s=%q", kv[i], kv[i+1]))
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func fmtLabels(l map[string]string) string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	kv := make([]string, 0, 2*len(keys))
	for _, k := range keys {
		kv = append(kv, k, l[k])
	}
	return fmtKV(kv)
}

// ---- Prometheus HTTP API ----

type promAPI struct {
	hc  *http.Client
	url string
}

type promResult struct {
	Type    string
	Samples []promSample
}

type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
	Values [][2]any          `json:"values"`
}

func (s promSample) float() float64 {
	str, _ := s.Value[1].(string)
	var f float64
	_, _ = fmt.Sscan(str, &f)
	return f
}

type promEnvelope struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Warnings  []string        `json:"warnings"`
}

func (p *promAPI) api(ctx context.Context, path string, q url.Values, out any) ([]byte, error) {
	u := p.url + path
	if q != nil {
		u += "?" + q.Encode()
	}
	body, err := get(ctx, p.hc, u, nil)
	var env promEnvelope
	if jerr := json.Unmarshal(body, &env); jerr != nil {
		if err != nil {
			return body, err
		}
		return body, fmt.Errorf("%s: decode: %v", path, jerr)
	}
	if env.Status != "success" {
		return body, fmt.Errorf("%s: %s: %s", path, env.ErrorType, env.Error)
	}
	if err != nil {
		return body, err
	}
	if out != nil {
		if err := json.Unmarshal(env.Data, out); err != nil {
			return body, fmt.Errorf("%s: decode data: %v", path, err)
		}
	}
	return body, nil
}

// query runs an instant query.
func (p *promAPI) query(ctx context.Context, expr string) (promResult, error) {
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if _, err := p.api(ctx, "/api/v1/query", url.Values{"query": {expr}}, &data); err != nil {
		return promResult{}, err
	}
	r := promResult{Type: data.ResultType}
	switch data.ResultType {
	case "vector", "matrix":
		if err := json.Unmarshal(data.Result, &r.Samples); err != nil {
			return r, err
		}
	case "scalar", "string":
		var v [2]any
		if err := json.Unmarshal(data.Result, &v); err != nil {
			return r, err
		}
		r.Samples = []promSample{{Value: v}}
	}
	return r, nil
}

type promAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	State       string            `json:"state"`
	Value       string            `json:"value"`
}

func (p *promAPI) alerts(ctx context.Context) ([]promAlert, []byte, error) {
	var data struct {
		Alerts []promAlert `json:"alerts"`
	}
	body, err := p.api(ctx, "/api/v1/alerts", nil, &data)
	return data.Alerts, body, err
}

type ruleGroup struct {
	Name  string `json:"name"`
	File  string `json:"file"`
	Rules []struct {
		Name      string `json:"name"`
		Type      string `json:"type"`
		Health    string `json:"health"`
		LastError string `json:"lastError"`
	} `json:"rules"`
}

func (p *promAPI) rules(ctx context.Context) ([]ruleGroup, []byte, error) {
	var data struct {
		Groups []ruleGroup `json:"groups"`
	}
	body, err := p.api(ctx, "/api/v1/rules", nil, &data)
	return data.Groups, body, err
}

// ---- Alertmanager v2 API ----

type amAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	Status      struct {
		State string `json:"state"`
	} `json:"status"`
}

func amAlerts(ctx context.Context, hc *http.Client, base string) ([]amAlert, []byte, error) {
	body, err := get(ctx, hc, base+"/api/v2/alerts", nil)
	if err != nil {
		return nil, body, err
	}
	var out []amAlert
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, body, fmt.Errorf("alertmanager alerts: decode: %v", err)
	}
	return out, body, nil
}
