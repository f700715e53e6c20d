package versions

// kubeadmRelease is what the kubeadm of one release deploys besides the Kubernetes images.
type kubeadmRelease struct {
	version string // the release read
	coreDNS string
	etcd    string
}

// kubeadmTags are the CoreDNS and etcd image tags kubeadm deploys for a Kubernetes release (the
// kubeadm of that release, with its own Kubernetes version), read from the k8s.io/kubernetes
// module, cmd/kubeadm/app/constants/constants.go: CoreDNSVersion, and SupportedEtcdVersion for
// the minor (the nearest minor when the map has none, as constants.EtcdSupportedVersion falls
// back; 1.35 keys the map by its own skew). The first and the latest patch release of each
// minor were read, and every release the tests judge (Judged), because, unlike the pause tag,
// the etcd tag and sometimes the CoreDNS tag change in patch releases.
var kubeadmTags = []kubeadmRelease{
	{"v1.23.0", "v1.8.6", "3.5.1-0"},
	{"v1.23.17", "v1.8.6", "3.5.6-0"},
	{"v1.24.0", "v1.8.6", "3.5.3-0"},
	{"v1.24.17", "v1.8.6", "3.5.6-0"},
	{"v1.25.0", "v1.9.3", "3.5.4-0"},
	{"v1.25.16", "v1.9.3", "3.5.9-0"},
	{"v1.26.0", "v1.9.3", "3.5.6-0"},
	{"v1.26.5", "v1.9.3", "3.5.6-0"},
	{"v1.26.15", "v1.9.3", "3.5.10-0"},
	{"v1.27.0", "v1.10.1", "3.5.7-0"},
	{"v1.27.16", "v1.10.1", "3.5.12-0"},
	{"v1.28.0", "v1.10.1", "3.5.9-0"},
	{"v1.28.15", "v1.10.1", "3.5.15-0"},
	{"v1.29.0", "v1.11.1", "3.5.10-0"},
	{"v1.29.6", "v1.11.1", "3.5.12-0"},
	{"v1.30.0", "v1.11.1", "3.5.12-0"},
	{"v1.30.14", "v1.11.3", "3.5.15-0"},
	{"v1.31.0", "v1.11.1", "3.5.15-0"},
	{"v1.31.1", "v1.11.3", "3.5.15-0"},
	{"v1.31.13", "v1.11.3", "3.5.15-0"},
	{"v1.31.14", "v1.11.3", "3.5.24-0"},
	{"v1.32.0", "v1.11.3", "3.5.16-0"},
	{"v1.32.13", "v1.11.3", "3.5.24-0"},
	{"v1.33.0", "v1.12.0", "3.5.21-0"},
	{"v1.33.13", "v1.12.0", "3.5.24-0"},
	{"v1.34.0", "v1.12.1", "3.6.4-0"},
	{"v1.34.4", "v1.12.1", "3.6.5-0"},
	{"v1.35.0", "v1.13.1", "3.6.6-0"},
	{"v1.35.4", "v1.13.1", "3.6.6-0"},
	{"v1.36.0", "v1.14.2", "3.6.8-0"},
	{"v1.36.3", "v1.14.2", "3.6.8-0"},
	{"v1.37.0", "v1.14.6", "3.7.0-0"},
	{"v1.37.2", "v1.14.6", "3.7.0-0"},
}

// KubeadmTags returns the CoreDNS and etcd tags kubeadm of a release deploys: those of the
// release itself when it was read, or of the releases of its minor read around it (within a
// minor the tags only move forward, so a release between two rows that agree has their
// tags). exact is false when the rows around the release disagree or the version is outside
// the table; the tags are then the nearest read, and `kubeadm config images list` gives the
// truth.
func KubeadmTags(kubernetesVersion string) (coreDNS, etcd string, exact bool) {
	last := kubeadmTags[len(kubeadmTags)-1]
	v, err := Parse(kubernetesVersion)
	if err != nil {
		return last.coreDNS, last.etcd, false
	}
	var lower, upper *kubeadmRelease
	for i := range kubeadmTags {
		row := &kubeadmTags[i]
		r, _ := Parse(row.version)
		if r.Major != v.Major || r.Minor != v.Minor {
			continue
		}
		switch c := r.Patch - v.Patch; {
		case c == 0:
			return row.coreDNS, row.etcd, true
		case c < 0:
			lower = row
		case upper == nil:
			upper = row
		}
	}
	switch {
	case lower != nil && upper != nil:
		return upper.coreDNS, upper.etcd, lower.coreDNS == upper.coreDNS && lower.etcd == upper.etcd
	case lower != nil:
		return lower.coreDNS, lower.etcd, false
	case upper != nil:
		return upper.coreDNS, upper.etcd, false
	}
	if first, _ := Parse(kubeadmTags[0].version); v.Compare(first) < 0 {
		return kubeadmTags[0].coreDNS, kubeadmTags[0].etcd, false
	}
	return last.coreDNS, last.etcd, false
}

// PauseTag is kubeadm's pause tag for a Kubernetes version (the matrix row's Pause; the
// newest row's for a version outside the matrix).
func PauseTag(kubernetesVersion string) string { return MustLookup(kubernetesVersion).Pause }
