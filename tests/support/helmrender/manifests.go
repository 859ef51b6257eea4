package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path"
	"regexp"
	"sort"
	"strings"
)

// Helm's install order (pkg/releaseutil/kind_sorter.go InstallOrder); other kinds go last,
// alphabetically by kind, keeping file order within a kind.
var installOrder = []string{
	"PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy",
	"PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList", "ConfigMap", "StorageClass",
	"PersistentVolume", "PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole",
	"ClusterRoleList", "ClusterRoleBinding", "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding",
	"RoleBindingList", "Service", "DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment",
	"HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress", "APIService",
}

var hookEvents = map[string]bool{
	"pre-install": true, "post-install": true, "pre-delete": true, "post-delete": true,
	"pre-upgrade": true, "post-upgrade": true, "pre-rollback": true, "post-rollback": true,
	"test": true, "test-success": true,
}

var docSeparator = regexp.MustCompile(`(?:^|\s*\n)---\s*`)

type manifest struct {
	source  string
	content string
	kind    string
	isHook  bool
	isTest  bool
}

// splitManifests splits one rendered file into its non-empty YAML documents.
func splitManifests(text string) []string {
	var out []string
	for _, d := range docSeparator.Split(strings.TrimSpace(text), -1) {
		if d = strings.TrimSpace(d); d != "" {
			out = append(out, d)
		}
	}
	return out
}

// head is the part of a document Helm decodes to sort it (releaseutil.SimpleHead).
type head struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind,omitempty"`
	Metadata   *struct {
		Name        string            `json:"name"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata,omitempty"`
}

func parseHead(doc string) (head, error) {
	var h head
	v, err := yamlToJSONValue([]byte(doc))
	if err != nil {
		return h, err
	}
	j, err := json.Marshal(v)
	if err != nil {
		return h, err
	}
	if err := json.Unmarshal(j, &h); err != nil {
		return h, fmt.Errorf("error unmarshaling JSON: %v", err)
	}
	return h, nil
}

func kindRank(kind string) (int, bool) {
	for i, k := range installOrder {
		if k == kind {
			return i, true
		}
	}
	return 0, false
}

func sortByKind(ms []manifest) {
	sort.SliceStable(ms, func(i, j int) bool {
		a, aok := kindRank(ms[i].kind)
		b, bok := kindRank(ms[j].kind)
		switch {
		case !aok && !bok:
			return ms[i].kind < ms[j].kind
		case !aok:
			return false
		case !bok:
			return true
		}
		return a < b
	})
}

func assemble(ch *chart, rendered map[string]string, o options) (string, error) {
	names := make([]string, 0, len(rendered))
	for n := range rendered {
		names = append(names, n)
	}
	sort.Strings(names)
	var generic, hooks []manifest
	for _, name := range names {
		if strings.HasPrefix(path.Base(name), "_") || strings.TrimSpace(rendered[name]) == "" {
			continue
		}
		for _, doc := range splitManifests(rendered[name]) {
			h, err := parseHead(doc)
			if err != nil {
				return "", fmt.Errorf("YAML parse error on %s: %v", name, err)
			}
			m := manifest{source: name, content: doc, kind: h.Kind}
			if h.Metadata != nil {
				if events, ok := h.Metadata.Annotations["helm.sh/hook"]; ok {
					known := true
					for _, ev := range strings.Split(events, ",") {
						ev = strings.ToLower(strings.TrimSpace(ev))
						if !hookEvents[ev] {
							known = false
						}
						if ev == "test" || ev == "test-success" {
							m.isTest = true
						}
					}
					if !known {
						fmt.Fprintf(os.Stderr, "info: skipping unknown hook: %q\n", events)
						continue
					}
					m.isHook = true
				}
			}
			if m.isHook {
				hooks = append(hooks, m)
			} else {
				generic = append(generic, m)
			}
		}
	}
	sortByKind(generic)
	sortByKind(hooks)
	var b strings.Builder
	if o.includeCRDs {
		for _, f := range ch.crds() {
			fmt.Fprintf(&b, "---\n# Source: %s\n%s\n", path.Join(ch.meta.Name, f.name), string(f.data))
		}
	}
	for _, m := range generic {
		fmt.Fprintf(&b, "---\n# Source: %s\n%s\n", m.source, m.content)
	}
	if !o.noHooks {
		for _, m := range hooks {
			if o.skipTests && m.isTest {
				continue
			}
			fmt.Fprintf(&b, "---\n# Source: %s\n%s\n", m.source, m.content)
		}
	}
	return b.String(), nil
}
