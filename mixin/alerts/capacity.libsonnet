// Provider capacity (docs/health.md, "Provider capacity"): whether agents
// can still use a provider's credentials. The exporter publishes a handful
// of series per provider (authbroker_provider_*), so these rules stay cheap
// at any fleet size. Like the overdue set, they only judge a live mirror
// (authbroker_up == 1): a frozen one is AuthBrokerUnreachable's page.
local u = import '../lib/utils.libsonnet';

function(cfg) {
  local s(extra='') = u.sel(cfg, extra),
  local target = u.by(cfg, ['job', 'instance']),
  local scope = u.by(cfg, ['job', 'instance', 'provider']),
  local count = '{{ printf "%.0f" $value }}',
  // $m: the matchers of the alert's own provider among the exporter's
  // series, for the description's template queries.
  local labels = u.groupLabels(cfg, ['job', 'instance', 'provider']),
  local matchers =
    '{{ $m := printf `{' + std.join(', ', [cfg.authbrokerSelector] + ['%s=%%q' % l for l in labels]) + '}`'
    + std.join('', [' $labels.%s' % l for l in labels]) + ' }}',
  local query(promql, n) = '(printf "' + promql + '"' + std.repeat(' $m', n) + ' | query)',
  local next = 'authbroker_provider_next_usable_timestamp_seconds%s',
  local blocked = 'authbroker_credential_blocked_until_timestamp_seconds%s',
  local active = 'sum by (%s) (authbroker_provider_credentials%s)' % [scope, s()],
  local usable = 'authbroker_provider_usable_credentials' + s(),
  local live = 'and on(%s)\n  authbroker_up%s == 1' % [target, s()],

  name: 'authbroker-capacity',
  rules: [
    // Value: the provider's active credentials, none of them usable.
    {
      alert: 'AuthBrokerProviderUnavailable',
      expr: |||
        %(active)s > 0
        and on(%(scope)s)
          %(usable)s == 0
        %(live)s
      ||| % { active: active, usable: usable, scope: scope, live: live },
      labels: { severity: 'critical' },
      annotations: {
        summary: 'Auth-broker provider has no usable credential.',
        // When one comes back, from the next-usable series: the end of one
        // of the provider's blocks, now (a saved reset, published as the
        // scrape's time), or else a window reset; absent when unknown.
        description:
          '{{ if eq $value 1.0 }}The one active {{ $labels.provider }} credential on {{ $labels.instance }} is not usable{{ else }}None of the ' + count + ' active {{ $labels.provider }} credentials on {{ $labels.instance }} is usable{{ end }} (expired, blocked or out of a usage limit), so agents cannot call {{ $labels.provider }}. '
          + matchers
          + '{{ with ' + query(next, 1) + ' }}{{ $next := . | first | value }}'
          + '{{ if ' + query(blocked + ' == scalar(' + next + ')', 2) + ' }}'
          + 'One comes back at {{ $next | humanizeTimestamp }}, when a rate-limit block ends.'
          + '{{ else if ' + query(next + ' <= time() + ' + u.num(cfg.nextUsableNowSeconds), 1) + ' }}'
          + 'One can come back now: a saved usage reset can be redeemed now.'
          + '{{ else }}'
          + 'One comes back at {{ $next | humanizeTimestamp }}, when a usage window resets.'
          + '{{ end }}{{ else }}'
          + 'No time is known: the credentials are expired or exhausted without a known reset; a new login is needed.'
          + '{{ end }}',
      },
    },
    // Value: the usable credentials. Not at 0, which is
    // AuthBrokerProviderUnavailable's.
    {
      alert: 'AuthBrokerProviderCapacityLow',
      expr: |||
        %(usable)s > 0
        and on(%(scope)s)
          (
            %(usable)s <= %(n)s
            or
            %(usable)s < on(%(scope)s) %(f)s * %(active)s
          )
        %(live)s
      ||| % { active: active, usable: usable, scope: scope, live: live, n: u.num(cfg.capacityLowCredentials), f: u.num(cfg.capacityLowFraction) },
      labels: { severity: 'warning' },
      annotations: {
        summary: 'Auth-broker provider is low on usable credentials.',
        description: 'Only ' + count + ' of the '
          + matchers + '{{ with ' + query('sum(authbroker_provider_credentials%s)', 1) + ' }}{{ . | first | value | printf "%.0f" }}{{ end }}'
          + ' active {{ $labels.provider }} credentials on {{ $labels.instance }} {{ if eq $value 1.0 }}is{{ else }}are{{ end }} usable (at most ' + u.num(cfg.capacityLowCredentials) + ', or under ' + u.percent(cfg.capacityLowFraction) + ' of the active ones): one more expiry, block or exhausted limit and agents lose {{ $labels.provider }}.',
      },
    },
  ],
}
