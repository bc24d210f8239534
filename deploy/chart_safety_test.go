package deploy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
