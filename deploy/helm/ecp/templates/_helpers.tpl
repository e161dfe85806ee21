{{/* Names. */}}
{{- define "ecp.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ecp.fullname" -}}
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

{{- define "ecp.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ecp.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ecp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ecp.labels" -}}
helm.sh/chart: {{ include "ecp.chart" . }}
{{ include "ecp.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "ecp.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ecp.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ecp.adminSecretName" -}}
{{- default (printf "%s-admin" (include "ecp.fullname" .)) .Values.admin.existingSecret }}
{{- end }}

{{- define "ecp.sharedClaimName" -}}
{{- default (printf "%s-alerting" (include "ecp.fullname" .)) .Values.alerting.sharedVolume.existingClaim }}
{{- end }}

{{- define "ecp.dataClaimName" -}}
{{- default (printf "%s-data" (include "ecp.fullname" .)) .Values.persistence.existingClaim }}
{{- end }}

{{/* secretsKeySecretName is the Secret holding --secrets.key-file. */}}
{{- define "ecp.secretsKeySecretName" -}}
{{- default (printf "%s-secrets-key" (include "ecp.fullname" .)) .Values.secretsKey.existingSecret }}
{{- end }}

{{/* embedded is true when ecp runs its own single etcd member. */}}
{{- define "ecp.embedded" -}}
{{- if not .Values.etcd.endpoints }}true{{ end }}
{{- end }}

{{/* externalURL is --web.external-url. */}}
{{- define "ecp.externalURL" -}}
{{- if .Values.externalURL }}
{{- .Values.externalURL | trimSuffix "/" }}
{{- else if and .Values.ingress.enabled .Values.ingress.hosts }}
{{- $host := (first .Values.ingress.hosts).host }}
{{- if .Values.ingress.tls }}https://{{ $host }}{{ else }}http://{{ $host }}{{ end }}
{{- else }}
{{- printf "%s://%s.%s.svc:%v" (ternary "https" "http" .Values.webConfig.tls) (include "ecp.fullname" .) .Release.Namespace .Values.service.port }}
{{- end }}
{{- end }}

{{/* validate stops the install on values ecp cannot run with. */}}
{{- define "ecp.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.etcd.endpoints) }}
{{- fail "etcd.endpoints is required when replicaCount > 1: replicas share one external etcd cluster (the embedded etcd serves a single replica)" }}
{{- end }}
{{- if .Values.etcd.tls.enabled }}
{{- if not .Values.etcd.endpoints }}
{{- fail "etcd.tls.enabled is for an external etcd (etcd.endpoints); the embedded etcd makes its own certificates" }}
{{- end }}
{{- if not .Values.etcd.tls.secretName }}
{{- fail "etcd.tls.enabled needs etcd.tls.secretName: a Secret with ca.crt, tls.crt and tls.key" }}
{{- end }}
{{- range .Values.etcd.endpoints }}
{{- if not (hasPrefix "https://" .) }}
{{- fail (printf "etcd.tls.enabled needs https:// endpoints; got %q" .) }}
{{- end }}
{{- end }}
{{- end }}
{{- if not (has .Values.alerting.mode (list "files" "none" "operator")) }}
{{- fail (printf "alerting.mode must be files, none or operator; got %q" .Values.alerting.mode) }}
{{- end }}
{{- if eq .Values.alerting.mode "operator" }}
{{- fail "alerting.mode=operator: ecp writes Prometheus rule files and alertmanager.yml today, not PrometheusRule/AlertmanagerConfig objects; use alerting.mode=files (see the chart's README, \"Prometheus Operator\")" }}
{{- end }}
{{- if and .Values.persistence.enabled (not (include "ecp.embedded" .)) }}
{{- fail "persistence is for the embedded etcd only; with etcd.endpoints set ecp keeps no data of its own" }}
{{- end }}
{{- end }}

{{/* args are the flags of ecp serve. */}}
{{- define "ecp.args" -}}
- "serve"
- {{ printf "--web.listen-address=0.0.0.0:%v" .Values.service.port | quote }}
- {{ printf "--web.external-url=%v" (include "ecp.externalURL" .) | quote }}
- "--data.dir=/var/lib/ecp/data"
- "--downloads.dir=/usr/local/share/ecp/dist"
- "--config.file=/etc/ecp/config.yml"
- {{ printf "--log.level=%v" .Values.log.level | quote }}
- {{ printf "--log.format=%v" .Values.log.format | quote }}
{{- if .Values.etcd.endpoints }}
- {{ printf "--etcd.endpoints=%v" (join "," .Values.etcd.endpoints) | quote }}
{{- end }}
{{- if .Values.etcd.tls.enabled }}
- "--etcd.tls.ca-file=/etc/ecp/etcd-tls/ca.crt"
- "--etcd.tls.cert-file=/etc/ecp/etcd-tls/tls.crt"
- "--etcd.tls.key-file=/etc/ecp/etcd-tls/tls.key"
{{- end }}
- "--secrets.key-file=/etc/ecp/secrets-key/secrets.key"
{{- with .Values.remoteWrite.url }}
- {{ printf "--remote-write.url=%v" . | quote }}
{{- end }}
{{- if eq .Values.alerting.mode "files" }}
- "--prometheus.rules-dir=/var/lib/ecp/shared/rules"
- "--alertmanager.config-file=/var/lib/ecp/shared/alertmanager.yml"
{{- with .Values.alerting.prometheusURL }}
- {{ printf "--prometheus.url=%v" . | quote }}
{{- end }}
{{- with .Values.alerting.alertmanagerURL }}
- {{ printf "--alertmanager.url=%v" . | quote }}
{{- end }}
{{- end }}
{{- with .Values.smtp.smarthost }}
- {{ printf "--smtp.smarthost=%v" . | quote }}
{{- end }}
{{- with .Values.smtp.from }}
- {{ printf "--smtp.from=%v" . | quote }}
{{- end }}
{{- if .Values.smtp.smarthost }}
{{- if .Values.smtp.requireTLS }}
- "--smtp.require-tls"
{{- else }}
- "--no-smtp.require-tls"
{{- end }}
{{- end }}
{{- with .Values.grafana.url }}
- {{ printf "--grafana.url=%v" . | quote }}
{{- end }}
{{- if and .Values.grafana.url .Values.grafana.tokenSecret }}
- {{ printf "--grafana.token-file=/etc/ecp/grafana/%v" .Values.grafana.tokenSecretKey | quote }}
{{- end }}
{{- with .Values.agent.reportInterval }}
- {{ printf "--agent.report-interval=%v" . | quote }}
{{- end }}
{{- if .Values.webConfig.secretName }}
- {{ printf "--web.config.file=/etc/ecp/web/%v" .Values.webConfig.secretKey | quote }}
{{- end }}
{{- range .Values.extraArgs }}
- {{ printf "%v" . | quote }}
{{- end }}
{{- end }}

{{/* probe renders a probe of values, over https when webConfig.tls is set. */}}
{{- define "ecp.probe" -}}
{{- $p := deepCopy .probe }}
{{- if and .root.Values.webConfig.tls $p.httpGet }}
{{- $_ := set $p.httpGet "scheme" "HTTPS" }}
{{- end }}
{{- toYaml $p }}
{{- end }}
