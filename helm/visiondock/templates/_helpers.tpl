{{/* Names, labels, images and the pieces every pod shares. */}}

{{- define "visiondock.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "visiondock.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "visiondock.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "visiondock.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Standard labels; call with (dict "root" $ "component" "scoring"). */}}
{{- define "visiondock.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{ include "visiondock.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: visiondock
{{- end }}

{{- define "visiondock.selectorLabels" -}}
app.kubernetes.io/name: {{ include "visiondock.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* A component's resource name: <fullname>-<component>. */}}
{{- define "visiondock.componentName" -}}
{{- printf "%s-%s" (include "visiondock.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* An image reference; call with (dict "root" $ "image" "scoring"). */}}
{{- define "visiondock.image" -}}
{{- $image := index .root.Values.images .image }}
{{- $registry := .root.Values.image.registry }}
{{- $repository := ternary $image.repository (printf "%s/%s" $registry $image.repository) (empty $registry) }}
{{- if $image.digest }}
{{- printf "%s@%s" $repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (default .root.Chart.AppVersion .root.Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "visiondock.secretName" -}}
{{- default (printf "%s-credentials" (include "visiondock.fullname" .)) .Values.secrets.existingSecret }}
{{- end }}

{{- define "visiondock.usesAzure" -}}
{{- if or (eq .Values.storage.blob.backend "azure") (eq .Values.storage.documents.backend "cosmos") }}true{{- end }}
{{- end }}

{{- define "visiondock.usesEmbedded" -}}
{{- if or (eq .Values.storage.blob.backend "local") (eq .Values.storage.documents.backend "sqlite") }}true{{- end }}
{{- end }}

{{/* Settings every VisionDock process reads (the non-secret ones live in the ConfigMap). */}}
{{- define "visiondock.env" -}}
- name: VISIONDOCK_API_KEYS
  valueFrom: {secretKeyRef: {name: {{ include "visiondock.secretName" . }}, key: api-keys}}
- name: VISIONDOCK_API_KEY
  valueFrom: {secretKeyRef: {name: {{ include "visiondock.secretName" . }}, key: api-key}}
{{- if and (eq .Values.storage.blob.backend "azure") (not .Values.storage.blob.accountUrl) }}
- name: VISIONDOCK_AZURE_STORAGE_CONNECTION_STRING
  valueFrom: {secretKeyRef: {name: {{ include "visiondock.secretName" . }}, key: azure-storage-connection-string}}
{{- end }}
{{- if and (eq .Values.storage.documents.backend "cosmos") (not .Values.azure.workloadIdentity.enabled) }}
- name: VISIONDOCK_COSMOS_KEY
  valueFrom: {secretKeyRef: {name: {{ include "visiondock.secretName" . }}, key: cosmos-key}}
{{- end }}
{{- end }}

{{/* The non-secret settings, as key: value lines (the ConfigMap's data, and the hook's env). */}}
{{- define "visiondock.settings" -}}
VISIONDOCK_ENVIRONMENT: {{ .Values.environment | quote }}
VISIONDOCK_LOG_LEVEL: {{ .Values.logLevel | quote }}
VISIONDOCK_LOG_FORMAT: "json"
VISIONDOCK_HOME: "/var/lib/visiondock"
VISIONDOCK_BLOB_BACKEND: {{ .Values.storage.blob.backend | quote }}
VISIONDOCK_AZURE_STORAGE_CONTAINER: {{ .Values.storage.blob.container | quote }}
{{- with .Values.storage.blob.accountUrl }}
VISIONDOCK_AZURE_STORAGE_ACCOUNT_URL: {{ . | quote }}
{{- end }}
VISIONDOCK_DOCUMENT_BACKEND: {{ .Values.storage.documents.backend | quote }}
VISIONDOCK_COSMOS_DATABASE: {{ .Values.storage.documents.database | quote }}
{{- with .Values.storage.documents.cosmosEndpoint }}
VISIONDOCK_COSMOS_ENDPOINT: {{ . | quote }}
{{- end }}
{{- $fullname := include "visiondock.fullname" . }}
VISIONDOCK_ANNOTATION_URL: {{ printf "http://%s-annotation:8080" $fullname | quote }}
VISIONDOCK_REGISTRY_URL: {{ printf "http://%s-registry:8080" $fullname | quote }}
VISIONDOCK_SCORING_URL: {{ printf "http://%s-scoring:8080" $fullname | quote }}
{{- end }}

{{/* Pod-level security: non-root, the runtime's default seccomp profile, group-owned volumes. */}}
{{- define "visiondock.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurity.runAsUser }}
runAsGroup: {{ .Values.podSecurity.runAsGroup }}
fsGroup: {{ .Values.podSecurity.fsGroup }}
seccompProfile: {type: RuntimeDefault}
{{- end }}

{{- define "visiondock.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurity.runAsUser }}
runAsGroup: {{ .Values.podSecurity.runAsGroup }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities: {drop: [ALL]}
seccompProfile: {type: RuntimeDefault}
{{- end }}

{{/* Pod labels and annotations shared by every workload: workload identity, config checksums. */}}
{{- define "visiondock.podLabels" -}}
{{- if .Values.azure.workloadIdentity.enabled }}
azure.workload.identity/use: "true"
{{- end }}
{{- end }}

{{- define "visiondock.configChecksum" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}

{{- define "visiondock.imagePullSecrets" -}}
{{- with .Values.image.pullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end }}
