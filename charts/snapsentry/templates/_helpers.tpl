{{- define "snapsentry.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "snapsentry.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "snapsentry.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "snapsentry.operatorServiceAccount" -}}
{{ include "snapsentry.fullname" . }}-operator
{{- end -}}

{{- define "snapsentry.scannerServiceAccount" -}}
{{ include "snapsentry.fullname" . }}-scanner
{{- end -}}

{{- define "snapsentry.fingerprintSecret" -}}
{{- default (printf "%s-fingerprint-key" (include "snapsentry.fullname" .)) .Values.fingerprintKey.existingSecret -}}
{{- end -}}
