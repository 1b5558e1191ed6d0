{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "slm-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's objects: the release name, plus the chart name unless it contains it. */}}
{{- define "slm-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "slm-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "slm-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "slm-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The selector labels as `key=value,…` (SLM_OPERATOR_POD_LABELS). */}}
{{- define "slm-operator.selectorLabelsCsv" -}}
{{- $pairs := list }}
{{- range $key, $value := include "slm-operator.selectorLabels" . | fromYaml }}
{{- $pairs = append $pairs (printf "%s=%s" $key $value) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}

{{- define "slm-operator.labels" -}}
helm.sh/chart: {{ include "slm-operator.chart" . }}
{{ include "slm-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: slm-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "slm-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "slm-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "slm-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* True (non-empty) when the operator watches the whole cluster. */}}
{{- define "slm-operator.clusterWide" -}}
{{- if not .Values.operator.watchNamespaces }}true{{ end }}
{{- end }}

{{/*
Rules the operator needs on the objects it handles, in every namespace it watches.
kopf patches SLMDeployments (finalizers, its progress annotations) and their status subresource;
the operator owns the RayServices it builds; kopf and the operator post Events.
*/}}
{{- define "slm-operator.namespacedRules" -}}
- apiGroups: ["slm.dev"]
  resources: ["slmdeployments"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["slm.dev"]
  resources: ["slmdeployments/status"]
  verbs: ["get", "patch", "update"]
# RayServices carry an ownerReference with blockOwnerDeletion, which clusters enforcing
# OwnerReferencesPermissionEnforcement only allow to whoever may update the owner's finalizers.
- apiGroups: ["slm.dev"]
  resources: ["slmdeployments/finalizers"]
  verbs: ["update"]
- apiGroups: ["ray.io"]
  resources: ["rayservices"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
# What fences each RayService (docs/security.md): the Ray pods' ServiceAccount (read to refuse a
# foreign one of the same name), the Ray token Secret (create only: the operator derives the token
# and never reads a Secret) and the NetworkPolicy.
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["get", "create"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["create"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "create", "update"]
{{- end }}

{{/* The Secret holding the Ray token key. */}}
{{- define "slm-operator.rayTokenKeySecret" -}}
{{- default (printf "%s-ray-token-key" (include "slm-operator.fullname" .)) .Values.rayAuth.existingSecret }}
{{- end }}

{{/* kopf peering: the replicas announce themselves in the peering object's status (patch). */}}
{{- define "slm-operator.peeringRule" -}}
- apiGroups: ["kopf.dev"]
  resources: [{{ ternary "clusterkopfpeerings" "kopfpeerings" (eq (include "slm-operator.clusterWide" .) "true") | quote }}]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}

{{/*
The webhook's CA and serving certificate for `webhook.certificates: helm`, as JSON {ca, crt, key}
(PEM). The ones in the release's Secret when it has them (`lookup`), so `helm upgrade` keeps the
certificate the pods serve and the caBundle the API server trusts; else a new CA and certificate
(10 years). Made once per render (kept in .Values.webhook._tls) and shared by the Secret, the
ValidatingWebhookConfiguration and the pods' checksum annotation. Renderers without cluster access
(`helm template`, Argo CD) get a new pair on every render: use certManager there.
*/}}
{{- define "slm-operator.webhookTLS" -}}
{{- if not (hasKey .Values.webhook "_tls") }}
{{- $fullname := include "slm-operator.fullname" . }}
{{- $service := printf "%s-webhook" $fullname }}
{{- $host := printf "%s.%s.svc" $service .Release.Namespace }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (printf "%s-tls" $service) }}
{{- $data := (and $existing $existing.data) | default dict }}
{{- if and (index $data "ca.crt") (index $data "tls.crt") (index $data "tls.key") }}
{{- $_ := set .Values.webhook "_tls" (dict "ca" (index $data "ca.crt" | b64dec) "crt" (index $data "tls.crt" | b64dec) "key" (index $data "tls.key" | b64dec)) }}
{{- else }}
{{- $ca := genCA (printf "%s-webhook-ca" $fullname) 3650 }}
{{- $cert := genSignedCert $host nil (list $host (printf "%s.cluster.local" $host)) 3650 $ca }}
{{- $_ := set .Values.webhook "_tls" (dict "ca" $ca.Cert "crt" $cert.Cert "key" $cert.Key) }}
{{- end }}
{{- end }}
{{- toJson .Values.webhook._tls }}
{{- end }}
