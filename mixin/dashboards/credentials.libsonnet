// Credentials: the breaching sets counted, then bounded lists (the
// dashboardTopK soonest to expire, most overdue, longest blocked, most
// rotated) with their identity, and per-provider counts over time. A list
// reads the recording rule its alert reads where there is one.
function(board, g, s)
  local k = s.k;
  local expired = 'id:authbroker_credential_expired:seconds_since_expiry';
  local expiring = 'id:authbroker_credential_expiring_soon:expires_in_seconds';
  local overdue = 'id:authbroker_credential_rotation_overdue:seconds';
  local idOn = s.on(['job', 'instance', 'id']);
  local credBy = s.by(['job', 'instance', 'id', 'provider']);
  local identityBy = s.by(['job', 'instance', 'id', 'provider', 'type', 'identity']);
  local count(rule) = 'count(%s{%s}) or vector(0)' % [rule, s.prov];
  local byProvider(rule) = 'count %s (%s{%s})' % [s.by(['provider']), rule, s.prov];
  // The value of expr for the credentials in the bounded set (a column
  // other than the one that defines the set).
  local of(expr, set) = 'max %s (%s and %s %s)' % [credBy, expr, idOn, set];
  // The identity of the credentials in the bounded set, from the full
  // info family (a bounded set not from a breaching rule).
  local identity(set) = 'max %s (authbroker_credential_info{%s} and %s %s)' % [identityBy, s.prov, idOn, set];
  // ... or from the breaching rule's identity set.
  local breachingIdentity(set) = 'max %s (id:authbroker_credential_info:breaching{%s} and %s %s)' % [identityBy, s.prov, idOn, set];
  local labels = ['provider', 'identity', 'type', 'id', 'instance'];
  local expiresIn = 'authbroker_credential_expiry_timestamp_seconds{%s} - time()' % s.prov;
  local soonest = 'bottomk(%d, %s)' % [k, expiresIn];
  local mostOverdue = 'topk(%d, %s{%s})' % [k, overdue, s.prov];
  local soonestExpiring = 'bottomk(%d, %s{%s})' % [k, expiring, s.prov];
  local blockedFor = 'max %s (authbroker_credential_blocked_until_timestamp_seconds{%s}) - time() > 0' % [credBy, s.prov];
  local longestBlocked = 'topk(%d, %s)' % [k, blockedFor];
  // The last 30 minutes, not the dashboard's range: an instant read of
  // every credential's counter over 6 h is what would make this slow.
  local rotations = 'increase(authbroker_credential_rotations_total{%s}[30m])' % s.prov;
  local expiresCol = { name: 'Expires in', unit: 's', steps: [['red', null], ['orange', 0], ['green', 600]], cell: 'color-text' };

  board('credentials', 'Credentials', 'Expired, expiring, rotation-overdue and blocked credentials: counts, the worst %d of each with their identity, and per-provider counts over time.' % k, [
    {
      row: 'Now',
      panels: [
        g.stat('Expired', 'Credentials past their expiry (the set AuthBrokerCredentialExpired reads).', [g.target(count(expired), instant=true)], w=4, opts={ colorMode: 'background', steps: [['green', null], ['red', 1]] }),
        g.stat('Expiring soon', 'Credentials expiring soon or expired (the set AuthBrokerCredentialExpiringSoon reads).', [g.target(count(expiring), instant=true)], w=4, opts={ colorMode: 'background', steps: [['green', null], ['orange', 1]] }),
        g.stat('Rotation overdue', 'Credentials whose rotation is overdue, or that are past expiry (the set AuthBrokerCredentialRotationOverdue reads).', [g.target(count(overdue), instant=true)], w=4, opts={ colorMode: 'background', steps: [['green', null], ['orange', 1]] }),
        g.stat('Blocked', 'Credentials with an active rate-limit block in any scope.', [g.target('count(%s) or vector(0)' % blockedFor, instant=true)], w=4, opts={ colorMode: 'background', steps: [['green', null], ['orange', 1]] }),
        g.stat('Rotations (30 min)', 'Token rotations observed in the last 30 minutes.', [g.target('sum(%s)' % rotations, instant=true)], w=4, opts={ decimals: 0 }),
        g.stat('Last rotation', 'The most recent token change the exporter observed.', [g.target('max(authbroker_credential_last_rotation_timestamp_seconds{%s}) * 1000' % s.prov, instant=true)], w=4, opts={ unit: 'dateTimeFromNow' }),
      ],
    },
    {
      row: 'The worst %d' % k,
      panels: [
        g.table('Soonest expiry', 'The %d credentials whose access token expires soonest (negative: expired), with the time until the refresher next tries (negative: overdue) and the last rotation observed.' % k, [
          g.target(identity(soonest)),
          g.target('max %s (%s)' % [credBy, soonest]),
          g.target(of('authbroker_credential_rotates_in_seconds{%s}' % s.prov, soonest)),
          g.target(of('authbroker_credential_last_rotation_timestamp_seconds{%s} * 1000' % s.prov, soonest)),
        ], labels, [
          { name: 'info', hide: true },
          expiresCol,
          { name: 'Rotates in', unit: 's', steps: [['orange', null], ['green', 0]], cell: 'color-text' },
          { name: 'Last rotation', unit: 'dateTimeFromNow' },
        ], 'Expires in', w=12),
        g.table('Most overdue', 'The %d credentials longest past their rotation deadline or expiry (the set AuthBrokerCredentialRotationOverdue reads), with their expiry.' % k, [
          g.target(breachingIdentity(mostOverdue)),
          g.target('max %s (%s)' % [credBy, mostOverdue]),
          g.target(of(expiresIn, mostOverdue)),
        ], labels, [
          { name: 'info', hide: true },
          { name: 'Overdue for', unit: 's', steps: [['orange', null]], cell: 'color-text' },
          expiresCol,
        ], 'Overdue for', desc=true, w=12),
        g.table('Expiring soon', 'The %d soonest of the credentials expiring soon or expired (the set AuthBrokerCredentialExpiringSoon reads).' % k, [
          g.target(breachingIdentity(soonestExpiring)),
          g.target('max %s (%s)' % [credBy, soonestExpiring]),
        ], labels, [
          { name: 'info', hide: true },
          expiresCol,
        ], 'Expires in', w=8),
        g.table('Longest blocked', 'The %d credentials with the longest active rate-limit block (the longest over their scopes).' % k, [
          g.target(identity(longestBlocked)),
          g.target('max %s (%s)' % [credBy, longestBlocked]),
        ], labels, [
          { name: 'info', hide: true },
          { name: 'Blocked for', unit: 's', steps: [['orange', null]], cell: 'color-text' },
        ], 'Blocked for', desc=true, w=8),
        g.table('Most rotated', 'The %d credentials with the most token rotations observed in the last 30 minutes (a healthy one rotates about once an hour).' % k, [
          g.target(identity('topk(%d, %s)' % [k, rotations])),
          g.target('max %s (topk(%d, %s))' % [credBy, k, rotations]),
        ], labels, [
          { name: 'info', hide: true },
          { name: 'Rotations (30 min)', decimals: 0 },
        ], 'Rotations (30 min)', desc=true, w=8),
      ],
    },
    {
      row: 'Over time',
      panels: [
        g.timeseries('Expired, expiring soon and overdue by provider', 'Credentials in each breaching set, per provider.', [
          g.target(byProvider(expired), '{{provider}} expired'),
          g.target(byProvider(expiring), '{{provider}} expiring soon'),
          g.target(byProvider(overdue), '{{provider}} rotation overdue'),
        ]),
        g.timeseries('Blocked by provider and scope', 'Credentials with an active rate-limit block, per provider and scope.', [
          g.target('count %s (authbroker_credential_blocked_until_timestamp_seconds{%s} > time())' % [s.by(['provider', 'scope']), s.prov], '{{provider}} {{scope}}'),
        ]),
      ],
    },
  ])
