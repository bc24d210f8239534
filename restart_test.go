package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/authbroker/authbroker_exporter/internal/testwait"
	"github.com/authbroker/authbroker_exporter/store/brokertest"
)

// process is one run of the built exporter binary.
type process struct {
	cmd    *exec.Cmd
	addr   string
	stderr *syncBuffer
	exited chan struct{}
}

var listening = regexp.MustCompile(`msg="Listening on" address=(\S+)`)

func startBinary(t *testing.T, bin string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "OMP_AUTH_BROKER_TOKEN=", "OMP_AUTH_BROKER_URL=")
	return startCmd(t, cmd)
}

// startCmd starts cmd, a run of the exporter, and waits until it listens.
func startCmd(t *testing.T, cmd *exec.Cmd) *process {
	t.Helper()
	p := &process{cmd: cmd, stderr: &syncBuffer{}, exited: make(chan struct{})}
	pipe, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		defer close(p.exited)
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			line := sc.Text()
			_, _ = p.stderr.Write([]byte(line + "\n"))
			if m := listening.FindStringSubmatch(line); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
		_ = p.cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
	})
	select {
	case p.addr = <-addr:
	case <-p.exited:
		t.Fatalf("exporter exited at start:\n%s", p.stderr)
	case <-time.After(20 * time.Second):
		t.Fatalf("exporter never listened:\n%s", p.stderr)
	}
	return p
}

// kill is SIGKILL: no shutdown code runs.
func (p *process) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.exited
	if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("exporter did not die of SIGKILL: %v", p.cmd.ProcessState)
	}
}

// credView is one credential as /metrics or the broker shows it.
type credView struct {
	Provider, Type, Identity, Email, Account, Org string
	ExpiresMs                                     int64
	Blocks                                        string // scope=untilMs, sorted
}

type mirrorView struct {
	Generation int64
	Creds      map[string]credView // by id
}

func (m mirrorView) String() string {
	ids := make([]string, 0, len(m.Creds))
	for id := range m.Creds {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var b strings.Builder
	fmt.Fprintf(&b, "generation %d\n", m.Generation)
	for _, id := range ids {
		fmt.Fprintf(&b, "  %s %+v\n", id, m.Creds[id])
	}
	return b.String()
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, lp := range m.GetLabel() {
		out[lp.GetName()] = lp.GetValue()
	}
	return out
}

// metricsView reads the mirror back from the exporter's /metrics.
func metricsView(addr string) (mirrorView, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return mirrorView{}, err
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return mirrorView{}, err
	}
	v := mirrorView{Creds: map[string]credView{}}
	if g := mfs["authbroker_snapshot_generation"]; g != nil && len(g.GetMetric()) == 1 {
		v.Generation = int64(g.GetMetric()[0].GetGauge().GetValue())
	}
	for _, m := range mfs["authbroker_credential_info"].GetMetric() {
		l := labels(m)
		v.Creds[l["id"]] = credView{Provider: l["provider"], Type: l["type"], Identity: l["identity"], Email: l["email"], Account: l["account"], Org: l["org"]}
	}
	for _, m := range mfs["authbroker_credential_expiry_timestamp_seconds"].GetMetric() {
		id := labels(m)["id"]
		c := v.Creds[id]
		c.ExpiresMs = int64(math.Round(m.GetGauge().GetValue() * 1000))
		v.Creds[id] = c
	}
	blocks := map[string][]string{}
	for _, m := range mfs["authbroker_credential_blocked_until_timestamp_seconds"].GetMetric() {
		l := labels(m)
		blocks[l["id"]] = append(blocks[l["id"]], fmt.Sprintf("%s=%d", l["scope"], int64(math.Round(m.GetGauge().GetValue()*1000))))
	}
	for id, bs := range blocks {
		sort.Strings(bs)
		c := v.Creds[id]
		c.Blocks = strings.Join(bs, ",")
		v.Creds[id] = c
	}
	return v, nil
}

