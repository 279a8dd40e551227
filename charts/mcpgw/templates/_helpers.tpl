{{/*
The chart's name, truncated to the 63 characters a Kubernetes name may have.
*/}}
{{- define "mcpgw.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's resource name: the release name, with the chart name unless it already contains it.
*/}}
{{- define "mcpgw.fullname" -}}
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

{{- define "mcpgw.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mcpgw.labels" -}}
helm.sh/chart: {{ include "mcpgw.chart" . }}
{{ include "mcpgw.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "mcpgw.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mcpgw.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mcpgw.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mcpgw.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image; the tag defaults to the chart's appVersion.
*/}}
{{- define "mcpgw.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
Where the policy comes from: the chart's ConfigMap, or an existing one.
*/}}
{{- define "mcpgw.policyConfigMap" -}}
{{- default (include "mcpgw.fullname" .) .Values.policy.existingConfigMap }}
{{- end }}

{{- define "mcpgw.policyKey" -}}
{{- if .Values.policy.existingConfigMap }}
{{- .Values.policy.existingConfigMapKey }}
{{- else -}}
mcp-security.yaml
{{- end }}
{{- end }}

{{/*
The rules values.schema.json states, checked again at render time for installs that skip the
schema (helm template --skip-schema-validation).
*/}}
{{- define "mcpgw.validate" -}}
{{- if and .Values.database.embedded (gt (int .Values.replicaCount) 1) }}
{{- fail "database.embedded (PGlite) runs one replica only: set replicaCount: 1, or use PostgreSQL (database.embedded: false, database.existingSecret)" }}
{{- end }}
{{- if and (not .Values.database.embedded) (not .Values.database.existingSecret) }}
{{- fail "database.existingSecret is required: a Secret with the PostgreSQL URL under database.existingSecretKey" }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.keys.existingSecret) }}
{{- fail "keys.existingSecret is required with more than one replica: every replica must share the same keys (see values.yaml)" }}
{{- end }}
{{- end }}
