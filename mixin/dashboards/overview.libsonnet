// Is anything wrong, and where: counts of the alerts' breaching sets,
// provider capacity and a per-provider table, then the mirror, the
// refresher, the inventory and the exporter process. Nothing here has one
// series per credential: every query is per instance or per provider.
function(board, g, s)
  local count(rule) = 'count(%s{%s}) or vector(0)' % [rule, s.prov];
  local byProvider(rule) = 'count %s (%s{%s})' % [s.by(['provider']), rule, s.prov];
  local problem(title, rule, description) =
    g.stat(title, description, [g.target(count(rule), instant=true)], opts={ colorMode: 'background', steps: [['green', null], ['red', 1]] });
  local expired = 'id:authbroker_credential_expired:seconds_since_expiry';
  local expiring = 'id:authbroker_credential_expiring_soon:expires_in_seconds';
  local overdue = 'id:authbroker_credential_rotation_overdue:seconds';
  local exhausted = 'id_limit:authbroker_usage_limit_exhausted:used_fraction';
  local high = 'id_limit:authbroker_usage_limit_high:used_fraction';
  local forecast = 'id_limit:authbroker_usage_limit_forecast_exhausted:used_fraction';
  local resetUsable = 'id_limit:authbroker_usage_limit_reset_credits:exhausted';
  local perInstance(title, expr, description, opts={}) =
    g.stat(title, description, [g.target(expr, '{{instance}}', instant=true)], opts=opts);

  board('overview', 'Overview', "Is anything wrong, and where: the alerts' breaching sets counted, provider capacity, the mirror, the refresher, the inventory and the exporter process.", [
    {
      row: 'Is anything wrong',
      panels: [
        perInstance('Mirror', 'authbroker_up{%s}' % s.inst, 'authbroker_up: 1 while the mirror is live (stream connected, or the last long-poll answered within its window).', { colorMode: 'background', mappings: { '0': ['down', 'red'], '1': ['live', 'green'] }, steps: [['red', null], ['green', 1]] }),
        perInstance('Scrape', 'up{%s}' % s.inst, "Prometheus' up for the exporter's targets.", { colorMode: 'background', mappings: { '0': ['down', 'red'], '1': ['up', 'green'] }, steps: [['red', null], ['green', 1]] }),
        problem('Expired', expired, 'Credentials past their expiry: the set AuthBrokerCredentialExpired reads.'),
        problem('Expiring soon', expiring, 'Credentials expiring soon or already expired: the set AuthBrokerCredentialExpiringSoon reads.'),
        problem('Rotation overdue', overdue, 'Credentials whose rotation is overdue (only while the mirror is live) or that are past expiry: the set AuthBrokerCredentialRotationOverdue reads.'),
        problem('Limits exhausted', exhausted, 'Usage limits exhausted, by used fraction or by the provider status: the set AuthBrokerUsageLimitExhausted reads.'),
        problem('Limits high', high, 'Usage limits at or above the high threshold whose window has not reset: the set AuthBrokerUsageLimitHigh reads.'),
        problem('Forecast exhausted', forecast, 'Usage limits forecast to reach 100 % before their reset: the set AuthBrokerUsageLimitForecastExhausted reads.'),
      ],
    },
    {
      row: 'Where: by provider',
      panels: [
        g.table(
          'Providers',
          'One row per provider: active and usable credentials, when one becomes usable again while none is, and how many credentials or limits are in each breaching set. Fewest usable first.',
          [
            g.target('sum %s (authbroker_credentials{%s})' % [s.by(['provider']), s.prov]),
            g.target('sum %s (authbroker_provider_usable_credentials{%s})' % [s.by(['provider']), s.prov]),
            g.target('min %s (authbroker_provider_next_usable_timestamp_seconds{%s}) - time()' % [s.by(['provider']), s.prov]),
            g.target(byProvider(expired)),
            g.target(byProvider(expiring)),
            g.target(byProvider(overdue)),
            g.target(byProvider(exhausted)),
            g.target(byProvider(high)),
            g.target(byProvider(forecast)),
            g.target(byProvider(resetUsable)),
            g.target('sum %s (authbroker_credentials_disabled{%s})' % [s.by(['provider']), s.prov]),
          ],
          ['provider'],
          [
            { name: 'Active' },
            { name: 'Usable', steps: [['red', null], ['green', 1]], cell: 'color-text' },
            { name: 'Next usable in', unit: 's' },
            { name: 'Expired', steps: [['green', null], ['red', 1]], cell: 'color-text' },
            { name: 'Expiring soon', steps: [['green', null], ['orange', 1]], cell: 'color-text' },
            { name: 'Rotation overdue', steps: [['green', null], ['orange', 1]], cell: 'color-text' },
            { name: 'Limits exhausted', steps: [['green', null], ['red', 1]], cell: 'color-text' },
            { name: 'Limits high', steps: [['green', null], ['orange', 1]], cell: 'color-text' },
            { name: 'Forecast exhausted', steps: [['green', null], ['orange', 1]], cell: 'color-text' },
            { name: 'Saved resets usable', steps: [['green', null], ['blue', 1]], cell: 'color-text' },
            { name: 'Disabled', steps: [['green', null], ['orange', 1]], cell: 'color-text' },
          ],
          'Usable',
          h=8,
        ),
        g.timeseries('Usable and active credentials', 'Per provider: credentials usable now (active, token not expired, not blocked for every scope, no exhausted limit) against active credentials.', [
          g.target('sum %s (authbroker_provider_usable_credentials{%s})' % [s.by(['provider']), s.prov], '{{provider}} usable'),
          g.target('sum %s (authbroker_credentials{%s})' % [s.by(['provider']), s.prov], '{{provider}} active'),
        ], w=8),
        g.timeseries('Credentials by health state', "Active credentials by the exporter's health state, summed over providers.", [
          g.target('sum %s (authbroker_provider_credentials{%s})' % [s.by(['state']), s.prov], '{{state}}'),
        ], w=8),
        g.timeseries('Next usable in', 'While a provider has no usable credential: time until one becomes usable again.', [
          g.target('min %s (authbroker_provider_next_usable_timestamp_seconds{%s}) - time()' % [s.by(['provider']), s.prov], '{{provider}}'),
        ], w=8, opts={ unit: 's' }),
        g.timeseries('Credential problems by provider', 'Credentials in the expired, expiring-soon and rotation-overdue sets, per provider.', [
          g.target(byProvider(expired), '{{provider}} expired'),
          g.target(byProvider(expiring), '{{provider}} expiring soon'),
          g.target(byProvider(overdue), '{{provider}} rotation overdue'),
        ]),
        g.timeseries('Usage problems by provider', 'Usage limits in the exhausted, high and forecast-exhausted sets, per provider, at steps of 5 minutes or more (a usage report changes at most every 5 minutes).', [
          g.target(byProvider(exhausted), '{{provider}} exhausted'),
          g.target(byProvider(high), '{{provider}} high'),
          g.target(byProvider(forecast), '{{provider}} forecast exhausted'),
        ]) { interval: '5m' },
      ],
    },
    {
      row: 'Mirror',
      panels: [
        perInstance('Sync mode', 'authbroker_sync_mode{%s} == 1' % s.inst, 'The active sync mode.', { textMode: 'name' }) { targets: [super.targets[0] { legendFormat: '{{mode}}' }] },
        perInstance('Stream', 'authbroker_stream_connected{%s}' % s.inst, 'authbroker_stream_connected: 1 while the SSE stream is open.', { mappings: { '0': ['closed', 'orange'], '1': ['open', 'green'] } }),
        perInstance('Stream supported', 'authbroker_stream_supported{%s}' % s.inst, '0: the broker answered 404 on the stream (or --no-broker.stream) and the exporter stays on long-poll.', { mappings: { '0': ['no', 'orange'], '1': ['yes', 'green'] } }),
        perInstance('Generation', 'authbroker_snapshot_generation{%s}' % s.inst, 'Generation of the mirrored snapshot.'),
        perInstance('Last sync', 'time() - authbroker_snapshot_last_sync_timestamp_seconds{%s}' % s.inst, 'Since the mirror was last confirmed current. In stream mode it grows between broker changes, which is normal while the stream is connected.', { unit: 's' }),
        perInstance('Broker clock skew', 'authbroker_broker_clock_skew_seconds{%s}' % s.inst, "Local receipt time minus the broker's serverNowMs.", { unit: 's' }),
        g.stat('Broker restarts', 'Full snapshots whose generation went backwards, in the selected range.', [g.target('sum(increase(authbroker_snapshot_generation_resets_total{%s}[$__range]))' % s.inst, instant=true)]),
        perInstance('Snapshot age', 'time() - authbroker_snapshot_generated_timestamp_seconds{%s}' % s.inst, 'Since the broker generated the last full snapshot (broker clock).', { unit: 's' }),
        g.stat('Broker version', 'Broker version from /v1/healthz.', [g.target('authbroker_broker_info{%s}' % s.inst, '{{version}}', instant=true)], w=6, opts={ textMode: 'name' }),
        g.stat('Exporter version', "The exporter's build.", [g.target('authbroker_exporter_build_info{%s}' % s.inst, '{{version}}', instant=true)], w=6, opts={ textMode: 'name' }),
        g.stat('Active credentials', 'Active credentials, all providers selected.', [g.target('sum(authbroker_credentials{%s})' % s.prov, instant=true)], w=6),
        g.stat('Disabled credentials', 'Disabled credentials (broker tombstones), all providers selected.', [g.target('sum(authbroker_credentials_disabled{%s})' % s.prov, instant=true)], w=6),
      ],
    },
    {
      row: 'Refresher',
      panels: [
        perInstance('Refresher', 'authbroker_refresher_enabled{%s}' % s.inst, "Whether the broker's background refresher is enabled.", { colorMode: 'background', mappings: { '0': ['off', 'orange'], '1': ['on', 'green'] } }) { w:: 6 },
        perInstance('Sweep interval', 'authbroker_refresher_interval_seconds{%s}' % s.inst, "Interval between the broker's refresh sweeps.", { unit: 's' }) { w:: 6 },
        perInstance('Refresh skew', 'authbroker_refresher_skew_seconds{%s}' % s.inst, 'How long before expiry the broker refreshes a credential.', { unit: 's' }) { w:: 6 },
        perInstance('Next sweep in', 'authbroker_refresher_next_sweep_timestamp_seconds{%s} - time()' % s.inst, "Until the broker's next refresh sweep.", { unit: 's' }) { w:: 6 },
      ],
    },
    {
      row: 'Inventory',
      panels: [
        g.timeseries('Credentials by provider and type', 'Active credentials.', [g.target('sum %s (authbroker_credentials{%s})' % [s.by(['provider', 'type']), s.prov], '{{provider}} {{type}}')], w=8),
        g.timeseries('Disabled credentials by cause', 'Broker tombstones, per provider and cause.', [g.target('sum %s (authbroker_credentials_disabled{%s})' % [s.by(['provider', 'cause']), s.prov], '{{provider}} {{cause}}')], w=8),
        g.bargauge('Rotations in the last 30 minutes', 'Token rotations the exporter observed in the last 30 minutes, per provider (an instant read: a rate over time would read every credential at every step).', [g.target('sum %s (increase(authbroker_credential_rotations_total{%s}[30m]))' % [s.by(['provider']), s.prov], '{{provider}}', instant=true)], w=8, opts={ decimals: 0 }),
      ],
    },
    {
      row: 'Sync',
      panels: [
        g.timeseries('Mirror and stream', 'authbroker_up and authbroker_stream_connected.', [
          g.target('authbroker_up{%s}' % s.inst, '{{instance}} mirror'),
          g.target('authbroker_stream_connected{%s}' % s.inst, '{{instance}} stream'),
        ], w=6),
        g.timeseries('Last sync age', 'Since the mirror was last confirmed current.', [g.target('time() - authbroker_snapshot_last_sync_timestamp_seconds{%s}' % s.inst, '{{instance}}')], w=6, opts={ unit: 's' }),
        g.timeseries('Snapshot generation', 'Generation of the mirrored snapshot.', [g.target('authbroker_snapshot_generation{%s}' % s.inst, '{{instance}}')], w=6),
        g.timeseries('Broker clock skew', "Local receipt time minus the broker's serverNowMs.", [g.target('authbroker_broker_clock_skew_seconds{%s}' % s.inst, '{{instance}}')], w=6, opts={ unit: 's' }),
      ],
    },
    {
      row: 'Exporter process',
      panels: [
        g.timeseries('Scrape up', "Prometheus' up.", [g.target('up{%s}' % s.inst, '{{instance}}')], w=6, h=6),
        g.timeseries('Resident memory', 'process_resident_memory_bytes.', [g.target('process_resident_memory_bytes{%s}' % s.inst, '{{instance}}')], w=6, h=6, opts={ unit: 'bytes' }),
        g.timeseries('CPU', 'Cores used by the exporter.', [g.target('rate(process_cpu_seconds_total{%s}[$__rate_interval])' % s.inst, '{{instance}}')], w=6, h=6),
        g.timeseries('Goroutines', 'go_goroutines.', [g.target('go_goroutines{%s}' % s.inst, '{{instance}}')], w=6, h=6),
      ],
    },
  ])
