{{/*
Names, labels and images: every object takes them from here.
*/}}

{{/* The chart name (app.kubernetes.io/name). */}}
{{- define "jobyard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The prefix of every object name. */}}
{{- define "jobyard.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
A component's object name: <fullname>-<suffix>. Fails instead of truncating, so two
queues can never collide on a shortened name.
Call: include "jobyard.componentName" (list $ "worker-default")
*/}}
{{- define "jobyard.componentName" -}}
{{- $ctx := index . 0 -}}
{{- $name := printf "%s-%s" (include "jobyard.fullname" $ctx) (index . 1) -}}
{{- if gt (len $name) 63 -}}
{{- fail (printf "object name %q is %d characters, Kubernetes allows 63: shorten fullnameOverride, the release name or the queue name" $name (len $name)) -}}
{{- end -}}
{{- $name -}}
{{- end -}}

{{- define "jobyard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Selector labels. Call with a dict: ctx (root), component, queue (optional).
*/}}
{{- define "jobyard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "jobyard.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- if .queue }}
jobyard.io/queue: {{ .queue }}
{{- end }}
{{- end -}}

{{/*
Labels of every object. Call with a dict: ctx (root), component, queue (optional).
*/}}
{{- define "jobyard.labels" -}}
helm.sh/chart: {{ include "jobyard.chart" .ctx }}
{{ include "jobyard.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: jobyard
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
The image reference. Call with a dict: ctx (root), override (a component's image map).
*/}}
{{- define "jobyard.image" -}}
{{- $img := merge (deepCopy (default dict .override)) (deepCopy .ctx.Values.image) -}}
{{- $tag := default .ctx.Chart.AppVersion $img.tag -}}
{{- if $img.digest -}}
{{- printf "%s:%s@%s" $img.repository $tag $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "jobyard.imagePullPolicy" -}}
{{- $img := merge (deepCopy (default dict .override)) (deepCopy .ctx.Values.image) -}}
{{- $img.pullPolicy -}}
{{- end -}}

{{- define "jobyard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "jobyard.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "jobyard.secretName" -}}
{{- default (include "jobyard.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "jobyard.configMapName" -}}
{{- include "jobyard.componentName" (list . "config") -}}
{{- end -}}

{{/*
Default topology spread for a component: over zones and nodes, never blocking scheduling.
Call with the selector-labels dict.
*/}}
{{- define "jobyard.topologySpread" -}}
- maxSkew: 1
  topologyKey: topology.kubernetes.io/zone
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "jobyard.selectorLabels" . | nindent 6 }}
- maxSkew: 1
  topologyKey: kubernetes.io/hostname
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "jobyard.selectorLabels" . | nindent 6 }}
{{- end -}}

{{/* Whether the cluster (or the user, for offline renders) has KEDA's API. */}}
{{- define "jobyard.kedaAvailable" -}}
{{- if or .Values.keda.crdInstalled (.Capabilities.APIVersions.Has "keda.sh/v1alpha1") -}}true{{- end -}}
{{- end -}}

{{/* Whether the cluster (or the user) has the Prometheus Operator's API. */}}
{{- define "jobyard.monitoringAvailable" -}}
{{- if or .Values.monitoring.crdInstalled (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1") -}}true{{- end -}}
{{- end -}}

{{/* Fails when monitoring objects are wanted but the cluster cannot take them. */}}
{{- define "jobyard.requireMonitoringApi" -}}
{{- if not (include "jobyard.monitoringAvailable" .) -}}
{{- fail "monitoring.serviceMonitor/podMonitor/prometheusRule need the Prometheus Operator (API monitoring.coreos.com/v1), which this cluster does not report: install it (e.g. kube-prometheus-stack), set monitoring.crdInstalled=true when rendering offline (helm template, GitOps, Tilt), or disable those monitoring values" -}}
{{- end -}}
{{- end -}}

{{/* The runbook URL prefix in files/prometheus/jobyard-alerts.yaml; rewritten to
monitoring.prometheusRule.runbookBaseUrl when that is set. */}}
{{- define "jobyard.defaultRunbookBaseUrl" -}}
https://github.com/jobyard/jobyard/blob/main/docs/runbooks/
{{- end -}}

{{/* The Grafana URL prefix of dashboard_url in the same file; rewritten to
monitoring.prometheusRule.grafanaBaseUrl when that is set. */}}
{{- define "jobyard.defaultGrafanaBaseUrl" -}}
https://grafana.example.com
{{- end -}}

{{/*
Name of a `kubectl jobyard` role (read-only | operator). ClusterRoles are cluster-wide, so
theirs carry the namespace too. Call: include "jobyard.kubectlRoleName" (list $ "operator")
*/}}
{{- define "jobyard.kubectlRoleName" -}}
{{- $ctx := index . 0 -}}
{{- if eq $ctx.Values.kubectlPlugin.rbac.scope "cluster" -}}
{{- printf "%s-%s-kubectl-%s" $ctx.Release.Namespace (include "jobyard.fullname" $ctx) (index . 1) -}}
{{- else -}}
{{- include "jobyard.componentName" (list $ctx (printf "kubectl-%s" (index . 1))) -}}
{{- end -}}
{{- end -}}

{{/*
Annotations of the API Ingress: api.ingress.annotations (ingress-nginx defaults that bound
slow and large requests, overridable key by key, removable with null) plus
nginx.ingress.kubernetes.io/proxy-body-size = limits.max_payload_bytes, unless given.
*/}}
{{- define "jobyard.ingressAnnotations" -}}
{{- $annotations := deepCopy (default dict .Values.api.ingress.annotations) -}}
{{- $key := "nginx.ingress.kubernetes.io/proxy-body-size" -}}
{{- if not (hasKey $annotations $key) -}}
{{- $limit := 262144 -}}
{{- with .Values.config.limits.max_payload_bytes -}}
{{- $limit = . -}}
{{- end -}}
{{- $_ := set $annotations $key (printf "%d" (int $limit)) -}}
{{- end -}}
{{- toYaml $annotations -}}
{{- end -}}