// brokerView is the broker's own snapshot, as the exporter would publish it.
func brokerView(t *testing.T, b *brokertest.Broker) mirrorView {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, b.URL+"/v1/snapshot", nil)
	req.Header.Set("Authorization", "Bearer "+b.Token())
	req.Header.Set("OMP-Auth-Broker-Capabilities", "codex-meter-block-scopes")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var snap struct {
		Generation  int64 `json:"generation"`
		Credentials []struct {
			ID          int64   `json:"id"`
			Provider    string  `json:"provider"`
			IdentityKey *string `json:"identityKey"`
			Credential  struct {
				Type      string `json:"type"`
				Expires   int64  `json:"expires"`
				Email     string `json:"email"`
				AccountID string `json:"accountId"`
				OrgID     string `json:"orgId"`
			} `json:"credential"`
			Blocks []struct {
				Scope string `json:"blockScope"`
				Until int64  `json:"blockedUntilMs"`
			} `json:"blocks"`
		} `json:"credentials"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&snap); err != nil {
		t.Fatal(err)
	}
	v := mirrorView{Generation: snap.Generation, Creds: map[string]credView{}}
	for _, c := range snap.Credentials {
		cv := credView{Provider: c.Provider, Type: c.Credential.Type, Email: c.Credential.Email, Account: c.Credential.AccountID, Org: c.Credential.OrgID}
		if c.IdentityKey != nil {
			cv.Identity = *c.IdentityKey
		}
		if cv.Type == "oauth" {
			cv.ExpiresMs = c.Credential.Expires
		}
		latest := map[string]int64{}
		for _, b := range c.Blocks {
			latest[b.Scope] = max(latest[b.Scope], b.Until)
		}
		var bs []string
		for s, u := range latest {
			bs = append(bs, fmt.Sprintf("%s=%d", s, u))
		}
		sort.Strings(bs)
		cv.Blocks = strings.Join(bs, ",")
		v.Creds[strconv.FormatInt(c.ID, 10)] = cv
	}
	return v
}

func waitMirrored(t *testing.T, p *process, b *brokertest.Broker, what string) {
	t.Helper()
	var got mirrorView
	var err error
	matched := false
	defer func() { // on the way out of a failed wait: what differed
		if !matched {
			t.Logf("%s: last error %v\n/metrics:\n%s\nbroker:\n%s\nexporter log:\n%s", what, err, got, brokerView(t, b), p.stderr)
		}
	}()
	testwait.Eventually(t, what+": /metrics equal to the broker", func() bool {
		want := brokerView(t, b)
		got, err = metricsView(p.addr)
		return err == nil && got.String() == want.String()
	})
	matched = true
}

// churn changes the broker continuously, as a busy broker does, until
// stopped: credentials come and go, rotate, get blocked.
func churn(b *brokertest.Broker, stop <-chan struct{}) {
	ids := []int64{}
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		now := time.Now()
		switch i % 4 {
		case 0:
			ids = append(ids, b.AddOAuth("anthropic", brokertest.OAuth{Access: fmt.Sprintf("%s-%d", canaryAccess, i), Refresh: "r",
				Expires: now.Add(time.Duration(i) * time.Minute).Truncate(time.Millisecond), Email: fmt.Sprintf("u%d@example.com", i)}))
		case 1:
			id := ids[len(ids)-1]
			b.UpdateOAuth(id, brokertest.OAuth{Access: fmt.Sprintf("%s-rot-%d", canaryAccess, i), Refresh: "r",
				Expires: now.Add(time.Duration(i) * time.Hour).Truncate(time.Millisecond), Email: fmt.Sprintf("u%d@example.com", i-1)})
		case 2:
			b.SetBlocks(ids[len(ids)-1], []brokertest.Block{{ProviderKey: "anthropic", Scope: fmt.Sprintf("s%d", i%3), BlockedUntil: now.Add(time.Hour)}})
		case 3:
			if len(ids) > 3 {
				b.Disable(ids[0], "manual")
				ids = ids[1:]
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestCrashOnlyRestart: the exporter keeps no state worth saving. Killed
// with SIGKILL in the middle of a busy stream and started again while the
// broker keeps changing, it serves a /metrics mirror equal to the broker's
// state: nothing lost, nothing stale.
func TestCrashOnlyRestart(t *testing.T) {
	bin := filepath.Join(t.TempDir(), program)
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	b := brokertest.New(brokertest.Options{Token: canaryBearer})
	t.Cleanup(b.Close)
	now := time.Now()
	b.AddAPIKey("openai", canaryKey)
	codex := b.AddOAuth("openai-codex", brokertest.OAuth{Access: canaryAccess, Refresh: "r", Expires: now.Add(time.Hour).Truncate(time.Millisecond),
		Email: "b@example.com", AccountID: "acct-B", OrgID: "org-1", Extra: map[string]any{"clientSecret": canaryExtra}})
	b.SetBlocks(codex, []brokertest.Block{{ProviderKey: "openai-codex:oauth", Scope: "chat", BlockedUntil: now.Add(time.Hour)}})
	args := []string{"--broker.url=" + b.URL, "--broker.token-file=" + tokenFile(t, canaryBearer, 0o600), "--web.listen-address=127.0.0.1:0",
		"--collector.identity=raw", "--no-collector.usage", "--log.level=debug"}

	first := startBinary(t, bin, args...)
	waitMirrored(t, first, b, "first start")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { churn(b, stop) })
	// Mid-stream: frames are flowing when the process dies.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.WaitForStreams(ctx, 1); err != nil {
		t.Fatal(err)
	}
	twentyChanges := func(what string) {
		g := b.Generation()
		testwait.Eventually(t, what, func() bool { return b.Generation() >= g+20 })
	}
	twentyChanges("changes streamed to the first exporter")
	first.kill(t)
	twentyChanges("changes nobody watched")
	second := startBinary(t, bin, args...)
	twentyChanges("changes while the second exporter starts")
	close(stop)
	wg.Wait()
	waitMirrored(t, second, b, "after SIGKILL and restart")

	for _, p := range []*process{first, second} {
		for _, c := range canaries {
			if strings.Contains(p.stderr.String(), c) {
				t.Errorf("canary %s in the exporter's log", c[:14])
			}
		}
	}
}
