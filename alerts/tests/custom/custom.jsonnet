// The mixin as a jsonnet user takes it: vendored with jsonnet-bundler
// (mixin/jsonnetfile.json), imported, _config overridden, rendered with
//
//   jsonnet -J vendor -S -m out custom.jsonnet
//
// alerts/mixin_test.go renders this file with mixin/ on the library path,
// then promtool-checks the result and runs custom_test.yml against it.
local mixin = (import 'mixin.libsonnet') + {
  _config+:: {
    // Every staging and production exporter of one environment.
    authbrokerSelector: 'job=~"authbroker.*", env="prod"',
    showMultiCluster: true,
    clusterLabel: 'region',
    widespreadCount: 3,
    expiringSoonSeconds: 600,
    usageHighFraction: 0.8,
    absentAlertEnabled: true,
    disabledAlerts: ['AuthBrokerStreamDegraded'],
    additionalAlertLabels: { team: 'llm-platform' },
    runbookURLPattern: 'https://runbooks.example.com/authbroker.html#%s',
    alertFor+: { AuthBrokerExporterDown: '10m' },
  },
};

{
  'authbroker-alerts.yml': std.manifestYamlDoc(mixin.prometheusAlerts, quote_keys=false),
  'authbroker-rules.yml': std.manifestYamlDoc(mixin.prometheusRules, quote_keys=false),
}
