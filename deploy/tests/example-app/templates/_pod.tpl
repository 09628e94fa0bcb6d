{{- define "example-app.podSpec" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: 10001
  seccompProfile:
    type: RuntimeDefault
containers:
  - name: app
    image: {{ .Values.image }}
    env:
      # The sidecar, on localhost.
      - name: OPENAI_BASE_URL
        value: http://localhost:4000/v1
    resources:
      requests: {cpu: 100m, memory: 128Mi}
      limits: {cpu: 500m, memory: 256Mi}
    securityContext:
      readOnlyRootFilesystem: true
      allowPrivilegeEscalation: false
      capabilities:
        drop: [ALL]
{{- end -}}
