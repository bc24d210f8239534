// Small helpers the alerts, rules and dashboards share.
{
  // The labels an aggregation or join keeps: `labels`, preceded by the
  // cluster label when the mixin runs multi-cluster.
  groupLabels(cfg, labels)::
    (if cfg.showMultiCluster then [cfg.clusterLabel] else []) + labels,

  // `labels` as PromQL's by()/on() list: "cluster, job, instance".
  by(cfg, labels):: std.join(', ', self.groupLabels(cfg, labels)),

  // A selector body: the exporter selector plus extra matchers, for
  // metric{...}.
  sel(cfg, extra=''):: '{%s}' % std.join(', ', [cfg.authbrokerSelector] + (if extra == '' then [] else [extra])),

  // A number as PromQL and prose write it (0.9, 14400).
  num(n):: if n == std.floor(n) then '%d' % n else std.toString(n),

  // A fraction as a percentage for prose: 0.9 -> "90%".
  percent(f):: self.num(std.floor(f * 10000 + 0.5) / 100) + '%',

  local plural(n, unit) = '%s %s%s' % [$.num(n), unit, if n == 1 then '' else 's'],

  // Seconds for prose: 240 -> "4 minutes", 14400 -> "4 hours".
  seconds(s)::
    if s % 3600 == 0 then plural(s / 3600, 'hour')
    else if s % 60 == 0 then plural(s / 60, 'minute')
    else plural(s, 'second'),

  // A Prometheus duration ("5m", "1h", "30s") for prose.
  duration(d)::
    local unit = d[std.length(d) - 1];
    local n = std.parseInt(std.substr(d, 0, std.length(d) - 1));
    local factor = { s: 1, m: 60, h: 3600 };
    if std.objectHas(factor, unit) then self.seconds(n * factor[unit]) else d,

  // "the last <d>" reads "the last hour" rather than "the last 1 hour".
  last(d)::
    local text = self.duration(d);
    if std.startsWith(text, '1 ') then std.substr(text, 2, std.length(text) - 2) else text,
}
