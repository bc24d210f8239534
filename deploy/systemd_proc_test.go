package deploy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// procMountOptions are the options of the /proc systemd mounts for the
// service: ProtectProc= is hidepid=, ProcSubset= is subset=.
func procMountOptions(u unitFile) []string {
	last := func(key string) string {
		v := u.values("Service", key)
		if len(v) == 0 {
			return ""
		}
		return v[len(v)-1]
	}
	var opts []string
	if v := last("ProtectProc"); v != "" && v != "default" {
		opts = append(opts, "hidepid="+v)
	}
	if last("ProcSubset") == "pid" {
		opts = append(opts, "subset=pid")
	}
	return opts
}

// TestSystemdProcKeepsProcessStartTime runs the exporter with /proc
// mounted as the unit has systemd mount it (in a private mount and PID
// namespace, unshare(1)), and scrapes it: process_start_time_seconds must
// be there. The same run with ProcSubset=pid's subset=pid added shows the
// metric would go (client_golang reads the boot time from /proc/stat).
func TestSystemdProcKeepsProcessStartTime(t *testing.T) {
	if os.Geteuid() != 0 || func() bool { _, err := exec.LookPath("unshare"); return err != nil }() {
		if os.Getenv("CI") != "" {
			t.Fatal("this test needs root and unshare (util-linux) in CI")
		}
		t.Skip("needs root and unshare; CI runs it")
	}
	opts := procMountOptions(readUnit(t, "authbroker_exporter.service"))
	if len(opts) == 0 || !strings.HasPrefix(opts[0], "hidepid=") {
		t.Fatalf("/proc options %v: the unit no longer sets ProtectProc=", opts)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "authbroker_exporter")
	if out, err := exec.Command("go", "build", "-C", "..", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("canary-token-not-a-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		opts  []string
		wants bool
	}{
		{"as the unit mounts it", opts, true},
		{"with ProcSubset=pid", append(append([]string(nil), opts...), "subset=pid"), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := scrapeWithProc(t, bin, token, c.opts); got != c.wants {
				t.Errorf("/proc mounted with %s: process_start_time_seconds present=%v, want %v", strings.Join(c.opts, ","), got, c.wants)
			}
		})
	}
}

// scrapeWithProc runs the exporter under a /proc mounted with opts and
// tells whether /metrics has process_start_time_seconds.
func scrapeWithProc(t *testing.T, bin, token string, opts []string) bool {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	script := fmt.Sprintf("mount -t proc -o %s proc /proc && exec %s --broker.url=http://127.0.0.1:9 --broker.token-file=%s --web.listen-address=%s --monitor.probe-interval=1h",
		strings.Join(opts, ","), bin, token, addr)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "--mount", "--pid", "--fork", "--kill-child", "--", "sh", "-c", script)
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	defer func() {
		_ = cmd.Process.Kill()
		<-exited
	}()
	for {
		select {
		case <-exited:
			t.Fatalf("the exporter exited:\n%s", logs.String())
		case <-ctx.Done():
			t.Fatal("no /metrics within a minute")
		case <-time.After(50 * time.Millisecond):
		}
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			continue
		}
		if !strings.Contains(string(body), "\nprocess_resident_memory_bytes ") {
			t.Fatalf("no process metrics at all:\n%s", body)
		}
		return strings.Contains(string(body), "\nprocess_start_time_seconds ")
	}
}
