package main

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/authbroker/authbroker_exporter/internal/testwait"
)

// readmeBlock returns the fenced code block of README.md that contains
// marker, with backslash continuations joined into single lines.
func readmeBlock(t *testing.T, marker string) string {
	t.Helper()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(string(b), "```")
	for i := 1; i < len(parts); i += 2 {
		if strings.Contains(parts[i], marker) {
			return strings.ReplaceAll(parts[i], "\\\n", " ")
		}
	}
	t.Fatalf("README.md has no code block with %q", marker)
	return ""
}

// shellWords splits one command line as a POSIX shell would for the forms
// the README uses: blanks separate words, double quotes group.
func shellWords(line string) []string {
	var words []string
	var cur strings.Builder
	inWord, quoted := false, false
	for _, r := range line {
		switch {
		case r == '"':
			quoted, inWord = !quoted, true
		case (r == ' ' || r == '\t') && !quoted:
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// dockerRun is what a `docker run` command line asks for.
type dockerRun struct {
	user        string            // --user, unevaluated
	env         map[string]string // -e
	mounts      map[string]string // -v host:container:ro, by container path
	image       string
	args        []string // after the image
	noNewPrivs  bool
	dropAllCaps bool
}

func parseDockerRun(t *testing.T, words []string) dockerRun {
	t.Helper()
	if len(words) < 3 || words[0] != "docker" || words[1] != "run" {
		t.Fatalf("not a docker run command: %q", words)
	}
	r := dockerRun{env: map[string]string{}, mounts: map[string]string{}}
	for i := 2; i < len(words); i++ {
		w := words[i]
		next := func() string {
			i++
			if i >= len(words) {
				t.Fatalf("%s without a value", w)
			}
			return words[i]
		}
		switch {
		case w == "-d", w == "--read-only":
		case w == "--cap-drop=ALL":
			r.dropAllCaps = true
		case w == "--security-opt=no-new-privileges":
			r.noNewPrivs = true
		case w == "--name", w == "-p":
			next()
		case w == "--user":
			r.user = next()
		case w == "-e":
			k, v, _ := strings.Cut(next(), "=")
			r.env[k] = v
		case w == "-v":
			parts := strings.Split(next(), ":")
			if len(parts) != 3 || parts[2] != "ro" {
				t.Fatalf("-v %q: want host:container:ro", strings.Join(parts, ":"))
			}
			r.mounts[parts[1]] = parts[0]
		case strings.HasPrefix(w, "-"):
			t.Fatalf("docker run option %q: this test does not know what it does", w)
		default:
			r.image, r.args = w, words[i+1:]
			return r
		}
	}
	t.Fatal("docker run names no image")
	return r
}

// rootOnly skips a test that needs root (to own files as another user and
// switch to it), except in CI, where it must run.
func rootOnly(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		if _, err := exec.LookPath("setpriv"); err == nil {
			return
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("this test needs root and setpriv (util-linux) in CI")
	}
	t.Skip("needs root and setpriv; CI runs it")
}

// TestREADMEDockerRun runs the README's `docker run` without Docker, as
// the image would: the built binary, as the user and group that --user
// names (evaluated with the same stat against a 0600 token file owned by
// someone else), without supplementary groups or capabilities, with the -e
// environment and the arguments after the image, the token mounted where
// -v puts it. The image's own user (65532, the Dockerfile's nonroot) gets
// "permission denied" on the same file: that is why --user is there.
func TestREADMEDockerRun(t *testing.T) {
	rootOnly(t)
	var run dockerRun
	for _, line := range strings.Split(readmeBlock(t, "docker run"), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "docker run") {
			run = parseDockerRun(t, shellWords(strings.TrimSpace(line)))
		}
	}
	if run.image == "" {
		t.Fatal("no docker run line")
	}
	m := regexp.MustCompile(`^\$\(stat -c (%u:%g) (\S+)\)$`).FindStringSubmatch(run.user)
	if m == nil {
		t.Fatalf("--user %q: want the token file's owner, $(stat -c %%u:%%g FILE)", run.user)
	}
	hostToken := m[2]
	var inContainer string
	for c, h := range run.mounts {
		if h == hostToken {
			inContainer = c
		}
	}
	if inContainer == "" || !run.dropAllCaps || !run.noNewPrivs {
		t.Fatalf("the command mounts %v, cap-drop ALL %v, no-new-privileges %v; want %s mounted read-only, both on", run.mounts, run.dropAllCaps, run.noNewPrivs, hostToken)
	}
	if !strings.Contains(strings.Join(run.args, " "), "--broker.token-file="+inContainer) {
		t.Fatalf("arguments %q do not read the token from %s", run.args, inContainer)
	}

	// The binary and an ordinary token file: 0600, owned by another user.
	dir, err := os.MkdirTemp("", "docker-run-") // 0700, like t.TempDir's parent
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil { // what any user may traverse, as the image's /
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "authbroker_exporter")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	const owner = 4242
	token := filepath.Join(dir, "auth-broker.token")
	if err := os.WriteFile(token, []byte(canaryBearer+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(token, owner, owner); err != nil {
		t.Fatal(err)
	}
	b := seededBroker(t)

	// The --user value, as the shell would compute it.
	out, err := exec.Command("stat", "-c", m[1], token).Output()
	if err != nil {
		t.Fatal(err)
	}
	uid, gid, ok := strings.Cut(strings.TrimSpace(string(out)), ":")
	if !ok || uid != "4242" || gid != "4242" {
		t.Fatalf("stat says %q", out)
	}
	container := func(uid, gid string, extra ...string) *exec.Cmd {
		argv := []string{"--reuid=" + uid, "--regid=" + gid, "--clear-groups", "--bounding-set=-all", "--no-new-privs", "--", bin}
		for _, a := range run.args {
			argv = append(argv, strings.ReplaceAll(a, inContainer, token))
		}
		cmd := exec.Command("setpriv", append(argv, extra...)...)
		cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/"}
		for k, v := range run.env {
			if k == "OMP_AUTH_BROKER_URL" {
				v = b.URL // the test's broker, in place of the example's
			}
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		return cmd
	}

	// The image's own user cannot read the file.
	denied, err := container("65532", "65532", "--web.listen-address=127.0.0.1:0").CombinedOutput()
	if err == nil || !strings.Contains(string(denied), "permission denied") {
		t.Errorf("as the image's user: %v, want an exit with permission denied:\n%s", err, denied)
	}

	// As documented: it serves a live mirror. -p maps the container's
	// port; here the exporter listens on a free loopback port instead.
	p := startCmd(t, container(uid, gid, "--web.listen-address=127.0.0.1:0"))
	testwait.Eventually(t, "a live mirror", func() bool {
		_, body := get(t, http.DefaultClient, "http://"+p.addr+"/metrics")
		return strings.Contains(body, "\nauthbroker_up 1\n")
	})
	if strings.Contains(p.stderr.String(), canaryBearer) {
		t.Error("the token reached the log")
	}
}
