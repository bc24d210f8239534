{
  _config+:: {
    // Selects the exporter's series.
    authbrokerSelector: 'job="authbroker"',

    // Multi-cluster: a cluster variable, and cluster in every selector and join.
    clusterLabel: 'cluster',
    showMultiCluster: false,

    // Dashboards.
    dashboardTags: ['authbroker'],
    dashboardUIDPrefix: 'authbroker',
    dashboardNamePrefix: 'Auth broker / ',
    dashboardRefresh: '1m',
    dashboardPeriod: 'now-6h',
    dashboardTopK: 10,
    grafanaDatasourceRegex: '',
  },
}
