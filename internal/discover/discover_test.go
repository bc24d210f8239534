package discover

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func envOf(m map[string]string) Env { return func(k string) string { return m[k] } }

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestDiscover(t *testing.T) {
	const canary = "CANARY-discover-token-9f2c"
	noCmd := func(context.Context, string) (string, error) { return "", errors.New("no") }
	echo := func(_ context.Context, cmd string) (string, error) { return " from:" + cmd + "\n", nil }
	cases := []struct {
		name      string
		env       map[string]string
		files     map[string]string // relative to HOME
		opts      Options
		run       func(context.Context, string) (string, error)
		wantURL   string
		wantToken string
		wantFile  string // relative to HOME
		wantErr   bool
	}{
		{name: "env wins", env: map[string]string{"OMP_AUTH_BROKER_URL": "http://b:1", "OMP_AUTH_BROKER_TOKEN": canary},
			files:   map[string]string{".omp/agent/config.yml": "auth:\n  broker:\n    url: http://cfg:2\n    token: cfgtok\n"},
			wantURL: "http://b:1", wantToken: canary},
		{name: "nested config", files: map[string]string{".omp/agent/config.yml": "auth:\n  broker:\n    url: http://cfg:2\n    token: cfgtok\n"},
			wantURL: "http://cfg:2", wantToken: "cfgtok"},
		{name: "flat key, yaml second", files: map[string]string{".omp/agent/config.yaml": "\"auth.broker.url\": http://flat:3\n\"auth.broker.token\": flattok\n"},
			wantURL: "http://flat:3", wantToken: "flattok"},
		{name: "nested beats flat", files: map[string]string{".omp/agent/config.yml": "auth.broker.url: http://flat\nauth:\n  broker:\n    url: http://nested\n    token: t\n"},
			wantURL: "http://nested", wantToken: "t"},
		{name: "only first config file read", files: map[string]string{".omp/agent/config.yml": "other: 1\n", ".omp/agent/config.yaml": "auth:\n  broker:\n    token: ignored\n", ".omp/auth-broker.token": "x\n"},
			wantURL: DefaultURL, wantFile: ".omp/auth-broker.token"},
		{name: "non-string ignored", files: map[string]string{".omp/agent/config.yml": "auth:\n  broker:\n    url: 5\n", ".omp/auth-broker.token": "x"},
			wantURL: DefaultURL, wantFile: ".omp/auth-broker.token"},
		{name: "non-mapping document", files: map[string]string{".omp/agent/config.yml": "- a\n- b\n", ".omp/auth-broker.token": "x"},
			wantURL: DefaultURL, wantFile: ".omp/auth-broker.token"},
		{name: "value names an env var", env: map[string]string{"MY_TOKEN": canary},
			files:   map[string]string{".omp/agent/config.yml": "auth:\n  broker:\n    token: MY_TOKEN\n"},
			wantURL: DefaultURL, wantToken: canary},
		{name: "command value", run: echo, files: map[string]string{".omp/agent/config.yml": "auth:\n  broker:\n    token: \"!pass show broker\"\n"},
			wantURL: DefaultURL, wantToken: "from:pass show broker"},
		{name: "failing command is unset", files: map[string]string{".omp/agent/config.yml": "auth:\n  broker:\n    token: \"!false\"\n"},
			wantErr: true},
		{name: "PI_CONFIG_DIR and profile", env: map[string]string{"PI_CONFIG_DIR": ".pi", "OMP_PROFILE": "work", "PI_CODING_AGENT_DIR": "/nonexistent"},
			files:   map[string]string{".pi/profiles/work/agent/config.yml": "auth:\n  broker:\n    url: http://prof\n", ".pi/profiles/work/auth-broker.token": "t"},
			wantURL: "http://prof", wantFile: ".pi/profiles/work/auth-broker.token"},
		{name: "explicit flags win", env: map[string]string{"OMP_AUTH_BROKER_URL": "http://env", "OMP_AUTH_BROKER_TOKEN": "envtok"},
			opts:    Options{URL: "http://flag", TokenFile: "/etc/tok"},
			wantURL: "http://flag", wantFile: "/etc/tok"},
		{name: "nothing", wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			home := t.TempDir()
			env := map[string]string{"HOME": home}
			for k, v := range tc.env {
				env[k] = v
			}
			for p, c := range tc.files {
				write(t, filepath.Join(home, p), c)
			}
			o := tc.opts
			o.Env = envOf(env)
			o.RunCommand = tc.run
			if o.RunCommand == nil {
				o.RunCommand = noCmd
			}
			r, err := Discover(context.Background(), o)
			if tc.wantErr {
				if !errors.Is(err, ErrNoToken) {
					t.Fatalf("want ErrNoToken, got %v", err)
				}
				if strings.Contains(err.Error(), canary) {
					t.Fatal("error leaks the token")
				}
				if !strings.Contains(err.Error(), filepath.Join(home, ".omp", "auth-broker.token")) {
					t.Fatalf("error does not say where it looked: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.URL != tc.wantURL || r.Token != tc.wantToken {
				t.Fatalf("got url=%q tokenSet=%v, want url=%q", r.URL, r.Token != "", tc.wantURL)
			}
			want := tc.wantFile
			if want != "" && !filepath.IsAbs(want) {
				want = filepath.Join(home, want)
			}
			if r.TokenFile != want {
				t.Fatalf("token file %q, want %q", r.TokenFile, want)
			}
		})
	}
}

func TestInvalidYAMLDoesNotEchoContent(t *testing.T) {
	home := t.TempDir()
	write(t, filepath.Join(home, ".omp/agent/config.yml"), "auth:\n  broker:\n    token: CANARY-yaml-secret\n  bad: [\n")
	_, err := Discover(context.Background(), Options{Env: envOf(map[string]string{"HOME": home})})
	if err == nil || strings.Contains(err.Error(), "CANARY") {
		t.Fatalf("want a content-free error, got %v", err)
	}
}
