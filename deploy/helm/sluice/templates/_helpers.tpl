{{/* Names. */}}
{{- define "sluice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sluice.fullname" -}}
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

{{- define "sluice.controlPlane.fullname" -}}{{ include "sluice.fullname" . | trunc 49 | trimSuffix "-" }}-control-plane{{- end -}}
{{- define "sluice.gateway.fullname" -}}{{ include "sluice.fullname" . | trunc 55 | trimSuffix "-" }}-gateway{{- end -}}
{{- define "sluice.etcd.fullname" -}}{{ include "sluice.fullname" . | trunc 52 | trimSuffix "-" }}-etcd{{- end -}}

{{- define "sluice.secretName" -}}
{{- .Values.secrets.existingSecret | default (include "sluice.fullname" .) -}}
{{- end -}}

{{- define "sluice.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "sluice.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{/* Labels: every object; selector labels per component. */}}
{{- define "sluice.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "sluice.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{- define "sluice.etcd.image" -}}
{{- $i := .Values.etcd.bundled.image -}}
{{- if $i.digest -}}
{{ $i.repository }}@{{ $i.digest }}
{{- else -}}
{{ $i.repository }}:{{ $i.tag }}
{{- end -}}
{{- end -}}

{{/* The pod-level security context of every pod of the chart. */}}
{{- define "sluice.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The etcd client URLs the control plane uses. */}}
{{- define "sluice.etcd.endpoints" -}}
{{- if .Values.etcd.bundled.enabled -}}
{{- $etcd := include "sluice.etcd.fullname" . -}}
{{- $urls := list -}}
{{- range $i := until (int .Values.etcd.bundled.replicas) -}}
{{- $urls = append $urls (printf "http://%s-%d.%s-headless.%s.svc:2379" $etcd $i $etcd $.Release.Namespace) -}}
{{- end -}}
{{- join "," $urls -}}
{{- else -}}
{{- join "," .Values.etcd.endpoints -}}
{{- end -}}
{{- end -}}

{{/* The control plane's gRPC URL, for the gateway. */}}
{{- define "sluice.controlPlane.url" -}}
http://{{ include "sluice.controlPlane.fullname" . }}.{{ .Release.Namespace }}.svc:{{ .Values.controlPlane.port }}
{{- end -}}

{{/*
Cross-field rules the schema cannot say clearly: each fails the install with
what to change.
*/}}
{{- define "sluice.validate" -}}
{{- $v := .Values -}}
{{- if eq $v.store "embedded" -}}
  {{- if gt (int $v.controlPlane.replicas) 1 -}}
    {{- fail (printf "store: embedded keeps the control plane's state in one file on one volume, so controlPlane.replicas must be 1 (got %d); for more replicas use store: etcd (etcd.endpoints, or etcd.bundled.enabled=true)" (int $v.controlPlane.replicas)) -}}
  {{- end -}}
  {{- if $v.etcd.bundled.enabled -}}
    {{- fail "store: embedded does not use etcd: unset etcd.bundled.enabled, or use store: etcd" -}}
  {{- end -}}
  {{- if $v.etcd.endpoints -}}
    {{- fail "store: embedded does not use etcd: unset etcd.endpoints, or use store: etcd" -}}
  {{- end -}}
{{- else -}}
  {{- if and (not $v.etcd.bundled.enabled) (not $v.etcd.endpoints) -}}
    {{- fail "store: etcd needs an etcd: set etcd.endpoints to your cluster's client URLs, or etcd.bundled.enabled=true for a small bundled one (or store: embedded for a single replica)" -}}
  {{- end -}}
  {{- if and $v.etcd.bundled.enabled $v.etcd.endpoints -}}
    {{- fail "etcd.bundled.enabled and etcd.endpoints are both set: use one (the bundled etcd's endpoints are known to the chart)" -}}
  {{- end -}}
  {{- if and $v.etcd.bundled.enabled (or $v.etcd.tls.enabled $v.etcd.username) -}}
    {{- fail "etcd.tls and etcd.username apply to an external etcd (etcd.endpoints); the bundled etcd is reached in plain text inside the namespace (use networkPolicy.enabled)" -}}
  {{- end -}}
{{- end -}}
{{- if and $v.etcd.tls.enabled (not $v.etcd.tls.secretName) -}}
  {{- fail "etcd.tls.enabled needs etcd.tls.secretName: the Secret holding the CA (etcd.tls.caKey) and, for client-certificate auth, etcd.tls.certKey and etcd.tls.keyKey" -}}
{{- end -}}
{{- if ne (empty $v.etcd.tls.certKey) (empty $v.etcd.tls.keyKey) -}}
  {{- fail "etcd.tls.certKey and etcd.tls.keyKey go together (the client certificate and its key)" -}}
{{- end -}}
{{- if and $v.etcd.username (not $v.etcd.passwordSecret.name) -}}
  {{- fail "etcd.username needs etcd.passwordSecret.name (and .key): the Secret holding the etcd user's password" -}}
{{- end -}}
{{- if and $v.gateway.enabled $v.gateway.autoscaling.enabled (gt (int $v.gateway.autoscaling.minReplicas) (int $v.gateway.autoscaling.maxReplicas)) -}}
  {{- fail (printf "gateway.autoscaling.minReplicas (%d) is above maxReplicas (%d)" (int $v.gateway.autoscaling.minReplicas) (int $v.gateway.autoscaling.maxReplicas)) -}}
{{- end -}}
{{- if and $v.gateway.enabled (eq (int $v.gateway.port) (int $v.controlPlane.port)) -}}
  {{- fail "gateway.port and controlPlane.port must differ" -}}
{{- end -}}
{{- end -}}
