// The exporter and its mirror of the broker.
local u = import '../lib/utils.libsonnet';

function(cfg) {
  local s(extra='') = u.sel(cfg, extra),
  local target = u.by(cfg, ['job', 'instance']),
  local forText(name) = u.duration(cfg.alertFor[name]),
  local count = '{{ printf "%.0f" $value }}',

  name: 'authbroker-exporter',
  rules: [
    {
      alert: 'AuthBrokerExporterDown',
      expr: 'up%s == 0' % s(),
      labels: { severity: 'critical' },
      annotations: {
        summary: 'authbroker_exporter is down.',
        description: 'Prometheus has failed to scrape {{ $labels.instance }} (job {{ $labels.job }}) for ' + forText('AuthBrokerExporterDown') + '. No credential, rotation or usage alert can fire for that broker while its exporter is down.',
      },
    },
    // Off by default (absentAlertEnabled): absent() fires on every
    // Prometheus that loads the rules but does not scrape the exporter.
    {
      alert: 'AuthBrokerExporterAbsent',
      expr: 'absent(up%s)' % s(),
      labels: { severity: 'critical' },
      annotations: {
        summary: 'No authbroker_exporter target is being scraped.',
        description: 'Prometheus has had no target matching up{' + cfg.authbrokerSelector + '} for ' + forText('AuthBrokerExporterAbsent') + ": the scrape configuration lost the exporter, or it uses another job name (then set the mixin's authbrokerSelector, or the chart's serviceMonitor.jobName).",
      },
    },
    {
      alert: 'AuthBrokerUnreachable',
      expr: 'authbroker_up%s == 0' % s(),
      labels: { severity: 'critical' },
      annotations: {
        summary: 'Auth-broker is unreachable from its exporter.',
        description: 'The exporter {{ $labels.instance }} has had no live mirror of the broker for ' + forText('AuthBrokerUnreachable') + ': the snapshot stream is not connected and no long-poll was answered within its window, or the broker\'s /v1/healthz probe fails. Clients of this broker are likely failing too.',
      },
    },
    // Stale means "not confirmed current", which only the long-poll path
    // can measure with last_sync: it is confirmed at least every ~31 s. A
    // connected stream is exempt because a healthy idle stream carries only
    // keepalives (no frames, so no last_sync update) and the exporter's idle
    // watchdog already drops a stream that has been silent for 60 s.
    {
      alert: 'AuthBrokerMirrorStale',
      expr: |||
        (
          time() - authbroker_snapshot_last_sync_timestamp_seconds%(s)s > %(stale)s
          and authbroker_snapshot_last_sync_timestamp_seconds%(s)s > 0
        )
        unless on(%(target)s)
          authbroker_stream_connected%(s)s == 1
      ||| % { s: s(), stale: u.num(cfg.mirrorStaleSeconds), target: target },
      labels: { severity: 'warning' },
      annotations: {
        summary: 'Auth-broker mirror is stale.',
        description: 'The exporter {{ $labels.instance }} last confirmed its mirror of the broker {{ $value | humanizeDuration }} ago and has no connected stream; metrics for this broker describe an old state.',
      },
    },
    // Fires also when the exporter runs with --no-broker.stream on purpose;
    // alerts/README.md says how to exclude such targets.
    {
      alert: 'AuthBrokerStreamDegraded',
      expr: |||
        authbroker_sync_mode%(poll)s == 1
        and on(%(target)s)
          authbroker_stream_supported%(s)s == 1
      ||| % { s: s(), poll: s('mode="poll"'), target: target },
      labels: { severity: 'warning' },
      annotations: {
        summary: 'Auth-broker mirror uses long-poll although the broker streams.',
        description: 'The exporter {{ $labels.instance }} has followed the broker by long-poll for ' + forText('AuthBrokerStreamDegraded') + ' although the broker has not refused the snapshot stream. Updates arrive in bursts of up to 30 s instead of at once.',
      },
    },
    {
      alert: 'AuthBrokerClockSkew',
      expr: 'abs(authbroker_broker_clock_skew_seconds%s) > %s' % [s(), u.num(cfg.clockSkewSeconds)],
      labels: { severity: 'warning' },
      annotations: {
        summary: 'Auth-broker clock is off.',
        description: "The broker's clock and the exporter host's clock {{ $labels.instance }} differ by {{ $value | humanizeDuration }}. Expiry timestamps come from the broker's clock and are compared with Prometheus' clock, so expiry alerts fire early or late by that much.",
      },
    },
    {
      alert: 'AuthBrokerRefresherDisabled',
      expr: |||
        authbroker_refresher_enabled%(s)s == 0
        and on(%(target)s)
          sum by (%(target)s) (authbroker_credentials%(oauth)s) > 0
      ||| % { s: s(), oauth: s('type="oauth"'), target: target },
      labels: { severity: 'warning' },
      annotations: {
        summary: 'Auth-broker refresher is disabled.',
        description: 'The broker mirrored by {{ $labels.instance }} reports its background refresher as disabled while it holds OAuth credentials: nobody refreshes their access tokens, so they will expire.',
      },
    },
    // promhttp_metric_handler_requests_total is what every Go exporter
    // exposes; the authbroker_up join keeps the rule to authbroker_exporter
    // targets. The exporter answers 503 beyond --web.max-requests concurrent scrapes of
    // /metrics, and the code series exist from the start at 0, so increase()
    // sees the first one.
    {
      alert: 'AuthBrokerExporterScrapesRefused',
      expr: |||
        sum by (%(target)s) (increase(promhttp_metric_handler_requests_total%(code)s[%(w)s])) > 0
        and on(%(target)s)
          authbroker_up%(s)s
      ||| % { s: s(), code: s('code="503"'), target: target, w: cfg.scrapesRefusedWindow },
      labels: { severity: 'warning' },
      annotations: {
        summary: 'authbroker_exporter keeps refusing scrapes.',
        description: 'The exporter {{ $labels.instance }} answered ' + count + ' scrape(s) of its metrics endpoint with 503 in the last ' + u.last(cfg.scrapesRefusedWindow) + ', and has refused some in every ' + u.duration(cfg.scrapesRefusedWindow) + ' for ' + forText('AuthBrokerExporterScrapesRefused') + ': more scrapes ran at once than its --web.max-requests allows (default 40). Some scrapers get no data.',
      },
    },
  ],
}
