{{/* Names and labels shared by every template. */}}

{{- define "rotor.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "rotor.fullname" -}}
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

{{- define "rotor.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rotor.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "rotor.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "rotor.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: rotor
{{- end -}}

{{- define "rotor.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "rotor.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "rotor.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Peering is on whenever two replicas could otherwise both act. */}}
{{- define "rotor.peering" -}}
{{- if or .Values.highAvailability.enabled (gt (int .Values.replicas) 1) -}}true{{- end -}}
{{- end -}}

{{- define "rotor.peeringName" -}}
{{- default (include "rotor.fullname" .) .Values.highAvailability.peeringName -}}
{{- end -}}

{{- define "rotor.webhookServiceName" -}}
{{- printf "%s-webhook" (include "rotor.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "rotor.webhookSecretName" -}}
{{- printf "%s-webhook-tls" (include "rotor.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Monitoring objects need the Prometheus Operator's API. */}}
{{- define "rotor.hasMonitoringAPI" -}}
{{- if .Capabilities.APIVersions.Has "monitoring.coreos.com/v1" -}}true{{- end -}}
{{- end -}}

{{/* Copy the values of .in named by .keys (chart key -> operator setting) into .out, where set; an
     unknown key of .in fails the install naming it (.what says where), so a typo is never ignored.
     .known lists keys the caller handles itself. */}}
{{- define "rotor.settings" -}}
{{- range $key, $value := .in -}}
{{- if not (or (hasKey $.keys $key) (has $key (default list $.known))) -}}
{{- fail (printf "%s: unknown key %s (known: %s)" $.what $key (concat (keys $.keys) (default list $.known) | sortAlpha | join ", ")) -}}
{{- end -}}
{{- if and (hasKey $.keys $key) (not (kindIs "invalid" $value)) (ne (toString $value) "") -}}
{{- $_ := set $.out (get $.keys $key) $value -}}
{{- end -}}
{{- end -}}
{{- end -}}
