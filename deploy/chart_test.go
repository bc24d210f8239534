package deploy

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// tokenCanary is the broker token of the all-features values: it may appear
// base64-encoded in the chart's token Secret and nowhere else.
const tokenCanary = "CANARY-broker-token-7f3a9c"

// requiredValues are the values the chart has no default for: the image
// (the project publishes none) and where the broker's token comes from.
const requiredValues = `
image:
  repository: registry.example.com/llm/authbroker_exporter
broker:
  token:
    existingSecret: authbroker-exporter-token
`

// allOnValues turns every optional feature on.
const allOnValues = `
image:
  repository: registry.example.com/llm/authbroker_exporter
  digest: sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
broker:
  url: http://auth-broker.llm.svc:8765
  stream: false
  token:
    value: ` + tokenCanary + `
log:
  level: debug
  format: json
extraArgs: ["--collector.identity=raw", "--monitor.refresh-overdue"]
extraEnv:
  - name: AUTHBROKER_IDENTITY_HASH_KEY_FILE
    value: /etc/authbroker_exporter/hash/key
extraVolumes:
  - name: hash-key
    secret:
      secretName: identity-hash-key
extraVolumeMounts:
  - name: hash-key
    mountPath: /etc/authbroker_exporter/hash
    readOnly: true
webConfig:
  enabled: true
  tlsSecret: authbroker-exporter-tls
  config:
    tls_server_config:
      cert_file: /etc/authbroker_exporter/tls/tls.crt
      key_file: /etc/authbroker_exporter/tls/tls.key
    basic_auth_users:
      prometheus: $2y$10$mDwo.lAisC94iLAyP81MCesa29IzH37oigHC/42V2pdJlUprsJPze
service:
  annotations: {example.com/owner: llm-platform}
  labels: {team: llm}
serviceAccount:
  annotations: {example.com/owner: llm-platform}
podAnnotations: {example.com/owner: llm-platform}
podLabels: {team: llm}
imagePullSecrets: [{name: registry}]
priorityClassName: system-cluster-critical
nodeSelector: {kubernetes.io/os: linux}
tolerations: [{key: dedicated, operator: Equal, value: monitoring, effect: NoSchedule}]
affinity:
  nodeAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 1
        preference:
          matchExpressions: [{key: kubernetes.io/arch, operator: In, values: [amd64]}]
serviceMonitor:
  enabled: true
  labels: {release: kube-prometheus-stack}
  tlsConfig: {insecureSkipVerify: true}
  basicAuth:
    username: {name: scrape-auth, key: username}
    password: {name: scrape-auth, key: password}
  relabelings:
    - action: replace
      sourceLabels: [__meta_kubernetes_pod_node_name]
      targetLabel: node
  metricRelabelings:
    - action: drop
      sourceLabels: [__name__]
      regex: go_gc_.*
prometheusRule:
  enabled: true
  labels: {release: kube-prometheus-stack}
  annotations: {example.com/owner: llm-platform}
dashboards:
  enabled: true
  sidecarLabel: grafana_dashboard_custom
  sidecarLabelValue: "yes"
  labels: {team: llm}
  annotations: {grafana_folder: Auth broker}
`

// tlsOnlyValues: a web config from an existing Secret, HTTPS without basic
// auth, and the token from an existing Secret under another key.
const tlsOnlyValues = `
image:
  repository: registry.example.com/llm/authbroker_exporter
  tag: 0.1.0-rc.1
broker:
  token:
    existingSecret: omp-broker-token
    key: auth-broker.token
webConfig:
  enabled: true
  existingSecret: exporter-web-config
  tls: true
serviceMonitor:
  enabled: true
dashboards:
  enabled: false
`

type valuesCase struct {
	name   string
	values string
	// what the case expects of the exporter's endpoint
	scheme    corev1.URIScheme
	basicAuth bool
}

var valuesCases = []valuesCase{
	{name: "defaults", values: requiredValues, scheme: corev1.URISchemeHTTP},
	{name: "all-features", values: allOnValues, scheme: corev1.URISchemeHTTPS, basicAuth: true},
	{name: "tls-existing-secrets", values: tlsOnlyValues, scheme: corev1.URISchemeHTTPS},
}

