package deploy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/strvals"
)

// TestChartRequiresImage: the chart names no image of its own. Without
// image.repository the render fails and says how to build and push one.
func TestChartRequiresImage(t *testing.T) {
	vals := readValues(t, "broker: {token: {existingSecret: authbroker-exporter-token}}")
	_, err := renderChartErr(vals)
	if err == nil {
		t.Fatal("rendered without image.repository")
	}
	version, err2 := os.ReadFile(filepath.Join("..", "VERSION"))
	if err2 != nil {
		t.Fatal(err2)
	}
	tag := strings.TrimSpace(string(version))
	for _, want := range []string{
		"image.repository is required",
		"Dockerfile",
		"docker build -t REGISTRY/authbroker_exporter:" + tag + " .",
		"docker push REGISTRY/authbroker_exporter:" + tag,
		"image.repository=REGISTRY/authbroker_exporter",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q:\n%v", want, err)
		}
	}
	// values.yaml ships no repository, not even a commented-in default.
	b, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "\n  repository: \"\"\n") {
		t.Error(`values.yaml: image.repository is not ""`)
	}

	for _, c := range []struct{ values, want string }{
		{requiredValues, "registry.example.com/llm/authbroker_exporter:" + tag},
		{tlsOnlyValues, "registry.example.com/llm/authbroker_exporter:0.1.0-rc.1"},
		{allOnValues, "registry.example.com/llm/authbroker_exporter@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
	} {
		if got := renderChart(t, readValues(t, c.values)).deployment(t).Spec.Template.Spec.Containers[0].Image; got != c.want {
			t.Errorf("image %q, want %q", got, c.want)
		}
	}
}

// TestChartRefusesUnsafeSettings: settings that would deploy something else
// than asked (a token from nowhere, plain HTTP while TLS or basic auth was
// asked for, TLS without a certificate) fail the render with what to do.
func TestChartRefusesUnsafeSettings(t *testing.T) {
	const image = "image: {repository: registry.example.com/llm/authbroker_exporter}\n"
	const token = "broker: {token: {value: " + tokenCanary + "}}\n"
	for _, c := range []struct {
		name, values string
		want         []string
	}{
		{"no token", image,
			[]string{"broker.token", "create secret generic authbroker-exporter-token --from-file=token=$HOME/.omp/auth-broker.token", "broker.token.existingSecret"}},
		{"token value and existing Secret", image + "broker: {token: {value: " + tokenCanary + ", existingSecret: s}}\n",
			[]string{"either value or existingSecret, not both"}},
		{"empty token key", image + "broker: {token: {existingSecret: s, key: ''}}\n",
			[]string{"broker.token.key"}},
		{"web config enabled and empty", image + token + "webConfig: {enabled: true}\n",
			[]string{"webConfig.enabled=true with an empty webConfig.config", "plain HTTP"}},
		{"web config enabled, config null", image + token + "webConfig: {enabled: true, config: null}\n",
			[]string{"webConfig.enabled=true with an empty webConfig.config"}},
		{"TLS without a certificate", image + token + "webConfig: {enabled: true, config: {tls_server_config: {}}}\n",
			[]string{"tls_server_config needs a certificate and its key"}},
		{"TLS with a certificate and no key", image + token + "webConfig: {enabled: true, tlsSecret: t, config: {tls_server_config: {cert_file: /etc/authbroker_exporter/tls/tls.crt}}}\n",
			[]string{"tls_server_config needs a certificate and its key"}},
		{"TLS files without their Secret", image + token + "webConfig: {enabled: true, config: {tls_server_config: {cert_file: /etc/authbroker_exporter/tls/tls.crt, key_file: /etc/authbroker_exporter/tls/tls.key}}}\n",
			[]string{"cert_file is /etc/authbroker_exporter/tls/tls.crt", "webConfig.tlsSecret is empty"}},
		{"tls=true without tls_server_config", image + token + "webConfig: {enabled: true, tls: true, config: {basic_auth_users: {p: x}}}\n",
			[]string{"webConfig.tls=true but webConfig.config has no tls_server_config"}},
		{"TLS Secret with nothing asking for TLS", image + token + "webConfig: {enabled: true, tlsSecret: t, config: {basic_auth_users: {p: x}}}\n",
			[]string{"webConfig.tlsSecret is set but nothing asks for TLS"}},
		{"TLS asked for with the web config off", image + token + "webConfig: {tls: true, tlsSecret: t}\n",
			[]string{"webConfig.enabled is false", "plain HTTP"}},
		{"basic auth with the web config off", image + token + "webConfig: {config: {basic_auth_users: {p: x}}}\n",
			[]string{"webConfig.enabled is false"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			vals := readValues(t, c.values)
			_, err := renderChartErr(vals)
			if err == nil {
				t.Fatalf("rendered:\n%s", c.values)
			}
			for _, want := range c.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("the error does not say %q:\n%v", want, err)
				}
			}
			if strings.Contains(err.Error(), tokenCanary) {
				t.Error("the error shows the token")
			}
		})
	}
}

