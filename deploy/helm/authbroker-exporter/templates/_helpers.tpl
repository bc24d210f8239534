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

{{/*
The image. This project publishes none, so there is no default repository:
a default would pull whatever a namespace the project does not control
holds into a pod that mounts the broker's token.
*/}}
{{- define "authbroker-exporter.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- $repo := required (printf "image.repository is required: this chart ships no image. Build it from the repository's Dockerfile and push it to a registry you control (docker build -t REGISTRY/authbroker_exporter:%s . && docker push REGISTRY/authbroker_exporter:%s), then set image.repository=REGISTRY/authbroker_exporter" $tag $tag) .Values.image.repository }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repo .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repo $tag }}
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

{{/*
Settings that would deploy something other than what the operator asked
for fail the render with what to set instead: a token from nowhere, a web
config that turns TLS and basic auth off without a word, TLS without a
certificate.
*/}}
{{- define "authbroker-exporter.validate" -}}
{{- $tok := .Values.broker.token }}
{{- if and $tok.value $tok.existingSecret }}
{{- fail "broker.token: set either value or existingSecret, not both" }}
{{- end }}
{{- if not (or $tok.value $tok.existingSecret) }}
{{- fail (printf "broker.token: the exporter needs the broker's bearer token. Create a Secret from the broker's token file (kubectl -n %s create secret generic authbroker-exporter-token --from-file=%s=$HOME/.omp/auth-broker.token) and set broker.token.existingSecret=authbroker-exporter-token, or set broker.token.value (kept in the release's history)" .Release.Namespace (default "token" $tok.key)) }}
{{- end }}
{{- if not $tok.key }}
{{- fail "broker.token.key: the key of the token inside the Secret must not be empty" }}
{{- end }}
{{- $web := .Values.webConfig }}
{{- $cfg := default dict $web.config }}
{{- if not $web.enabled }}
{{- if or $web.tls $web.basicAuth $web.existingSecret $web.tlsSecret (not (empty $cfg)) }}
{{- fail "webConfig: TLS or basic auth settings are given but webConfig.enabled is false, so the exporter would serve plain HTTP without authentication. Set webConfig.enabled=true, or remove them" }}
{{- end }}
{{- else }}
{{- if and (not $web.existingSecret) (empty $cfg) }}
{{- fail "webConfig.enabled=true with an empty webConfig.config would serve plain HTTP without authentication: put tls_server_config and/or basic_auth_users in webConfig.config, or name a Secret holding web-config.yml in webConfig.existingSecret" }}
{{- end }}
{{- if hasKey $cfg "tls_server_config" }}
{{- $tls := default dict (get $cfg "tls_server_config") }}
{{- if not (and (or $tls.cert_file $tls.cert) (or $tls.key_file $tls.key)) }}
{{- fail "webConfig.config.tls_server_config needs a certificate and its key (cert_file and key_file, e.g. /etc/authbroker_exporter/tls/tls.crt and /etc/authbroker_exporter/tls/tls.key from webConfig.tlsSecret)" }}
{{- end }}
{{- range $k := list "cert_file" "key_file" "client_ca_file" }}
{{- $path := toString (get $tls $k) }}
{{- if and (hasPrefix "/etc/authbroker_exporter/tls/" $path) (not $web.tlsSecret) }}
{{- fail (printf "webConfig.config.tls_server_config.%s is %s, but webConfig.tlsSecret is empty, so nothing is mounted there: name the kubernetes.io/tls Secret holding the certificate in webConfig.tlsSecret" $k $path) }}
{{- end }}
{{- end }}
{{- else if and $web.tls (not $web.existingSecret) }}
{{- fail "webConfig.tls=true but webConfig.config has no tls_server_config: the exporter would serve plain HTTP. Add tls_server_config with cert_file and key_file (mounted from webConfig.tlsSecret)" }}
{{- end }}
{{- if and $web.tlsSecret (not (eq (include "authbroker-exporter.tls" .) "true")) }}
{{- fail "webConfig.tlsSecret is set but nothing asks for TLS: add tls_server_config to webConfig.config (or set webConfig.tls=true for a web config from existingSecret)" }}
{{- end }}
{{- end }}
{{- end }}
