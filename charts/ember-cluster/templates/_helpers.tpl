{{/*
Name of the RayCluster: nameOverride, else the release name. The operator
derives <name>-head-svc (Service) and <name>-token (Secret) from it.
*/}}
{{- define "ember-cluster.name" -}}
{{- default .Release.Name .Values.nameOverride | trunc 50 | trimSuffix "-" }}
{{- end }}

{{- define "ember-cluster.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ember-cluster.labels" -}}
helm.sh/chart: {{ include "ember-cluster.chart" . }}
app.kubernetes.io/name: ember-cluster
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ember
{{- end }}

{{- define "ember-cluster.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
startParams as a map of strings (the CRD's type): strings stay as they are,
anything else (numbers, booleans, maps, lists) is written as JSON. The flags
that the operator sets itself (ports, address, token file...) are refused
here, as the operator would refuse them.
*/}}
{{- define "ember-cluster.startParams" -}}
{{- $params := dict }}
{{- range $key, $value := . }}
{{- if has $key (list "head" "address" "block" "host" "port" "metrics-port" "metrics-export-port" "dashboard-port" "token-file" "node-ip-address" "state-dir") }}
{{- fail (printf "startParams: %q is set by the operator for every pod and cannot be given" $key) }}
{{- end }}
{{- if kindIs "string" $value }}
{{- $_ := set $params $key $value }}
{{- else }}
{{- $_ := set $params $key (toJson $value) }}
{{- end }}
{{- end }}
{{- toYaml $params }}
{{- end }}

{{/*
A worker group with the fields it leaves out taken from .Values.worker.
Argument: dict "group" <entry> "worker" <.Values.worker>. Result: YAML.
*/}}
{{- define "ember-cluster.resolveGroup" -}}
{{- $group := .group }}
{{- $resolved := dict "groupName" $group.groupName }}
{{- range $key := list "replicas" "minReplicas" "maxReplicas" "startParams" "rayStartParams" "resources" "env" "envFrom" "podLabels" "podAnnotations" "labels" "annotations" "nodeSelector" "tolerations" "affinity" "command" "args" "volumes" "volumeMounts" "initContainers" "sidecarContainers" "securityContext" "podSecurityContext" "lifecycle" "serviceAccountName" }}
{{- if hasKey $group $key }}
{{- $_ := set $resolved $key (get $group $key) }}
{{- else if hasKey $.worker $key }}
{{- $_ := set $resolved $key (get $.worker $key) }}
{{- end }}
{{- end }}
{{- toYaml $resolved }}
{{- end }}

{{/*
A pod template. Argument: dict "root" $ "node" <head or group values>
"container" <container name> "component" <head|worker>.
*/}}
{{- define "ember-cluster.podTemplate" -}}
{{- $root := .root }}
{{- $node := .node -}}
metadata:
  labels:
    {{- include "ember-cluster.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
    {{- with $node.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    {{- with $node.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- $annotations := merge (dict) ($node.annotations | default dict) ($node.podAnnotations | default dict) }}
  {{- with $annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  {{- with ($node.serviceAccountName | default $root.Values.serviceAccountName) }}
  serviceAccountName: {{ . }}
  {{- end }}
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $node.podSecurityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $node.initContainers }}
  initContainers:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: {{ .container }}
      image: {{ include "ember-cluster.image" $root | quote }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      {{- /* run before the agent (the operator appends `&& exec ember start ...`) */}}
      {{- with $node.command }}
      command:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $node.args }}
      args:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $node.env }}
      env:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $node.envFrom }}
      envFrom:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $node.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $node.volumeMounts }}
      volumeMounts:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $node.securityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $node.lifecycle }}
      lifecycle:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    {{- with $node.sidecarContainers }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $node.volumes }}
  volumes:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $node.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $node.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $node.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
