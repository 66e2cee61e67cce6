{{/*
What every jobyard pod shares: environment, volumes, mounts, pod-level settings.
*/}}

{{/* A Secret-backed env var. Call: include "jobyard.secretEnv" (list $ "JOBYARD_X" "key" required) */}}
{{- define "jobyard.secretEnv" -}}
{{- $ctx := index . 0 -}}
- name: {{ index . 1 }}
  valueFrom:
    secretKeyRef:
      name: {{ include "jobyard.secretName" $ctx }}
      key: {{ index . 2 }}
      {{- if not (index . 3) }}
      optional: true
      {{- end }}
{{- end -}}

{{/*
Environment of a jobyard container. Call with a dict: ctx, component (api | worker |
beat | test), extra (the component's extraEnv).
Only JOBYARD_* names jobyard knows are rendered (an unknown one stops it at start-up).
Least privilege: each component gets only the secrets (and settings) it uses. The API
holds the read and admin tokens; workers the webhook secrets and the SMTP password (user
job code runs there: it never holds an API token); beat no token nor job secret; the helm
test only the client token.
*/}}
{{- define "jobyard.env" -}}
{{- $ctx := .ctx -}}
{{- $v := $ctx.Values -}}
{{- $existing := $v.secrets.existingSecret -}}
{{- if ne .component "test" }}
{{ include "jobyard.secretEnv" (list $ctx "JOBYARD_REDIS_URL" (printf "redis-url-%s" .component) true) }}
{{- end }}
- name: JOBYARD_CONFIG
  value: {{ include "jobyard.configPath" $ctx | quote }}
- name: JOBYARD_LOG_FORMAT
  value: {{ $v.settings.logFormat | quote }}
- name: JOBYARD_LOG_LEVEL
  value: {{ $v.settings.logLevel | quote }}
{{- with $v.settings.jobModules }}
- name: JOBYARD_JOB_MODULES
  value: {{ join "," . | quote }}
{{- end }}
{{- if eq .component "test" }}
- name: JOBYARD_API_URL
  value: {{ printf "http://%s:%d" (include "jobyard.componentName" (list $ctx "api")) (int $v.api.service.port) | quote }}
{{- if and (eq $v.auth.mode "tokens") (or $existing (include "jobyard.clientToken" $ctx)) }}
{{ include "jobyard.secretEnv" (list $ctx "JOBYARD_API_TOKEN" "client-token" false) }}
{{- end }}
{{- end }}
{{- if eq .component "api" }}
- name: JOBYARD_API_AUTH
  value: {{ $v.auth.mode | quote }}
- name: JOBYARD_API_DOCS
  value: {{ $v.api.docs.enabled | quote }}
{{- if eq $v.auth.mode "tokens" }}
{{- /* an existingSecret must hold both keys: a missing one stops the pod instead of
leaving the API with fewer tokens than meant */}}
{{- if or $existing $v.auth.apiTokens }}
{{ include "jobyard.secretEnv" (list $ctx "JOBYARD_API_TOKENS" "api-tokens" true) }}
{{- end }}
{{- if or $existing (include "jobyard.adminTokens" $ctx) }}
{{ include "jobyard.secretEnv" (list $ctx "JOBYARD_ADMIN_TOKENS" "admin-tokens" true) }}
{{- end }}
{{- end }}
- name: JOBYARD_API_HOST
  value: "0.0.0.0"
- name: JOBYARD_API_PORT
  value: {{ $v.api.port | quote }}
{{- end }}
{{- if eq .component "worker" }}
{{- if or $existing $v.settings.webhookSecret }}
{{ include "jobyard.secretEnv" (list $ctx "JOBYARD_WEBHOOK_SECRET" "webhook-secret" (not $existing)) }}
{{- end }}
{{- if include "jobyard.webhookSecretsFile" $ctx }}
- name: JOBYARD_WEBHOOK_SECRETS_FILE
  value: {{ include "jobyard.webhookSecretsFile" $ctx | quote }}
{{- end }}
- name: JOBYARD_WEBHOOK_TIMEOUT_S
  value: {{ $v.settings.webhookTimeoutS | quote }}
- name: JOBYARD_SMTP_HOST
  value: {{ $v.settings.smtp.host | quote }}
- name: JOBYARD_SMTP_PORT
  value: {{ $v.settings.smtp.port | quote }}
{{- with $v.settings.smtp.username }}
- name: JOBYARD_SMTP_USERNAME
  value: {{ . | quote }}
{{- end }}
{{- if or $existing $v.settings.smtp.password }}
{{ include "jobyard.secretEnv" (list $ctx "JOBYARD_SMTP_PASSWORD" "smtp-password" (not $existing)) }}
{{- end }}
- name: JOBYARD_SMTP_STARTTLS
  value: {{ $v.settings.smtp.starttls | quote }}
- name: JOBYARD_SMTP_FROM
  value: {{ $v.settings.smtp.from | quote }}
- name: JOBYARD_SMTP_TIMEOUT_S
  value: {{ $v.settings.smtp.timeoutS | quote }}
