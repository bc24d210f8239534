// Placeholder until the dashboards are written in jsonnet: the dashboards
// as they were generated before the mixin, imported as they are (JSON is
// jsonnet), so the mixin renders them unchanged.
{
  grafanaDashboards+:: {
    'authbroker-overview.json': import 'placeholder/authbroker-overview.json',
    'authbroker-credentials.json': import 'placeholder/authbroker-credentials.json',
    'authbroker-usage.json': import 'placeholder/authbroker-usage.json',
    'authbroker-errors.json': import 'placeholder/authbroker-errors.json',
  },
}
