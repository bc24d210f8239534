// A per-credential alert and its *Widespread sibling (alerts/README.md,
// "Alert storms"). The per-credential alert fires for each credential in
// `set` (a breaching set of the recording rules) while at most
// widespreadCount credentials of its provider (and limit) are in the set on
// one instance, with the credential's identity joined from the breaching
// credentials' info series; beyond that, the sibling fires once per
// provider (and limit) with the count.
local u = import '../lib/utils.libsonnet';

function(cfg, alert, set, scope, severity, summary, description, wideSummary, wideDescription) [
  {
    alert: alert,
    expr: |||
      (
        %(set)s%(s)s
        and on(%(scope)s)
          count by (%(scope)s) (%(set)s%(s)s) <= %(n)d
      )
      * on(%(id)s) group_left(identity)
        id:authbroker_credential_info:breaching%(s)s
    ||| % {
      set: set,
      s: u.sel(cfg),
      scope: u.by(cfg, scope),
      n: cfg.widespreadCount,
      id: u.by(cfg, ['job', 'instance', 'id', 'provider']),
    },
    labels: { severity: severity },
    annotations: { summary: summary, description: description },
  },
  {
    alert: alert + 'Widespread',
    expr: |||
      count by (%(scope)s) (%(set)s%(s)s) > %(n)d
    ||| % { set: set, s: u.sel(cfg), scope: u.by(cfg, scope), n: cfg.widespreadCount },
    labels: { severity: severity },
    annotations: { summary: wideSummary, description: wideDescription },
  },
]
