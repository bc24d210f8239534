// The mixin's settings. Override any of them with
//
//   (import 'mixin.libsonnet') + { _config+:: { authbrokerSelector: 'job="llm-auth"' } }
//
// alerts/README.md ("Tuning") describes each one; every threshold of the
// rules is named here once and nowhere else.
{
  _config+:: {
    // The label matchers that select the exporter's series (and the
    // recorded ones, which keep its target labels) in every expression.
    authbrokerSelector: 'job="authbroker"',

    // With showMultiCluster on, every aggregation and join also keeps
    // clusterLabel, so one ruler (Thanos, Mimir) can evaluate the rules over
    // several clusters whose instances share names.
    clusterLabel: 'cluster',
    showMultiCluster: false,

    // Where each alert's runbook_url points: %s is the lower-cased alert
    // name, which is the anchor of its section of docs/runbook.md. The
    // default links to the runbook of this version (VERSION, checked by
    // mixin/render_test.go).
    version: '0.1.0',
    runbookURLPattern: 'https://github.com/authbroker/authbroker_exporter/blob/v%s/docs/runbook.md#%%s' % self.version,

    // Alert names left out of prometheusAlerts, e.g. ['AuthBrokerStreamDegraded'].
    disabledAlerts: [],
    // Labels added to every alert (e.g. {team: 'llm-platform'}); an alert's
    // own labels (severity) win on a clash.
    additionalAlertLabels: {},
    // AuthBrokerExporterAbsent fires on every Prometheus that loads the rules
    // without scraping the exporter (HA pairs, shards, a stack that selects
    // every rule), so it is off unless the exporter is scraped by every
    // Prometheus that evaluates these rules.
    absentAlertEnabled: false,

    // Per-credential alerts fire while at most this many credentials of one
    // provider (and limit) breach on one instance; beyond it, one
    // *Widespread alert per provider (and limit) fires with the count.
    widespreadCount: 10,

    // The broker refreshes 5 minutes before expiry on a 60 s sweep, so a
    // healthy credential is rotated with more than 4 minutes left.
    expiringSoonSeconds: 240,
    // A usage limit is "high" from this used fraction on; the dashboards'
    // headroom count uses the same threshold.
    usageHighFraction: 0.9,
    // The forecast extrapolates the last forecastFitWindow of usage to the
    // limit's reset, at most forecastHorizonSeconds ahead.
    forecastFitWindow: '1h',
    forecastHorizonSeconds: 4 * 3600,
    // The mirror is stale once not confirmed current for this long (the
    // long-poll path confirms it every ~31 s).
    mirrorStaleSeconds: 120,
    clockSkewSeconds: 30,
    // A usage report is stale when the newest one is older than this: three
    // of the broker's 5-minute report cache periods.
    usageReportStaleSeconds: 900,
    // Provider capacity (docs/health.md, "Provider capacity"): a provider
    // is low while at most capacityLowCredentials of its active credentials
    // are usable, or fewer than capacityLowFraction of them, whichever is
    // higher. The defaults match `check --provider` and the status page
    // (internal/health's CapacityLevel: one, and a quarter; checked by
    // mixin/capacity_test.go), which a change here does not follow.
    capacityLowCredentials: 1,
    capacityLowFraction: 0.25,
    // While a saved usage reset can be redeemed, the exporter publishes the
    // next-usable time as the scrape's own time; a time at most this far
    // past the evaluation (clock differences) still reads as "now".
    nextUsableNowSeconds: 30,
    // How far back the counting alerts look.
    usageFetchWindow: '5m',
    scrapesRefusedWindow: '5m',
    refreshErrorsWindow: '15m',
    credentialDisabledWindow: '1h',

    // How long each condition must hold before its alert fires; a
    // *Widespread alert takes its per-credential sibling's.
    alertFor: {
      AuthBrokerExporterDown: '5m',
      AuthBrokerExporterAbsent: '10m',
      AuthBrokerUnreachable: '2m',
      AuthBrokerMirrorStale: '1m',
      AuthBrokerStreamDegraded: '15m',
      AuthBrokerClockSkew: '10m',
      AuthBrokerRefresherDisabled: '10m',
      AuthBrokerExporterScrapesRefused: '15m',
      AuthBrokerProviderUnavailable: '2m',
      AuthBrokerProviderCapacityLow: '15m',
      AuthBrokerCredentialExpiringSoon: '1m',
      AuthBrokerCredentialExpired: '1m',
      AuthBrokerCredentialRotationOverdue: '2m',
      AuthBrokerRefreshErrors: '5m',
      AuthBrokerCredentialDisabled: '1m',
      AuthBrokerUsageLimitHigh: '5m',
      AuthBrokerUsageLimitExhausted: '1m',
      AuthBrokerUsageLimitForecastExhausted: '15m',
      AuthBrokerUsageResetAvailable: '5m',
      AuthBrokerUsageUnavailable: '15m',
    },

    // Dashboards.
    dashboardTags: ['authbroker'],
    dashboardUIDPrefix: 'authbroker',
    dashboardNamePrefix: 'Auth broker / ',
    dashboardRefresh: '1m',
    dashboardPeriod: 'now-6h',
    dashboardTopK: 10,
    // Restricts the datasource variable to data sources whose name matches.
    grafanaDatasourceRegex: '',
  },
}
