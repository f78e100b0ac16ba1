{{/*
Names, labels and the operator's RBAC rules. The rules are defined once here and
used by both the cluster-wide (ClusterRole) and the namespaced (Role) templates,
so the two modes can never grant different verbs.
*/}}

{{- define "certmint.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every object name. Kept to 52 characters so that suffixes such as
"-clusterissuers" still fit the 63-character label-value limit of names used in labels.
*/}}
{{- define "certmint.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "certmint.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the operator's pods; never change them in an upgrade (Deployment selectors are immutable). */}}
{{- define "certmint.selectorLabels" -}}
app.kubernetes.io/name: {{ include "certmint.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The recommended app.kubernetes.io/* labels, on every object. */}}
{{- define "certmint.labels" -}}
helm.sh/chart: {{ include "certmint.chart" . }}
app.kubernetes.io/name: {{ include "certmint.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: certmint
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "certmint.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "certmint.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "certmint.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* The Lease the replicas elect a leader on; the operator hard-codes this name (certmint.handlers.LEASE_NAME). */}}
{{- define "certmint.leaseName" -}}
certmint-operator
{{- end }}

{{/* Checks of value combinations the schema cannot express; rendering fails with a message that says what to change. */}}
{{- define "certmint.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicaCount > 1 needs leaderElection.enabled=true: without it every replica would reconcile and write" }}
{{- end }}
{{- if and .Values.leaderElection.enabled (ge (int .Values.leaderElection.renewSeconds) (int .Values.leaderElection.leaseDurationSeconds)) }}
{{- fail "leaderElection.renewSeconds must be below leaderElection.leaseDurationSeconds" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.service.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.service.enabled: the ServiceMonitor selects that Service" }}
{{- end }}
{{- if .Values.clusterIssuer.create }}
{{- if eq (ternary 1 0 .Values.clusterIssuer.selfSigned) (ternary 1 0 (ne .Values.clusterIssuer.ca.secretName "")) }}
{{- fail "clusterIssuer: set exactly one of clusterIssuer.selfSigned=true or clusterIssuer.ca.secretName" }}
{{- end }}
{{- end }}
{{- if ne (len .Values.watchNamespaces) (len (uniq .Values.watchNamespaces)) }}
{{- fail "watchNamespaces lists a namespace twice" }}
{{- end }}
{{- /*
Pod certificates need the API server to serve PodCertificateRequests. Only a render that knows the cluster can tell:
a cluster's discovery (helm install/upgrade, template --validate, --dry-run=server) lists every
served kind as "group/version/Kind", while Helm's built-in capabilities (an offline helm template, helm lint) list
group/versions only. "v1/Namespace" is a kind every cluster serves: without it there is no cluster to ask.
*/}}
{{- if and .Values.podCertificates.enabled (.Capabilities.APIVersions.Has "v1/Namespace") }}
{{- if not (.Capabilities.APIVersions.Has "certificates.k8s.io/v1beta1/PodCertificateRequest") }}
{{- fail "podCertificates.enabled=true, but the cluster does not serve certificates.k8s.io/v1beta1 PodCertificateRequests: start kube-apiserver (Kubernetes 1.35 or later) with --feature-gates=PodCertificateRequest=true and --runtime-config=certificates.k8s.io/v1beta1/podcertificaterequests=true, or set podCertificates.enabled=false" }}
{{- end }}
{{- end }}
{{- end }}

{{/* ---- RBAC rules, one block per concern ----------------------------------------------------------- */}}

{{/* certmint's namespaced kinds: watched by kopf; status written by the reconcilers; CertificateRequests created and pruned. */}}
{{- define "certmint.rules.resources" -}}
- apiGroups: ["certmint.dev"]
  resources: ["certificates", "issuers", "certificaterequests"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["certmint.dev"]
  resources: ["certificates/status", "issuers/status", "certificaterequests/status"]
  verbs: ["patch"]
- apiGroups: ["certmint.dev"]
  resources: ["certificaterequests"]
  verbs: ["create", "delete"]
{{- end }}

{{/* ClusterIssuers are cluster-scoped: always a ClusterRole, in both modes. */}}
{{- define "certmint.rules.clusterIssuers" -}}
- apiGroups: ["certmint.dev"]
  resources: ["clusterissuers"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["certmint.dev"]
  resources: ["clusterissuers/status"]
  verbs: ["patch"]
{{- end }}

{{/*
Secrets: the certificate Secrets it writes (create, merge patch), reads and watches (label-selected by the
operator, but RBAC cannot restrict by label), and CA Secrets it reads. Never update or delete: an old Secret is
garbage-collected through its owner reference.
*/}}
{{- define "certmint.rules.secrets" -}}
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "patch"]
{{- end }}

{{/*
Bundles: cluster-scoped, watched, status written. Their targets: ConfigMaps named after a Bundle in the selected
namespaces (created, patched, deleted when a namespace stops matching; watched by label) and source ConfigMaps
in the release namespace (read). Bundle Secrets use the secrets grant above (never deleted).
*/}}
{{- define "certmint.rules.bundles" -}}
- apiGroups: ["certmint.dev"]
  resources: ["bundles"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["certmint.dev"]
  resources: ["bundles/status"]
  verbs: ["patch"]
{{- end }}

{{- define "certmint.rules.bundleTargets" -}}
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
{{- end }}

{{/* Source ConfigMaps of Bundles in the release namespace, in namespaced mode: read only. */}}
{{- define "certmint.rules.bundleSources" -}}
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get"]
{{- end }}

{{/*
ClusterTrustBundles: those named after Bundles (no signer) and, with podCertificates, a pod signer's
"certmint.dev:<issuer>:anchors" (linked to its signer: creating or changing it also needs "attest", granted below).
Read, create, patch; never update or delete.
*/}}
{{- define "certmint.rules.clusterTrustBundles" -}}
- apiGroups: ["certificates.k8s.io"]
  resources: ["clustertrustbundles"]
  verbs: ["get", "create", "patch"]
{{- end }}

{{/* The domain of certmint's pod-certificate signer names, certmint.dev/<ClusterIssuer>; the operator and the CRD
hard-code it (certmint.core.spec.SIGNER_DOMAIN). */}}
{{- define "certmint.signerDomain" -}}
certmint.dev
{{- end }}

{{/*
Pod certificates (podCertificates.enabled): the operator lists and watches every PodCertificateRequest (one signer
name per field selector, and the kubelet sets no labels, so it filters by signer itself) and answers those of its
signers with one merge patch of their status. The API server lets a status change through only for a user who may
"sign" for the request's signer, and a signer-linked ClusterTrustBundle only for one who may "attest" for it; both
checks are cluster-scoped and accept "<domain>/*" as the resource name, so these rules hold for certmint's signer
names only. No "create" on podcertificaterequests: the API server attests a request's pod, ServiceAccount and node
only when a node creates it (NodeRestriction); anyone else who may create one can forge a pod identity that certmint would sign.
*/}}
{{- define "certmint.rules.podCertificates" -}}
- apiGroups: ["certificates.k8s.io"]
  resources: ["podcertificaterequests"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["certificates.k8s.io"]
  resources: ["podcertificaterequests/status"]
  verbs: ["patch"]
- apiGroups: ["certificates.k8s.io"]
  resources: ["signers"]
  resourceNames: [{{ printf "%s/*" (include "certmint.signerDomain" .) | quote }}]
  verbs: ["sign", "attest"]
{{- end }}

{{/* ClusterIssuer CA Secrets in the release namespace, in namespaced mode: read only. */}}
{{- define "certmint.rules.caSecrets" -}}
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
{{- end }}

{{/* Events about Certificates, posted by certmint and by kopf: create only. */}}
{{- define "certmint.rules.events" -}}
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}

{{/* The leader-election Lease: create it once, then read and renew only that one Lease by name. */}}
{{- define "certmint.rules.leaderElection" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["create"]
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  resourceNames: [{{ include "certmint.leaseName" . | quote }}]
  verbs: ["get", "patch"]
{{- end }}

{{/*
Discovery by kopf: it lists and watches CRDs to notice certmint's kinds being (re)installed. Namespaces are listed
and watched for their labels (Bundles' namespace selectors) and, in namespaced mode, by kopf to notice a watched
namespace being created or deleted.
*/}}
{{- define "certmint.rules.discovery" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}

{{/*
One concern's grant: a ClusterRole and ClusterRoleBinding when "namespaces" is empty, otherwise a Role and
RoleBinding in each listed namespace. Arguments: root (the chart context), concern (name suffix), rules (the
name of a certmint.rules.* block) and namespaces (a list).
*/}}
{{- define "certmint.grant" -}}
{{- $root := .root }}
{{- $name := printf "%s-%s" (include "certmint.fullname" $root) .concern }}
{{- $rules := include (printf "certmint.rules.%s" .rules) $root }}
{{- if .namespaces }}
{{- range $namespace := .namespaces }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: {{ $name }}
  namespace: {{ $namespace }}
  labels:
    {{- include "certmint.labels" $root | nindent 4 }}
rules:
  {{- $rules | nindent 2 }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ $name }}
  namespace: {{ $namespace }}
  labels:
    {{- include "certmint.labels" $root | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: {{ $name }}
subjects:
  - kind: ServiceAccount
    name: {{ include "certmint.serviceAccountName" $root }}
    namespace: {{ $root.Release.Namespace }}
{{- end }}
{{- else }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: {{ $name }}
  labels:
    {{- include "certmint.labels" $root | nindent 4 }}
rules:
  {{- $rules | nindent 2 }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {{ $name }}
  labels:
    {{- include "certmint.labels" $root | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: {{ $name }}
subjects:
  - kind: ServiceAccount
    name: {{ include "certmint.serviceAccountName" $root }}
    namespace: {{ $root.Release.Namespace }}
{{- end }}
{{- end }}
