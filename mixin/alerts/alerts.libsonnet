// The alerting rules (alerts/authbroker-alerts.yml): names, meanings and
// severities in alerts/README.md, what to do in docs/runbook.md. Each
// alert's `for` comes from _config.alertFor, its runbook_url from
// _config.runbookURLPattern; _config.disabledAlerts drops alerts and
// _config.additionalAlertLabels labels every one.
local capacity = import 'capacity.libsonnet';
local credentials = import 'credentials.libsonnet';
local exporter = import 'exporter.libsonnet';
local usage = import 'usage.libsonnet';

{
  prometheusAlerts+:: {
    local cfg = $._config,
    local base(name) =
      if std.endsWith(name, 'Widespread') then std.substr(name, 0, std.length(name) - std.length('Widespread')) else name,
    local enabled(name) =
      !std.member(cfg.disabledAlerts, name) && (name != 'AuthBrokerExporterAbsent' || cfg.absentAlertEnabled),
    local finish(a) = a {
      'for': cfg.alertFor[base(a.alert)],
      labels: cfg.additionalAlertLabels + a.labels,
      annotations+: { runbook_url: cfg.runbookURLPattern % std.asciiLower(a.alert) },
    },

    local groups = [
      g { rules: [finish(a) for a in g.rules if enabled(a.alert)] }
      for g in [exporter(cfg), capacity(cfg), credentials(cfg), usage(cfg)]
    ],
    // A group whose every alert is disabled is left out.
    groups+: [g for g in groups if std.length(g.rules) > 0],
  },
}