func forEachCase(t *testing.T, f func(t *testing.T, c valuesCase, vals map[string]any, r rendered)) {
	for _, c := range valuesCases {
		t.Run(c.name, func(t *testing.T) {
			vals := readValues(t, c.values)
			f(t, c, vals, renderChart(t, vals))
		})
	}
}

// TestChartLint is `helm lint --strict`: warnings fail too.
func TestChartLint(t *testing.T) {
	for _, c := range valuesCases {
		t.Run(c.name, func(t *testing.T) {
			kv, err := kubeVersion()
			if err != nil {
				t.Fatal(err)
			}
			l := lint.AllWithKubeVersion(chartDir, readValues(t, c.values), namespace, kv)
			for _, m := range l.Messages {
				if m.Severity >= support.WarningSev {
					t.Errorf("helm lint: %s", m)
				} else {
					t.Logf("helm lint: %s", m)
				}
			}
		})
	}
}

// TestChartLintFailsOnBrokenTemplate proves the lint check can fail: a chart
// whose template does not parse must be reported as an error.
func TestChartLintFailsOnBrokenTemplate(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"Chart.yaml", "values.yaml"} {
		b, err := os.ReadFile(filepath.Join(chartDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "templates"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "templates", "broken.yaml"), []byte("kind: ConfigMap\n{{ .Values.nope.deeper }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	kv, err := kubeVersion()
	if err != nil {
		t.Fatal(err)
	}
	l := lint.AllWithKubeVersion(dir, nil, namespace, kv)
	if l.HighestSeverity < support.ErrorSev {
		t.Fatalf("lint of a broken template reported severity %d, want an error", l.HighestSeverity)
	}
}

func TestStrictDecodingRejectsUnknownFields(t *testing.T) {
	for _, doc := range []string{
		"apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: 1, targetPrt: http}]}\n",
		"apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {Type: ClusterIP}\n",
		"apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata: {name: x}\nspec: {groups: [{name: g, rules: [{alert: A, expr: up, fro: 5m}]}]}\n",
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\ndata: {c: d}\n",
		"apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n",
	} {
		if _, err := decodeManifest("test", []byte(doc)); err == nil {
			t.Errorf("decoded without error:\n%s", doc)
		}
	}
}

func TestChartObjects(t *testing.T) {
	forEachCase(t, func(t *testing.T, c valuesCase, vals map[string]any, r rendered) {
		kinds := map[string]int{}
		for _, o := range r.objects {
			kinds[o.kind]++
			if errs := validation.IsDNS1123Subdomain(o.name); len(errs) > 0 {
				t.Errorf("%s %q: name: %v", o.kind, o.name, errs)
			}
			var meta struct {
				Metadata struct {
					Namespace string            `json:"namespace"`
					Labels    map[string]string `json:"labels"`
				} `json:"metadata"`
			}
			if err := json.Unmarshal(o.raw, &meta); err != nil {
				t.Fatal(err)
			}
			if meta.Metadata.Namespace != namespace {
				t.Errorf("%s %q: namespace %q, want the release's %q", o.kind, o.name, meta.Metadata.Namespace, namespace)
			}
			for k, v := range meta.Metadata.Labels {
				if errs := validation.IsQualifiedName(k); len(errs) > 0 {
					t.Errorf("%s %q: label key %q: %v", o.kind, o.name, k, errs)
				}
				if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
					t.Errorf("%s %q: label %s=%q: %v", o.kind, o.name, k, v, errs)
				}
			}
		}
		want := map[string]int{"Deployment": 1, "Service": 1, "ServiceAccount": 1}
		switch c.name {
		case "defaults":
			want["ConfigMap"] = len(repoFiles(t, "dashboards/*.json"))
		case "all-features":
			want["ConfigMap"] = len(repoFiles(t, "dashboards/*.json"))
			want["Secret"] = 2 // token, web config
			want["ServiceMonitor"] = 1
			want["PrometheusRule"] = 1
		case "tls-existing-secrets":
			want["ServiceMonitor"] = 1
		}
		if !reflect.DeepEqual(kinds, want) {
			t.Errorf("rendered kinds %v, want %v", kinds, want)
		}
	})
}

// TestDeploymentSecurity: non-root, read-only root filesystem, no
// capabilities, no privilege escalation, RuntimeDefault seccomp, no API token.
func TestDeploymentSecurity(t *testing.T) {
	forEachCase(t, func(t *testing.T, c valuesCase, vals map[string]any, r rendered) {
		pod := r.deployment(t).Spec.Template.Spec
		psc := pod.SecurityContext
		if psc == nil {
			t.Fatal("no pod securityContext")
		}
		if psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
			t.Error("pod: runAsNonRoot is not true")
		}
		if psc.RunAsUser == nil || *psc.RunAsUser == 0 {
			t.Error("pod: runAsUser is unset or root")
		}
		if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("pod: seccompProfile %v, want RuntimeDefault", psc.SeccompProfile)
		}
		if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
			t.Error("pod: automountServiceAccountToken is not false")
		}
		if pod.HostNetwork || pod.HostPID || pod.HostIPC {
			t.Error("pod shares a host namespace")
		}
		if len(pod.Containers) != 1 || len(pod.InitContainers) != 0 {
			t.Fatalf("want one container, got %d (+%d init)", len(pod.Containers), len(pod.InitContainers))
		}
		sc := pod.Containers[0].SecurityContext
		if sc == nil {
			t.Fatal("container: no securityContext")
		}
		if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
			t.Error("container: runAsNonRoot is not true")
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Error("container: readOnlyRootFilesystem is not true")
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Error("container: allowPrivilegeEscalation is not false")
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Error("container: privileged")
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
			t.Errorf("container: capabilities %+v, want drop [ALL] and add none", sc.Capabilities)
		}
		if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
			t.Error("container: runAsUser 0")
		}
		for _, v := range pod.Volumes {
			if v.HostPath != nil {
				t.Errorf("volume %q is a hostPath", v.Name)
			}
		}
	})
}

