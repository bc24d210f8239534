(import 'config.libsonnet') +
(import 'dashboards/dashboards.libsonnet')
