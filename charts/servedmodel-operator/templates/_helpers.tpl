{{/*
Chart name, truncated to 63 characters (the DNS label limit of names and label values).
*/}}
{{- define "servedmodel-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects: "<release>-<chart>", or the release name when it already contains the
chart name; truncated to 63 characters.
*/}}
{{- define "servedmodel-operator.fullname" -}}
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

{{/*
"<chart>-<version>" for the helm.sh/chart label.
*/}}
{{- define "servedmodel-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Standard labels of every object.
*/}}
{{- define "servedmodel-operator.labels" -}}
helm.sh/chart: {{ include "servedmodel-operator.chart" . }}
{{ include "servedmodel-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: servedmodel
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels: minimal, because a Deployment's selector is immutable; never add a label that changes
between releases (version, chart).
*/}}
{{- define "servedmodel-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "servedmodel-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The ServiceAccount the operator runs as.
*/}}
{{- define "servedmodel-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "servedmodel-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The operator image: repository@digest when a digest is set, else repository:tag (tag defaults to appVersion).
*/}}
{{- define "servedmodel-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
The rules the operator needs in every namespace it watches (a ClusterRole when cluster-wide, a Role in each
namespace otherwise). Each one is used by the operator today; docs/install.md says why.
*/}}
{{- define "servedmodel-operator.namespacedRules" -}}
# ServedModels: kopf lists and watches them (an index and an event handler).
- apiGroups: [servedmodel.io]
  resources: [servedmodels]
  verbs: [list, watch]
# The status the operator writes (a merge patch on the status subresource).
- apiGroups: [servedmodel.io]
  resources: [servedmodels/status]
  verbs: [patch]
# Children's owner references set blockOwnerDeletion; where the OwnerReferencesPermissionEnforcement
# admission runs (OpenShift), that needs `update` on the owner's finalizers (no request is made on it).
- apiGroups: [servedmodel.io]
  resources: [servedmodels/finalizers]
  verbs: [update]
# Children: kopf lists and watches them; the operator server-side applies them (PATCH; `create` is checked
# too when the apply creates the object) and deletes those the spec no longer renders (a promoted or
# rolled-back canary's Deployment, ConfigMap and Services).
- apiGroups: [""]
  resources: [configmaps, services]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [list, watch, create, patch, delete]
# Export Jobs (spec.export): applied like the other children; finished ones beyond the newest few deleted.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [list, watch, create, patch, delete]
# Optional children, deleted again when the spec no longer asks for them.
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [monitoring.coreos.com]
  resources: [servicemonitors]
  verbs: [list, watch, create, patch, delete]
# The pods of an export Job: the operator reads their termination messages (the exported version, errors).
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
# Claims: the operator waits for the ServedModel's PersistentVolumeClaim to exist.
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [list, watch]
# Events on ServedModels (the operator's and kopf's own, both core/v1); patch counts a repeated event on
# the one already posted instead of posting it again (as client-go's recorder does).
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
{{- end }}

{{/* The Lease leader election uses. */}}
{{- define "servedmodel-operator.leaseName" -}}
{{- default (include "servedmodel-operator.fullname" .) .Values.leaderElection.leaseName -}}
{{- end }}

{{/* The leader-election Role and RoleBinding: the full name (cut to leave room) and a suffix. */}}
{{- define "servedmodel-operator.leaderElectionName" -}}
{{- printf "%s-leader-election" (include "servedmodel-operator.fullname" . | trunc 46 | trimSuffix "-") -}}
{{- end }}