// flagName matches a flag definition in the exporter's flags.go.
var flagName = regexp.MustCompile(`Flag\(\s*"([a-z0-9.-]+)"`)

// exporterFlags reads the flags the exporter defines (flags.go, plus the
// ones exporter-toolkit's kingpinflag adds on Linux), so that no deployment
// passes a flag the binary would reject. The value tells whether --no-NAME
// is accepted (a bool flag).
func exporterFlags(t *testing.T) map[string]bool {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("..", "flags.go"))
	if err != nil {
		t.Fatal(err)
	}
	flags := map[string]bool{
		"web.listen-address": false, "web.config.file": false, "web.systemd-socket": true,
		"help": true, "version": true,
	}
	locs := flagName.FindAllSubmatchIndex(src, -1)
	for i, loc := range locs {
		end := len(src)
		if i+1 < len(locs) {
			end = locs[i+1][0]
		}
		stmt := string(src[loc[0]:end])
		if j := strings.Index(stmt, "\n\n"); j >= 0 {
			stmt = stmt[:j]
		}
		flags[string(src[loc[2]:loc[3]])] = strings.Contains(stmt, "BoolVar(") || strings.Contains(stmt, ".Bool()")
	}
	if len(flags) < 15 {
		t.Fatalf("found only %d flags in flags.go; the pattern no longer matches", len(flags))
	}
	return flags
}

// checkArgs fails on an argument that is not a flag the exporter defines.
func checkArgs(t *testing.T, flags map[string]bool, args []string) {
	t.Helper()
	for _, a := range args {
		if !strings.HasPrefix(a, "--") {
			t.Errorf("argument %q is not a --flag", a)
			continue
		}
		name, _, hasValue := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if _, ok := flags[name]; ok {
			continue
		}
		if neg, ok := strings.CutPrefix(name, "no-"); ok && flags[neg] && !hasValue {
			continue
		}
		t.Errorf("argument %q: the exporter has no such flag", a)
	}
}

func argValue(args []string, flag string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+flag+"="); ok {
			return v, true
		}
	}
	return "", false
}

