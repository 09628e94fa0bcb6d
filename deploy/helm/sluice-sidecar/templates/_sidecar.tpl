{{/*
Sluice's data plane as a container of an application's pod. This is the one
definition of the data-plane container: the sluice chart's gateway renders it
too, and deploy/kubernetes/ (the plain example and the Kustomize component)
hold the same container, which a test compares.

Every template here takes one context, any of:
  - the application chart's root context `.`: values from `.Values.sluice`;
  - (dict "root" $ ...): values from `$.Values.sluice`;
  - (dict "sidecar" $values ...): the values themselves.
*/}}

{{/* The defaults, merged under what the application sets. */}}
{{- define "sluice-sidecar.defaults" -}}
name: sluice
image:
  repository: ghcr.io/sluice-gateway/sluice
  # Empty: the Sluice version this library ships with.
  tag: ""
  # sha256:...; when set, the image is pulled by digest.
  digest: ""
  pullPolicy: IfNotPresent
# The control plane's gRPC URL(s), comma-separated.
controlPlane: http://sluice-control-plane.sluice.svc.cluster.local:50051
# The Secret (in the application's namespace) holding the data-plane token.
tokenSecret:
  name: sluice-data-plane
  key: data-plane-token
port: 4000
# An init container with restartPolicy Always (Kubernetes 1.29+); false: a
# plain container, for older clusters.
nativeSidecar: true
# Labels the control plane reports with this data plane (--label KEY=VALUE).
labels: {}
logFormat: json
resources:
  requests:
    cpu: 100m
    memory: 64Mi
  limits:
    # SLUICE_WORKERS follows this (rounded up to whole CPUs).
    cpu: "1"
    memory: 256Mi
snapshotCache:
  sizeLimit: 64Mi
# Allowed for the application's own probes' patience: the startup probe waits
# up to failureThreshold x 1 s for the first config.
startupFailureThreshold: 120
# Seconds a SIGTERM waits (preStop sleep) before the drain, for Services to
# drop the pod first; 0: none (a sidecar stops after the application).
preStopSleepSeconds: 0
extraArgs: []
extraEnv: []
{{- end -}}

{{/* The Sluice version this library ships: the image tag by default. */}}
{{- define "sluice-sidecar.appVersion" -}}0.1.0{{- end -}}

{{/* The merged values, as YAML. */}}
{{- define "sluice-sidecar.values" -}}
{{- $user := dict -}}
{{- if hasKey . "sidecar" -}}
{{- $user = .sidecar | default dict -}}
{{- else if hasKey . "root" -}}
{{- $user = .root.Values.sluice | default dict -}}
{{- else if .Values -}}
{{- $user = .Values.sluice | default dict -}}
{{- end -}}
{{- toYaml (mustMergeOverwrite (include "sluice-sidecar.defaults" . | fromYaml) (deepCopy $user)) -}}
{{- end -}}

{{- define "sluice-sidecar.image" -}}
{{- if .digest -}}
{{ .repository }}@{{ .digest }}
{{- else -}}
{{ .repository }}:{{ .tag | default (include "sluice-sidecar.appVersion" .) }}
{{- end -}}
{{- end -}}

{{/* The restricted Pod Security Standard, for every Sluice container. */}}
{{- define "sluice-sidecar.securityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
The data-plane container, as one list item (under initContainers when
nativeSidecar, else under containers).
*/}}
{{- define "sluice-sidecar.container" -}}
{{- $v := include "sluice-sidecar.values" . | fromYaml -}}
- name: {{ $v.name }}
  image: {{ include "sluice-sidecar.image" $v.image | quote }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  {{- if $v.nativeSidecar }}
  # A native sidecar: started before the application's containers (once its
  # startup probe passes, i.e. it holds a config), stopped after them.
  restartPolicy: Always
  {{- end }}
  command: [/usr/local/bin/sluice-data-plane]
  args:
    - --control-plane={{ $v.controlPlane }}
    - --listen=0.0.0.0:{{ $v.port }}
    - --node-id=$(POD_NAME)
    - --snapshot-cache=/var/lib/sluice/snapshot.pb
    - --workers=$(SLUICE_WORKERS)
    - --log-format={{ $v.logFormat }}
    {{- range $key := keys $v.labels | sortAlpha }}
    - --label={{ $key }}={{ get $v.labels $key }}
    {{- end }}
    {{- range $v.extraArgs }}
    - {{ . | quote }}
    {{- end }}
  env:
    - name: POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    # Whole CPUs of the limit, rounded up: one request worker each.
    - name: SLUICE_WORKERS
      valueFrom:
        resourceFieldRef:
          resource: limits.cpu
          divisor: "1"
    - name: SLUICE_DATA_PLANE_TOKEN
      valueFrom:
        secretKeyRef:
          name: {{ $v.tokenSecret.name }}
          key: {{ $v.tokenSecret.key }}
    {{- with $v.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    - name: sluice-http
      containerPort: {{ $v.port }}
      protocol: TCP
  startupProbe:
    httpGet:
      path: /health/readiness
      port: {{ $v.port }}
    periodSeconds: 1
    failureThreshold: {{ $v.startupFailureThreshold }}
  readinessProbe:
    httpGet:
      path: /health/readiness
      port: {{ $v.port }}
    periodSeconds: 5
  livenessProbe:
    httpGet:
      path: /health/liveness
      port: {{ $v.port }}
    periodSeconds: 10
    timeoutSeconds: 2
    failureThreshold: 3
  {{- if $v.preStopSleepSeconds }}
  lifecycle:
    preStop:
      sleep:
        seconds: {{ $v.preStopSleepSeconds }}
  {{- end }}
  resources:
    {{- toYaml $v.resources | nindent 4 }}
  securityContext:
    {{- include "sluice-sidecar.securityContext" . | nindent 4 }}
  volumeMounts:
    - name: sluice-cache
      mountPath: /var/lib/sluice
{{- end -}}

{{/* The snapshot cache (and usage journal) volume, as one list item. */}}
{{- define "sluice-sidecar.volume" -}}
{{- $v := include "sluice-sidecar.values" . | fromYaml -}}
- name: sluice-cache
  emptyDir:
    sizeLimit: {{ $v.snapshotCache.sizeLimit }}
{{- end -}}

{{/*
The application's pod spec with the sidecar added: one line in the
application's pod template,
  {{- include "sluice-sidecar.inject" (dict "root" $ "spec" $podSpec) | nindent 6 }}
where $podSpec is the application's pod spec as a dict (e.g.
`include "myapp.podSpec" . | fromYaml`). The sidecar goes first among the
init containers (native) or last among the containers (plain).
*/}}
{{- define "sluice-sidecar.inject" -}}
{{- $spec := deepCopy (.spec | default dict) -}}
{{- $v := include "sluice-sidecar.values" . | fromYaml -}}
{{- $container := include "sluice-sidecar.container" . | fromYamlArray -}}
{{- $volume := include "sluice-sidecar.volume" . | fromYamlArray -}}
{{- if $v.nativeSidecar -}}
{{- $_ := set $spec "initContainers" (concat $container ($spec.initContainers | default list)) -}}
{{- else -}}
{{- $_ := set $spec "containers" (concat ($spec.containers | default list) $container) -}}
{{- end -}}
{{- $_ := set $spec "volumes" (concat ($spec.volumes | default list) $volume) -}}
{{- toYaml $spec -}}
{{- end -}}
