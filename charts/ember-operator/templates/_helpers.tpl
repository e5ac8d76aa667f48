{{/*
Chart name, overridable with nameOverride.
*/}}
{{- define "ember-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Name of the release's objects: fullnameOverride, else <release>-<chart> unless
the release name already contains the chart name. Kept to 55 characters so
that "-metrics" still fits in 63.
*/}}
{{- define "ember-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 55 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 55 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 55 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "ember-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels for every object of the release.
*/}}
{{- define "ember-operator.labels" -}}
helm.sh/chart: {{ include "ember-operator.chart" . }}
{{ include "ember-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ember
{{- end }}

{{/*
Labels that select the operator pod.
*/}}
{{- define "ember-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ember-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "ember-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ember-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ember-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
"true" when the operator watches every namespace: watch.allNamespaces, unless
KubeRay's singleNamespaceInstall or watchNamespace says otherwise.
*/}}
{{- define "ember-operator.allNamespaces" -}}
{{- if or .Values.singleNamespaceInstall .Values.watchNamespace }}false
{{- else }}{{ .Values.watch.allNamespaces }}
{{- end }}
{{- end }}

{{/*
The namespaces watched when not watching all, as a JSON list (read it back with
fromJsonArray): the release namespace with singleNamespaceInstall, else
watchNamespace (KubeRay's name) or watch.namespaces without duplicates, else
the release namespace.
*/}}
{{- define "ember-operator.watchNamespaces" -}}
{{- if .Values.singleNamespaceInstall }}
{{- list .Release.Namespace | toJson }}
{{- else if .Values.watchNamespace }}
{{- .Values.watchNamespace | uniq | toJson }}
{{- else if .Values.watch.namespaces }}
{{- .Values.watch.namespaces | uniq | toJson }}
{{- else }}
{{- list .Release.Namespace | toJson }}
{{- end }}
{{- end }}

{{/*
The operator's rules on RayClusters and the objects it owns, shared by the
ClusterRole and the per-namespace Roles.
*/}}
{{- define "ember-operator.namespacedRules" -}}
- apiGroups: ["ember.dev"]
  resources: ["rayclusters"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["ember.dev"]
  resources: ["rayclusters/status", "rayclusters/finalizers"]
  verbs: ["get", "patch", "update"]
- apiGroups: [""]
  resources: ["pods", "services", "secrets"]
  verbs: ["create", "get", "list", "watch", "patch", "delete"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
Name of the leader-election Lease: leaderElection.leaseName, else the fullname.
*/}}
{{- define "ember-operator.leaseName" -}}
{{- default (include "ember-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/*
Refuses values ember cannot honour. Included by the Deployment only, so a
render fails once, in the operator's own template.
*/}}
{{- define "ember-operator.validate" -}}
{{- if or .Values.batchScheduler.enabled .Values.batchScheduler.name }}
{{- fail "batchScheduler: ember schedules its pods itself and has no batch scheduler integration; leave batchScheduler.enabled false and name empty" }}
{{- end }}
{{- end }}
