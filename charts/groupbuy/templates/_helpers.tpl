{{/*
Chart name (nameOverride or "groupbuy").
*/}}
{{- define "groupbuy.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name prefix of every resource: fullnameOverride, or the release name when it contains the
chart name, or "<release>-<chart>". Kept at 40 characters so "<fullname>-<app>-headless" and
similar names stay within 63.
*/}}
{{- define "groupbuy.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := include "groupbuy.name" . }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Labels on every object.
*/}}
{{- define "groupbuy.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "groupbuy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: groupbuy
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Per-app helpers take (dict "root" $ "name" <app name>).
*/}}
{{- define "groupbuy.appFullname" -}}
{{- printf "%s-%s" (include "groupbuy.fullname" .root) .name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "groupbuy.appSelectorLabels" -}}
app.kubernetes.io/name: {{ include "groupbuy.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{- define "groupbuy.appLabels" -}}
{{ include "groupbuy.labels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{/*
deepMerge merges .src into the map .dst in place: nested maps merge key by key, anything else
(scalars, lists, null) replaces. Unlike sprig's merge/mergeOverwrite it lets an app set a
default's `true` to `false` or a number to 0.
*/}}
{{- define "groupbuy.deepMerge" -}}
{{- $dst := .dst }}
{{- range $k, $v := .src }}
{{- $cur := get $dst $k }}
{{- if and (kindIs "map" $v) (kindIs "map" $cur) }}
{{- include "groupbuy.deepMerge" (dict "dst" $cur "src" $v) }}
{{- else }}
{{- $_ := set $dst $k $v }}
{{- end }}
{{- end }}
{{- end }}

{{/*
app returns (as YAML, for fromYaml) the effective settings of app .name: .Values.defaults with
.Values.apps.<name> merged over it, validated.
*/}}
{{- define "groupbuy.app" -}}
{{- $root := .root }}
{{- $app := deepCopy $root.Values.defaults }}
{{- $own := get $root.Values.apps .name }}
{{- if not (kindIs "map" $own) }}
{{- fail (printf "apps.%s must be a map" .name) }}
{{- end }}
{{- $_ := include "groupbuy.deepMerge" (dict "dst" $app "src" (deepCopy $own)) }}
{{- if not (regexMatch "^[a-z][a-z0-9-]*$" .name) }}
{{- fail (printf "apps.%s: app names must be lower-case DNS labels (they are Dapr app ids)" .name) }}
{{- end }}
{{- if not (kindIs "invalid" $app.nodeIdPrefix) }}
{{- $p := int $app.nodeIdPrefix }}
{{- if or (lt $p 1) (gt $p 9) }}
{{- fail (printf "apps.%s.nodeIdPrefix must be a single digit 1..9, got %v" .name $app.nodeIdPrefix) }}
{{- end }}
{{- $most := $app.replicaCount }}
{{- if $app.autoscaling.enabled }}{{ $most = $app.autoscaling.maxReplicas }}{{ end }}
{{- if gt (int $most) 100 }}
{{- fail (printf "apps.%s: at most 100 replicas (NODE_ID = nodeIdPrefix followed by the pod ordinal must stay unique and below 1024)" .name) }}
{{- end }}
{{- end }}
{{- $reserved := list 3500 3501 50001 50002 7777 (int $root.Values.dapr.metricsPort) }}
{{- range $port := list $app.ports.http $app.ports.admin }}
{{- if has (int $port) $reserved }}
{{- fail (printf "apps: port %v is used by the Dapr sidecar in the same pod" $port) }}
{{- end }}
{{- end }}
{{- toYaml $app }}
{{- end }}

{{/*
enabledApps returns the sorted names of the enabled apps, comma-separated.
*/}}
{{- define "groupbuy.enabledApps" -}}
{{- $names := list }}
{{- range $name := keys .Values.apps | sortAlpha }}
{{- if (get $.Values.apps $name).enabled }}
{{- $names = append $names $name }}
{{- end }}
{{- end }}
{{- join ", " $names }}
{{- end }}

{{/*
Image reference of an app: (dict "root" $ "app" <merged app>).
*/}}
{{- define "groupbuy.image" -}}
{{- $root := .root }}
{{- $repo := .app.image.repository }}
{{- if $root.Values.image.registry }}
{{- $repo = printf "%s/%s" (trimSuffix "/" $root.Values.image.registry) $repo }}
{{- end }}
{{- $tag := .app.image.tag | default $root.Values.image.tag | default $root.Chart.AppVersion }}
{{- printf "%s:%s" $repo (toString $tag) }}
{{- end }}

{{- define "groupbuy.configurationName" -}}
{{- .Values.dapr.configuration.name | default (include "groupbuy.fullname" .) }}
{{- end }}

{{- define "groupbuy.serviceAccountName" -}}
{{- if .app.serviceAccount.create }}
{{- include "groupbuy.appFullname" . }}
{{- else }}
{{- .app.serviceAccount.name | default "default" }}
{{- end }}
{{- end }}

{{/*
Names of the Secrets the gateway reads through the Dapr secret store.
*/}}
{{- define "groupbuy.gatewaySecretNames" -}}
{{- $names := list .Values.secrets.jwtSigningKey }}
{{- range $u := .Values.apps.gateway.adminUsers | default list }}
{{- $names = append $names (printf "%s%s" $.Values.secrets.adminPasswordPrefix $u) }}
{{- end }}
{{- toYaml $names }}
{{- end }}

{{/*
The names of the outbox relay's pub/sub components (dapr.components.pubsub-relay), comma
separated, for the order app's OUTBOX_PUBSUBS.
*/}}
{{- define "groupbuy.relayPubSubs" -}}
{{- $c := get .Values.dapr.components "pubsub-relay" -}}
{{- $names := list -}}
{{- range $i := until (int ($c.instances | default 1)) }}{{ $names = append $names (printf "pubsub-relay-%d" $i) }}{{ end -}}
{{- join "," $names -}}
{{- end }}
