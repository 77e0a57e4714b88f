{{/* Names, labels, images and the static facts of each service. */}}
{{- define "oh.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "oh.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains (include "oh.name" .) .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "oh.name" .) | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "oh.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "oh.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: oncohabitat
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* selector labels of one service: (dict "root" $ "svc" "listener") */}}
{{- define "oh.selector" -}}
app.kubernetes.io/name: {{ include "oh.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .svc }}
{{- end -}}

{{- define "oh.componentLabels" -}}
{{ include "oh.labels" .root }}
app.kubernetes.io/component: {{ .svc }}
{{- end -}}

{{/* gRPC and metrics ports of each service (the services' own defaults, README.md) */}}
{{- define "oh.grpcPort" -}}
{{- get (dict "orchestrator" 50050 "listener" 50051 "segmentation" 50052 "regions" 50053 "features" 50054 "scoring" 50055) . -}}
{{- end -}}
{{- define "oh.metricsPort" -}}
{{- get (dict "orchestrator" 9100 "listener" 9101 "segmentation" 9102 "regions" 9103 "features" 9104 "scoring" 9105) . -}}
{{- end -}}

{{/* services in a fixed order */}}
{{- define "oh.services" -}}
listener orchestrator segmentation regions features scoring
{{- end -}}
{{- define "oh.stageServices" -}}
segmentation regions features scoring
{{- end -}}

{{/* image reference: (dict "root" $ "svc" "listener") */}}
{{- define "oh.image" -}}
{{- $v := .root.Values -}}
{{- $img := (get $v .svc).image | default dict -}}
{{- $repo := $img.repository | default (printf "%s%s" $v.image.repositoryPrefix .svc) -}}
{{- if $v.image.registry }}{{ $repo = printf "%s/%s" (trimSuffix "/" $v.image.registry) $repo }}{{ end -}}
{{- $tag := $img.tag | default $v.image.tag | default .root.Chart.AppVersion -}}
{{- if $img.digest -}}
{{- printf "%s:%s@%s" $repo $tag $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo $tag -}}
{{- end -}}
{{- end -}}

{{- define "oh.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "oh.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "oh.claim" -}}
{{- $p := get .root.Values.persistence .name -}}
{{- $p.existingClaim | default (printf "%s-%s" (include "oh.fullname" .root) (.name | kebabcase)) -}}
{{- end -}}

{{- define "oh.modelsClaim" -}}
{{- .Values.models.pvc.existingClaim | default (printf "%s-models" (include "oh.fullname" .)) -}}
{{- end -}}

{{- define "oh.usesModels" -}}
{{- has . (list "segmentation" "regions" "scoring") -}}
{{- end -}}
{{- define "oh.usesStudyStore" -}}
{{- has . (list "orchestrator" "segmentation" "regions" "features") -}}
{{- end -}}
{{- define "oh.usesListenerStore" -}}
{{- has . (list "listener" "orchestrator") -}}
{{- end -}}

{{/* fail early on inconsistent values */}}
{{- define "oh.validate" -}}
{{- $v := .Values -}}
{{- if and $v.auth.enabled (not $v.auth.existingSecret) }}{{ fail "auth.enabled needs auth.existingSecret" }}{{ end -}}
{{- if and $v.tls.enabled (not $v.tls.existingSecret) }}{{ fail "tls.enabled needs tls.existingSecret" }}{{ end -}}
{{- if and $v.listener.dicom.tls (not $v.tls.enabled) }}{{ fail "listener.dicom.tls needs tls.enabled" }}{{ end -}}
{{- if and (eq $v.database.type "postgresql") (not $v.database.existingSecret) }}{{ fail "database.type=postgresql needs database.existingSecret" }}{{ end -}}
{{- if and (eq $v.database.type "sqlite") (gt (int $v.orchestrator.replicas) 1) }}{{ fail "orchestrator.replicas > 1 needs database.type=postgresql (SQLite is one writer)" }}{{ end -}}
{{- if and (eq $v.models.source "image") (not $v.models.image.reference) }}{{ fail "models.source=image needs models.image.reference" }}{{ end -}}
{{- if and $v.models.signing.require (not $v.models.signing.existingSecret) }}{{ fail "models.signing.require needs models.signing.existingSecret" }}{{ end -}}
{{- end -}}
