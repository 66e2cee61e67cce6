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

{{/* The first token a client (the helm test) can write with. */}}
{{- define "jobyard.clientToken" -}}
{{- if .Values.auth.adminTokens -}}
{{- first .Values.auth.adminTokens -}}
{{- else if .Values.auth.apiTokens -}}
{{- first .Values.auth.apiTokens -}}
{{- end -}}
{{- end -}}

{{/* The chart Secret's stringData (when secrets.existingSecret is empty). */}}
{{- define "jobyard.secretData" -}}
{{- include "jobyard.redisSecretData" . }}
{{- with .Values.auth.apiTokens }}
api-tokens: {{ join "," . | quote }}
{{- end }}
{{- with .Values.auth.adminTokens }}
admin-tokens: {{ join "," . | quote }}
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
