{{/* The chart's name. */}}
{{- define "authbroker-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name, at most 63 characters (DNS label). */}}
{{- define "authbroker-exporter.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "authbroker-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "authbroker-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "authbroker-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "authbroker-exporter.labels" -}}
helm.sh/chart: {{ include "authbroker-exporter.chart" . }}
{{ include "authbroker-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "authbroker-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "authbroker-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "authbroker-exporter.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "authbroker-exporter.tokenSecretName" -}}
{{- default (printf "%s-token" (include "authbroker-exporter.fullname" .)) .Values.broker.token.existingSecret }}
{{- end }}

{{- define "authbroker-exporter.webConfigSecretName" -}}
{{- default (printf "%s-web-config" (include "authbroker-exporter.fullname" .)) .Values.webConfig.existingSecret }}
{{- end }}

{{/* "true" when the exporter serves HTTPS. */}}
{{- define "authbroker-exporter.tls" -}}
{{- if and .Values.webConfig.enabled (or .Values.webConfig.tls (hasKey (default dict .Values.webConfig.config) "tls_server_config")) }}true{{ end }}
{{- end }}

{{/* "true" when the exporter asks for basic auth. */}}
{{- define "authbroker-exporter.basicAuth" -}}
{{- if and .Values.webConfig.enabled (or .Values.webConfig.basicAuth (hasKey (default dict .Values.webConfig.config) "basic_auth_users")) }}true{{ end }}
{{- end }}
