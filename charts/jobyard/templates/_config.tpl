{{/*
jobyard.yaml as rendered into the ConfigMap, and the Secret's data: both also feed the
checksum annotations that roll the pods when they change.
*/}}

{{- define "jobyard.configYaml" -}}
{{- $queues := (include "jobyard.queues" . | fromYaml).queues -}}
{{- $runtime := list -}}
{{- range $queues -}}
{{- $runtime = append $runtime (omit . "worker" "autoscaling" "k8s") -}}
{{- end -}}
{{- $cfg := dict "queues" $runtime "schedules" .Values.config.schedules -}}
{{- range $key := list "limits" "broker" "beat" "webhooks" "egress" -}}
{{- with index $.Values.config $key -}}
{{- $_ := set $cfg $key . -}}
{{- end -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* Mount path of jobyard.yaml (JOBYARD_CONFIG). */}}
{{- define "jobyard.configPath" -}}/etc/jobyard/jobyard.yaml{{- end -}}

{{/* The admin tokens (comma-separated) the chart's Secret holds: auth.adminTokens, or,
with auth.mode tokens and no token given at all, one generated token (the one a previous
release generated, found with lookup, else a new random one), memoised for this render.
Empty with secrets.existingSecret or auth.mode none. */}}
{{- define "jobyard.adminTokens" -}}
{{- if and (eq .Values.auth.mode "tokens") (not .Values.secrets.existingSecret) -}}
{{- if .Values.auth.adminTokens -}}
{{- join "," .Values.auth.adminTokens -}}
{{- else if not .Values.auth.apiTokens -}}
{{- if not (hasKey .Values.auth "generatedAdminToken") -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "jobyard.fullname" .) -}}
{{- $token := "" -}}
{{- if and $existing (hasKey (default dict $existing.data) "admin-tokens") -}}
{{- $token = index $existing.data "admin-tokens" | b64dec -}}
{{- else -}}
{{- $token = randAlphaNum 40 -}}
{{- end -}}
{{- $_ := set .Values.auth "generatedAdminToken" $token -}}
{{- end -}}
{{- .Values.auth.generatedAdminToken -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The first token a client (the helm test) can write with. */}}
{{- define "jobyard.clientToken" -}}
{{- if ne .Values.auth.mode "tokens" -}}
{{- else if include "jobyard.adminTokens" . -}}
{{- first (splitList "," (include "jobyard.adminTokens" .)) -}}
{{- else if .Values.auth.apiTokens -}}
{{- first .Values.auth.apiTokens -}}
{{- end -}}
{{- end -}}

{{/* Render errors for auth values that contradict each other or expose an open API. */}}
{{- define "jobyard.checkAuth" -}}
{{- $a := .Values.auth -}}
{{- if and (eq $a.mode "none") (or $a.apiTokens $a.adminTokens) -}}
{{- fail "auth.mode is none but auth.apiTokens or auth.adminTokens are set: remove the tokens, or set auth.mode=tokens to enforce them" -}}
{{- end -}}
{{- if .Values.api.ingress.enabled -}}
{{- if eq $a.mode "none" -}}
{{- fail "auth.mode none is refused with api.ingress.enabled: an Ingress would expose an API that anyone can read and write; set auth.mode=tokens with auth.adminTokens (or secrets.existingSecret)" -}}
{{- end -}}
{{- if not (or $a.apiTokens $a.adminTokens .Values.secrets.existingSecret) -}}
{{- fail "auth.adminTokens (or auth.apiTokens, or secrets.existingSecret with api-tokens and admin-tokens) is required when api.ingress.enabled: tokens are never generated for an API exposed through an Ingress" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The chart Secret's stringData (when secrets.existingSecret is empty). */}}
{{- define "jobyard.secretData" -}}
{{- include "jobyard.redisSecretData" . }}
{{- if eq .Values.auth.mode "tokens" }}
{{- with .Values.auth.apiTokens }}
api-tokens: {{ join "," . | quote }}
{{- end }}
{{- end }}
{{- with include "jobyard.adminTokens" . }}
admin-tokens: {{ . | quote }}
{{- end }}
{{- with include "jobyard.clientToken" . }}
client-token: {{ . | quote }}
{{- end }}
{{- with .Values.settings.webhookSecret }}
webhook-secret: {{ . | quote }}
{{- end }}
{{- with .Values.settings.webhookEndpointSecrets }}
webhook-secrets.json: {{ toJson . | quote }}
{{- end }}
{{- with .Values.settings.smtp.password }}
smtp-password: {{ . | quote }}
{{- end }}
{{- if .Values.flower.enabled }}
flower-basic-auth: {{ required "flower.basicAuth (user:password) is required when flower.enabled: Flower is never exposed without authentication" .Values.flower.basicAuth | quote }}
{{- end }}
{{- end -}}

{{/* The Secret's Redis keys: each component's URL (its own ACL user), the passwords (kept
across upgrades by lookup), KEDA's user name and, with the bundled Redis, its ACL file. */}}
{{- define "jobyard.redisSecretData" -}}
{{- $v := .Values }}
{{- $used := list "api" "worker" "beat" }}
{{- if $v.flower.enabled }}{{ $used = append $used "flower" }}{{ end }}
{{- range $c := $used }}
redis-url-{{ $c }}: {{ include "jobyard.redisUrl" (list $ $c) | quote }}
{{- end }}
{{- if $v.redis.auth }}
{{- $withPassword := $used }}
{{- if $v.redis.bundled.enabled }}
{{- $withPassword = splitList " " (include "jobyard.redisComponents" .) }}
{{- else if $v.keda.enabled }}
{{- $withPassword = append $withPassword "keda" }}
{{- end }}
{{- range $c := $withPassword }}
redis-password-{{ $c }}: {{ include "jobyard.redisPassword" (list $ $c) | quote }}
{{- end }}
redis-username-keda: {{ $v.redis.users.keda.username | quote }}
{{- if $v.redis.bundled.enabled }}
redis-users.acl: {{ include "jobyard.redisAclFile" . | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Checksum annotations of a jobyard pod template. */}}
{{- define "jobyard.checksums" -}}
checksum/config: {{ include "jobyard.configYaml" . | sha256sum }}
{{- if not .Values.secrets.existingSecret }}
checksum/secret: {{ include "jobyard.secretData" . | sha256sum }}
{{- end }}
{{- end -}}
