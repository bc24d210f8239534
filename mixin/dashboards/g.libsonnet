// Small helpers that build the Grafana 10 (schema 38) JSON of the
// dashboards: panels, targets, variables and a row layout that assigns
// grid positions and ids. Nothing here knows a metric name.
local ds = { type: 'prometheus', uid: '${datasource}' };

local thresholds(steps) = {
  mode: 'absolute',
  steps: [{ color: s[0], value: s[1] } for s in steps],
};

// A value mapping {value: [text, color]}, as Grafana's "value" mapping.
local valueMap(m) = [{
  type: 'value',
  options: {
    [k]: { color: m[k][1], index: std.find(k, std.objectFields(m))[0], text: m[k][0] }
    for k in std.objectFields(m)
  },
}];

local reduce = { calcs: ['lastNotNull'], fields: '', values: false };

local fieldDefaults(o) = {
  color: { mode: if std.objectHas(o, 'palette') && o.palette then 'palette-classic' else 'thresholds' },
  mappings: if std.objectHas(o, 'mappings') then valueMap(o.mappings) else [],
  thresholds: thresholds(if std.objectHas(o, 'steps') then o.steps else [['green', null]]),
} + (if std.objectHas(o, 'unit') then { unit: o.unit } else { unit: 'none' })
  + (if std.objectHas(o, 'min') then { min: o.min } else {})
  + (if std.objectHas(o, 'max') then { max: o.max } else {})
  + (if std.objectHas(o, 'decimals') then { decimals: o.decimals } else {});

