package deploy

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const systemdDir = "systemd"

// entry is one Key=value line of a unit file.
type entry struct {
	line       int
	section    string
	key, value string
}

type unitFile struct {
	name    string
	entries []entry
}

// values returns every value of key in section, in order.
func (u unitFile) values(section, key string) []string {
	var out []string
	for _, e := range u.entries {
		if e.section == section && e.key == key {
			out = append(out, e.value)
		}
	}
	return out
}

// parseUnit reads a unit file with systemd's syntax: [Section] headers,
// Key=value lines, '#' and ';' comments, '\' line continuations.
func parseUnit(name, text string) (unitFile, error) {
	u := unitFile{name: name}
	section := ""
	sc := bufio.NewScanner(strings.NewReader(text))
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		start := n
		for strings.HasSuffix(line, `\`) && sc.Scan() {
			n++
			next := strings.TrimSpace(sc.Text())
			if strings.HasPrefix(next, "#") || strings.HasPrefix(next, ";") {
				next = ""
			}
			line = strings.TrimSuffix(line, `\`) + " " + next
		}
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			if !strings.HasSuffix(line, "]") {
				return u, fmt.Errorf("%s:%d: bad section header %q", name, start, line)
			}
			section = strings.Trim(line, "[]")
		default:
			key, value, ok := strings.Cut(line, "=")
			if !ok {
				return u, fmt.Errorf("%s:%d: not Key=value: %q", name, start, line)
			}
			if section == "" {
				return u, fmt.Errorf("%s:%d: %s outside any section", name, start, key)
			}
			u.entries = append(u.entries, entry{line: start, section: section, key: strings.TrimSpace(key), value: strings.Join(strings.Fields(value), " ")})
		}
	}
	return u, sc.Err()
}

// knownDirectives reads testdata/systemd-directives.txt, systemd's own list
// of the directives it understands per section.
func knownDirectives(t *testing.T) map[string]map[string]bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(systemdDir, "testdata", "systemd-directives.txt"))
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]map[string]bool{}
	section := ""
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
			known[section] = map[string]bool{}
		default:
			known[section][line] = true
		}
	}
	if len(known["Service"]) < 100 || len(known["Install"]) == 0 {
		t.Fatalf("directive list looks truncated: %d [Service], %d [Install]", len(known["Service"]), len(known["Install"]))
	}
	return known
}

// repeatable lists the directives this project's units may give more than
// once (systemd appends them to a list).
var repeatable = map[string]bool{
	"SystemCallFilter": true, "ListenStream": true, "LoadCredential": true, "Environment": true,
	"EnvironmentFile": true, "After": true, "Wants": true, "Requires": true, "Documentation": true,
	"RestrictAddressFamilies": true,
}

// lintUnit checks every directive against systemd's list for its section
// and the sections allowed in a unit of that type.
func lintUnit(u unitFile, known map[string]map[string]bool) []error {
	var errs []error
	sections := map[string][]string{
		".service": {"Unit", "Service", "Install"},
		".socket":  {"Unit", "Socket", "Install"},
		".path":    {"Unit", "Path", "Install"},
	}[filepath.Ext(u.name)]
	if sections == nil {
		return []error{fmt.Errorf("%s: not a .service, .socket or .path unit", u.name)}
	}
	seen := map[string]int{}
	for _, e := range u.entries {
		if !slices.Contains(sections, e.section) {
			errs = append(errs, fmt.Errorf("%s:%d: section [%s] does not belong in a %s unit", u.name, e.line, e.section, filepath.Ext(u.name)))
			continue
		}
		if !known[e.section][e.key] {
			errs = append(errs, fmt.Errorf("%s:%d: systemd knows no %s= in [%s]", u.name, e.line, e.key, e.section))
		}
		k := e.section + "/" + e.key
		if prev, dup := seen[k]; dup && !repeatable[e.key] {
			errs = append(errs, fmt.Errorf("%s:%d: %s= given again (first on line %d)", u.name, e.line, e.key, prev))
		}
		seen[k] = e.line
	}
	return errs
}

func readUnit(t *testing.T, name string) unitFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(systemdDir, name))
	if err != nil {
		t.Fatal(err)
	}
	u, err := parseUnit(name, string(b))
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// units are every unit file deploy/systemd ships.
var units = []string{"authbroker_exporter.service", "authbroker_exporter.socket", "authbroker_exporter-token.path", "authbroker_exporter-token.service"}

func TestSystemdUnitsLint(t *testing.T) {
	known := knownDirectives(t)
	files, err := os.ReadDir(systemdDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		switch name := f.Name(); filepath.Ext(name) {
		case ".service", ".socket", ".path", ".timer":
			if !slices.Contains(units, name) {
				t.Errorf("%s is not linted: add it to units", name)
			}
		}
	}
	for _, name := range units {
		for _, err := range lintUnit(readUnit(t, name), known) {
			t.Error(err)
		}
	}
}

// TestSystemdLintFails proves the lint above can fail.
func TestSystemdLintFails(t *testing.T) {
	known := knownDirectives(t)
	for _, c := range []struct{ name, text string }{
		{"x.service", "[Service]\nProtectSystm=strict\n"},
		{"x.service", "[Service]\nListenStream=8766\n"},
		{"x.socket", "[Service]\nExecStart=/bin/true\n"},
		{"x.service", "[Unit]\nDescription=a\nDescription=b\n"},
		{"x.service", "[Install]\nWantedBy=multi-user.target\nRequiredBy=x\nAlso=y\nProtectHome=yes\n"},
	} {
		u, err := parseUnit(c.name, c.text)
		if err == nil && len(lintUnit(u, known)) == 0 {
			t.Errorf("%s %q passed the lint", c.name, c.text)
		}
	}
	for _, text := range []string{"ProtectHome=yes\n", "[Service\nX=1\n", "[Service]\nnot a directive\n"} {
		if _, err := parseUnit("x.service", text); err == nil {
			t.Errorf("%q parsed", text)
		}
	}
}

// TestSystemdHardening: the service runs as a transient user with no
// capabilities, a read-only system, no homes, and a system call filter.
func TestSystemdHardening(t *testing.T) {
	u := readUnit(t, "authbroker_exporter.service")
	want := map[string]string{
		"DynamicUser":             "yes",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"NoNewPrivileges":         "yes",
		"CapabilityBoundingSet":   "",
		"AmbientCapabilities":     "",
		"PrivateTmp":              "yes",
		"PrivateDevices":          "yes",
		"ProtectKernelTunables":   "yes",
		"ProtectKernelModules":    "yes",
		"ProtectControlGroups":    "yes",
		"RestrictSUIDSGID":        "yes",
		"RestrictNamespaces":      "yes",
		"LockPersonality":         "yes",
		"MemoryDenyWriteExecute":  "yes",
		"SystemCallArchitectures": "native",
		"UMask":                   "0077",
	}
	for k, v := range want {
		got := u.values("Service", k)
		if len(got) != 1 || got[0] != v {
			t.Errorf("%s=%q, want exactly %s=%s", k, got, k, v)
		}
	}
	// The process collector reads the boot time from /proc/stat for
	// process_start_time_seconds; ProcSubset=pid hides it.
	if v := u.values("Service", "ProcSubset"); len(v) > 0 && v[len(v)-1] != "all" {
		t.Errorf("ProcSubset=%s hides /proc/stat: process_start_time_seconds would be dropped", v[len(v)-1])
	}
	for _, k := range []string{"User", "Group", "SupplementaryGroups", "PermissionsStartOnly", "ReadWritePaths"} {
		if v := u.values("Service", k); len(v) > 0 {
			t.Errorf("%s=%v: the service needs neither a fixed user nor writable paths", k, v)
		}
	}
	fams := strings.Fields(strings.Join(u.values("Service", "RestrictAddressFamilies"), " "))
	for _, f := range fams {
		if !slices.Contains([]string{"AF_INET", "AF_INET6", "AF_UNIX"}, f) {
			t.Errorf("RestrictAddressFamilies allows %s", f)
		}
	}
	if !slices.Contains(fams, "AF_INET") || !slices.Contains(fams, "AF_INET6") {
		t.Errorf("RestrictAddressFamilies=%v must allow IP to reach the broker", fams)
	}
	filters := u.values("Service", "SystemCallFilter")
	if len(filters) == 0 || filters[0] != "@system-service" {
		t.Errorf("SystemCallFilter=%v, want @system-service first", filters)
	}
}

// TestSystemdExecStart: the flags exist in the exporter, the socket comes
// from systemd and the token from LoadCredential=.
func TestSystemdExecStart(t *testing.T) {
	flags := exporterFlags(t)
	u := readUnit(t, "authbroker_exporter.service")
	exec := u.values("Service", "ExecStart")
	if len(exec) != 1 {
		t.Fatalf("ExecStart=%q", exec)
	}
	argv := strings.Fields(exec[0])
	if !filepath.IsAbs(argv[0]) || filepath.Base(argv[0]) != "authbroker_exporter" {
		t.Errorf("ExecStart runs %q, want an absolute path to authbroker_exporter", argv[0])
	}
	var args []string
	for _, a := range argv[1:] {
		if a == "$AUTHBROKER_EXPORTER_ARGS" {
			continue // more flags from the EnvironmentFile, split on spaces
		}
		args = append(args, a)
	}
	checkArgs(t, flags, args)
	if !slices.Contains(args, "--web.systemd-socket") {
		t.Error("ExecStart lacks --web.systemd-socket")
	}
	if _, ok := argValue(args, "web.listen-address"); ok {
		t.Error("--web.listen-address with socket activation: the socket unit says where to listen")
	}
	token, _ := argValue(args, "broker.token-file")
	cred, ok := strings.CutPrefix(token, "${CREDENTIALS_DIRECTORY}/")
	if !ok {
		t.Fatalf("--broker.token-file=%q, want ${CREDENTIALS_DIRECTORY}/<credential>", token)
	}
	loaded := false
	for _, lc := range u.values("Service", "LoadCredential") {
		id, path, _ := strings.Cut(lc, ":")
		if id == cred && filepath.IsAbs(path) {
			loaded = true
		}
	}
	if !loaded {
		t.Errorf("no LoadCredential=%s:/absolute/path for --broker.token-file", cred)
	}
	if env := u.values("Service", "Environment"); !slices.Contains(env, "AUTHBROKER_EXPORTER_ARGS=") {
		t.Errorf("Environment=%q: no AUTHBROKER_EXPORTER_ARGS= fallback for $AUTHBROKER_EXPORTER_ARGS", env)
	}
	if !slices.Contains(argv, "$AUTHBROKER_EXPORTER_ARGS") {
		t.Error("ExecStart does not pass $AUTHBROKER_EXPORTER_ARGS (split on spaces)")
	}
	envFiles := u.values("Service", "EnvironmentFile")
	if len(envFiles) != 1 || strings.TrimPrefix(envFiles[0], "-") != "/etc/default/authbroker_exporter" {
		t.Errorf("EnvironmentFile=%v, want /etc/default/authbroker_exporter", envFiles)
	}
	if !slices.Contains(strings.Fields(strings.Join(u.values("Unit", "Requires"), " ")), "authbroker_exporter.socket") {
		t.Error("the service does not require its socket")
	}
}

// TestSystemdSocket: the socket listens on the exporter's default port and
// activates the service of the same name.
func TestSystemdSocket(t *testing.T) {
	u := readUnit(t, "authbroker_exporter.socket")
	listen := u.values("Socket", "ListenStream")
	if len(listen) == 0 {
		t.Fatal("no ListenStream=")
	}
	for _, l := range listen {
		if !regexp.MustCompile(`(^|:)8766$`).MatchString(l) {
			t.Errorf("ListenStream=%s, want port 8766 (the exporter's default)", l)
		}
	}
	if s := u.values("Socket", "Service"); len(s) > 0 && s[0] != "authbroker_exporter.service" {
		t.Errorf("Service=%s", s[0])
	}
	if v := u.values("Install", "WantedBy"); len(v) != 1 || v[0] != "sockets.target" {
		t.Errorf("WantedBy=%v, want sockets.target", v)
	}
}

// TestSystemdEnvironmentFile: the example environment file sets only
// variables the unit or the exporter reads.
func TestSystemdEnvironmentFile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(systemdDir, "authbroker_exporter.env"))
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(filepath.Join("..", "flags.go"))
	if err != nil {
		t.Fatal(err)
	}
	flags := exporterFlags(t)
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		// The commented example of extra flags must work when uncommented.
		if ex, ok := strings.CutPrefix(line, "#AUTHBROKER_EXPORTER_ARGS="); ok {
			checkArgs(t, flags, strings.Fields(ex))
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		switch {
		case !ok:
			t.Errorf("line %d: not KEY=value: %q", i+1, line)
		case key == "AUTHBROKER_EXPORTER_ARGS":
			if value != "" {
				checkArgs(t, flags, strings.Fields(value))
			}
		case !strings.Contains(string(src), `Envar("`+key+`")`):
			t.Errorf("line %d: the exporter reads no %s", i+1, key)
		}
	}
}

// TestSystemdTokenRotation: LoadCredential= copies the token when the
// service starts, so a path unit watches the same file and restarts the
// service when it changes; installing the service installs the watch.
func TestSystemdTokenRotation(t *testing.T) {
	svc := readUnit(t, "authbroker_exporter.service")
	var source string
	for _, lc := range svc.values("Service", "LoadCredential") {
		if id, path, _ := strings.Cut(lc, ":"); id == "broker-token" {
			source = path
		}
	}
	if source == "" {
		t.Fatal("no LoadCredential=broker-token:")
	}
	p := readUnit(t, "authbroker_exporter-token.path")
	if got := p.values("Path", "PathChanged"); len(got) != 1 || got[0] != source {
		t.Errorf("PathChanged=%q, want the credential's source %s", got, source)
	}
	target := "authbroker_exporter-token.service"
	if u := p.values("Path", "Unit"); len(u) > 0 {
		target = u[0]
	}
	if target != "authbroker_exporter-token.service" {
		t.Fatalf("the path unit starts %s", target)
	}
	if w := p.values("Install", "WantedBy"); len(w) != 1 || w[0] != "paths.target" {
		t.Errorf("WantedBy=%v, want paths.target", w)
	}
	restart := readUnit(t, target)
	if ty := restart.values("Service", "Type"); len(ty) != 1 || ty[0] != "oneshot" {
		t.Errorf("%s: Type=%v, want oneshot", target, ty)
	}
	exec := restart.values("Service", "ExecStart")
	if len(exec) != 1 {
		t.Fatalf("%s: ExecStart=%q", target, exec)
	}
	argv := strings.Fields(exec[0])
	if !filepath.IsAbs(argv[0]) || filepath.Base(argv[0]) != "systemctl" || !slices.Equal(argv[1:], []string{"try-restart", "authbroker_exporter.service"}) {
		t.Errorf("%s: ExecStart=%s, want systemctl try-restart authbroker_exporter.service", target, exec[0])
	}
	also := strings.Fields(strings.Join(svc.values("Install", "Also"), " "))
	for _, want := range []string{"authbroker_exporter.socket", "authbroker_exporter-token.path"} {
		if !slices.Contains(also, want) {
			t.Errorf("Also=%v lacks %s: enabling the service would not enable it", also, want)
		}
	}
}
