package cluster

import (
	"fmt"

	"github.com/ksboot/ksboot/versions"
)

// compatRange is the Kubernetes minor range a KubeSphere minor release was published for.
type compatRange struct {
	kubesphere string // "3.4"
	minK8s     int    // lowest Kubernetes 1.x minor
	maxK8s     int    // highest Kubernetes 1.x minor
}

// compatibility is KubeSphere's published support table (KubeSphere installation prerequisites
// for each release). A pair outside it is a warning, not an error: users run newer Kubernetes on
// purpose, and the table can lag.
var compatibility = []compatRange{
	{"3.0", 15, 18},
	{"3.1", 17, 20},
	{"3.2", 19, 22},
	{"3.3", 19, 24},
	{"3.4", 21, 26},
	{"4.1", 21, 30},
}

// parseVersion parses "vMAJOR.MINOR.PATCH[-pre]" (versions.Parse, in the shape the
// validators use).
func parseVersion(v string) (major, minor, patch int, ok bool) {
	p, err := versions.Parse(v)
	if err != nil {
		return 0, 0, 0, false
	}
	return p.Major, p.Minor, p.Patch, true
}

// CheckCompatibility says whether a KubeSphere/Kubernetes pair is in the published table. The
// message names the supported range, or says the KubeSphere release is not in the table.
func CheckCompatibility(kubesphere, kubernetes string) (ok bool, message string) {
	ksMaj, ksMin, _, ok1 := parseVersion(kubesphere)
	k8sMaj, k8sMin, _, ok2 := parseVersion(kubernetes)
	if !ok1 || !ok2 {
		return false, "cannot compare malformed versions"
	}
	key := fmt.Sprintf("%d.%d", ksMaj, ksMin)
	for _, r := range compatibility {
		if r.kubesphere != key {
			continue
		}
		if k8sMaj == 1 && k8sMin >= r.minK8s && k8sMin <= r.maxK8s {
			return true, ""
		}
		return false, fmt.Sprintf("KubeSphere %s supports Kubernetes v1.%d to v1.%d, not %s",
			key, r.minK8s, r.maxK8s, kubernetes)
	}
	return false, fmt.Sprintf("KubeSphere %s is not in ksboot's compatibility table; it may still work", kubesphere)
}

// KubernetesFor picks the Kubernetes release for a KubeSphere release, as KubeKey picks its
// default: the default patch (versions.Minor.Default) of the newest minor that is both in
// KubeSphere's published range and in ksboot's version matrix (KubeSphere v3.4 → v1.26.5,
// v4.1 → v1.30.14). A KubeSphere release outside the table is an error naming the table.
func KubernetesFor(kubesphere string) (string, error) {
	ksMaj, ksMin, _, ok := parseVersion(kubesphere)
	if !ok {
		return "", fmt.Errorf("KubeSphere version %q is not a version like v4.1.3", kubesphere)
	}
	key := fmt.Sprintf("%d.%d", ksMaj, ksMin)
	var known []string
	for _, r := range compatibility {
		known = append(known, "v"+r.kubesphere)
		if r.kubesphere != key {
			continue
		}
		var pick string
		for _, m := range versions.Minors() {
			if m.Minor >= r.minK8s && m.Minor <= r.maxK8s {
				pick = m.Default
			}
		}
		if pick == "" {
			return "", fmt.Errorf("KubeSphere %s supports Kubernetes v1.%d to v1.%d, and none of them is in ksboot's version matrix (%s); name a version with --with-kubernetes",
				key, r.minK8s, r.maxK8s, versions.Range())
		}
		return pick, nil
	}
	return "", fmt.Errorf("KubeSphere %s is not in ksboot's compatibility table (%v); name a Kubernetes version with --with-kubernetes", key, known)
}
