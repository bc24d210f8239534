// The four dashboards, rendered for $._config. Every query selects with
// the dashboard variables (cluster when multi-cluster, job, instance and,
// where a panel is per provider or per credential, provider); every panel
// that could show one series per credential is bounded by topk/bottomk
// (dashboardTopK) or reads a recording rule's breaching set.
local g = import 'g.libsonnet';

{
  local c = $._config,
  local multi = c.showMultiCluster,
  local clusterMatcher = if multi then '%s=~"$cluster", ' % c.clusterLabel else '',
  local withCluster(labels) = (if multi then [c.clusterLabel] else []) + labels,

  // Selectors, joins and groupings shared by the dashboards.
  local s = {
    // Exporter series of the selected targets.
    inst: clusterMatcher + 'job=~"$job", instance=~"$instance"',
    // ... of the selected providers.
    prov: self.inst + ', provider=~"$provider"',
    // The provider_limit: recording rules aggregate instance away.
    rule: clusterMatcher + 'job=~"$job", provider=~"$provider"',
    on(labels): 'on (%s)' % std.join(', ', withCluster(labels)),
    by(labels): 'by (%s)' % std.join(', ', withCluster(labels)),
    k: c.dashboardTopK,
  },

  local variables =
    [g.datasourceVariable(c.grafanaDatasourceRegex)]
    + (if multi then [g.queryVariable('cluster', 'Cluster', 'label_values(authbroker_up{%s}, %s)' % [c.authbrokerSelector, c.clusterLabel])] else [])
    + [
      g.queryVariable('job', 'Job', 'label_values(authbroker_up{%s%s}, job)' % [clusterMatcher, c.authbrokerSelector]),
      g.queryVariable('instance', 'Instance', 'label_values(authbroker_up{%sjob=~"$job"}, instance)' % clusterMatcher, '.+'),
      g.queryVariable('provider', 'Provider', 'label_values(authbroker_credentials{%s}, provider)' % s.inst, '.+'),
    ],

  local board(uid, title, description, rows) = g.dashboard(c, uid, title, description, variables, rows),

  grafanaDashboards+:: {
    'authbroker-overview.json': (import 'overview.libsonnet')(board, g, s),
    'authbroker-credentials.json': (import 'credentials.libsonnet')(board, g, s),
    'authbroker-usage.json': (import 'usage.libsonnet')(board, g, s),
    'authbroker-errors.json': (import 'errors.libsonnet')(board, g, s),
  },
}
