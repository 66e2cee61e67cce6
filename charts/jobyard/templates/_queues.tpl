{{/*
Queues: each entry of .Values.queues merged over .Values.queueDefaults, checked, and
completed with the numbers the worker objects derive from it (under `k8s`).

  $queues := (include "jobyard.queues" . | fromYaml).queues

k8s.grace           terminationGracePeriodSeconds: above soft_time_limit_s + shutdown_grace_s
k8s.cooldown        KEDA cooldownPeriod: above the grace period
k8s.scaleDownPeriod periodSeconds of the HPA scale-down policy (default: the grace period)
k8s.fallback        KEDA fallback replicas
k8s.lists           the Redis lists of the queue, one per priority step
*/}}
{{- define "jobyard.queues" -}}
{{- $out := list -}}
{{- $seen := dict -}}
{{- $steps := default (list 0 3 6 9) .Values.config.broker.priority_steps -}}
{{- if not .Values.queues -}}
{{- fail "queues: at least one queue is required (each needs a name)" -}}
{{- end -}}
{{- range $i, $raw := .Values.queues -}}
{{- $q := merge (deepCopy $raw) (deepCopy $.Values.queueDefaults) -}}
{{- /* merge treats null as unset: keep a queue's explicit null (e.g. max_tasks_per_child: never). */ -}}
{{- range $key, $value := $raw -}}
{{- if kindIs "invalid" $value -}}
{{- $_ := set $q $key nil -}}
{{- end -}}
{{- end -}}
{{- $name := $q.name -}}
{{- if hasKey $seen $name -}}
{{- fail (printf "queues[%d]: queue name %q is used twice; queue names must be unique" $i $name) -}}
{{- end -}}
{{- $_ := set $seen $name true -}}
{{- $soft := float64 $q.soft_time_limit_s -}}
{{- $hard := float64 $q.time_limit_s -}}
{{- $shutdown := float64 $q.shutdown_grace_s -}}
{{- if ge $soft $hard -}}
{{- fail (printf "queues[%d] (%s): soft_time_limit_s (%v) must be below time_limit_s (%v) so a job can clean up before it is killed" $i $name $q.soft_time_limit_s $q.time_limit_s) -}}
{{- end -}}
{{- if gt (int $q.min_replicas) (int $q.max_replicas) -}}
{{- fail (printf "queues[%d] (%s): min_replicas (%d) must not exceed max_replicas (%d)" $i $name (int $q.min_replicas) (int $q.max_replicas)) -}}
{{- end -}}
{{- $floor := addf $soft $shutdown -}}
{{- $grace := 0 -}}
{{- if kindIs "invalid" $q.worker.terminationGracePeriodSeconds -}}
{{- $grace = add (int (ceil $floor)) (int $.Values.workers.terminationGraceMarginSeconds) -}}
{{- else -}}
{{- $grace = int $q.worker.terminationGracePeriodSeconds -}}
{{- if le (float64 $grace) $floor -}}
{{- fail (printf "queues[%d] (%s): worker.terminationGracePeriodSeconds (%d) must be above soft_time_limit_s + shutdown_grace_s (%v + %v = %v): the kubelet would kill running jobs before they finish or are requeued" $i $name $grace $q.soft_time_limit_s $q.shutdown_grace_s $floor) -}}
{{- end -}}
{{- end -}}
{{- $cooldown := 0 -}}
{{- if kindIs "invalid" $q.autoscaling.cooldownPeriod -}}
{{- $cooldown = add $grace 60 -}}
{{- else -}}
{{- $cooldown = int $q.autoscaling.cooldownPeriod -}}
{{- if le $cooldown $grace -}}
{{- fail (printf "queues[%d] (%s): autoscaling.cooldownPeriod (%d) must be above the grace period (%d s) so the last pod of a queue is not removed while it still drains" $i $name $cooldown $grace) -}}
{{- end -}}
{{- end -}}
{{- $period := 0 -}}
{{- if kindIs "invalid" $q.autoscaling.scaleDown.periodSeconds -}}
{{- $period = min $grace 1800 -}}
{{- else -}}
{{- $period = int $q.autoscaling.scaleDown.periodSeconds -}}
{{- end -}}
{{- $fallback := 0 -}}
{{- if kindIs "invalid" $q.autoscaling.fallback.replicas -}}
{{- $fallback = max 1 (int $q.min_replicas) -}}
{{- else -}}
{{- $fallback = int $q.autoscaling.fallback.replicas -}}
{{- end -}}
{{- if gt $fallback (int $q.max_replicas) -}}
{{- fail (printf "queues[%d] (%s): autoscaling.fallback.replicas (%d) must not exceed max_replicas (%d)" $i $name $fallback (int $q.max_replicas)) -}}
{{- end -}}
{{- $lists := list -}}
{{- range $steps -}}
{{- $lists = append $lists (dict "step" (int .) "trigger" (printf "q%d" (int .))) -}}
{{- end -}}
{{- $_ := set $q "k8s" (dict "grace" $grace "cooldown" $cooldown "scaleDownPeriod" $period "fallback" $fallback "lists" $lists) -}}
{{- $out = append $out $q -}}
{{- end -}}
{{- toYaml (dict "queues" $out) -}}
{{- end -}}

{{/* The queue's entry in jobyard.yaml: everything but the chart-only keys. */}}
{{- define "jobyard.runtimeQueue" -}}
{{- toYaml (omit . "worker" "autoscaling" "k8s") -}}
{{- end -}}

{{/* Whether worker Deployments are autoscaled (then `replicas` is never rendered). */}}
{{- define "jobyard.workersAutoscaled" -}}
{{- if or .Values.keda.enabled .Values.workers.cpuHpa.enabled -}}true{{- end -}}
{{- end -}}
