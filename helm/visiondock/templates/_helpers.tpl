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
{{- if .Values.secrets.existingSecret }}
{{- .Values.secrets.existingSecret }}
{{- else if .Values.secrets.create }}
{{- printf "%s-credentials" (include "visiondock.fullname" .) }}
{{- else }}
{{- fail "secrets: set secrets.existingSecret to the Secret with the keys (docs/deploy-aks.md, Keys), or secrets.create: true with secrets.componentKeys and secrets.runKeySecret" }}
{{- end }}
{{- end }}

{{- define "visiondock.usesAzure" -}}
{{- if or (eq .Values.storage.blob.backend "azure") (eq .Values.storage.documents.backend "cosmos") }}true{{- end }}
{{- end }}

{{- define "visiondock.usesEmbedded" -}}
{{- if or (eq .Values.storage.blob.backend "local") (eq .Values.storage.documents.backend "sqlite") }}true{{- end }}
{{- end }}

{{/* What each component reaches, which decides its keys, credentials, identity and network policy.
  Call with (dict "root" $ "component" "scoring"). */}}
{{- define "visiondock.usesStorage" -}}
{{- $c := .component }}
{{- if has $c (list "annotation" "registry" "provision" "purge-captures") }}true
{{- else if and (eq $c "scoring") (gt (float64 .root.Values.scoring.captureRate) 0.0) }}true
{{- end }}
{{- end }}

{{/* Signs in to Azure as a workload identity: it reaches Azure storage and workload identity is on. */}}
{{- define "visiondock.usesIdentity" -}}
{{- if and .root.Values.azure.workloadIdentity.enabled (include "visiondock.usesAzure" .root) (include "visiondock.usesStorage" .) }}true{{- end }}
{{- end }}

{{- define "visiondock.clientId" -}}
{{- $key := ternary "purgeCaptures" .component (eq .component "purge-captures") }}
{{- $wi := .root.Values.azure.workloadIdentity }}
{{- required (printf "azure.workloadIdentity.clientIds.%s (or clientId) is required with workload identity" $key) (default $wi.clientId (get $wi.clientIds $key)) }}
{{- end }}

{{/* A service account's workload-identity annotations, for a component that signs in to Azure. */}}
{{- define "visiondock.identityAnnotations" -}}
{{- if include "visiondock.usesIdentity" . }}
azure.workload.identity/client-id: {{ include "visiondock.clientId" . | quote }}
{{- with .root.Values.azure.workloadIdentity.tenantId }}
azure.workload.identity/tenant-id: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* Storage credentials from the Secret: only for a component that reaches storage, only without an identity. */}}
{{- define "visiondock.storageEnv" -}}
{{- $v := .root.Values }}
{{- if include "visiondock.usesStorage" . }}
{{- if and (eq $v.storage.blob.backend "azure") (not $v.storage.blob.accountUrl) }}
- name: VISIONDOCK_AZURE_STORAGE_CONNECTION_STRING
  valueFrom: {secretKeyRef: {name: {{ include "visiondock.secretName" .root }}, key: azure-storage-connection-string}}
{{- end }}
{{- if and (eq $v.storage.documents.backend "cosmos") (not $v.azure.workloadIdentity.enabled) }}
- name: VISIONDOCK_COSMOS_KEY
  valueFrom: {secretKeyRef: {name: {{ include "visiondock.secretName" .root }}, key: cosmos-key}}
{{- end }}
{{- end }}
{{- end }}

{{/* A service's keys: the entries it accepts (a file; no plain keys), the one key it presents, and for the
  registry and the annotation service the secret that signs and checks run keys. */}}
{{- define "visiondock.serviceKeyEnv" -}}
- {name: VISIONDOCK_API_KEYS, value: ""}
- {name: VISIONDOCK_API_KEYS_FILE, value: /etc/visiondock/keys/api-key-entries}
- name: VISIONDOCK_API_KEY
  valueFrom: {secretKeyRef: {name: {{ include "visiondock.secretName" .root }}, key: {{ .component }}-api-key}}
{{- if has .component (list "annotation" "registry") }}
- {name: VISIONDOCK_RUN_KEY_SECRET_FILE, value: /etc/visiondock/run-key/run-key-secret}
{{- end }}
{{- end }}

{{- define "visiondock.serviceKeyMounts" -}}
- {name: api-key-entries, mountPath: /etc/visiondock/keys, readOnly: true}
{{- if has .component (list "annotation" "registry") }}
- {name: run-key, mountPath: /etc/visiondock/run-key, readOnly: true}
{{- end }}
{{- end }}

{{- define "visiondock.serviceKeyVolumes" -}}
# 0440: the pod's group (fsGroup) reads them, nobody writes.
- name: api-key-entries
  secret:
    secretName: {{ include "visiondock.secretName" .root }}
    items: [{key: api-key-entries, path: api-key-entries}]
    defaultMode: 288
{{- if has .component (list "annotation" "registry") }}
- name: run-key
  secret:
    secretName: {{ include "visiondock.secretName" .root }}
    items: [{key: run-key-secret, path: run-key-secret}]
    defaultMode: 288
{{- end }}
{{- end }}

{{/* Jobs that call no service (the storage hook, purge-captures) present no key. */}}
{{- define "visiondock.noKeyEnv" -}}
- {name: VISIONDOCK_API_KEY, value: ""}
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
VISIONDOCK_METRICS_PORT: {{ .Values.metrics.port | toString | quote }}
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

{{/* A pod's labels beyond its selector: the workload-identity label, only where it signs in to Azure. */}}
{{- define "visiondock.podLabels" -}}
{{- if include "visiondock.usesIdentity" . }}
azure.workload.identity/use: "true"
{{- end }}
{{- end }}

{{/* Checksums that roll the pods when their settings or keys change. The keys: the Secret the chart
  makes, or the content of an existing Secret as `helm upgrade` reads it (empty where lookup reads
  nothing), and secrets.revision. */}}
{{- define "visiondock.configChecksum" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- if .Values.secrets.create }}
checksum/secret: {{ printf "%s|%s" (include (print .Template.BasePath "/secret.yaml") .) .Values.secrets.revision | sha256sum }}
{{- else }}
{{- $existing := (lookup "v1" "Secret" .Release.Namespace (include "visiondock.secretName" .)).data | default dict }}
checksum/secret: {{ printf "%s|%s" (toJson $existing) .Values.secrets.revision | sha256sum }}
{{- end }}
{{- end }}

{{- define "visiondock.imagePullSecrets" -}}
{{- with .Values.image.pullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The scoring model cache's cap in GB (VISIONDOCK_SCORING_CACHE_MAX_GB): three quarters of the emptyDir's size
limit, so pruning keeps the volume under it; kubelet evicts a pod whose emptyDir outgrows its limit.
*/}}
{{- define "visiondock.modelCacheMaxGb" -}}
{{- $size := toString . -}}
{{- $number := regexFind "^[0-9]+(\\.[0-9]+)?" $size -}}
{{- $unit := trimPrefix $number $size -}}
{{- $bytes := dict "" 1.0 "k" 1e3 "M" 1e6 "G" 1e9 "T" 1e12 "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 -}}
{{- printf "%.2f" (mulf (float64 $number) (get $bytes $unit) 0.75 1e-9) -}}
{{- end }}