{
  ds:: ds,

  // One query. Instant queries feed stats, bar gauges and tables.
  target(expr, legend='', instant=false, format='time_series'):: {
    datasource: ds,
    editorMode: 'code',
    expr: expr,
    format: format,
    instant: instant,
    [if legend != '' then 'legendFormat']: legend,
    range: !instant,
  },

  local withRefs(ts) = [ts[i] { refId: std.char(65 + i) } for i in std.range(0, std.length(ts) - 1)],

  local base(type, title, description, targets, w, h) = {
    datasource: ds,
    [if description != '' then 'description']: description,
    title: title,
    type: type,
    targets: withRefs(targets),
    w:: w,
    h:: h,
  },

  // A single value per series, coloured by thresholds or a value mapping.
  stat(title, description, targets, w=3, h=4, opts={}):: base('stat', title, description, targets, w, h) {
    fieldConfig: { defaults: fieldDefaults(opts), overrides: [] },
    options: {
      colorMode: if std.objectHas(opts, 'colorMode') then opts.colorMode else 'value',
      graphMode: 'none',
      justifyMode: 'auto',
      orientation: 'auto',
      percentChangeColorMode: 'standard',
      reduceOptions: reduce,
      showPercentChange: false,
      textMode: if std.objectHas(opts, 'textMode') then opts.textMode else 'auto',
      wideLayout: true,
    },
  },

  // Series over time.
  timeseries(title, description, targets, w=12, h=8, opts={}):: base('timeseries', title, description, targets, w, h) {
    fieldConfig: {
      defaults: fieldDefaults(opts { palette: true }) {
        custom: {
          drawStyle: 'line',
          fillOpacity: 10,
          lineWidth: 1,
          showPoints: 'never',
          spanNulls: false,
          stacking: { group: 'A', mode: 'none' },
        },
      },
      overrides: [],
    },
    options: {
      legend: { calcs: [], displayMode: 'list', placement: 'bottom', showLegend: true },
      tooltip: { mode: 'multi', sort: 'desc' },
    },
  },

  // One bar per series, current value.
  bargauge(title, description, targets, w=12, h=8, opts={}):: base('bargauge', title, description, targets, w, h) {
    fieldConfig: { defaults: fieldDefaults(opts), overrides: [] },
    options: {
      displayMode: 'gradient',
      legend: { calcs: [], displayMode: 'list', placement: 'bottom', showLegend: false },
      maxVizHeight: 300,
      minVizHeight: 16,
      minVizWidth: 8,
      namePlacement: 'auto',
      orientation: 'horizontal',
      reduceOptions: reduce,
      showUnfilled: true,
      sizing: 'auto',
      valueMode: 'color',
    },
  },

  // A table of instant queries joined with merge on their common labels.
  // labels: the label columns in order; columns: one per target, by refId
  // order, {name, unit?, steps?, mappings?, cell?, hide?}; sort: the column
  // name to sort by, desc: its order.
  table(title, description, targets, labels, columns, sort, desc=false, w=24, h=9)::
    local refs = [std.char(65 + i) for i in std.range(0, std.length(columns) - 1)];
    local col(i) = 'Value #' + refs[i];
    local shown = [i for i in std.range(0, std.length(columns) - 1) if !std.objectHas(columns[i], 'hide')];
    base('table', title, description, [t { format: 'table', instant: true, range: false } for t in targets], w, h) {
      fieldConfig: {
        defaults: {
          color: { mode: 'thresholds' },
          custom: { align: 'auto', cellOptions: { type: 'auto' }, filterable: true, inspect: false },
          mappings: [],
          thresholds: thresholds([['green', null]]),
        },
        overrides: [
          {
            matcher: { id: 'byName', options: columns[i].name },
            properties:
              (if std.objectHas(columns[i], 'unit') then [{ id: 'unit', value: columns[i].unit }] else [])
              + (if std.objectHas(columns[i], 'decimals') then [{ id: 'decimals', value: columns[i].decimals }] else [])
              + (if std.objectHas(columns[i], 'steps') then [{ id: 'thresholds', value: thresholds(columns[i].steps) }] else [])
              + (if std.objectHas(columns[i], 'mappings') then [{ id: 'mappings', value: valueMap(columns[i].mappings) }] else [])
              + (if std.objectHas(columns[i], 'cell') then [{ id: 'custom.cellOptions', value: { type: columns[i].cell } }] else []),
          }
          for i in shown
        ],
      },
      options: {
        cellHeight: 'sm',
        footer: { countRows: false, fields: '', reducer: ['sum'], show: false },
        frameIndex: 0,
        showHeader: true,
      },
      transformations: [
        { id: 'merge', options: {} },
        {
          id: 'organize',
          options: {
            excludeByName: { Time: true, __name__: true, job: true } + {
              [col(i)]: true
              for i in std.range(0, std.length(columns) - 1)
              if std.objectHas(columns[i], 'hide')
            },
            includeByName: {},
            indexByName: { [labels[i]]: i for i in std.range(0, std.length(labels) - 1) } + {
              [col(shown[j])]: std.length(labels) + j
              for j in std.range(0, std.length(shown) - 1)
            },
            renameByName: { [col(i)]: columns[i].name for i in shown },
          },
        },
        { id: 'sortBy', options: { fields: {}, sort: [{ desc: desc, field: sort }] } },
      ],
    },

  row(title):: { type: 'row', title: title, collapsed: false, datasource: ds, panels: [] },

  // Lays out [{row: title, panels: [...]}]: a full-width row header, then
  // the row's panels left to right, wrapping at 24 columns. Ids count from
  // 1 in layout order.
  layout(rows)::
    local place(state, p) =
      local wrap = state.x + p.w > 24;
      local x = if wrap then 0 else state.x;
      local y = if wrap then state.y + state.lineH else state.y;
      local lineH = if wrap then p.h else std.max(state.lineH, p.h);
      state {
        x: x + p.w,
        y: y,
        lineH: lineH,
        out+: [p { gridPos: { h: p.h, w: p.w, x: x, y: y } }],
      };
    local addRow(state, r) =
      local y = state.y + state.lineH;
      local header = $.row(r.row) { gridPos: { h: 1, w: 24, x: 0, y: y } };
      std.foldl(place, r.panels, state { x: 0, y: y + 1, lineH: 0, out+: [header] });
    local placed = std.foldl(addRow, rows, { x: 0, y: 0, lineH: 0, out: [] }).out;
    [placed[i] { id: i + 1 } for i in std.range(0, std.length(placed) - 1)],

  datasourceVariable(regex):: {
    current: { selected: false, text: 'default', value: 'default' },
    hide: 0,
    includeAll: false,
    label: 'Data source',
    multi: false,
    name: 'datasource',
    options: [],
    query: 'prometheus',
    refresh: 1,
    regex: regex,
    skipUrlSync: false,
    sort: 0,
    type: 'datasource',
  },

  // A multi-value label_values variable. allValue null: "All" stands for
  // the values the query found, not for anything Prometheus holds.
  queryVariable(name, label, query, allValue=null):: {
    [if allValue != null then 'allValue']: allValue,
    current: { selected: true, text: ['All'], value: ['$__all'] },
    datasource: ds,
    definition: query,
    hide: 0,
    includeAll: true,
    label: label,
    multi: true,
    name: name,
    options: [],
    query: query,
    refresh: 2,
    regex: '',
    skipUrlSync: false,
    sort: 1,
    type: 'query',
  },

  dashboard(c, uid, title, description, variables, rows):: {
    annotations: {
      list: [{
        builtIn: 1,
        datasource: { type: 'grafana', uid: '-- Grafana --' },
        enable: true,
        hide: true,
        iconColor: 'rgba(0, 211, 255, 1)',
        name: 'Annotations & Alerts',
        type: 'dashboard',
      }],
    },
    description: description,
    editable: true,
    fiscalYearStartMonth: 0,
    graphTooltip: 1,
    id: null,
    links: [
      {
        asDropdown: false,
        icon: 'external link',
        includeVars: true,
        keepTime: true,
        tags: c.dashboardTags,
        targetBlank: false,
        title: 'Auth broker',
        tooltip: '',
        type: 'dashboards',
        url: '',
      },
      {
        asDropdown: false,
        icon: 'doc',
        includeVars: false,
        keepTime: false,
        tags: [],
        targetBlank: true,
        title: 'Dashboards README',
        tooltip: 'What each panel shows',
        type: 'link',
        url: 'https://github.com/authbroker/authbroker_exporter/tree/HEAD/dashboards#readme',
      },
    ],
    panels: $.layout(rows),
    refresh: c.dashboardRefresh,
    schemaVersion: 38,
    tags: c.dashboardTags,
    templating: { list: variables },
    time: { from: c.dashboardPeriod, to: 'now' },
    timepicker: {},
    timezone: '',
    title: c.dashboardNamePrefix + title,
    uid: c.dashboardUIDPrefix + '-' + uid,
    version: 1,
    weekStart: '',
  },
}
