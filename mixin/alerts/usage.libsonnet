// Usage limits and the usage data itself.
local u = import '../lib/utils.libsonnet';
local widespread = import 'widespread.libsonnet';

function(cfg) {
  local s(extra='') = u.sel(cfg, extra),
  local target = u.by(cfg, ['job', 'instance']),
  local scope = ['job', 'instance', 'provider', 'limit'],
  local count = '{{ printf "%.0f" $value }}',
  local high = u.percent(cfg.usageHighFraction),
  local credential = 'The {{ $labels.provider }} credential {{ $labels.id }}{{ with $labels.identity }} ({{ . }}){{ end }} on {{ $labels.instance }}',
  local several = count + ' {{ $labels.provider }} credentials on {{ $labels.instance }}',
  local theCredentials(set) = set + '{provider="{{ $labels.provider }}", limit="{{ $labels.limit }}", instance="{{ $labels.instance }}"}',
  local fit = u.last(cfg.forecastFitWindow),
  local horizon = u.seconds(cfg.forecastHorizonSeconds),
  local resetFor = u.duration(cfg.alertFor.AuthBrokerUsageResetAvailable),

  name: 'authbroker-usage',
  rules:
    widespread(
      cfg,
      'AuthBrokerUsageLimitHigh',
      'id_limit:authbroker_usage_limit_high:used_fraction',
      scope,
      'warning',
      'Auth-broker credential is close to a usage limit.',
      credential + ' has used {{ $value | humanizePercentage }} of its usage limit {{ $labels.limit }} (window {{ $labels.window }}).',
      'Auth-broker credentials of one provider are close to a usage limit.',
      several + ' have used ' + high + ' or more of their usage limit {{ $labels.limit }}. Headroom left: provider_limit:authbroker_usage_limit_headroom_credentials:count{provider="{{ $labels.provider }}", limit="{{ $labels.limit }}"}; the credentials: ' + theCredentials('id_limit:authbroker_usage_limit_high:used_fraction') + '.',
    )
    + widespread(
      cfg,
      'AuthBrokerUsageLimitExhausted',
      'id_limit:authbroker_usage_limit_exhausted:used_fraction',
      scope,
      'critical',
      'Auth-broker credential has exhausted a usage limit.',
      credential + ' has exhausted its usage limit {{ $labels.limit }} (window {{ $labels.window }}, {{ $value | humanizePercentage }} used); requests with it are refused until the window resets.',
      'Auth-broker credentials of one provider have exhausted a usage limit.',
      several + ' have exhausted their usage limit {{ $labels.limit }}; requests with them are refused until their windows reset. The credentials: ' + theCredentials('id_limit:authbroker_usage_limit_exhausted:used_fraction') + '.',
    )
    + widespread(
      cfg,
      'AuthBrokerUsageLimitForecastExhausted',
      'id_limit:authbroker_usage_limit_forecast_exhausted:used_fraction',
      scope,
      'warning',
      'Auth-broker credential will exhaust a usage limit before it resets.',
      'At the rate of the last ' + fit + ', the {{ $labels.provider }} credential {{ $labels.id }}{{ with $labels.identity }} ({{ . }}){{ end }} on {{ $labels.instance }} reaches {{ $value | humanizePercentage }} of its usage limit {{ $labels.limit }} (window {{ $labels.window }}) before the window resets (or within ' + horizon + ').',
      'Auth-broker credentials of one provider will exhaust a usage limit before it resets.',
      'At the rate of the last ' + fit + ', ' + several + ' reach 100% of their usage limit {{ $labels.limit }} before their windows reset (or within ' + horizon + '). The credentials and their forecasts: ' + theCredentials('id_limit:authbroker_usage_limit_forecast_exhausted:used_fraction') + '.',
    )
    // Value: the usable saved resets that clear the limit. The alert's
    // `for` needs both the exhaustion and the saved reset to hold.
    + widespread(
      cfg,
      'AuthBrokerUsageResetAvailable',
      'id_limit:authbroker_usage_limit_reset_credits:exhausted',
      scope,
      'info',
      'Auth-broker credential has exhausted a usage limit that a saved reset clears.',
      credential + ' has exhausted its usage limit {{ $labels.limit }} for ' + resetFor + ' and holds ' + count + ' usable saved reset(s) that clear it. Redeeming one makes the credential usable again before its window resets.',
      'Auth-broker credentials of one provider have exhausted a usage limit that saved resets clear.',
      several + ' have exhausted their usage limit {{ $labels.limit }} for ' + resetFor + ' and hold usable saved resets that clear it. The credentials: ' + theCredentials('id_limit:authbroker_usage_limit_reset_credits:exhausted') + '.',
    )
    + [
      // Usage that silently stops: every upstream /v1/usage call failed over
      // usageFetchWindow (errors rose, successes = calls - errors did not),
      // or the newest report is older than usageReportStaleSeconds. fetchedAt
      // is when the *broker* fetched the report from the provider, and the
      // broker caches a report for 5 minutes (+-25 %), so a healthy report
      // can be ~6 minutes old whatever the exporter's own 15 s TTL
      // (docs/runbook.md).
      {
        alert: 'AuthBrokerUsageUnavailable',
        expr: |||
          label_replace(
            sum by (%(target)s) (increase(authbroker_usage_fetch_errors_total%(s)s[%(w)s])) > 0
            unless on(%(target)s)
              (
                sum by (%(target)s) (increase(authbroker_usage_fetches_total%(s)s[%(w)s]))
                - on(%(target)s)
                sum by (%(target)s) (increase(authbroker_usage_fetch_errors_total%(s)s[%(w)s]))
                > 0.5
              ),
            "cause", "fetch_failing", "", ""
          )
          or
          label_replace(
            time() - max by (%(target)s) (authbroker_usage_report_fetched_timestamp_seconds%(s)s) > %(stale)s,
            "cause", "stale", "", ""
          )
        ||| % { s: s(), target: target, w: cfg.usageFetchWindow, stale: u.num(cfg.usageReportStaleSeconds) },
        labels: { severity: 'warning' },
        annotations: {
          summary: 'Usage data from the exporter is unavailable.',
          description: '{{ if eq $labels.cause "stale" }}The newest usage report the exporter {{ $labels.instance }} holds was fetched by the broker {{ $value | humanizeDuration }} ago (more than ' + u.seconds(cfg.usageReportStaleSeconds) + '){{ else }}Every /v1/usage call the exporter {{ $labels.instance }} made in the last ' + u.last(cfg.usageFetchWindow) + ' failed (' + count + ' errors){{ end }}, for ' + u.duration(cfg.alertFor.AuthBrokerUsageUnavailable) + '. Usage limits and their alerts for this broker are out of date or missing.',
        },
      },
    ],
}
