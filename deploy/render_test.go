package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/releaseutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

const (
	chartDir    = "helm/authbroker-exporter"
	releaseName = "release-name"
	namespace   = "monitoring"
)

func TestMain(m *testing.M) {
	// Helm's loader logs what it finds odd (e.g. a symlink it follows);
	// keep test output readable. The chart holds none: TestChartFilesAreRendered.
	log.SetOutput(io.Discard)
	os.Exit(m.Run())
}

// object is one rendered manifest, decoded strictly into its API type.
type object struct {
	source string // the template it came from
	kind   string
	name   string
	raw    []byte // the manifest as JSON
	typed  any
}

// rendered is what `helm template` would print, split and decoded.
type rendered struct {
	objects []object
	notes   string
}

func (r rendered) byKind(kind string) []object {
	var out []object
	for _, o := range r.objects {
		if o.kind == kind {
			out = append(out, o)
		}
	}
	return out
}

func (r rendered) one(t *testing.T, kind string) object {
	t.Helper()
	objs := r.byKind(kind)
	if len(objs) != 1 {
		t.Fatalf("want exactly one %s, rendered %d", kind, len(objs))
	}
	return objs[0]
}

func (r rendered) deployment(t *testing.T) *appsv1.Deployment {
	return r.one(t, "Deployment").typed.(*appsv1.Deployment)
}

// newTyped maps a manifest's apiVersion and kind to the Go type it must
// decode into. A kind not listed here is an error: every object the chart
// renders is checked against its API type.
func newTyped(apiVersion, kind string) (any, error) {
	switch apiVersion + "/" + kind {
	case "v1/ServiceAccount":
		return &corev1.ServiceAccount{}, nil
	case "v1/Secret":
		return &corev1.Secret{}, nil
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "v1/Service":
		return &corev1.Service{}, nil
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}, nil
	case "monitoring.coreos.com/v1/ServiceMonitor":
		return &monitoringv1.ServiceMonitor{}, nil
	case "monitoring.coreos.com/v1/PrometheusRule":
		return &monitoringv1.PrometheusRule{}, nil
	}
	return nil, fmt.Errorf("no API type known for %s %s", apiVersion, kind)
}

// decodeStrict decodes YAML into v the way the API server's strict field
// validation does: duplicate keys, unknown fields and fields whose case does
// not match are errors.
func decodeStrict(doc []byte, v any) ([]byte, error) {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, err
	}
	strictErrs, err := kjson.UnmarshalStrict(j, v, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return nil, err
	}
	if len(strictErrs) > 0 {
		return nil, errors.Join(strictErrs...)
	}
	return j, nil
}

// decodeManifest decodes one rendered document into its API type.
func decodeManifest(source string, doc []byte) (object, error) {
	var meta struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if err := yaml.Unmarshal(doc, &meta); err != nil {
		return object{}, fmt.Errorf("%s: %w", source, err)
	}
	typed, err := newTyped(meta.APIVersion, meta.Kind)
	if err != nil {
		return object{}, fmt.Errorf("%s: %w", source, err)
	}
	j, err := decodeStrict(doc, typed)
	if err != nil {
		return object{}, fmt.Errorf("%s: %s %q does not decode strictly into its API type: %w", source, meta.Kind, meta.Metadata.Name, err)
	}
	return object{source: source, kind: meta.Kind, name: meta.Metadata.Name, raw: j, typed: typed}, nil
}

// kubeVersion is the Kubernetes version the checks render for: the one of
// the k8s.io/api module the objects are decoded with (v0.X.Y is Kubernetes
// 1.X.Y), read from go.mod. A library build lacks the ldflags that give the
// helm CLI its default, so without this Helm would assume Kubernetes 1.20.
func kubeVersion() (*chartutil.KubeVersion, error) {
	b, err := os.ReadFile("go.mod")
	if err != nil {
		return nil, err
	}
	m := regexp.MustCompile(`(?m)^\s*k8s\.io/api v0\.(\d+\.\d+)`).FindSubmatch(b)
	if m == nil {
		return nil, errors.New("go.mod requires no k8s.io/api v0.X.Y")
	}
	return chartutil.ParseKubeVersion("v1." + string(m[1]))
}

// readValues parses a values document the way `helm template -f` does.
func readValues(t *testing.T, doc string) map[string]any {
	t.Helper()
	v, err := chartutil.ReadValues([]byte(doc))
	if err != nil {
		t.Fatalf("values: %v", err)
	}
	return v.AsMap()
}

// renderChart renders the chart like `helm template release-name
// helm/authbroker-exporter -n monitoring -f values`, and decodes every object.
func renderChart(t *testing.T, values map[string]any) rendered {
	t.Helper()
	r, err := renderChartErr(values)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func renderChartErr(values map[string]any) (rendered, error) {
	chrt, err := loader.Load(chartDir)
	if err != nil {
		return rendered{}, fmt.Errorf("load chart: %w", err)
	}
	kv, err := kubeVersion()
	if err != nil {
		return rendered{}, err
	}
	install := action.NewInstall(&action.Configuration{Log: func(string, ...any) {}})
	install.KubeVersion = kv
	install.DryRun = true
	install.ClientOnly = true
	install.Replace = true
	install.IncludeCRDs = true
	install.ReleaseName = releaseName
	install.Namespace = namespace
	rel, err := install.Run(chrt, values)
	if err != nil {
		return rendered{}, fmt.Errorf("render: %w", err)
	}
	var out rendered
	out.notes = rel.Info.Notes
	if len(rel.Hooks) > 0 {
		return rendered{}, fmt.Errorf("the chart renders %d hooks; none expected", len(rel.Hooks))
	}
	docs := releaseutil.SplitManifests(rel.Manifest)
	keys := make([]string, 0, len(docs))
	for k := range docs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		doc := docs[k]
		source := k
		if i := strings.Index(doc, "# Source: "); i >= 0 {
			source = strings.TrimSpace(strings.SplitN(doc[i+len("# Source: "):], "\n", 2)[0])
		}
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		o, err := decodeManifest(source, []byte(doc))
		if err != nil {
			return rendered{}, err
		}
		out.objects = append(out.objects, o)
	}
	return out, nil
}

func stripComments(doc string) string {
	var b bytes.Buffer
	for _, line := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// repoFiles lists the repository's files matching a glob, relative to deploy/.
func repoFiles(t *testing.T, pattern string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", pattern))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no file matches %s", pattern)
	}
	sort.Strings(files)
	return files
}
