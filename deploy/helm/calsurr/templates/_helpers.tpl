{{/* Names and labels (Helm best practices: app.kubernetes.io/* on every object, a stable selector). */}}

{{- define "calsurr.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "calsurr.fullname" -}}
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

{{- define "calsurr.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "calsurr.selectorLabels" -}}
app.kubernetes.io/name: {{ include "calsurr.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "calsurr.labels" -}}
helm.sh/chart: {{ include "calsurr.chart" . }}
{{ include "calsurr.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: inference-server
app.kubernetes.io/part-of: calsurr
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "calsurr.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "calsurr.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "calsurr.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "calsurr.claimName" -}}
{{- default (printf "%s-models" (include "calsurr.fullname" .)) .Values.modelRepository.persistentVolumeClaim.existingClaim }}
{{- end }}

{{- define "calsurr.tokenSecretName" -}}
{{- default (printf "%s-tokens" (include "calsurr.fullname" .)) .Values.auth.existingSecret }}
{{- end }}

{{/* Paths inside the container. */}}
{{- define "calsurr.configDir" -}}/etc/calsurr/config{{- end }}
{{- define "calsurr.tlsDir" -}}/etc/calsurr/tls{{- end }}
{{- define "calsurr.tokenDir" -}}/etc/calsurr/auth{{- end }}

{{/*
The server's config file: the user's `config` plus the settings the chart owns. repo, host, port and
metrics_port are also passed as CALSURR_* variables (see the Deployment), because the image's ENV sets some of
them and a variable beats the file.
*/}}
{{- define "calsurr.serverConfig" -}}
{{- $owned := dict "repo" .Values.modelRepository.mountPath "host" "0.0.0.0" "port" (int .Values.service.grpcPort) "metrics_port" (int .Values.service.metricsPort) "metrics" true }}
{{- if .Values.tls.enabled }}
{{- $_ := set $owned "tls_cert" (printf "%s/tls.crt" (include "calsurr.tlsDir" .)) }}
{{- $_ := set $owned "tls_key" (printf "%s/tls.key" (include "calsurr.tlsDir" .)) }}
{{- if .Values.tls.clientCA }}
{{- $_ := set $owned "tls_client_ca" (printf "%s/ca.crt" (include "calsurr.tlsDir" .)) }}
{{- end }}
{{- $_ := set $owned "metrics_tls" .Values.tls.metrics }}
{{- end }}
{{- if .Values.auth.enabled }}
{{- $_ := set $owned "auth_tokens" (printf "%s/tokens" (include "calsurr.tokenDir" .)) }}
{{- end }}
{{- toYaml (merge $owned (deepCopy .Values.config)) }}
{{- end }}

{{/* The documented autoscaling query: average seconds a request of this release waited in a batcher queue. */}}
{{- define "calsurr.queueSecondsQuery" -}}
{{- if .Values.autoscaling.keda.query }}
{{- .Values.autoscaling.keda.query }}
{{- else }}
{{- $selector := printf "namespace=%q, service=%q" .Release.Namespace (include "calsurr.fullname" .) }}
{{- $w := .Values.autoscaling.keda.window }}
{{- printf "(sum(rate(calsurr_queue_duration_seconds_sum{%s}[%s])) / clamp_min(sum(rate(calsurr_queue_duration_seconds_count{%s}[%s])), 1e-9)) or vector(0)" $selector $w $selector $w }}
{{- end }}
{{- end }}

{{/* terminationGracePeriodSeconds: preStop sleep + the server's grace + a margin to exit, so nothing accepted is cut. */}}
{{- define "calsurr.terminationGracePeriodSeconds" -}}
{{- add (int .Values.lifecycle.preStopSleepSeconds) (int (ceil .Values.config.grace_seconds)) (int .Values.lifecycle.exitMarginSeconds) }}
{{- end }}

{{- define "calsurr.checks" -}}
{{- if and .Values.autoscaling.keda.enabled .Values.autoscaling.hpa.enabled }}
{{- fail "autoscaling: enable keda or hpa, not both (KEDA makes an HPA of its own)" }}
{{- end }}
{{- if and (eq .Values.modelRepository.source "uri") (not .Values.modelRepository.uri.location) }}
{{- fail "modelRepository.source is uri: set modelRepository.uri.location (e.g. https://host/repository.tar.gz)" }}
{{- end }}
{{- if and .Values.tls.enabled (not .Values.tls.secretName) }}
{{- fail "tls.enabled: set tls.secretName to a kubernetes.io/tls Secret (tls.crt, tls.key, and ca.crt for clientCA)" }}
{{- end }}
{{- if and .Values.auth.enabled (not .Values.auth.existingSecret) (not .Values.auth.tokens) }}
{{- fail "auth.enabled: give auth.existingSecret or auth.tokens (lines 'ROLE sha256:HEX' from `calsurr token new`)" }}
{{- end }}
{{- end }}
