//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestAlertmanagerInhibition loads alerts/alertmanager.example.yml, as
// shipped, into the real Alertmanager, posts alerts through its API v2 and
// checks the inhibitions: an unreachable broker silences the other alerts
// of its instance but not another instance's, an exhausted limit
// silences "high" for the same credential and limit but not for another
// limit, kube-prometheus' TargetDown silences AuthBrokerExporterDown
// for the same target but not for another service, and a provider without
// a usable credential silences its credentials' alerts but not another
// provider's. It needs no broker and no Prometheus, so it takes seconds.
func TestAlertmanagerInhibition(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	root := repoRoot(t)
	out, err := runScript(ctx, os.Environ(), root, filepath.Join(root, "scripts/install-deps.sh"), "prometheus")
	if err != nil {
		t.Fatalf("install-deps: %v", err)
	}
	bin := keyValues(out)["ALERTMANAGER"]
	if bin == "" {
		t.Fatalf("install-deps did not report ALERTMANAGER:\n%s", out)
	}

	dir := t.TempDir()
	url := "http://127.0.0.1:" + strconv.Itoa(freePort(t))
	p := startProc(t, "alertmanager", filepath.Join(dir, "alertmanager.log"), cleanEnv(dir), bin,
		"--config.file="+filepath.Join(root, "alerts", "alertmanager.example.yml"),
		"--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+strings.TrimPrefix(url, "http://"),
		"--cluster.listen-address=",
	)
	t.Cleanup(func() {
		if t.Failed() {
			logTail(t, "alertmanager", p.log, 20)
		}
	})
	hc := newHTTPClient()
	if err := waitHTTP200(ctx, hc, url+"/-/ready", 60*time.Second, p.alive); err != nil {
		t.Fatalf("alertmanager not ready: %v", err)
	}

	a, b := map[string]string{"job": "authbroker", "instance": "broker-a:8766"}, map[string]string{"job": "authbroker", "instance": "broker-b:8766"}
	e := map[string]string{"job": "authbroker", "instance": "broker-e:8766"}
	with := func(target map[string]string, kv ...string) map[string]string {
		l := map[string]string{}
		for k, v := range target {
			l[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			l[kv[i]] = kv[i+1]
		}
		return l
	}
	cred := []string{"provider", "anthropic", "id", "3"}
	// Scraped through the chart's ServiceMonitor: up, and so the alerts on
	// it, carry the namespace and service of the target.
	svc := func(service string) map[string]string {
		return map[string]string{"job": "authbroker", "namespace": "monitoring", "service": service}
	}
	posted := map[string]map[string]string{
		"a unreachable": with(a, "alertname", "AuthBrokerUnreachable", "severity", "critical"),
		"a expired":     with(a, append([]string{"alertname", "AuthBrokerCredentialExpired", "severity", "critical"}, cred...)...),
		"b expired":     with(b, append([]string{"alertname", "AuthBrokerCredentialExpired", "severity", "critical"}, cred...)...),
		"b exhausted":   with(b, append([]string{"alertname", "AuthBrokerUsageLimitExhausted", "severity", "critical", "limit", "anthropic:5h", "window", "5h"}, cred...)...),
		"b high 5h":     with(b, append([]string{"alertname", "AuthBrokerUsageLimitHigh", "severity", "warning", "limit", "anthropic:5h", "window", "5h"}, cred...)...),
		"b high 7d":     with(b, append([]string{"alertname", "AuthBrokerUsageLimitHigh", "severity", "warning", "limit", "anthropic:7d", "window", "7d"}, cred...)...),
		// A provider with no usable credential: its credentials' alerts
		// are details of the one page, another provider's are not.
		"e unavailable":    with(e, "alertname", "AuthBrokerProviderUnavailable", "severity", "critical", "provider", "anthropic"),
		"e expired":        with(e, append([]string{"alertname", "AuthBrokerCredentialExpired", "severity", "critical"}, cred...)...),
		"e exhausted wide": with(e, "alertname", "AuthBrokerUsageLimitExhaustedWidespread", "severity", "critical", "provider", "anthropic", "limit", "anthropic:5h"),
		"e codex expired":  with(e, "alertname", "AuthBrokerCredentialExpired", "severity", "critical", "provider", "openai-codex", "id", "4"),
		// kube-prometheus' TargetDown is per job, namespace and service.
		"c target down": with(svc("authbroker-exporter"), "alertname", "TargetDown", "severity", "warning"),
		"c down":        with(svc("authbroker-exporter"), "alertname", "AuthBrokerExporterDown", "severity", "critical", "instance", "10.0.0.7:8766"),
		"d down":        with(svc("other-authbroker-exporter"), "alertname", "AuthBrokerExporterDown", "severity", "critical", "instance", "10.0.0.8:8766"),
	}
	// Which posted alert inhibits which; the rest stay active.
	wantInhibitor := map[string]string{
		"a expired": "a unreachable", "b high 5h": "b exhausted", "c down": "c target down",
		"e expired": "e unavailable", "e exhausted wide": "e unavailable",
	}

	if err := postAlerts(ctx, hc, url, slices.Collect(maps.Values(posted))); err != nil {
		t.Fatal(err)
	}
	err = poll(ctx, 60*time.Second, func() error {
		got, err := amAlertsStatus(ctx, hc, url)
		if err != nil {
			return err
		}
		byName := map[string]amStatusAlert{}
		for name, labels := range posted {
			i := slices.IndexFunc(got, func(x amStatusAlert) bool { return equalLabels(x.Labels, labels) })
			if i < 0 {
				return fmt.Errorf("alertmanager does not list %q (%d alerts)", name, len(got))
			}
			byName[name] = got[i]
		}
		var errs []string
		for name, x := range byName {
			src, inhibited := wantInhibitor[name]
			switch {
			case inhibited && (x.Status.State != "suppressed" || !slices.Contains(x.Status.InhibitedBy, byName[src].Fingerprint)):
				errs = append(errs, fmt.Sprintf("%q: state %s, inhibited by %v; want suppressed by %q (%s)", name, x.Status.State, x.Status.InhibitedBy, src, byName[src].Fingerprint))
			case !inhibited && (x.Status.State != "active" || len(x.Status.InhibitedBy) > 0):
				errs = append(errs, fmt.Sprintf("%q: state %s, inhibited by %v; want active", name, x.Status.State, x.Status.InhibitedBy))
			}
		}
		if len(errs) > 0 {
			slices.Sort(errs)
			return fmt.Errorf("%s", strings.Join(errs, "; "))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func equalLabels(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

type amStatusAlert struct {
	Labels      map[string]string `json:"labels"`
	Fingerprint string            `json:"fingerprint"`
	Status      struct {
		State       string   `json:"state"`
		InhibitedBy []string `json:"inhibitedBy"`
	} `json:"status"`
}

func amAlertsStatus(ctx context.Context, hc *http.Client, base string) ([]amStatusAlert, error) {
	body, err := get(ctx, hc, base+"/api/v2/alerts", nil)
	if err != nil {
		return nil, err
	}
	var out []amStatusAlert
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("alertmanager alerts: decode: %v", err)
	}
	return out, nil
}

// postAlerts posts firing alerts (ending in 10 minutes) through API v2.
func postAlerts(ctx context.Context, hc *http.Client, base string, labels []map[string]string) error {
	now := time.Now().UTC()
	type postable struct {
		Labels   map[string]string `json:"labels"`
		StartsAt time.Time         `json:"startsAt"`
		EndsAt   time.Time         `json:"endsAt"`
	}
	var body []postable
	for _, l := range labels {
		body = append(body, postable{Labels: l, StartsAt: now, EndsAt: now.Add(10 * time.Minute)})
	}
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v2/alerts", bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST /api/v2/alerts: %s", resp.Status)
	}
	return nil
}
