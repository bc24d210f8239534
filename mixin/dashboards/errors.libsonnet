// Errors: totals in the selected range, then per-second rates by mode,
// reason, result or provider. Every series here is per instance or per
// provider, never per credential.
function(board, g, s)
  local total(metric, extra='') = 'sum(increase(%s{%s%s}[$__range])) or vector(0)' % [metric, s.inst, extra];
  local rate(metric, labels, sel=s.inst, extra='') = 'sum %s (rate(%s{%s%s}[$__rate_interval]))' % [s.by(labels), metric, sel, extra];
  local legend(labels) = std.join(' ', ['{{%s}}' % l for l in labels]);
  local series(title, description, metric, labels, sel=s.inst, w=12) =
    g.timeseries(title, description, [g.target(rate(metric, labels, sel), legend(labels))], w=w, opts={ unit: 'reqps' });
  local errorStat(title, description, expr) =
    g.stat(title, description, [g.target(expr, instant=true)], w=4, opts={ decimals: 0, steps: [['green', null], ['orange', 1]] });

  board('errors', 'Errors', 'Sync, refresh, disable and usage-fetch failures and stale stream events: totals in the selected range and rates.', [
    {
      row: 'In the selected range',
      panels: [
        errorStat('Sync errors', 'Failed stream connections, long-polls and reconciling GETs.', total('authbroker_sync_errors_total')),
        errorStat('Refresh errors', 'Failed refresh calls through the broker.', total('authbroker_refresh_errors_total', ', provider=~"$provider"')),
        errorStat('Disable errors', 'Failed disable calls through the broker.', total('authbroker_disable_errors_total', ', provider=~"$provider"')),
        errorStat('Usage fetch errors', 'Failed upstream /v1/usage calls.', total('authbroker_usage_fetch_errors_total')),
        errorStat('Stale stream events', 'Stream frames older than the mirror, dropped.', total('authbroker_stream_events_total', ', result="stale"')),
        errorStat('Broker restarts', 'Full snapshots whose generation went backwards.', total('authbroker_snapshot_generation_resets_total')),
      ],
    },
    {
      row: 'Sync',
      panels: [
        series('Sync errors by mode and reason', 'Per second.', 'authbroker_sync_errors_total', ['mode', 'reason']),
        series('Sync requests by mode and result', 'Stream connections, long-polls and reconciling GETs, per second.', 'authbroker_sync_requests_total', ['mode', 'result']),
        series('Stream events by kind and result', 'Stream frames, per second.', 'authbroker_stream_events_total', ['kind', 'result']),
        g.timeseries('Stale stream events ratio', 'The share of stream frames that were stale.', [
          g.target('%s / %s' % [rate('authbroker_stream_events_total', [], extra=', result="stale"'), rate('authbroker_stream_events_total', [])], 'stale'),
        ], opts={ unit: 'percentunit' }),
      ],
    },
    {
      row: 'Refresh and disable',
      panels: [
        series('Refresh errors by reason', 'Per provider and reason, per second.', 'authbroker_refresh_errors_total', ['provider', 'reason'], s.prov),
        series('Refresh requests by result', 'Per provider and result, per second.', 'authbroker_refresh_requests_total', ['provider', 'result'], s.prov),
        series('Disable errors by reason', 'Per provider and reason, per second.', 'authbroker_disable_errors_total', ['provider', 'reason'], s.prov),
        series('Disable requests by result', 'Per provider and result, per second.', 'authbroker_disable_requests_total', ['provider', 'result'], s.prov),
      ],
    },
    {
      row: 'Usage fetches',
      panels: [
        series('Usage fetch errors by reason', 'Per second.', 'authbroker_usage_fetch_errors_total', ['reason']),
        g.timeseries('Usage fetches', 'Upstream /v1/usage calls and failed ones, per second.', [
          g.target(rate('authbroker_usage_fetches_total', []), 'fetches'),
          g.target(rate('authbroker_usage_fetch_errors_total', []), 'errors'),
        ], opts={ unit: 'reqps' }),
      ],
    },
  ])
