package mixin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

const generated = "# Rendered from mixin/ (jsonnet) by `make generate`; do not edit, change mixin/ and\n# run it again. "

const alertsHeader = generated + `Alerting rules for authbroker_exporter: load them
# together with authbroker-rules.yml, whose breaching sets they read.
# alerts/README.md gives the defaults and how to tune them (mixin/config.libsonnet),
# docs/runbook.md what to do.
`

const rulesHeader = generated + `Recording rules for authbroker_exporter: the
# alerts in authbroker-alerts.yml read the breaching sets recorded here, and
# the dashboards query the provider_limit: names. mixin/rules/rules.libsonnet
# explains each rule; alerts/README.md ("Cost at 10,000 credentials") why they
# are shaped this way.
`

// keyOrder is the order of the keys of a rule file, as Prometheus'
// documentation writes them; other keys follow in sorted order.
var keyOrder = []string{"name", "interval", "alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations", "summary", "description", "runbook_url", "severity"}

// RuleFileYAML writes a rule file ({groups: [...]}, as JSON) as YAML:
// keys in keyOrder, multi-line expressions as literal blocks, annotations
// double-quoted, under header (comment lines).
func RuleFileYAML(raw json.RawMessage, header string) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v map[string]any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, ok := v["groups"].([]any); !ok {
		return nil, fmt.Errorf("no groups list")
	}
	node, err := yamlNode(v, "")
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.WriteString(header)
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(node); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// yamlNode converts a decoded JSON value; parent is the key it is under.
func yamlNode(v any, parent string) (*yaml.Node, error) {
	switch v := v.(type) {
	case map[string]any:
		n := &yaml.Node{Kind: yaml.MappingNode}
		for _, k := range sortedKeys(v, keyOrder) {
			c, err := yamlNode(v[k], k)
			if err != nil {
				return nil, err
			}
			if parent == "annotations" && c.Kind == yaml.ScalarNode {
				c.Style = yaml.DoubleQuotedStyle
			}
			n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k}, c)
		}
		return n, nil
	case []any:
		n := &yaml.Node{Kind: yaml.SequenceNode}
		for _, e := range v {
			c, err := yamlNode(e, parent)
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, c)
		}
		return n, nil
	case string:
		n := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v}
		if strings.Contains(strings.TrimSuffix(v, "\n"), "\n") {
			n.Style = yaml.LiteralStyle
		} else if parent == "expr" {
			n.Value = strings.TrimSuffix(v, "\n")
		}
		return n, nil
	case json.Number:
		tag := "!!int"
		if strings.ContainsAny(string(v), ".eE") {
			tag = "!!float"
		}
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: string(v)}, nil
	case bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: fmt.Sprint(v)}, nil
	case nil:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}, nil
	}
	return nil, fmt.Errorf("unexpected %T", v)
}
