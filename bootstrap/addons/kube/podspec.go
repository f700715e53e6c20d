package kube

import "k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

// PodSpecPaths is where workload kinds keep their pod spec.
var PodSpecPaths = map[string][]string{
	"Pod":         {"spec"},
	"DaemonSet":   {"spec", "template", "spec"},
	"Deployment":  {"spec", "template", "spec"},
	"StatefulSet": {"spec", "template", "spec"},
	"ReplicaSet":  {"spec", "template", "spec"},
	"Job":         {"spec", "template", "spec"},
	"CronJob":     {"spec", "jobTemplate", "spec", "template", "spec"},
}

// ContainerImages lists the images of a workload's init containers and containers, in that
// order; nothing for kinds without a pod spec.
func ContainerImages(u *unstructured.Unstructured) []string {
	p, ok := PodSpecPaths[u.GetKind()]
	if !ok {
		return nil
	}
	spec, found, err := unstructured.NestedMap(u.Object, p...)
	if !found || err != nil {
		return nil
	}
	var out []string
	for _, key := range []string{"initContainers", "containers"} {
		list, _ := spec[key].([]any)
		for _, item := range list {
			if m, ok := item.(map[string]any); ok {
				if img, ok := m["image"].(string); ok && img != "" {
					out = append(out, img)
				}
			}
		}
	}
	return out
}