// secretFileMount resolves the file at path inside the container to the
// Secret and key it is projected from.
func secretFileMount(t *testing.T, pod corev1.PodSpec, path string) (secret, key string) {
	t.Helper()
	ctr := pod.Containers[0]
	dir, file := filepath.Dir(path), filepath.Base(path)
	for _, m := range ctr.VolumeMounts {
		if m.MountPath != dir {
			continue
		}
		if !m.ReadOnly {
			t.Errorf("mount %s is not readOnly", m.MountPath)
		}
		for _, v := range pod.Volumes {
			if v.Name != m.Name {
				continue
			}
			if v.Secret == nil {
				t.Fatalf("%s is mounted from volume %q, which is not a Secret", path, v.Name)
			}
			if len(v.Secret.Items) == 0 {
				return v.Secret.SecretName, file
			}
			for _, it := range v.Secret.Items {
				if it.Path == file {
					return v.Secret.SecretName, it.Key
				}
			}
			t.Fatalf("volume %q projects no item to %s", v.Name, file)
		}
		t.Fatalf("mount %s names no volume", dir)
	}
	t.Fatalf("nothing is mounted at %s", dir)
	return "", ""
}

func TestDeploymentArgs(t *testing.T) {
	flags := exporterFlags(t)
	forEachCase(t, func(t *testing.T, c valuesCase, vals map[string]any, r rendered) {
		pod := r.deployment(t).Spec.Template.Spec
		ctr := pod.Containers[0]
		if len(ctr.Command) != 0 {
			t.Errorf("command %q overrides the image's entrypoint", ctr.Command)
		}
		checkArgs(t, flags, ctr.Args)

		url, _ := argValue(ctr.Args, "broker.url")
		wantURL := "http://auth-broker:8765"
		if c.name == "all-features" {
			wantURL = "http://auth-broker.llm.svc:8765"
		}
		if url != wantURL {
			t.Errorf("--broker.url=%q, want %q from values", url, wantURL)
		}
		if got := slices.Contains(ctr.Args, "--no-broker.stream"); got != (c.name == "all-features") {
			t.Errorf("--no-broker.stream present=%v with broker.stream=%v", got, c.name != "all-features")
		}

		// The token: a file projected from a Secret.
		path, ok := argValue(ctr.Args, "broker.token-file")
		if !ok {
			t.Fatal("no --broker.token-file")
		}
		secret, key := secretFileMount(t, pod, path)
		wantSecret, wantKey := releaseName+"-authbroker-exporter-token", "token"
		switch c.name {
		case "defaults":
			wantSecret = "authbroker-exporter-token"
		case "tls-existing-secrets":
			wantSecret, wantKey = "omp-broker-token", "auth-broker.token"
		}
		if secret != wantSecret || key != wantKey {
			t.Errorf("token file %s comes from Secret %s key %s, want %s key %s", path, secret, key, wantSecret, wantKey)
		}
		for _, e := range ctr.Env {
			if e.Name == "OMP_AUTH_BROKER_TOKEN" {
				t.Error("the token is passed in the environment; it must be a file")
			}
		}
		if c.name == "all-features" {
			s := findSecret(t, r, secret)
			if string(s.Data[key]) != tokenCanary {
				t.Errorf("token Secret %s holds %q under %s, want the token from values", secret, s.Data[key], key)
			}
		}

		// The web config: a file from a Secret, when enabled.
		webFile, ok := argValue(ctr.Args, "web.config.file")
		if ok != (c.name != "defaults") {
			t.Fatalf("--web.config.file present=%v in case %s", ok, c.name)
		}
		if ok {
			secret, key := secretFileMount(t, pod, webFile)
			if c.name == "tls-existing-secrets" {
				if secret != "exporter-web-config" || key != "web-config.yml" {
					t.Errorf("web config from Secret %s key %s", secret, key)
				}
			} else {
				s := findSecret(t, r, secret)
				var cfg map[string]any
				if err := yaml.UnmarshalStrict(s.Data[key], &cfg); err != nil {
					t.Fatalf("web config in Secret %s: %v", secret, err)
				}
				for _, k := range []string{"tls_server_config", "basic_auth_users"} {
					if _, ok := cfg[k]; !ok {
						t.Errorf("web config lacks %s: %v", k, cfg)
					}
				}
				// The TLS files it names are mounted.
				tls := cfg["tls_server_config"].(map[string]any)
				for _, k := range []string{"cert_file", "key_file"} {
					p := tls[k].(string)
					if s, _ := secretFileMount(t, pod, p); s != "authbroker-exporter-tls" {
						t.Errorf("%s %s comes from Secret %q", k, p, s)
					}
				}
			}
		}
	})
}

func findSecret(t *testing.T, r rendered, name string) *corev1.Secret {
	t.Helper()
	for _, o := range r.byKind("Secret") {
		if o.name == name {
			return o.typed.(*corev1.Secret)
		}
	}
	t.Fatalf("no Secret %q rendered", name)
	return nil
}

