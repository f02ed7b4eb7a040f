{{/*
Chart name, truncated to 63 characters (a DNS label).
*/}}
{{- define "roster.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: the release name, with the chart name unless the release name already
contains it. Truncated to 63 characters.
*/}}
{{- define "roster.fullname" -}}
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

{{- define "roster.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object.
*/}}
{{- define "roster.labels" -}}
helm.sh/chart: {{ include "roster.chart" . }}
{{ include "roster.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ include "roster.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: roster
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Labels that select this release's objects (immutable in a Deployment's selector: keep them).
*/}}
{{- define "roster.selectorLabels" -}}
app.kubernetes.io/name: {{ include "roster.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels that select the server pods only (not the migration Job's or the test's).
*/}}
{{- define "roster.serverSelectorLabels" -}}
{{ include "roster.selectorLabels" . }}
app.kubernetes.io/component: server
{{- end }}

{{- define "roster.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "roster.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
ServiceAccount of the migration hook pods; empty means "the namespace's default".
*/}}
{{- define "roster.migrationServiceAccountName" -}}
{{- if .Values.migration.serviceAccountName }}
{{- .Values.migration.serviceAccountName }}
{{- else if not .Values.serviceAccount.create }}
{{- include "roster.serviceAccountName" . }}
{{- end }}
{{- end }}

{{- define "roster.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{- define "roster.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "roster.imageTag" .) }}
{{- end }}
{{- end }}

{{/*
The Secret this chart creates for whatever has no existingSecret.
*/}}
{{- define "roster.secretName" -}}
{{- include "roster.fullname" . }}
{{- end }}

{{/*
The hook Secret that holds the database URL for the migration Job: the release's own Secret does
not exist yet when a pre-install hook runs.
*/}}
{{- define "roster.migrationSecretName" -}}
{{- printf "%s-migration" (include "roster.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "roster.chartSecretNeeded" -}}
{{- if or (not .Values.database.existingSecret) (not .Values.auth.existingSecret) }}true{{ end }}
{{- end }}

{{/*
Secret and key of the database URL, for the server pods (`roster.databaseSecretRef`) and for the
migration Job (`roster.migrationDatabaseSecretRef`).
*/}}
{{- define "roster.databaseSecretRef" -}}
name: {{ default (include "roster.secretName" .) .Values.database.existingSecret }}
key: {{ ternary .Values.database.existingSecretKey "database-url" (ne .Values.database.existingSecret "") }}
{{- end }}

{{- define "roster.migrationDatabaseSecretRef" -}}
name: {{ default (include "roster.migrationSecretName" .) .Values.database.existingSecret }}
key: {{ ternary .Values.database.existingSecretKey "database-url" (ne .Values.database.existingSecret "") }}
{{- end }}

{{- define "roster.apiSecretsSecretRef" -}}
name: {{ default (include "roster.secretName" .) .Values.auth.existingSecret }}
key: {{ ternary .Values.auth.existingSecretKey "api-secrets" (ne .Values.auth.existingSecret "") }}
{{- end }}

{{/*
The database URL as the container receives it: env from a secretKeyRef, or a file path.
Argument: dict "ctx" $ "ref" <secret ref template name>.
*/}}
{{- define "roster.databaseUrlEnv" -}}
{{- if eq .ctx.Values.secretsAs "file" }}
- name: ROSTER_DATABASE_URL_FILE
  value: /etc/roster/secrets/database-url
{{- else }}
- name: ROSTER_DATABASE_URL
  valueFrom:
    secretKeyRef:
      {{- include .ref .ctx | nindent 6 }}
{{- end }}
{{- end }}

{{/*
Projected volume of the secrets, for secretsAs=file. Argument: dict "ctx" $ "ref" <database ref
template name> "api" <bool: include the API secrets>.
*/}}
{{- define "roster.secretsVolume" -}}
{{- $db := include .ref .ctx | fromYaml }}
- name: secrets
  projected:
    defaultMode: 0440
    sources:
      - secret:
          name: {{ $db.name }}
          items:
            - key: {{ $db.key }}
              path: database-url
      {{- if .api }}
      {{- $api := include "roster.apiSecretsSecretRef" .ctx | fromYaml }}
      - secret:
          name: {{ $api.name }}
          items:
            - key: {{ $api.key }}
              path: api-secrets
      {{- end }}
{{- end }}

{{- define "roster.tlsEnv" -}}
{{- if .Values.tls.enabled }}
- name: ROSTER_TLS_CERT
  value: /etc/roster/tls/tls.crt
- name: ROSTER_TLS_KEY
  value: /etc/roster/tls/tls.key
{{- if .Values.tls.clientAuth }}
- name: ROSTER_TLS_CLIENT_CA
  value: /etc/roster/tls/ca.crt
{{- end }}
{{- end }}
{{- end }}

{{- define "roster.tlsVolume" -}}
- name: tls
  secret:
    secretName: {{ required "tls.secretName is required when tls.enabled is true" .Values.tls.secretName }}
    defaultMode: 0440
{{- end }}

{{/*
The URL `roster healthcheck` uses inside the pod.
*/}}
{{- define "roster.healthcheckAddr" -}}
{{- printf "%s://127.0.0.1:%d" (ternary "https" "http" .Values.tls.enabled) (int .Values.containerPorts.grpc) }}
{{- end }}

{{/*
One probe. Argument: dict "ctx" $ "probe" <probe values>.
*/}}
{{- define "roster.probe" -}}
{{- if .ctx.Values.tls.enabled }}
exec:
  command:
    - /usr/local/bin/roster
    - healthcheck
    - --addr
    - {{ include "roster.healthcheckAddr" .ctx }}
{{- else }}
grpc:
  port: {{ .ctx.Values.containerPorts.grpc }}
{{- end }}
{{- with omit .probe "enabled" }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Pod settings shared by the server and the migration Job.
*/}}
{{- define "roster.podPlacement" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
