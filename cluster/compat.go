package cluster

import (
	"fmt"
	"regexp"
	"strconv"
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

var versionPattern = regexp.MustCompile(`^v(\d+)\.(\d+)\.(\d+)(-[0-9A-Za-z.-]+)?$`)

// parseVersion parses "vMAJOR.MINOR.PATCH[-pre]".
func parseVersion(v string) (major, minor, patch int, ok bool) {
	m := versionPattern.FindStringSubmatch(v)
	if m == nil {
		return 0, 0, 0, false
	}
	major, _ = strconv.Atoi(m[1])
	minor, _ = strconv.Atoi(m[2])
	patch, _ = strconv.Atoi(m[3])
	return major, minor, patch, true
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
