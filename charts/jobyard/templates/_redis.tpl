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

{{/* The components that log in to Redis as their own ACL user (redis.users.<component>),
besides Redis' default user (PING only). */}}
{{- define "jobyard.redisComponents" -}}api worker beat keda flower probe{{- end -}}

{{/* The Redis password of a component's user: redis.users.<component>.password; with the
bundled Redis and none given, the one a previous release generated (lookup of the Secret's
redis-password-<component>) or a new random one, memoised for this render.
Call: include "jobyard.redisPassword" (list $ "worker") */}}
{{- define "jobyard.redisPassword" -}}
{{- $ctx := index . 0 -}}
{{- $component := index . 1 -}}
{{- $user := index $ctx.Values.redis.users $component -}}
{{- if $user.password -}}
{{- $user.password -}}
{{- else if $ctx.Values.redis.bundled.enabled -}}
{{- if not (hasKey $user "generatedPassword") -}}
{{- $existing := lookup "v1" "Secret" $ctx.Release.Namespace (include "jobyard.fullname" $ctx) -}}
{{- $key := printf "redis-password-%s" $component -}}
{{- $pw := "" -}}
{{- if and $existing (hasKey (default dict $existing.data) $key) -}}
{{- $pw = index $existing.data $key | b64dec -}}
{{- else -}}
{{- $pw = randAlphaNum 32 -}}
{{- end -}}
{{- $_ := set $user "generatedPassword" $pw -}}
{{- end -}}
{{- $user.generatedPassword -}}
{{- else -}}
{{- fail (printf "redis.users.%s.password is required when redis.auth is true and the Redis is external (or use secrets.existingSecret with the key redis-password-%s / redis-url-%s, or set redis.auth=false for a Redis without passwords)" $component $component $component) -}}
{{- end -}}
{{- end -}}

{{/* The bundled Redis' ACL file (aclfile): one user per entry of files/redis/acl-rules.yaml
(the rules the fault suite and deploy/redis-acl.example.acl use), in name order, each
`user <name> reset <on|off> <#sha256 of its password | nopass> <rules>`, a rule naming {queue}
repeated for every queue. Passwords appear only as their SHA-256. */}}
{{- define "jobyard.redisAclFile" -}}
{{- $ctx := . -}}
{{- $doc := .Files.Get "files/redis/acl-rules.yaml" | fromYaml -}}
{{- $queues := list -}}
{{- range (include "jobyard.queues" $ctx | fromYaml).queues -}}
{{- $queues = append $queues .name -}}
{{- end -}}
{{- range $name := keys $doc.users | sortAlpha }}
{{- $entry := index $doc.users $name -}}
{{- $flat := list -}}
{{- range $entry.rules -}}
{{- if kindIs "slice" . -}}
{{- $flat = concat $flat . -}}
{{- else -}}
{{- $flat = append $flat . -}}
{{- end -}}
{{- end -}}
{{- $tokens := list -}}
{{- range $rule := $flat -}}
{{- if contains "{queue}" $rule -}}
{{- range $q := $queues -}}
{{- $tokens = append $tokens (replace "{queue}" $q $rule) -}}
{{- end -}}
{{- else -}}
{{- $tokens = append $tokens $rule -}}
{{- end -}}
{{- end -}}
{{- if eq $name "default" -}}
{{- printf "user default reset %s %s %s\n" (default "on" $entry.state) $entry.password (join " " $tokens) -}}
{{- else -}}
{{- $user := index $ctx.Values.redis.users $name -}}
{{- printf "user %s reset %s #%s %s\n" $user.username (default "on" $entry.state) (include "jobyard.redisPassword" (list $ctx $name) | sha256sum) (join " " $tokens) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Path where the Redis CA certificate is mounted in jobyard pods. */}}
{{- define "jobyard.redisCaPath" -}}
/etc/jobyard/redis-ca/{{ .Values.redis.tls.caSecretKey }}
{{- end -}}

{{/* A component's broker/store URL: redis[s]://[user:password@]host:port/db[?ssl options],
as that component's ACL user. User and password are percent-encoded (urlquery writes a
space as "+", which a URL's user info would keep as a plus: it becomes %20).
Call: include "jobyard.redisUrl" (list $ "api") */}}
{{- define "jobyard.redisUrl" -}}
{{- $component := index . 1 -}}
{{- with index . 0 -}}
{{- $auth := "" -}}
{{- if .Values.redis.auth -}}
{{- $user := urlquery (index .Values.redis.users $component).username | replace "+" "%20" -}}
{{- $pw := urlquery (include "jobyard.redisPassword" (list . $component)) | replace "+" "%20" -}}
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
{{- end -}}

{{/* The bundled Redis' probe: PING as the probe user (password from REDISCLI_AUTH), healthy
only on PONG (redis-cli exits 0 on an error reply such as NOAUTH or LOADING). */}}
{{- define "jobyard.redisProbe" -}}
{{- $cli := printf "redis-cli -p %d" (int .Values.redis.port) -}}
{{- if .Values.redis.auth -}}
{{- $cli = printf "%s --user %s --no-auth-warning" $cli (.Values.redis.users.probe.username | squote) -}}
{{- end -}}
{{- list "sh" "-c" (printf "%s ping | grep -qx PONG" $cli) | toJson -}}
{{- end -}}
