{{/*
Where Redis is, and the URL and password the Secret holds.
*/}}

{{/* Host of Redis: the bundled Service (namespace-qualified, so KEDA's operator in its own
namespace resolves it too) or redis.host. */}}
{{- define "jobyard.redisHost" -}}
{{- if .Values.redis.bundled.enabled -}}
{{- if .Values.redis.host -}}
{{- fail "redis.host is set and redis.bundled.enabled is true: use one Redis; set redis.bundled.enabled=false for an external Redis" -}}
{{- end -}}
{{- printf "%s.%s.svc" (include "jobyard.componentName" (list . "redis")) .Release.Namespace -}}
{{- else -}}
{{- required "redis.host is required when redis.bundled.enabled is false (the host name of your Redis)" .Values.redis.host -}}
{{- end -}}
{{- end -}}

{{/* KEDA's `address`: host:port, not a URL. */}}
{{- define "jobyard.redisAddress" -}}
{{- printf "%s:%d" (include "jobyard.redisHost" .) (int .Values.redis.port) -}}
{{- end -}}

{{/* The Redis password from values; with the bundled Redis and none given, the one a
previous release generated (lookup) or a new random one, memoised for this render. */}}
{{- define "jobyard.redisPassword" -}}
{{- if .Values.redis.password -}}
{{- .Values.redis.password -}}
{{- else if .Values.redis.bundled.enabled -}}
{{- if not (hasKey .Values.redis "generatedPassword") -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "jobyard.fullname" .) -}}
{{- $pw := "" -}}
{{- if and $existing (hasKey (default dict $existing.data) "redis-password") -}}
{{- $pw = index $existing.data "redis-password" | b64dec -}}
{{- else -}}
{{- $pw = randAlphaNum 32 -}}
{{- end -}}
{{- $_ := set .Values.redis "generatedPassword" $pw -}}
{{- end -}}
{{- .Values.redis.generatedPassword -}}
{{- else -}}
{{- fail "redis.password is required when redis.auth is true (or put it in secrets.existingSecret under redis-password, or set redis.auth=false for a Redis without a password)" -}}
{{- end -}}
{{- end -}}

{{/* Path where the Redis CA certificate is mounted in jobyard pods. */}}
{{- define "jobyard.redisCaPath" -}}
/etc/jobyard/redis-ca/{{ .Values.redis.tls.caSecretKey }}
{{- end -}}

{{/* The broker/store URL: redis[s]://[user:password@]host:port/db[?ssl options].
User and password are percent-encoded (urlquery writes a space as "+", which a URL's user
info would keep as a plus: it becomes %20). */}}
{{- define "jobyard.redisUrl" -}}
{{- $auth := "" -}}
{{- if .Values.redis.auth -}}
{{- $user := urlquery .Values.redis.username | replace "+" "%20" -}}
{{- $pw := urlquery (include "jobyard.redisPassword" .) | replace "+" "%20" -}}
{{- $auth = printf "%s:%s@" $user $pw -}}
{{- end -}}
{{- $query := "" -}}
{{- if .Values.redis.tls.enabled -}}
{{- $q := list (printf "ssl_cert_reqs=%s" (ternary "required" "none" .Values.redis.tls.verifyCertificate)) -}}
{{- if .Values.redis.tls.caSecretName -}}
{{- $q = append $q (printf "ssl_ca_certs=%s" (include "jobyard.redisCaPath" .)) -}}
{{- end -}}
{{- $query = printf "?%s" (join "&" $q) -}}
{{- end -}}
{{- printf "%s://%s%s/%d%s" (ternary "rediss" "redis" .Values.redis.tls.enabled) $auth (include "jobyard.redisAddress" .) (int .Values.redis.database) $query -}}
{{- end -}}
