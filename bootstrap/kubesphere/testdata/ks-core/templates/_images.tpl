{{/*
ks-core.image names an image from its values: (dict "image" <values>.image "global" .Values.global).
The image's own registry and tag win over global.imageRegistry and global.tag.
*/}}
{{- define "ks-core.image" -}}
{{- $registry := .image.registry | default .global.imageRegistry -}}
{{- $tag := .image.tag | default .global.tag | toString -}}
{{- printf "%s/%s:%s" $registry .image.repository $tag -}}
{{- end -}}

{{- define "ks-core.portalURL" -}}
{{- if eq (int .Values.portal.http.port) 80 -}}
{{- printf "http://%s" .Values.portal.hostname -}}
{{- else -}}
{{- printf "http://%s:%d" .Values.portal.hostname (int .Values.portal.http.port) -}}
{{- end -}}
{{- end -}}
