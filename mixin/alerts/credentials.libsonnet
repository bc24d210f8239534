// Credentials: expiry, rotation, refresh errors, disabled credentials.
local u = import '../lib/utils.libsonnet';
local widespread = import 'widespread.libsonnet';

function(cfg) {
  local s(extra='') = u.sel(cfg, extra),
  local target = u.by(cfg, ['job', 'instance']),
  local scope = ['job', 'instance', 'provider'],
  local count = '{{ printf "%.0f" $value }}',
  local credential = 'The {{ $labels.provider }} credential {{ $labels.id }}{{ with $labels.identity }} ({{ . }}){{ end }} on {{ $labels.instance }}',
  local several = count + ' {{ $labels.provider }} credentials on {{ $labels.instance }}',
  local listThem(set) = 'List them with ' + set + '{provider="{{ $labels.provider }}", instance="{{ $labels.instance }}"}.',

  name: 'authbroker-credentials',
  rules:
    widespread(
      cfg,
      'AuthBrokerCredentialExpiringSoon',
      'id:authbroker_credential_expiring_soon:expires_in_seconds',
      scope,
      'warning',
      'Auth-broker credential expires soon without rotation.',
      credential + ' {{ if ge $value 0.0 }}expires in {{ $value | humanizeDuration }}{{ else }}has already expired{{ end }} and the broker has not rotated it, although it refreshes 5 minutes before expiry.',
      'Auth-broker credentials of one provider expire soon without rotation.',
      several + ' expire within ' + u.seconds(cfg.expiringSoonSeconds) + ' (or already have) and the broker has not rotated them. More than ' + cfg.widespreadCount + " at once points at a common cause: the provider's token endpoint, the broker's outbound network or its refresher. " + listThem('id:authbroker_credential_expiring_soon:expires_in_seconds'),
    )
    + widespread(
      cfg,
      'AuthBrokerCredentialExpired',
      'id:authbroker_credential_expired:seconds_since_expiry',
      scope,
      'critical',
      'Auth-broker credential has expired.',
      credential + ' expired {{ $value | humanizeDuration }} ago. The broker keeps serving the expired token until a refresh succeeds, so requests made with it fail.',
      'Auth-broker credentials of one provider have expired.',
      several + ' are past their expiry. The broker keeps serving the expired tokens until a refresh succeeds, so requests made with them fail. ' + listThem('id:authbroker_credential_expired:seconds_since_expiry'),
    )
    + widespread(
      cfg,
      'AuthBrokerCredentialRotationOverdue',
      'id:authbroker_credential_rotation_overdue:seconds',
      scope,
      'warning',
      'Auth-broker credential is overdue for rotation.',
      credential + ' has not been rotated: its refresh deadline (or its expiry) passed {{ $value | humanizeDuration }} ago.',
      'Auth-broker credentials of one provider are overdue for rotation.',
      several + ' have not been rotated although their refresh deadline (or their expiry) has passed. ' + listThem('id:authbroker_credential_rotation_overdue:seconds'),
    )
    + [
      // A (provider, reason) series appears with its first error, which
      // increase() cannot see; the first operand counts such new series,
      // but only if the exporter was already scraped refreshErrorsWindow ago
      // (otherwise a first deployment or a long scrape gap would report old
      // errors).
      {
        alert: 'AuthBrokerRefreshErrors',
        expr: |||
          sum by (%(by)s) (
            (
              authbroker_refresh_errors_total%(s)s
              unless authbroker_refresh_errors_total%(s)s offset %(w)s
            )
            and on(%(target)s)
              authbroker_up%(s)s offset %(w)s
            or
            increase(authbroker_refresh_errors_total%(s)s[%(w)s])
          ) > 0
        ||| % { s: s(), target: target, by: u.by(cfg, ['job', 'instance', 'provider', 'reason']), w: cfg.refreshErrorsWindow },
        labels: { severity: 'warning' },
        annotations: {
          summary: 'Auth-broker refreshes are failing.',
          description: count + ' refresh request(s) for {{ $labels.provider }} credentials made through the broker by {{ $labels.instance }} failed with reason {{ $labels.reason }} in the last ' + u.last(cfg.refreshErrorsWindow) + '.',
        },
      },
      // authbroker_credentials_disabled is a gauge of tombstones, so this
      // compares it with credentialDisabledWindow ago. A series that is new
      // within the window counts in full, but only if the exporter was
      // already scraped then (otherwise a first deployment would report
      // every old tombstone).
      {
        alert: 'AuthBrokerCredentialDisabled',
        expr: |||
          (
            (
              authbroker_credentials_disabled%(rf)s
              - authbroker_credentials_disabled%(rf)s offset %(w)s
            )
            or
            (
              authbroker_credentials_disabled%(rf)s
              unless authbroker_credentials_disabled%(rf)s offset %(w)s
            )
            and on(%(target)s)
              authbroker_up%(s)s offset %(w)s
          ) > 0
        ||| % { s: s(), rf: s('cause="refresh_failed"'), target: target, w: cfg.credentialDisabledWindow },
        labels: { severity: 'warning' },
        annotations: {
          summary: 'Auth-broker disabled credentials after a failed refresh.',
          description: 'In the last ' + u.last(cfg.credentialDisabledWindow) + ' the broker mirrored by {{ $labels.instance }} disabled ' + count + ' {{ $labels.provider }} credential(s) because their refresh failed definitively (revoked or expired refresh token). They stay unusable until someone logs in again.',
        },
      },
    ],
}