func TestProbes(t *testing.T) {
	forEachCase(t, func(t *testing.T, c valuesCase, vals map[string]any, r rendered) {
		ctr := r.deployment(t).Spec.Template.Spec.Containers[0]
		var port *corev1.ContainerPort
		for i := range ctr.Ports {
			if ctr.Ports[i].Name == "http" {
				port = &ctr.Ports[i]
			}
		}
		if port == nil || port.ContainerPort != 8766 {
			t.Fatalf("container ports %+v, want http 8766", ctr.Ports)
		}
		if addr, _ := argValue(ctr.Args, "web.listen-address"); !strings.HasSuffix(addr, ":8766") {
			t.Errorf("--web.listen-address=%q does not listen on the container port", addr)
		}
		for name, p := range map[string]*corev1.Probe{"/-/healthy": ctr.LivenessProbe, "/-/ready": ctr.ReadinessProbe} {
			if p == nil {
				t.Fatalf("no probe for %s", name)
			}
			if c.basicAuth {
				// Kubernetes probes cannot authenticate.
				if p.TCPSocket == nil || p.TCPSocket.Port.String() != "http" || p.HTTPGet != nil {
					t.Errorf("%s probe with basic auth: %+v, want tcpSocket on http", name, p.ProbeHandler)
				}
				continue
			}
			g := p.HTTPGet
			if g == nil || g.Path != name || g.Port.String() != "http" || g.Scheme != c.scheme {
				t.Errorf("probe %+v, want GET %s on http with scheme %s", g, name, c.scheme)
			}
		}
	})
}

func TestServiceAndServiceMonitor(t *testing.T) {
	forEachCase(t, func(t *testing.T, c valuesCase, vals map[string]any, r rendered) {
		d := r.deployment(t)
		podLabels := labels.Set(d.Spec.Template.Labels)
		sel := labels.SelectorFromSet(d.Spec.Selector.MatchLabels)
		if !sel.Matches(podLabels) {
			t.Errorf("Deployment selector %v does not match its pods %v", sel, podLabels)
		}
		svc := r.one(t, "Service").typed.(*corev1.Service)
		if !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
			t.Errorf("Service selector %v does not match the pods %v", svc.Spec.Selector, podLabels)
		}
		if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Name != "http" || svc.Spec.Ports[0].TargetPort.String() != "http" {
			t.Errorf("Service ports %+v, want http -> http", svc.Spec.Ports)
		}
		sms := r.byKind("ServiceMonitor")
		if len(sms) == 0 {
			return
		}
		sm := sms[0].typed.(*monitoringv1.ServiceMonitor)
		smSel := labels.SelectorFromSet(sm.Spec.Selector.MatchLabels)
		if !smSel.Matches(labels.Set(svc.Labels)) {
			t.Errorf("ServiceMonitor selector %v does not match the Service's labels %v", smSel, svc.Labels)
		}
		if len(sm.Spec.Endpoints) != 1 {
			t.Fatalf("ServiceMonitor has %d endpoints", len(sm.Spec.Endpoints))
		}
		ep := sm.Spec.Endpoints[0]
		if ep.Port != "http" || ep.Path != "/metrics" {
			t.Errorf("endpoint port %q path %q", ep.Port, ep.Path)
		}
		if ep.Scheme == nil || !strings.EqualFold(ep.Scheme.String(), string(c.scheme)) {
			t.Errorf("endpoint scheme %v, want %s", ep.Scheme, c.scheme)
		}
		if len(ep.RelabelConfigs) == 0 || ep.RelabelConfigs[0].TargetLabel != "job" || ep.RelabelConfigs[0].Replacement == nil || *ep.RelabelConfigs[0].Replacement != "authbroker" {
			t.Errorf("the first relabeling must set job=authbroker (the alerts select it): %+v", ep.RelabelConfigs)
		}
		if c.basicAuth && (ep.BasicAuth == nil || ep.BasicAuth.Username.Name != "scrape-auth") {
			t.Errorf("endpoint basicAuth %+v, want it from values", ep.BasicAuth)
		}
	})
}

