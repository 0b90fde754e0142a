{{/* The chart's name. */}}
{{- define "zero-emqx.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's full name: the prefix of every object. */}}
{{- define "zero-emqx.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "zero-emqx.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "zero-emqx.labels" -}}
helm.sh/chart: {{ include "zero-emqx.chart" . }}
app.kubernetes.io/name: {{ include "zero-emqx.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: call with (dict "ctx" $ "component" "exhook"). */}}
{{- define "zero-emqx.selectorLabels" -}}
app.kubernetes.io/name: {{ include "zero-emqx.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "zero-emqx.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "zero-emqx.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "zero-emqx.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "zero-emqx.emqxApiSecretName" -}}
{{- default (printf "%s-emqx-api" (include "zero-emqx.fullname" .)) .Values.emqxApi.existingSecret -}}
{{- end -}}

{{- define "zero-emqx.ipHashSecretName" -}}
{{- default (printf "%s-ip-hash" (include "zero-emqx.fullname" .)) .Values.ipHashKey.existingSecret -}}
{{- end -}}

{{- define "zero-emqx.ipHashSecretKey" -}}
{{- if .Values.ipHashKey.existingSecret -}}
{{- .Values.ipHashKey.secretKey -}}
{{- else -}}
ip-hash-key
{{- end -}}
{{- end -}}

{{/*
A value of an existing Secret (base64-decoded), or "" when the Secret or key is missing
or when rendering without a cluster (helm template): (dict "ctx" $ "name" n "key" k).
*/}}
{{- define "zero-emqx.existingSecretValue" -}}
{{- $secret := lookup "v1" "Secret" .ctx.Release.Namespace .name -}}
{{- if and $secret $secret.data (hasKey $secret.data .key) -}}
{{- index $secret.data .key | b64dec -}}
{{- end -}}
{{- end -}}

{{/* The pod-level settings both Deployments share: (dict "ctx" $ "pod" .Values.exhook). */}}
{{- define "zero-emqx.podScheduling" -}}
{{- with .pod.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .pod.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .pod.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .pod.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .pod.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .ctx.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* TRUSTED_PROXIES: the value, or behind the chart's own Ingress (a ClusterIP Service,
so only in-cluster peers reach the manager) every private range the ingress controller's
pods may have. */}}
{{- define "zero-emqx.trustedProxies" -}}
{{- if .Values.manager.trustedProxies -}}
{{- .Values.manager.trustedProxies -}}
{{- else if and .Values.ingress.enabled (eq .Values.manager.service.type "ClusterIP") -}}
10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,100.64.0.0/10,fc00::/7
{{- end -}}
{{- end -}}

{{/* The namespace of the tenant Secrets (KUBE_NAMESPACE). */}}
{{- define "zero-emqx.tenantNamespace" -}}
{{- default (printf "%s-tenants" .Release.Namespace) .Values.tenants.namespace | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The QUOTA_* settings of both processes (values.quotas), one "NAME: value" line each. */}}
{{- define "zero-emqx.quotas" -}}
{{- $lines := list }}
{{- range $name, $value := .Values.quotas }}
{{- if not (regexMatch "^QUOTA_[A-Z0-9_]+$" $name) }}
{{- fail (printf "quotas: %s is not a QUOTA_* setting" $name) }}
{{- end }}
{{- $lines = append $lines (printf "%s: %s" $name ($value | toString | quote)) }}
{{- end }}
{{- join "\n" $lines }}
{{- end -}}
