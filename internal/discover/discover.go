// Package discover finds the broker URL and bearer token the way the
// broker's own clients do (docs/broker-protocol.md §3): environment, then the agent
// config file, then the token file written by `omp auth-broker token`.
package discover

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// DefaultURL is used when nothing names a broker; it is where
// `omp auth-broker serve` binds by default.
const DefaultURL = "http://127.0.0.1:8765"

// Env abstracts the process environment so tests need not mutate it.
type Env func(key string) string

// Result is what discovery found. Token is set only when the token came
// from the environment or the config file; a token file is returned as a
// path so that it can be re-read after the broker rotates it.
type Result struct {
	URL       string
	URLFrom   string // "flag", "env OMP_AUTH_BROKER_URL", "<config path>", "default"
	Token     string
	TokenFile string
	TokenFrom string
	// Looked lists every place searched for a token, for error messages.
	Looked []string
}

// Options carry what the operator set explicitly; explicit flags win over
// every discovered source.
type Options struct {
	URL       string // --broker.url when set
	TokenFile string // --broker.token-file when set
	Env       Env    // nil = os.Getenv
	// RunCommand resolves "!cmd" config values; nil = /bin/sh -c with a 10 s
	// timeout, as the omp CLI does.
	RunCommand func(ctx context.Context, cmd string) (string, error)
}

// ErrNoToken is wrapped by Discover when no token source exists.
var ErrNoToken = errors.New("no broker token found")

// Discover resolves the broker URL and token.
func Discover(ctx context.Context, o Options) (Result, error) {
	env := o.Env
	if env == nil {
		env = os.Getenv
	}
	run := o.RunCommand
	if run == nil {
		run = shellCommand
	}
	var r Result
	switch {
	case o.URL != "":
		r.URL, r.URLFrom = o.URL, "flag --broker.url"
	case env("OMP_AUTH_BROKER_URL") != "":
		r.URL, r.URLFrom = env("OMP_AUTH_BROKER_URL"), "env OMP_AUTH_BROKER_URL"
	}
	if o.TokenFile != "" {
		r.TokenFile, r.TokenFrom = o.TokenFile, "flag --broker.token-file"
		r.Looked = append(r.Looked, o.TokenFile)
	} else if t := env("OMP_AUTH_BROKER_TOKEN"); t != "" {
		r.Token, r.TokenFrom = t, "env OMP_AUTH_BROKER_TOKEN"
	}
	r.Looked = append(r.Looked, "env OMP_AUTH_BROKER_TOKEN")

	root := configRoot(env)
	if r.URL == "" || (r.Token == "" && r.TokenFile == "") {
		path, cfg, err := loadConfig(agentDir(env, root))
		if err != nil {
			return r, err
		}
		if path != "" {
			if r.URL == "" {
				if v := resolve(ctx, cfg.value("url"), env, run); v != "" {
					r.URL, r.URLFrom = v, path
				}
			}
			if r.Token == "" && r.TokenFile == "" {
				r.Looked = append(r.Looked, path+" (auth.broker.token)")
				if v := resolve(ctx, cfg.value("token"), env, run); v != "" {
					r.Token, r.TokenFrom = v, path
				}
			}
		}
	}
	if r.Token == "" && r.TokenFile == "" {
		p := filepath.Join(root, "auth-broker.token")
		r.Looked = append(r.Looked, p)
		if _, err := os.Stat(p); err == nil {
			r.TokenFile, r.TokenFrom = p, p
		}
	}
	if r.URL == "" {
		r.URL, r.URLFrom = DefaultURL, "default"
	}
	if r.Token == "" && r.TokenFile == "" {
		return r, fmt.Errorf("%w (looked in: %s); set OMP_AUTH_BROKER_TOKEN or --broker.token-file", ErrNoToken, strings.Join(r.Looked, ", "))
	}
	return r, nil
}

func home(env Env) string {
	if h := env("HOME"); h != "" {
		return h
	}
	h, _ := os.UserHomeDir()
	return h
}

// configRoot is $HOME/.omp, with .omp replaced by $PI_CONFIG_DIR, and a
// named profile living under profiles/<name>.
func configRoot(env Env) string {
	dir := ".omp"
	if d := env("PI_CONFIG_DIR"); d != "" {
		dir = d
	}
	root := dir
	if !filepath.IsAbs(dir) {
		root = filepath.Join(home(env), dir)
	}
	if p := profile(env); p != "" {
		root = filepath.Join(root, "profiles", p)
	}
	return root
}

func profile(env Env) string {
	if p := env("OMP_PROFILE"); p != "" {
		return p
	}
	return env("PI_PROFILE")
}

func agentDir(env Env, root string) string {
	if d := env("PI_CODING_AGENT_DIR"); d != "" && profile(env) == "" {
		return d
	}
	return filepath.Join(root, "agent")
}

type config map[string]any

// value reads auth.broker.<key>, nested form first, then the flat literal
// key; only strings count.
func (c config) value(key string) string {
	if auth, ok := c["auth"].(map[string]any); ok {
		if broker, ok := auth["broker"].(map[string]any); ok {
			if s, ok := broker[key].(string); ok {
				return s
			}
		}
	}
	if s, ok := c["auth.broker."+key].(string); ok {
		return s
	}
	return ""
}

// loadConfig parses the first existing config file; only the first found is
// read, and a document that is not a mapping yields nothing.
func loadConfig(dir string) (string, config, error) {
	for _, name := range []string{"config.yml", "config.yaml"} {
		p := filepath.Join(dir, name)
		b, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", nil, fmt.Errorf("read %s: %w", p, err)
		}
		var doc any
		if err := yaml.Unmarshal(b, &doc); err != nil {
			// yaml errors may quote the offending line, which can hold a token.
			return "", nil, fmt.Errorf("parse %s: invalid YAML", p)
		}
		m, _ := doc.(map[string]any)
		return p, config(m), nil
	}
	return "", nil, nil
}

// resolve applies the config value rules: "!cmd" runs a command, a value
// naming a set environment variable takes its value, else it is literal.
func resolve(ctx context.Context, v string, env Env, run func(context.Context, string) (string, error)) string {
	v = strings.TrimSpace(v)
	switch {
	case v == "":
		return ""
	case strings.HasPrefix(v, "!"):
		out, err := run(ctx, v[1:])
		if err != nil {
			return ""
		}
		return strings.TrimSpace(out)
	case env(v) != "":
		return env(v)
	}
	return v
}

func shellCommand(ctx context.Context, cmd string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "/bin/sh", "-c", cmd).Output()
	return string(out), err
}