// ruleGroups returns the groups of a rule file or of a rendered
// PrometheusRule, as plain data for semantic comparison.
func ruleGroups(j []byte, path ...string) ([]any, error) {
	var doc any
	if err := json.Unmarshal(j, &doc); err != nil {
		return nil, err
	}
	for _, p := range path {
		m, ok := doc.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("no %s", p)
		}
		doc = m[p]
	}
	groups, ok := doc.([]any)
	if !ok {
		return nil, fmt.Errorf("groups is %T, not a list", doc)
	}
	return groups, nil
}

// ruleFiles is which of alerts/ the chart's PrometheusRule carries (the
// template's .Files.Glob); alerts/ also holds e.g. an Alertmanager example.
const ruleFiles = "alerts/authbroker-*.yml"

// alertsGroups reads every rule file, checks each decodes strictly as a
// PrometheusRule spec, and returns their groups in file order. It fails when
// a file of alerts/ holds rule groups but is not a rule file by name, so a
// new rule file cannot be left out of the chart.
func alertsGroups(t *testing.T) []any {
	t.Helper()
	for _, f := range repoFiles(t, "alerts/*.y*ml") {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		if err := yaml.Unmarshal(b, &doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if ok, _ := filepath.Match(filepath.Join("..", ruleFiles), f); doc["groups"] != nil && !ok {
			t.Errorf("%s holds rule groups but does not match %s: the chart leaves it out", f, ruleFiles)
		}
	}
	var all []any
	for _, f := range repoFiles(t, ruleFiles) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var spec monitoringv1.PrometheusRuleSpec
		j, err := decodeStrict(b, &spec)
		if err != nil {
			t.Fatalf("%s does not decode strictly as a PrometheusRule spec: %v", f, err)
		}
		groups, err := ruleGroups(j, "groups")
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		all = append(all, groups...)
	}
	return all
}

// diffGroups describes the first difference between two lists of rule
// groups, or returns "".
func diffGroups(got, want []any) string {
	if reflect.DeepEqual(got, want) {
		return ""
	}
	show := func(v any) string { b, _ := json.MarshalIndent(v, "", "  "); return string(b) }
	for i := 0; i < max(len(got), len(want)); i++ {
		switch {
		case i >= len(got):
			return fmt.Sprintf("group %d missing from the PrometheusRule:\n%s", i, show(want[i]))
		case i >= len(want):
			return fmt.Sprintf("group %d is not in alerts/:\n%s", i, show(got[i]))
		case !reflect.DeepEqual(got[i], want[i]):
			return fmt.Sprintf("group %d differs:\nPrometheusRule: %s\nalerts/: %s", i, show(got[i]), show(want[i]))
		}
	}
	return "differ"
}

// TestPrometheusRuleIsAlerts: the PrometheusRule holds exactly the groups of
// alerts/authbroker-*.yml (semantically: same keys and values, whatever the quoting).
func TestPrometheusRuleIsAlerts(t *testing.T) {
	r := renderChart(t, readValues(t, allOnValues))
	pr := r.one(t, "PrometheusRule")
	got, err := ruleGroups(pr.raw, "spec", "groups")
	if err != nil {
		t.Fatal(err)
	}
	want := alertsGroups(t)
	if d := diffGroups(got, want); d != "" {
		t.Fatalf("the PrometheusRule differs from %s: %s", ruleFiles, d)
	}
	rules := 0
	for _, g := range pr.typed.(*monitoringv1.PrometheusRule).Spec.Groups {
		rules += len(g.Rules)
	}
	t.Logf("PrometheusRule: %d groups, %d rules", len(got), rules)
}

// TestDiffGroupsDetectsChanges proves the comparison above can fail.
func TestDiffGroupsDetectsChanges(t *testing.T) {
	want := alertsGroups(t)
	mutate := func(f func(g []any) []any) []any {
		b, _ := json.Marshal(want)
		var c []any
		_ = json.Unmarshal(b, &c)
		return f(c)
	}
	for name, got := range map[string][]any{
		"dropped group": mutate(func(g []any) []any { return g[1:] }),
		"changed for": mutate(func(g []any) []any {
			r := g[0].(map[string]any)["rules"].([]any)[0].(map[string]any)
			r["for"] = "1m"
			return g
		}),
		"extra label": mutate(func(g []any) []any {
			r := g[0].(map[string]any)["rules"].([]any)[0].(map[string]any)
			r["labels"].(map[string]any)["team"] = "x"
			return g
		}),
	} {
		if diffGroups(got, want) == "" {
			t.Errorf("%s: no difference reported", name)
		}
	}
}

