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
{{- range $key := list "limits" "broker" "beat" -}}
{{- with index $.Values.config $key -}}
{{- $_ := set $cfg $key . -}}
{{- end -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* Mount path of jobyard.yaml (JOBYARD_CONFIG). */}}
{{- define "jobyard.configPath" -}}/etc/jobyard/jobyard.yaml{{- end -}}

{{/* The admin tokens: from values; with auth.mode tokens and no token given, the one a
previous release generated (lookup) or a new random one, memoised for this render. */}}
{{- define "jobyard.adminTokens" -}}
{{- if .Values.auth.adminTokens -}}
{{- join "," .Values.auth.adminTokens -}}
{{- else if and (eq .Values.auth.mode "tokens") (not .Values.auth.apiTokens) (not .Values.secrets.existingSecret) -}}
{{- if not (hasKey .Values.auth "generatedAdminToken") -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "jobyard.fullname" .) -}}
{{- $token := "" -}}
{{- if and $existing (hasKey (default dict $existing.data) "admin-tokens") -}}
{{- $token = index $existing.data "admin-tokens" | b64dec -}}
{{- else -}}
{{- $token = randAlphaNum 48 -}}
{{- end -}}
{{- $_ := set .Values.auth "generatedAdminToken" $token -}}
{{- end -}}
{{- .Values.auth.generatedAdminToken -}}
{{- end -}}
{{- end -}}

{{/* The first token a client (the helm test) can write with. */}}
{{- define "jobyard.clientToken" -}}
{{- with include "jobyard.adminTokens" . -}}
{{- first (splitList "," .) -}}
{{- else -}}
{{- with .Values.auth.apiTokens -}}
{{- first . -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Render-time checks of the API's exposure. */}}
{{- define "jobyard.checkAuth" -}}
{{- if .Values.api.ingress.enabled -}}
{{- if eq .Values.auth.mode "none" -}}
{{- fail "auth.mode none with api.ingress.enabled: an Ingress would publish an API anyone can use; set auth.mode tokens and auth.adminTokens" -}}
{{- end -}}
{{- if not (or .Values.secrets.existingSecret .Values.auth.apiTokens .Values.auth.adminTokens) -}}
{{- fail "api.ingress.enabled needs tokens you know: set auth.adminTokens (and auth.apiTokens for readers), or put admin-tokens and api-tokens in secrets.existingSecret" -}}
{{- end -}}
{{- end -}}
{{- if and (eq .Values.auth.mode "none") (or .Values.auth.apiTokens .Values.auth.adminTokens) -}}
{{- fail "auth.mode none with auth.apiTokens or auth.adminTokens set: remove the tokens to run open, or set auth.mode tokens" -}}
{{- end -}}
{{- end -}}

{{/* The chart Secret's stringData (when secrets.existingSecret is empty). */}}
{{- define "jobyard.secretData" -}}
redis-url: {{ include "jobyard.redisUrl" . | quote }}
{{- if .Values.redis.auth }}
redis-password: {{ include "jobyard.redisPassword" . | quote }}
{{- end }}
{{- if .Values.redis.username }}
redis-username: {{ .Values.redis.username | quote }}
{{- end }}
{{- with .Values.auth.apiTokens }}
api-tokens: {{ join "," . | quote }}
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
{{- with .Values.settings.smtp.password }}
smtp-password: {{ . | quote }}
{{- end }}
{{- if .Values.flower.enabled }}
flower-basic-auth: {{ required "flower.basicAuth (user:password) is required when flower.enabled: Flower is never exposed without authentication" .Values.flower.basicAuth | quote }}
{{- end }}
{{- end -}}

{{/* Checksum annotations of a jobyard pod template. */}}
{{- define "jobyard.checksums" -}}
checksum/config: {{ include "jobyard.configYaml" . | sha256sum }}
{{- if not .Values.secrets.existingSecret }}
checksum/secret: {{ include "jobyard.secretData" . | sha256sum }}
{{- end }}
{{- end -}}
