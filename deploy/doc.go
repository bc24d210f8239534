// Package deploy holds the checks of what operators deploy the exporter with:
// the Helm chart under helm/authbroker-exporter (linted and rendered with
// Helm's own library, every object decoded strictly into the Kubernetes and
// prometheus-operator API types), the systemd units under systemd/, and the
// Grafana dashboards decoded strictly into Grafana's dashboard schema.
//
// It is a module of its own so that Helm, Kubernetes and Grafana types never
// reach the exporter's go.mod. Run it with scripts/check-deploy.sh.
package deploy
