package main

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/authbroker/authbroker_exporter/store/brokertest"
)

func TestStampFromBuildInfo(t *testing.T) {
	const rev = "0123456789abcdef0123456789abcdef01234567"
	settings := func(kv ...string) []debug.BuildSetting {
		var out []debug.BuildSetting
		for i := 0; i < len(kv); i += 2 {
			out = append(out, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return out
	}
	info := func(version string, kv ...string) *debug.BuildInfo {
		bi := &debug.BuildInfo{Settings: settings(kv...)}
		bi.Main.Path = "github.com/authbroker/authbroker_exporter"
		bi.Main.Version = version
		return bi
	}
	for _, tc := range []struct {
		name string
		bi   *debug.BuildInfo
		ok   bool
		want buildStamp
	}{
		{"no build info", nil, false, buildStamp{Revision: "unknown"}},
		{"go build in a clean checkout", info("(devel)", "vcs", "git", "vcs.revision", rev, "vcs.time", "2026-11-30T18:01:02Z", "vcs.modified", "false"), true,
			buildStamp{Revision: rev, Date: "20261130-18:01:02"}},
		{"go build in a dirty checkout", info("(devel)", "vcs.revision", rev, "vcs.time", "2026-11-30T19:01:02+01:00", "vcs.modified", "true"), true,
			buildStamp{Revision: rev + "-modified", Date: "20261130-18:01:02"}},
		{"go build at a tag (Go 1.24+ stamps it)", info("v0.2.0", "vcs.revision", rev, "vcs.modified", "false"), true,
			buildStamp{Revision: rev}},
		{"go build -buildvcs=false", info("(devel)"), true, buildStamp{Revision: "unknown"}},
		{"go install module@tag", info("v0.2.0"), true, buildStamp{Revision: "unknown"}},
		{"go install module@commit", info("v0.1.1-0.20261130180102-0123456789ab"), true, buildStamp{Revision: "0123456789ab"}},
		{"pre-release pseudo-version", info("v0.2.0-rc.1.0.20261130180102-0123456789ab"), true, buildStamp{Revision: "0123456789ab"}},
		{"pseudo-version of a dirty tree", info("v0.0.0-20261130180102-0123456789ab+dirty"), true, buildStamp{Revision: "0123456789ab"}},
		{"empty main version", info("", "vcs.time", "not a time"), true, buildStamp{Revision: "unknown"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := stampFromBuildInfo(tc.bi, tc.ok); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestFormatExporterVersion(t *testing.T) {
	for _, tc := range []struct{ version, revision, want string }{
		{"0.1.0", "0123456789abcdef0123456789abcdef01234567", "0.1.0 (0123456789ab)"},
		{"(devel)", "0123456789abcdef0123456789abcdef01234567-modified", "(devel) (0123456789ab-modified)"},
		{"0.1.1-0.20261130180102-0123456789ab", "0123456789ab", "0.1.1-0.20261130180102-0123456789ab"},
		{"0.2.0", "unknown", "0.2.0"},
		{"0.2.0", "", "0.2.0"},
	} {
		if got := formatExporterVersion(tc.version, tc.revision); got != tc.want {
			t.Errorf("formatExporterVersion(%q, %q) = %q, want %q", tc.version, tc.revision, got, tc.want)
		}
	}
}

// TestVersionFromBuild builds the binary three ways, from a fresh git
// repository holding this tree (so the toolchain can stamp it whatever the
// checkout here is: a worktree's .git file is not recognised, and the
// environment may say -buildvcs=false): with scripts/build.sh's -ldflags,
// with a plain `go build`, and with `go build -buildvcs=false` (CI, a
// source tarball). Each prints VERSION on --version; the first two name the
// commit, the plain one also in build_info and /api/v1/health.
func TestVersionFromBuild(t *testing.T) {
	src := copyTree(t)
	env := append(os.Environ(), "GOFLAGS="+strings.TrimSpace(os.Getenv("GOFLAGS")+" -buildvcs=true"), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=test", "GIT_AUTHOR_EMAIL=test@example.com", "GIT_COMMITTER_NAME=test", "GIT_COMMITTER_EMAIL=test@example.com",
		"GIT_COMMITTER_DATE=2026-11-30T18:01:02Z", "GIT_AUTHOR_DATE=2026-11-30T18:01:02Z")
	sh := func(dir string, argv ...string) string {
		t.Helper()
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Dir, cmd.Env = dir, env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	sh(src, "git", "init", "-q")
	sh(src, "git", "add", "-A")
	sh(src, "git", "commit", "-q", "-m", "snapshot")
	head := sh(src, "git", "rev-parse", "HEAD")
	wantVersion, err := os.ReadFile("VERSION")
	if err != nil {
		t.Fatal(err)
	}
	headline := regexp.MustCompile(`^authbroker_exporter, version (\S+) \(branch: [^,]*, revision: (\S+)\)`)
	versionOf := func(bin string) (string, string, string) {
		t.Helper()
		out := sh(src, bin, "--version")
		m := headline.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("%s --version:\n%s", filepath.Base(bin), out)
		}
		return m[1], m[2], out
	}

	release := filepath.Join(t.TempDir(), "release")
	sh(src, "./scripts/build.sh", release)
	if v, rev, _ := versionOf(release); v != strings.TrimSpace(string(wantVersion)) || rev != head {
		t.Errorf("scripts/build.sh binary: version %q revision %q, want %q %q", v, rev, strings.TrimSpace(string(wantVersion)), head)
	}

	plain := filepath.Join(t.TempDir(), "plain")
	sh(src, "go", "build", "-o", plain, ".")
	v, rev, out := versionOf(plain)
	if v != strings.TrimSpace(string(wantVersion)) || rev != head {
		t.Errorf("go build binary: version %q revision %q, want %q %q", v, rev, strings.TrimSpace(string(wantVersion)), head)
	}
	if !strings.Contains(out, "build date:       20261130-18:01:02") {
		t.Errorf("go build binary: no commit time as build date:\n%s", out)
	}

	// Without VCS information: the release version, no commit.
	novcs := filepath.Join(t.TempDir(), "novcs")
	sh(src, "go", "build", "-buildvcs=false", "-o", novcs, ".")
	if v, rev, _ := versionOf(novcs); v != strings.TrimSpace(string(wantVersion)) || rev != "unknown" {
		t.Errorf("go build -buildvcs=false binary: version %q revision %q, want %q unknown", v, rev, strings.TrimSpace(string(wantVersion)))
	}

	// A dirty tree says so, and the version is the VERSION it was built with.
	if err := os.WriteFile(filepath.Join(src, "VERSION"), []byte("9.9.9\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dirty := filepath.Join(t.TempDir(), "dirty")
	sh(src, "go", "build", "-o", dirty, ".")
	if v, rev, _ := versionOf(dirty); v != "9.9.9" || rev != head+"-modified" {
		t.Errorf("go build of a modified tree: version %q revision %q, want 9.9.9 %q", v, rev, head+"-modified")
	}

	// The plain binary serves the same version on /metrics and the health API.
	b := brokertest.New(brokertest.Options{Token: canaryBearer})
	t.Cleanup(b.Close)
	p := startBinary(t, plain, "--broker.url="+b.URL, "--broker.token-file="+tokenFile(t, canaryBearer, 0o600),
		"--web.listen-address=127.0.0.1:0", "--no-collector.usage")
	_, metrics := get(t, http.DefaultClient, "http://"+p.addr+"/metrics")
	buildInfo := regexp.MustCompile(`(?m)^authbroker_exporter_build_info\{.*\brevision="([^"]*)".*\bversion="([^"]*)"\} 1$`).FindStringSubmatch(metrics)
	if buildInfo == nil || buildInfo[1] != head || buildInfo[2] != v {
		t.Errorf("build_info %q, want revision %q version %q", buildInfo, head, v)
	}
	_, body := get(t, http.DefaultClient, "http://"+p.addr+"/api/v1/health")
	var h struct {
		ExporterVersion string `json:"exporter_version"`
	}
	if err := json.Unmarshal([]byte(body), &h); err != nil {
		t.Fatalf("/api/v1/health: %v", err)
	}
	if want := formatExporterVersion(v, head); h.ExporterVersion != want || !strings.Contains(want, head[:12]) {
		t.Errorf("exporter_version %q, want %q", h.ExporterVersion, want)
	}
}

// copyTree copies the module's files (tracked and untracked, not ignored)
// into a temporary directory.
func copyTree(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("git", "ls-files", "-z", "-co", "--exclude-standard").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	dst := t.TempDir()
	for _, f := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		fi, err := os.Lstat(f)
		if err != nil {
			if os.IsNotExist(err) {
				continue // deleted in the work tree
			}
			t.Fatal(err)
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(dst, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, f), b, fi.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}
