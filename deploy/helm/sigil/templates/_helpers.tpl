{{/* Names ------------------------------------------------------------------------------ */}}

{{- define "sigil.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The resource name prefix; DNS-1123, at most 63 characters (it is also the Service name). */}}
{{- define "sigil.fullname" -}}
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

{{- define "sigil.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sigil.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sigil.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The webhook pods, and only they: the Deployment, Service, PodDisruptionBudget, NetworkPolicy
and topology spread select on these. The component label is what the `helm test` pod (which
carries the release's other labels) lacks, so it never receives admissions from the Service nor
counts in the budget. */}}
{{- define "sigil.webhookSelectorLabels" -}}
{{ include "sigil.selectorLabels" . }}
app.kubernetes.io/component: webhook
{{- end -}}

{{- define "sigil.labels" -}}
helm.sh/chart: {{ include "sigil.chart" . }}
{{ include "sigil.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sigil
{{- end -}}

{{- define "sigil.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sigil.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "sigil.priorityClassName" -}}
{{- if .Values.priorityClassName -}}
{{- .Values.priorityClassName -}}
{{- else if .Values.priorityClass.create -}}
{{- printf "%s-critical" (include "sigil.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "sigil.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "sigil.tlsSecretName" -}}
{{- printf "%s-tls" (include "sigil.fullname" .) -}}
{{- end -}}

{{/* tls.mode=self: the Secret sigil creates and owns (its CA and serving certificate). A name of
its own, so that moving from tls.mode=helm never has sigil and Helm writing the same Secret. */}}
{{- define "sigil.selfSecretName" -}}
{{- .Values.tls.self.secretName | default (printf "%s-self-tls" (include "sigil.fullname" .)) -}}
{{- end -}}

{{- define "sigil.caSecretName" -}}
{{- printf "%s-ca" (include "sigil.fullname" .) -}}
{{- end -}}

{{- define "sigil.trustedRootConfigMap" -}}
{{- if .Values.config.trustedRoot.json -}}
{{- printf "%s-trusted-root" (include "sigil.fullname" .) -}}
{{- else -}}
{{- .Values.config.trustedRoot.configMap -}}
{{- end -}}
{{- end -}}

{{/* The names the serving certificate must be valid for (the API server dials <svc>.<ns>.svc),
comma-separated: use with splitList ",". */}}
{{- define "sigil.dnsNames" -}}
{{- $svc := include "sigil.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) | join "," -}}
{{- end -}}

{{/* Namespaces the pod webhooks never see, matched on the API server's kubernetes.io/metadata.name
label: kube-system, the release namespace, cert-manager's namespace in tls.mode=cert-manager (its
webhook and cainjector must start for sigil's certificate to exist), and the user's;
comma-separated. */}}
{{- define "sigil.excludedNamespaces" -}}
{{- $names := list "kube-system" .Release.Namespace -}}
{{- if eq .Values.tls.mode "cert-manager" -}}
{{- $names = append $names .Values.tls.certManager.namespace -}}
{{- end -}}
{{- concat $names .Values.webhook.excludeNamespaces | uniq | join "," -}}
{{- end -}}

{{/* The namespaceSelector of the pod webhooks (validate.sigil.dev and mutate.sigil.dev share it). */}}
{{- define "sigil.podNamespaceSelector" -}}
matchExpressions:
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values: {{ include "sigil.excludedNamespaces" . | splitList "," | toJson }}
  {{- if .Values.webhook.disableAKSAdmissionsEnforcer }}
  # The exclusions AKS's Admissions Enforcer would have added, now that it is told to keep away:
  # AKS-managed namespaces (add-ons that must start on a new node, whatever sigil's state).
  - key: control-plane
    operator: DoesNotExist
  - key: kubernetes.azure.com/managedby
    operator: NotIn
    values: ["aks"]
  {{- end }}
  {{- if eq .Values.scope "labelled" }}
  # scope: labelled: only namespaces that opted in.
  - key: sigil.dev/enforce
    operator: In
    values: ["true"]
  {{- end }}
  {{- with .Values.webhook.namespaceSelectorExpressions }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}

{{/* CEL: true when every field along the path P ("object.spec.template.spec") is set:
has(object.spec) && has(object.spec.template) && ... (has() of a missing parent is an error). */}}
{{- define "sigil.celHasPath" -}}
{{- $parts := splitList "." . -}}
{{- $checks := list -}}
{{- range $i, $_ := rest $parts -}}
{{- $checks = append $checks (printf "has(%s)" (slice $parts 0 (add $i 2) | join ".")) -}}
{{- end -}}
{{- join " && " $checks -}}
{{- end -}}

{{/* CEL: the images of the PodSpec at path P, as a list of four lists, one per field sigil reads
(init, regular and ephemeral containers, and image volumes' references; an unset image counts as
"", a volume that is not an image volume too). Kept apart, and by position, as sigil compares them
(admission.cpp: new_image_uses): an image moved from initContainers to containers is a change,
and so is a new image volume reference. */}}
{{- define "sigil.celImages" -}}
[(has({{ . }}.initContainers) ? {{ . }}.initContainers.map(c, has(c.image) ? c.image : '') : []), (has({{ . }}.containers) ? {{ . }}.containers.map(c, has(c.image) ? c.image : '') : []), (has({{ . }}.ephemeralContainers) ? {{ . }}.ephemeralContainers.map(c, has(c.image) ? c.image : '') : []), (has({{ . }}.volumes) ? {{ . }}.volumes.map(v, has(v.image) && has(v.image.reference) ? v.image.reference : '') : [])]
{{- end -}}

{{/* CEL: true unless this is an UPDATE of one of RESOURCES whose PodSpec at PATH (below object and
oldObject) keeps every image. A PodSpec missing on either side counts as changed.
Argument: dict "resources" (list) "path" ("spec.template.spec"). */}}
{{- define "sigil.celImagesChanged" -}}
{{- $new := printf "object.%s" .path -}}
{{- $old := printf "oldObject.%s" .path -}}
{{- $res := "" -}}
{{- if eq (len .resources) 1 -}}
{{- $res = printf "request.resource.resource != '%s'" (first .resources) -}}
{{- else -}}
{{- $quoted := list -}}
{{- range .resources }}{{ $quoted = append $quoted (printf "'%s'" .) }}{{ end -}}
{{- $res = printf "!(request.resource.resource in [%s])" (join ", " $quoted) -}}
{{- end -}}
request.operation != 'UPDATE' || {{ $res }} || !({{ include "sigil.celHasPath" $new }} && {{ include "sigil.celHasPath" $old }}) || ({{ include "sigil.celImages" $new }}) != ({{ include "sigil.celImages" $old }})
{{- end -}}

{{/* matchConditions of the pod webhooks, only on Kubernetes >= 1.28 (beta and on by default
there; GA in 1.30): the API server calls sigil only for requests that can start an image. A
condition that is false skips the call; each is true (call sigil) unless the request is an UPDATE
that needs no check:
  - not-being-deleted: an UPDATE of an object that has a deletionTimestamp (finalizers going);
  - *-images-changed: an UPDATE that leaves every image of the pod spec as it was, read at each
    kind's own path: Pods (and pods/ephemeralcontainers, whose object is the Pod) at spec,
    workloads at spec.template.spec, CronJobs at spec.jobTemplate.spec.template.spec.
Every field is reached through has(), so no object makes an expression fail (an error would fall
to failurePolicy). webhook.matchConditions are appended. */}}
{{- define "sigil.matchConditions" -}}
{{- $conds := list -}}
{{- if .Values.webhook.defaultMatchConditions -}}
{{- $conds = append $conds (dict "name" "not-being-deleted" "expression" "request.operation != 'UPDATE' || !has(object.metadata.deletionTimestamp)") -}}
{{- $conds = append $conds (dict "name" "pod-images-changed" "expression" (include "sigil.celImagesChanged" (dict "resources" (list "pods") "path" "spec"))) -}}
{{- $conds = append $conds (dict "name" "template-images-changed" "expression" (include "sigil.celImagesChanged" (dict "resources" (list "deployments" "replicasets" "statefulsets" "daemonsets" "jobs" "replicationcontrollers") "path" "spec.template.spec"))) -}}
{{- $conds = append $conds (dict "name" "cronjob-images-changed" "expression" (include "sigil.celImagesChanged" (dict "resources" (list "cronjobs") "path" "spec.jobTemplate.spec.template.spec"))) -}}
{{- end -}}
{{- $conds = concat $conds .Values.webhook.matchConditions -}}
{{- if and $conds (semverCompare ">=1.28.0-0" .Capabilities.KubeVersion.Version) -}}
{{- toYaml $conds -}}
{{- end -}}
{{- end -}}

{{/* Checks that span several values (values.schema.json checks each value on its own). */}}
{{- define "sigil.validate" -}}
{{- $ns := .Release.Namespace -}}
{{- if and (not .Values.allowSharedNamespace) (or (eq $ns "default") (hasPrefix "kube-" $ns)) -}}
{{- fail (printf "refusing to install into namespace %q: the release namespace is exempt from sigil's webhook (sigil must always be able to start its own pods), so every pod in %q would run unchecked. Install into a namespace of sigil's own (helm install ... --namespace sigil --create-namespace), or set allowSharedNamespace=true to accept that" $ns $ns) -}}
{{- end -}}
{{- $budget := add (include "sigil.lameDuckSeconds" . | int) (int .Values.webhook.timeoutSeconds) 1 -}}
{{- $grace := include "sigil.terminationGracePeriodSeconds" . | int -}}
{{- if le $grace $budget -}}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed lameDuckSeconds + webhook.timeoutSeconds + 1 (%d): a stopping replica must be able to answer the admissions it has accepted" $grace $budget) -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (lt (int .Values.autoscaling.maxReplicas) (int .Values.autoscaling.minReplicas)) -}}
{{- fail "autoscaling.maxReplicas must be at least autoscaling.minReplicas" -}}
{{- end -}}
{{- if and .Values.config.trustedRoot.json .Values.config.trustedRoot.configMap -}}
{{- fail "config.trustedRoot: set json or configMap, not both" -}}
{{- end -}}
{{- if and (eq .Values.tls.mode "helm") (gt (int .Values.tls.helm.renewBeforeDays) (int .Values.tls.helm.certValidityDays)) -}}
{{- fail "tls.helm.renewBeforeDays must not exceed tls.helm.certValidityDays (every upgrade would renew the certificate)" -}}
{{- end -}}
{{- end -}}

{{/*
The serving certificate in tls.mode=helm, as YAML: caCrt, caKey, tlsCrt, tlsKey (base64, as in a
Secret), caNotAfter, tlsNotAfter (Unix seconds).

The CA and the serving certificate are read back from the Secrets this chart wrote before (lookup),
so an upgrade keeps them and the caBundle stays the same. A certificate is generated again only when
its Secret is missing, when it expires within tls.helm.renewBeforeDays, or (serving certificate)
when the Service's DNS names changed. A serving certificate is renewed under the existing CA, so
renewal never changes the caBundle. Without a cluster (helm template, --dry-run, Argo CD) lookup
finds nothing and every render generates a new CA: see NOTES.txt.
*/}}
{{- define "sigil.helmTLS" -}}
{{- $ns := .Release.Namespace -}}
{{- $now := now | unixEpoch | int64 -}}
{{- $renew := mul (int .Values.tls.helm.renewBeforeDays) 86400 -}}
{{- $dnsKey := include "sigil.dnsNames" . -}}
{{- $dnsNames := list -}}
{{- range splitList "," $dnsKey -}}
{{- $dnsNames = append $dnsNames . -}}
{{- end -}}
{{- $caSecret := lookup "v1" "Secret" $ns (include "sigil.caSecretName" .) | default dict -}}
{{- $tlsSecret := lookup "v1" "Secret" $ns (include "sigil.tlsSecretName" .) | default dict -}}
{{- $caData := get $caSecret "data" | default dict -}}
{{- $caAnn := dig "metadata" "annotations" dict $caSecret -}}
{{- $tlsData := get $tlsSecret "data" | default dict -}}
{{- $tlsAnn := dig "metadata" "annotations" dict $tlsSecret -}}
{{- $out := dict -}}
{{- $ca := dict -}}
{{- $caFresh := true -}}
{{- $caNotAfter := get $caAnn "sigil.dev/not-after" | default "0" | int64 -}}
{{- if and (hasKey $caData "tls.crt") (hasKey $caData "tls.key") (gt $caNotAfter (add $now $renew)) -}}
{{- $ca = buildCustomCert (get $caData "tls.crt") (get $caData "tls.key") -}}
{{- $caFresh = false -}}
{{- $_ := set $out "caCrt" (get $caData "tls.crt") -}}
{{- $_ := set $out "caKey" (get $caData "tls.key") -}}
{{- $_ := set $out "caNotAfter" $caNotAfter -}}
{{- else -}}
{{- $days := int .Values.tls.helm.caValidityDays -}}
{{- $ca = genCA (printf "%s-webhook-ca" (include "sigil.fullname" .)) $days -}}
{{- $_ := set $out "caCrt" ($ca.Cert | b64enc) -}}
{{- $_ := set $out "caKey" ($ca.Key | b64enc) -}}
{{- $_ := set $out "caNotAfter" (add $now (mul $days 86400)) -}}
{{- end -}}
{{- $tlsNotAfter := get $tlsAnn "sigil.dev/not-after" | default "0" | int64 -}}
{{- $reuse := and (not $caFresh) (hasKey $tlsData "tls.crt") (hasKey $tlsData "tls.key") (gt $tlsNotAfter (add $now $renew)) (eq (get $tlsAnn "sigil.dev/dns-names") $dnsKey) -}}
{{- if $reuse -}}
{{- $_ := set $out "tlsCrt" (get $tlsData "tls.crt") -}}
{{- $_ := set $out "tlsKey" (get $tlsData "tls.key") -}}
{{- $_ := set $out "tlsNotAfter" $tlsNotAfter -}}
{{- else -}}
{{- $days := int .Values.tls.helm.certValidityDays -}}
{{- $cert := genSignedCert (index $dnsNames 2) nil $dnsNames $days $ca -}}
{{- $_ := set $out "tlsCrt" ($cert.Cert | b64enc) -}}
{{- $_ := set $out "tlsKey" ($cert.Key | b64enc) -}}
{{- $_ := set $out "tlsNotAfter" (add $now (mul $days 86400)) -}}
{{- end -}}
{{- $_ := set $out "dnsNames" $dnsKey -}}
{{- toYaml $out -}}
{{- end -}}

{{/* sigil's lame duck after SIGTERM, in seconds (lameDuckSeconds; null: the webhook timeout + 5). */}}
{{- define "sigil.lameDuckSeconds" -}}
{{- if kindIs "invalid" .Values.lameDuckSeconds -}}
{{- add (int .Values.webhook.timeoutSeconds) 5 -}}
{{- else -}}
{{- int .Values.lameDuckSeconds -}}
{{- end -}}
{{- end -}}

{{/* SIGTERM to SIGKILL: the lame duck, then the drain (bounded by the webhook timeout), + 5 s. */}}
{{- define "sigil.terminationGracePeriodSeconds" -}}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds -}}
{{- add (include "sigil.lameDuckSeconds" . | int) (int .Values.webhook.timeoutSeconds) 5 -}}
{{- else -}}
{{- int .Values.terminationGracePeriodSeconds -}}
{{- end -}}
{{- end -}}