- name: JOBYARD_EXPORT_DIR
  value: {{ $v.exports.mountPath | quote }}
- name: JOBYARD_HEARTBEAT_DIR
  value: "/tmp/jobyard"
- name: JOBYARD_HEARTBEAT_INTERVAL_S
  value: {{ $v.settings.heartbeatIntervalS | quote }}
- name: JOBYARD_HEARTBEAT_MAX_AGE_S
  value: {{ $v.settings.heartbeatMaxAgeS | quote }}
- name: JOBYARD_WORKER_METRICS_PORT
  value: {{ $v.workers.metricsPort | quote }}
{{- end }}
{{- if eq .component "beat" }}
- name: JOBYARD_BEAT_METRICS_PORT
  value: {{ $v.beat.metricsPort | quote }}
{{- end }}
{{- if not (hasKey $v.otel.env "OTEL_SERVICE_NAME") }}
- name: OTEL_SERVICE_NAME
  value: {{ printf "jobyard-%s" .component | quote }}
{{- end }}
{{- range $name, $value := $v.otel.env }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- with $v.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- with .extra }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Where workers read the per-endpoint webhook secrets (JOBYARD_WEBHOOK_SECRETS_FILE);
empty when there are none (no settings.webhookEndpointSecrets, no existingSecret). */}}
{{- define "jobyard.webhookSecretsFile" -}}
{{- if or .Values.secrets.existingSecret .Values.settings.webhookEndpointSecrets -}}
/var/run/secrets/jobyard/webhook-secrets.json
{{- end -}}
{{- end -}}

{{/* Volume mounts of a jobyard container. Call with a dict: ctx, exports (bool: the
exports directory, read-write; workers only: report.export runs there), webhookSecrets
(bool: the per-endpoint webhook secrets file, read-only; workers only). */}}
{{- define "jobyard.volumeMounts" -}}
- name: config
  mountPath: /etc/jobyard
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- if .exports }}
- name: exports
  mountPath: {{ .ctx.Values.exports.mountPath }}
{{- end }}
{{- if and .webhookSecrets (include "jobyard.webhookSecretsFile" .ctx) }}
- name: webhook-secrets
  mountPath: {{ include "jobyard.webhookSecretsFile" .ctx | dir }}
  readOnly: true
{{- end }}
{{- if and .ctx.Values.redis.tls.enabled .ctx.Values.redis.tls.caSecretName }}
- name: redis-ca
  mountPath: /etc/jobyard/redis-ca
  readOnly: true
{{- end }}
{{- end -}}

{{/* Volumes of a jobyard pod. Call with a dict: ctx, exports (bool), webhookSecrets (bool). */}}
{{- define "jobyard.volumes" -}}
- name: config
  configMap:
    name: {{ include "jobyard.configMapName" .ctx }}
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- if .exports }}
- name: exports
  {{- if .ctx.Values.exports.existingClaim }}
  persistentVolumeClaim:
    claimName: {{ .ctx.Values.exports.existingClaim }}
  {{- else }}
  emptyDir:
    sizeLimit: {{ .ctx.Values.exports.sizeLimit }}
  {{- end }}
{{- end }}
{{- if and .webhookSecrets (include "jobyard.webhookSecretsFile" .ctx) }}
- name: webhook-secrets
  secret:
    secretName: {{ include "jobyard.secretName" .ctx }}
    defaultMode: 0440
    items:
      - key: webhook-secrets.json
        path: {{ include "jobyard.webhookSecretsFile" .ctx | base }}
    {{- if .ctx.Values.secrets.existingSecret }}
    optional: true
    {{- end }}
{{- end }}
{{- if and .ctx.Values.redis.tls.enabled .ctx.Values.redis.tls.caSecretName }}
- name: redis-ca
  secret:
    secretName: {{ .ctx.Values.redis.tls.caSecretName }}
    items:
      - key: {{ .ctx.Values.redis.tls.caSecretKey }}
        path: {{ .ctx.Values.redis.tls.caSecretKey }}
{{- end }}
{{- end -}}

{{/* Pod-level settings shared by every jobyard pod (service account, security, pulls). */}}
{{- define "jobyard.podCommon" -}}
serviceAccountName: {{ include "jobyard.serviceAccountName" . }}
automountServiceAccountToken: {{ .Values.serviceAccount.automountServiceAccountToken }}
enableServiceLinks: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Scheduling settings of a component. Call with a dict: sel (selector-labels dict), opts
(the component's values: nodeSelector, tolerations, affinity, topologySpreadConstraints,
priorityClassName), spread (bool: default topology spread). */}}
{{- define "jobyard.scheduling" -}}
{{- with .opts.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .opts.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .opts.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .opts.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- if .spread }}
topologySpreadConstraints:
  {{- if .opts.topologySpreadConstraints }}
  {{- toYaml .opts.topologySpreadConstraints | nindent 2 }}
  {{- else }}
  {{- include "jobyard.topologySpread" .sel | nindent 2 }}
  {{- end }}
{{- end }}
{{- end -}}
