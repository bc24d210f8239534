// Usage: the breaching sets counted, the dashboardTopK highest used
// limits with their status, reset and forecast, saved resets, headroom per
// provider and limit (recording rules), and the reports. Per-limit series
// are read only for the bounded set.
function(board, g, s)
  local k = s.k;
  local exhausted = 'id_limit:authbroker_usage_limit_exhausted:used_fraction';
  local high = 'id_limit:authbroker_usage_limit_high:used_fraction';
  local forecast = 'id_limit:authbroker_usage_limit_forecast_exhausted:used_fraction';
  local resetUsable = 'id_limit:authbroker_usage_limit_reset_credits:exhausted';
  local count(rule) = 'count(%s{%s}) or vector(0)' % [rule, s.prov];
  local byProvider(rule) = 'count %s (%s{%s})' % [s.by(['provider']), rule, s.prov];
  local idOn = s.on(['job', 'instance', 'id']);
  local limitOn = s.on(['job', 'instance', 'id', 'limit']);
  local limitBy = s.by(['job', 'instance', 'id', 'provider', 'limit']);
  local credBy = s.by(['job', 'instance', 'id', 'provider']);
  local identityBy = s.by(['job', 'instance', 'id', 'provider', 'identity']);
  local topHigh = 'topk(%d, %s{%s})' % [k, high, s.prov];
  local topExhausted = 'topk(%d, %s{%s})' % [k, exhausted, s.prov];
  local amountBy = s.by(['job', 'instance', 'id', 'provider', 'limit', 'unit']);
  // The value of expr per limit, for the limits in set.
  local ofLimit(expr, set) = 'max %s (%s and %s %s)' % [limitBy, expr, limitOn, set];
  local ofCred(expr, set) = 'max %s (%s and %s %s)' % [credBy, expr, idOn, set];
  local identity(set) = 'max %s (authbroker_credential_info{%s} and %s %s)' % [identityBy, s.prov, idOn, set];
  // A bounded set of limits of a breaching set, without its name, with the
  // credential's identity label from the breaching rules' identity set.
  local withIdentity(set) = 'max %s (%s) * %s group_left (identity) id:authbroker_credential_info:breaching{%s}' % [limitBy, set, idOn, s.prov];
  local limitLabels = ['provider', 'identity', 'limit', 'id', 'instance'];
  local credLabels = ['provider', 'identity', 'id', 'instance'];
  local fraction = { unit: 'percentunit', steps: [['green', null], ['orange', 0.8], ['red', 1]], cell: 'color-text' };
  local status = { name: 'Status', mappings: { '-1': ['unknown', 'text'], '0': ['ok', 'green'], '1': ['warning', 'orange'], '2': ['exhausted', 'red'] }, cell: 'color-background' };
  local limitLegend = '{{provider}} {{id}} {{limit}}';

  board('usage', 'Usage', 'Usage limits: how many are exhausted, high or forecast to run out, the highest %d with their status, reset and forecast, saved resets, headroom per provider and limit, and the reports.' % k, [
    {
      row: 'Now',
      panels: [
        g.stat('Limits exhausted', 'The set AuthBrokerUsageLimitExhausted reads.', [g.target(count(exhausted), instant=true)], w=4, opts={ colorMode: 'background', steps: [['green', null], ['red', 1]] }),
        g.stat('Limits high', 'The set AuthBrokerUsageLimitHigh reads.', [g.target(count(high), instant=true)], w=4, opts={ colorMode: 'background', steps: [['green', null], ['orange', 1]] }),
        g.stat('Forecast exhausted', 'The set AuthBrokerUsageLimitForecastExhausted reads.', [g.target(count(forecast), instant=true)], w=4, opts={ colorMode: 'background', steps: [['green', null], ['orange', 1]] }),
        g.stat('Saved resets usable', 'Exhausted limits that a usable saved reset clears (the set AuthBrokerUsageResetAvailable reads).', [g.target(count(resetUsable), instant=true)], w=4, opts={ colorMode: 'background', steps: [['green', null], ['blue', 1]] }),
        g.stat('Unmatched reports', 'Usage reports no credential claimed.', [g.target('sum(authbroker_usage_reports_unmatched{%s}) or vector(0)' % s.prov, instant=true)], w=4, opts={ steps: [['green', null], ['orange', 1]] }),
        g.stat('OAuth credentials without a report', 'OAuth credentials the usage reports did not match.', [g.target('sum(authbroker_usage_match{%s, state="unmatched"}) or vector(0)' % s.prov, instant=true)], w=4, opts={ steps: [['green', null], ['orange', 1]] }),
      ],
    },
    {
      row: 'The worst %d' % k,
      panels: [
        g.table('Highest used limits', 'The %d highest used limits of the high set (the set AuthBrokerUsageLimitHigh reads), with when the window resets and, when forecast to reach 100 %% before then, the forecast at the reset (the set AuthBrokerUsageLimitForecastExhausted reads).' % k, [
          g.target(withIdentity(topHigh)),
          g.target(ofLimit('authbroker_usage_limit_resets_timestamp_seconds{%s} - time()' % s.prov, topHigh)),
          g.target(ofLimit('%s{%s}' % [forecast, s.prov], topHigh)),
        ], limitLabels, [
          fraction { name: 'Used' },
          { name: 'Resets in', unit: 's' },
          fraction { name: 'Forecast at reset' },
        ], 'Used', desc=true, w=12),
        g.table('Exhausted limits', 'The %d highest used limits of the exhausted set (the set AuthBrokerUsageLimitExhausted reads), with the worst status the provider reports over their windows, when the window resets and how many usable saved resets clear the limit (the set AuthBrokerUsageResetAvailable reads).' % k, [
          g.target(withIdentity(topExhausted)),
          g.target(ofLimit('authbroker_usage_limit_status{%s}' % s.prov, topExhausted)),
          g.target(ofLimit('authbroker_usage_limit_resets_timestamp_seconds{%s} - time()' % s.prov, topExhausted)),
          g.target(ofLimit('%s{%s}' % [resetUsable, s.prov], topExhausted)),
        ], limitLabels, [
          fraction { name: 'Used' },
          status,
          { name: 'Resets in', unit: 's' },
          { name: 'Saved resets', decimals: 0 },
        ], 'Used', desc=true, w=12),
        g.bargauge('Forecast to run out', 'The %d limits forecast highest at their reset, of those forecast to reach 100 %% before it (the set AuthBrokerUsageLimitForecastExhausted reads).' % k, [
          g.target('topk(%d, %s{%s})' % [k, forecast, s.prov], limitLegend, instant=true),
        ], w=12, opts={ unit: 'percentunit', min: 0, steps: [['orange', null], ['red', 1.2]] }),
        g.table('Raw amounts', "The raw amounts of the %d highest used limits of the high set, in the report's unit, when the report has them." % k, [
          g.target('max %s (authbroker_usage_limit_used{%s} and %s %s)' % [amountBy, s.prov, limitOn, topHigh]),
          g.target('max %s (authbroker_usage_limit_max{%s} and %s %s)' % [amountBy, s.prov, limitOn, topHigh]),
          g.target('max %s (authbroker_usage_limit_remaining{%s} and %s %s)' % [amountBy, s.prov, limitOn, topHigh]),
        ], ['provider', 'limit', 'unit', 'id', 'instance'], [
          { name: 'Used amount' },
          { name: 'Maximum' },
          { name: 'Remaining' },
        ], 'Used amount', desc=true, w=12, h=8),
      ],
    },
    {
      row: 'Over time',
      panels: [
        g.timeseries('Exhausted, high and forecast by provider', 'Usage limits in each breaching set, per provider, at steps of 5 minutes or more (a usage report changes at most every 5 minutes).', [
          g.target(byProvider(exhausted), '{{provider}} exhausted'),
          g.target(byProvider(high), '{{provider}} high'),
          g.target(byProvider(forecast), '{{provider}} forecast exhausted'),
        ], w=24) { interval: '5m' },
      ],
    },
    {
      row: 'Saved resets',
      panels: [
        local soonestCredit = 'bottomk(%d, authbroker_usage_reset_credit_next_expiry_timestamp_seconds{%s} - time())' % [k, s.prov];
        g.table('Saved resets expiring soonest', 'The %d accounts whose usable saved reset expires soonest: available and redeemable counts, the time left of a running cooldown and until the earliest expiry.' % k, [
          g.target(identity(soonestCredit)),
          g.target(ofCred('authbroker_usage_reset_credits{%s, state="available"}' % s.prov, soonestCredit)),
          g.target(ofCred('authbroker_usage_reset_credits{%s, state="redeemable"}' % s.prov, soonestCredit)),
          g.target(ofCred('authbroker_usage_reset_cooldown_until_timestamp_seconds{%s} - time() > 0' % s.prov, soonestCredit)),
          g.target('max %s (%s)' % [credBy, soonestCredit]),
        ], credLabels, [
          { name: 'info', hide: true },
          { name: 'Available', decimals: 0 },
          { name: 'Redeemable', decimals: 0 },
          { name: 'Cooldown left', unit: 's' },
          { name: 'Expires in', unit: 's' },
        ], 'Expires in', w=16),
        g.bargauge('Saved resets by provider', 'Saved resets now, summed per provider and state, and the limits a usable saved reset clears.', [
          g.target('sum %s (authbroker_usage_reset_credits{%s})' % [s.by(['provider', 'state']), s.prov], '{{provider}} {{state}}', instant=true),
          g.target('sum %s (authbroker_usage_limit_reset_credits{%s})' % [s.by(['provider']), s.prov], '{{provider}} clearing a limit', instant=true),
        ], w=8, h=9, opts={ decimals: 0 }),
      ],
    },
    {
      row: 'Headroom',
      panels: [
        g.bargauge('Highest used per provider and limit', 'The highest used fraction of each limit over all credentials, the %d highest.' % k, [
          g.target('topk(%d, max %s (authbroker_usage_limit_used_fraction{%s}))' % [k, s.by(['provider', 'limit']), s.prov], '{{provider}} {{limit}}', instant=true),
        ], w=8, opts={ unit: 'percentunit', min: 0, max: 1, steps: [['green', null], ['orange', 0.8], ['red', 1]] }),
        g.bargauge('Credentials with headroom', 'Per provider and limit: the share of the credentials reporting the limit that are below the high threshold (recording rules).', [
          g.target('(provider_limit:authbroker_usage_limit_headroom_credentials:count{%s} or 0 * provider_limit:authbroker_usage_limit_credentials:count{%s}) / provider_limit:authbroker_usage_limit_credentials:count{%s}' % [s.rule, s.rule, s.rule], '{{provider}} {{limit}}', instant=true),
        ], w=8, opts={ unit: 'percentunit', min: 0, max: 1, steps: [['red', null], ['orange', 0.25], ['green', 0.5]] }),
        g.timeseries('Credentials with headroom over time', 'Per provider and limit: credentials below the high threshold, and credentials reporting the limit.', [
          g.target('provider_limit:authbroker_usage_limit_headroom_credentials:count{%s}' % s.rule, '{{provider}} {{limit}} with headroom'),
          g.target('provider_limit:authbroker_usage_limit_credentials:count{%s}' % s.rule, '{{provider}} {{limit}} reporting'),
        ], w=8) { interval: '1m' },
      ],
    },
    {
      row: 'Reports',
      panels: [
        g.timeseries('Unmatched reports', 'Usage reports no credential claimed, per provider.', [
          g.target('sum %s (authbroker_usage_reports_unmatched{%s})' % [s.by(['provider']), s.prov], '{{provider}}'),
        ], w=8),
        g.bargauge('OAuth credentials without a report', 'Now, per provider.', [
          g.target('sum %s (authbroker_usage_match{%s, state="unmatched"})' % [s.by(['provider']), s.prov], '{{provider}}', instant=true),
        ], w=8, opts={ decimals: 0 }),
        g.bargauge('Oldest reports', 'The %d credentials whose matched usage report is oldest.' % k, [
          g.target('topk(%d, time() - authbroker_usage_report_fetched_timestamp_seconds{%s})' % [k, s.prov], '{{provider}} {{id}}', instant=true),
        ], w=8, opts={ unit: 's' }),
      ],
    },
  ])
