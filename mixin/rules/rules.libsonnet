// The recording rules (alerts/authbroker-rules.yml). The alerts read the
// breaching sets recorded here and the dashboards query the provider_limit:
// names, so keep the names stable. alerts/README.md ("Cost at 10,000
// credentials") says why the rules are shaped this way; bench/rules
// measures them.
//
// At 10,000 credentials every per-credential family has 10,000 series and
// every usage family 40,000, and reading one of them is what a rule costs.
// So each family is read as few times as possible: once per evaluation (the
// credential families) or once a minute (the usage families) into a
// breaching set that holds only the series breaching a condition (a few,
// not 40,000), with all of their labels; the alerts, their *Widespread
// siblings and the other sets then work on those small sets.
local u = import '../lib/utils.libsonnet';

{
  prometheusRules+:: {
    local cfg = $._config,
    local s(extra='') = u.sel(cfg, extra),
    local by(labels) = u.by(cfg, labels),

    groups+: [
      {
        name: 'authbroker.rules',
        rules: [
          // The broker tries to refresh at expires - 5 min on a 60 s sweep,
          // so a healthy credential is rotated with more than 4 min left
          // (expiringSoonSeconds). Value: seconds left (negative once
          // expired). No lower bound: it keeps firing after expiry,
          // alongside the expired set.
          {
            record: 'id:authbroker_credential_expiring_soon:expires_in_seconds',
            expr: |||
              authbroker_credential_expiry_timestamp_seconds%s - time() < %s
            ||| % [s(), u.num(cfg.expiringSoonSeconds)],
          },
          // Value: seconds since expiry. A subset of the set above.
          {
            record: 'id:authbroker_credential_expired:seconds_since_expiry',
            expr: |||
              -id:authbroker_credential_expiring_soon:expires_in_seconds%s > 0
            ||| % s(),
          },
          // docs/design.md, "rotation overdue": the rotation deadline passed
          // more than one refresher interval ago (only trusted while the
          // mirror is live, since rotates_in keeps counting down on a frozen
          // mirror), or the credential is already past expires (the broker
          // keeps reporting the next sweep as rotatesInMs for an expired row,
          // so rotates_in alone never gets far below zero). Value: how long
          // ago that was.
          {
            record: 'id:authbroker_credential_rotation_overdue:seconds',
            expr: |||
              (
                -authbroker_credential_rotates_in_seconds%(s)s
                  > ignoring(id, provider) group_left()
                authbroker_refresher_interval_seconds%(s)s
              )
              and on(%(target)s)
                authbroker_up%(s)s == 1
              or
              id:authbroker_credential_expired:seconds_since_expiry%(s)s
            ||| % { s: s(), target: by(['job', 'instance']) },
          },
          // The identity of the credentials in any breaching set, for the
          // alerts to join: one read of authbroker_credential_info instead
          // of one per alert, and only breaching credentials are joined. The
          // usage sets come from the 1-minute group, at most a minute old.
          {
            record: 'id:authbroker_credential_info:breaching',
            expr: |||
              authbroker_credential_info%(s)s
              and on(%(id)s)
                (
                  id:authbroker_credential_expiring_soon:expires_in_seconds%(s)s
                  or id:authbroker_credential_rotation_overdue:seconds%(s)s
                  or id_limit:authbroker_usage_limit_high:used_fraction%(s)s
                  or id_limit:authbroker_usage_limit_exhausted:used_fraction%(s)s
                  or id_limit:authbroker_usage_limit_forecast_exhausted:used_fraction%(s)s
                )
            ||| % { s: s(), id: by(['job', 'instance', 'id', 'provider']) },
          },
        ],
      },

      // The usage sets, the forecast's breaching set and the dashboard
      // counts. None needs 15-second resolution: a usage report changes at
      // most every 5 minutes (the broker caches each one that long), and
      // every rule here reads a usage family of 40,000 series at 10,000
      // credentials, so once a minute costs a quarter of every evaluation.
      // The alerts, which run every evaluation, read these small sets (a
      // sample a minute is well within the 5-minute lookback).
      {
        name: 'authbroker-usage.1m',
        interval: '1m',
        rules: [
          // Limits whose window already reset according to their report:
          // their used fraction and status are from before the reset.
          {
            record: 'id_limit:authbroker_usage_limit_resets_timestamp_seconds:past',
            expr: |||
              authbroker_usage_limit_resets_timestamp_seconds%s < time()
            ||| % s(),
          },
          // Limits the provider itself reports exhausted (status 2).
          {
            record: 'id_limit:authbroker_usage_limit_status:exhausted',
            expr: |||
              authbroker_usage_limit_status%s == 2
            ||| % s(),
          },
          // Limits at usageHighFraction or more. Value: the used fraction.
          {
            record: 'id_limit:authbroker_usage_limit_high:used_fraction',
            expr: |||
              authbroker_usage_limit_used_fraction%(s)s >= %(high)s
              unless
                id_limit:authbroker_usage_limit_resets_timestamp_seconds:past%(s)s
            ||| % { s: s(), high: u.num(cfg.usageHighFraction) },
          },
          // Exhausted by the used fraction (a subset of the high set), or by
          // the provider's own status. Value: the used fraction; a limit
          // reported exhausted without any amount counts as 100 %.
          {
            record: 'id_limit:authbroker_usage_limit_exhausted:used_fraction',
            expr: |||
              id_limit:authbroker_usage_limit_high:used_fraction%(s)s >= 1
              or
              (
                (
                  authbroker_usage_limit_used_fraction%(s)s
                  and
                    id_limit:authbroker_usage_limit_status:exhausted%(s)s
                  or
                  clamp_max(id_limit:authbroker_usage_limit_status:exhausted%(s)s, 1)
                )
                unless
                  id_limit:authbroker_usage_limit_resets_timestamp_seconds:past%(s)s
              )
            ||| % { s: s() },
          },
          // Exhausted limits that a usable saved reset clears (the reset
          // counts carry no window label). Value: how many such saved resets.
          {
            record: 'id_limit:authbroker_usage_limit_reset_credits:exhausted',
            expr: |||
              authbroker_usage_limit_reset_credits%(s)s > 0
              and on(%(on)s)
                id_limit:authbroker_usage_limit_exhausted:used_fraction%(s)s
            ||| % { s: s(), on: by(['job', 'instance', 'id', 'provider', 'limit']) },
          },
          // Credentials that report the limit at all.
          {
            record: 'provider_limit:authbroker_usage_limit_credentials:count',
            expr: |||
              count by (%s) (authbroker_usage_limit_used_fraction%s)
            ||| % [by(['job', 'provider', 'limit']), s()],
          },
          // Credentials below usageHighFraction of the limit (the threshold
          // of the high set). One pass over the family: `< bool` counts 0
          // for a limit at or above it, so the sum is 0 rather than absent
          // when every credential is at or above it.
          {
            record: 'provider_limit:authbroker_usage_limit_headroom_credentials:count',
            expr: |||
              sum by (%s) (authbroker_usage_limit_used_fraction%s < bool %s)
            ||| % [by(['job', 'provider', 'limit']), s(), u.num(cfg.usageHighFraction)],
          },
          // Limits forecast to reach 100 % before their reset (recorded
          // every 5 minutes in the group below), unless already exhausted.
          // Read over 6 minutes: a series recorded every 5 minutes is, for
          // the seconds its next evaluation takes, older than the 5-minute
          // lookback, and an alert reading it then would reset its `for`.
          // One that is no longer forecast gets a staleness marker and drops
          // out within a minute.
          {
            record: 'id_limit:authbroker_usage_limit_forecast_exhausted:used_fraction',
            expr: |||
              last_over_time(id_limit:authbroker_usage_limit_forecast_exhausted5m:used_fraction%(s)s[6m])
              unless
                id_limit:authbroker_usage_limit_exhausted:used_fraction%(s)s
            ||| % { s: s() },
          },
        ],
      },

      // The forecast and its input, every 5 minutes. The input is the used
      // fraction sampled every 5 minutes: a report changes at most that
      // often, so the samples in between add nothing to the fit (a sample,
      // not a 5-minute average, so the fit does not lag by half a window).
      // Only range selectors read it; an instant read could miss a sample
      // that is exactly one lookback old.
      {
        name: 'authbroker-usage.5m',
        interval: '5m',
        rules: [
          {
            record: 'id_limit:authbroker_usage_limit_used_fraction:downsample5m',
            expr: |||
              authbroker_usage_limit_used_fraction%s
            ||| % s(),
          },
          // The forecast of each limit at its reset: the used fraction now
          // plus the slope of the last forecastFitWindow's 5-minute samples
          // times the time left until that limit's reset, capped at
          // forecastHorizonSeconds so a weekly window is not extrapolated for
          // days from one busy hour. (predict_linear takes one scalar
          // horizon; here it is per series.) The fit is the costliest
          // expression of these rules, so it runs here, once per 5 minutes,
          // and keeps only the limits forecast to reach 100 %. Value: the
          // forecast used fraction.
          {
            record: 'id_limit:authbroker_usage_limit_forecast_exhausted5m:used_fraction',
            expr: |||
              authbroker_usage_limit_used_fraction%(s)s
              + deriv(id_limit:authbroker_usage_limit_used_fraction:downsample5m%(s)s[%(fit)s])
                * clamp_max(authbroker_usage_limit_resets_timestamp_seconds%(s)s - time(), %(horizon)s)
              >= 1
            ||| % { s: s(), fit: cfg.forecastFitWindow, horizon: u.num(cfg.forecastHorizonSeconds) },
          },
        ],
      },
    ],
  },
}