// TestChartAcceptsSafeWebConfigs: the checks above leave the safe forms
// alone: inline certificate and key, and a web config from an existing
// Secret that names its own certificate.
func TestChartAcceptsSafeWebConfigs(t *testing.T) {
	const base = "image: {repository: registry.example.com/llm/authbroker_exporter}\nbroker: {token: {existingSecret: s}}\n"
	for _, values := range []string{
		base + "webConfig: {enabled: true, config: {tls_server_config: {cert: PEM, key: PEM}}}\n",
		base + "webConfig: {enabled: true, config: {basic_auth_users: {p: x}}}\n",
		base + "webConfig: {enabled: true, existingSecret: web, tls: true}\n",
	} {
		if _, err := renderChartErr(readValues(t, values)); err != nil {
			t.Errorf("%s: %v", values, err)
		}
	}
}

// TestNotesSayReadyIsTheExporters: NOTES.txt tells what /-/ready means, and
// where the broker's state is.
func TestNotesSayReadyIsTheExporters(t *testing.T) {
	r := renderChart(t, readValues(t, requiredValues))
	flat := strings.Join(strings.Fields(r.notes), " ")
	for _, want := range []string{"/-/ready answers 200 once the exporter serves, whatever the broker's state", "authbroker_up", "/api/v1/health"} {
		if !strings.Contains(flat, want) {
			t.Errorf("NOTES.txt lacks %q:\n%s", want, r.notes)
		}
	}
}

// TestREADMEHelmInstall: the install commands of README.md and the chart's
// README work as written: the Secret kubectl creates is the one the chart
// reads, the --set values render, and the image is the one `docker push`
// pushed.
func TestREADMEHelmInstall(t *testing.T) {
	for _, doc := range []string{filepath.Join("..", "README.md"), filepath.Join(chartDir, "README.md")} {
		t.Run(strings.TrimPrefix(doc, "../"), func(t *testing.T) {
			b, err := os.ReadFile(doc)
			if err != nil {
				t.Fatal(err)
			}
			var pushed, secret, secretKey string
			var sets []string
			parts := strings.Split(string(b), "```")
			for i := 1; i < len(parts); i += 2 {
				for _, line := range strings.Split(strings.ReplaceAll(parts[i], "\\\n", " "), "\n") {
					w := strings.Fields(line)
					switch {
					case len(w) == 3 && w[0] == "docker" && w[1] == "push":
						pushed = w[2]
					case len(w) >= 7 && w[0] == "kubectl" && w[3] == "create" && w[4] == "secret" && w[5] == "generic":
						secret = w[6]
						for _, a := range w[7:] {
							if v, ok := strings.CutPrefix(a, "--from-file="); ok {
								secretKey, _, _ = strings.Cut(v, "=")
							}
						}
					case len(w) >= 4 && w[0] == "helm" && w[1] == "install":
						if w[3] != "deploy/helm/authbroker-exporter" {
							t.Errorf("helm install %s: not the chart's path", w[3])
						}
						for j := 4; j < len(w); j++ {
							if w[j] == "--set" && j+1 < len(w) {
								sets = append(sets, w[j+1])
							}
						}
					}
				}
			}
			if pushed == "" || secret == "" || len(sets) == 0 {
				t.Fatalf("%s: docker push %q, kubectl create secret %q, helm install --set %q: want all three", doc, pushed, secret, sets)
			}
			vals := map[string]any{}
			for _, s := range sets {
				if err := strvals.ParseInto(s, vals); err != nil {
					t.Fatalf("--set %s: %v", s, err)
				}
			}
			r := renderChart(t, vals)
			pod := r.deployment(t).Spec.Template.Spec
			if got := pod.Containers[0].Image; got != pushed {
				t.Errorf("the chart runs %s, the README pushes %s", got, pushed)
			}
			path, _ := argValue(pod.Containers[0].Args, "broker.token-file")
			if s, k := secretFileMount(t, pod, path); s != secret || k != secretKey {
				t.Errorf("the token comes from Secret %s key %s; the README creates %s key %s", s, k, secret, secretKey)
			}
		})
	}
}
