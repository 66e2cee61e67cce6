{{/*
The `kubectlPlugin.rbac` values, checked: `scope: cluster` (ClusterRoles and
ClusterRoleBindings on every namespace) was removed, with a message saying what to do.
Call: include "jobyard.kubectlRbac" . | fromYaml
*/}}
{{- define "jobyard.kubectlRbac" -}}
{{- $rbac := .Values.kubectlPlugin.rbac -}}
{{- if eq (default "namespace" $rbac.scope) "cluster" -}}
{{- fail "kubectlPlugin.rbac.scope: \"cluster\" was removed: its ClusterRoles let a holder get every Secret, patch every Deployment and proxy to every Service of the cluster. The kubectl roles are now Roles in the release's namespace that name this release's objects; remove kubectlPlugin.rbac.scope (or set it to \"namespace\") and bind each release's roles with kubectlPlugin.rbac.readOnlySubjects / operatorSubjects (docs/operations.md, RBAC)" -}}
{{- end -}}
{{- toYaml $rbac -}}
{{- end -}}