// TestTokenOnlyInItsSecret: the token from values appears in the token
// Secret and nowhere else: not in other objects, not in NOTES.
func TestTokenOnlyInItsSecret(t *testing.T) {
	r := renderChart(t, readValues(t, allOnValues))
	enc := base64.StdEncoding.EncodeToString([]byte(tokenCanary))
	for _, o := range r.objects {
		if bytes.Contains(o.raw, []byte(tokenCanary)) {
			t.Errorf("%s %s carries the token in clear", o.kind, o.name)
		}
		if bytes.Contains(o.raw, []byte(enc)) && !(o.kind == "Secret" && o.name == releaseName+"-authbroker-exporter-token") {
			t.Errorf("%s %s carries the token", o.kind, o.name)
		}
	}
	if strings.Contains(r.notes, tokenCanary) || strings.Contains(r.notes, enc) {
		t.Error("NOTES.txt shows the token")
	}
}

func TestNotes(t *testing.T) {
	r := renderChart(t, readValues(t, requiredValues))
	for _, want := range []string{
		"create secret generic authbroker-exporter-token",
		"port-forward svc/" + releaseName + "-authbroker-exporter 8766",
		"http://127.0.0.1:8766/",
	} {
		if !strings.Contains(r.notes, want) {
			t.Errorf("NOTES.txt lacks %q:\n%s", want, r.notes)
		}
	}
	r = renderChart(t, readValues(t, allOnValues))
	if strings.Contains(r.notes, "create secret") {
		t.Error("NOTES.txt asks for a token Secret the chart creates")
	}
}

// TestChartSources: the chart's appVersion is the exporter's VERSION.
func TestChartSources(t *testing.T) {
	version, err := os.ReadFile(filepath.Join("..", "VERSION"))
	if err != nil {
		t.Fatal(err)
	}
	var meta struct {
		AppVersion string `json:"appVersion"`
	}
	b, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &meta); err != nil {
		t.Fatal(err)
	}
	if meta.AppVersion != strings.TrimSpace(string(version)) {
		t.Errorf("Chart.yaml appVersion %q, VERSION %q", meta.AppVersion, strings.TrimSpace(string(version)))
	}
}

// TestImageMatchesDockerfile: the pod runs as the image's user and exposes
// the image's port.
func TestImageMatchesDockerfile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	for _, want := range []string{"FROM gcr.io/distroless/static-debian12:nonroot", "USER nonroot:nonroot", "EXPOSE 8766", `ENTRYPOINT ["/bin/authbroker_exporter"]`} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q, which the chart relies on", want)
		}
	}
	pod := renderChart(t, readValues(t, requiredValues)).deployment(t).Spec.Template.Spec
	// distroless' nonroot user and group are 65532.
	if u := pod.SecurityContext.RunAsUser; u == nil || *u != 65532 {
		t.Errorf("runAsUser %v, want distroless nonroot 65532", u)
	}
	if g := pod.SecurityContext.RunAsGroup; g == nil || *g != 65532 {
		t.Errorf("runAsGroup %v, want 65532", g)
	}
}

// TestChartFiles: the chart ships the rendered rule files and dashboards
// (files/, see TestChartFilesAreRendered) and nothing else.
func TestChartFiles(t *testing.T) {
	chrt, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	allowed := []string{".helmignore", "README.md", "files/alerts/authbroker-*.yml", "files/dashboards/*.json"}
	counts := map[string]int{}
	for _, f := range chrt.Files {
		ok := false
		for _, pattern := range allowed {
			if m, _ := filepath.Match(pattern, f.Name); m {
				counts[pattern]++
				ok = true
			}
		}
		if !ok {
			t.Errorf("the chart ships %s", f.Name)
		}
	}
	if got, want := counts["files/alerts/authbroker-*.yml"], len(repoFiles(t, ruleFiles)); got != want {
		t.Errorf("the chart ships %d rule files, alerts/ has %d", got, want)
	}
	if got, want := counts["files/dashboards/*.json"], len(repoFiles(t, "dashboards/*.json")); got != want {
		t.Errorf("the chart ships %d dashboards, dashboards/ has %d", got, want)
	}
}
