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

{{/* The scanner Jobs' pod settings as the operator reads them (SNAPSENTRY_SCANNER_POD). */}}
{{- define "snapsentry.scannerPod" -}}
{{- $s := .Values.scanner -}}
{{- dict "imagePullSecrets" (.Values.imagePullSecrets | default list) "imagePullPolicy" ($s.image.pullPolicy | default "") "nodeSelector" ($s.nodeSelector | default dict) "tolerations" ($s.tolerations | default list) "affinity" ($s.affinity | default dict) "priorityClassName" ($s.priorityClassName | default "") "podAnnotations" ($s.podAnnotations | default dict) "podLabels" ($s.podLabels | default dict) | toJson -}}
{{- end -}}

{{/* NetworkPolicy egress rules shared by the operator and the scanner Jobs. */}}
{{- define "snapsentry.egress" -}}
{{- $np := .Values.networkPolicy -}}
- ports: [{ port: 53, protocol: UDP }, { port: 53, protocol: TCP }]
- ports: [{ port: {{ $np.apiServerPort }}, protocol: TCP }]
  {{- with $np.apiServerCIDRs }}
  to:
    {{- range . }}
    - ipBlock: { cidr: {{ . | quote }} }
    {{- end }}
  {{- end }}
- ports: [{ port: 443, protocol: TCP }]
  {{- with $np.cloudCIDRs }}
  to:
    {{- range . }}
    - ipBlock: { cidr: {{ . | quote }} }
    {{- end }}
  {{- end }}
{{- end -}}
