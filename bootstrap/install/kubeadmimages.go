package install

import "strings"

// kubeadmRelease is what kubeadm of one release deploys besides the Kubernetes images.
type kubeadmRelease struct {
	version string // the release read
	coreDNS string
	etcd    string
}

// kubeadmTags are the CoreDNS and etcd image tags kubeadm deploys for a Kubernetes release (the
// kubeadm of that release, with its own Kubernetes version), read from the k8s.io/kubernetes
// module, cmd/kubeadm/app/constants/constants.go: CoreDNSVersion, and SupportedEtcdVersion for
// the minor (the nearest minor when the map has none, as constants.EtcdSupportedVersion falls
// back; 1.35 keys the map by its own skew). Both the first and the latest patch release of
// each minor that this project builds from (v1.24.0 … v1.37.2) were read, because, unlike the
// pause tag (pause.go), the etcd tag and sometimes the CoreDNS tag change in patch releases.
var kubeadmTags = []kubeadmRelease{
	{"v1.24.0", "v1.8.6", "3.5.3-0"},
	{"v1.24.17", "v1.8.6", "3.5.6-0"},
	{"v1.25.0", "v1.9.3", "3.5.4-0"},
	{"v1.25.16", "v1.9.3", "3.5.9-0"},
	{"v1.26.0", "v1.9.3", "3.5.6-0"},
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

// KubeadmImages are the images `kubeadm config images list` names for a Kubernetes version:
// kube-apiserver, kube-controller-manager, kube-scheduler and kube-proxy at that version,
// CoreDNS, pause and etcd. imageRepository and dnsImageRepository are what ksboot writes into
// kubeadm's ClusterConfiguration (imageRepository, dns.imageRepository; bootstrap/kubeadm
// decides them); "" means kubeadm's default, registry.k8s.io, where CoreDNS lives under
// coredns/coredns. The names follow kubeadm's own rules (cmd/kubeadm/app/images), so an image
// archive holding them serves `kubeadm init` offline. (kubeadm's default repository was
// k8s.gcr.io before v1.25 and in early v1.24 patches; like PauseImage, this assumes
// registry.k8s.io.)
//
// exact is false when the version is not one whose tags were read and the releases read around
// it disagree (a patch release between two that ship different etcd tags), or when the version
// is outside the table: the tags are then those of the nearest release read, and
// `kubeadm config images list --kubernetes-version <v>` gives the truth.
func KubeadmImages(kubernetesVersion, imageRepository, dnsImageRepository string) (images []string, exact bool) {
	repo := strings.TrimSuffix(imageRepository, "/")
	if repo == "" {
		repo = DefaultImageRepository
	}
	dnsRepo := strings.TrimSuffix(dnsImageRepository, "/")
	if dnsRepo == "" {
		dnsRepo = repo
	}
	// kubeadm renamed the official image from registry.k8s.io/coredns to
	// registry.k8s.io/coredns/coredns and special-cases only its default repository.
	if dnsRepo == DefaultImageRepository {
		dnsRepo += "/coredns"
	}
	coreDNS, etcd, exact := kubeadmTagsFor(kubernetesVersion)
	// kubeadm writes a version's "+" as "_" in image tags (KubernetesVersionToImageTag).
	tag := "v" + strings.ReplaceAll(strings.TrimPrefix(kubernetesVersion, "v"), "+", "_")
	for _, name := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy"} {
		images = append(images, repo+"/"+name+":"+tag)
	}
	images = append(images,
		dnsRepo+"/coredns:"+coreDNS,
		PauseImage(kubernetesVersion, repo),
		repo+"/etcd:"+etcd)
	return images, exact
}

// kubeadmTagsFor picks the table's tags for a version: the row of the same release, or the rows
// of its minor around it (rows are in version order). Within a minor the tags only move
// forward, so a version between two rows that agree has their tags.
func kubeadmTagsFor(v string) (coreDNS, etcd string, exact bool) {
	last := kubeadmTags[len(kubeadmTags)-1]
	minor, ok := minorOf(v)
	if !ok {
		return last.coreDNS, last.etcd, false
	}
	var lower, upper *kubeadmRelease
	for i := range kubeadmTags {
		row := &kubeadmTags[i]
		if m, _ := minorOf(row.version); m != minor {
			continue
		}
		switch c := comparePatch(row.version, v); {
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
	// A minor outside the table: the nearest end of it.
	if first, _ := minorOf(kubeadmTags[0].version); minor < first {
		return kubeadmTags[0].coreDNS, kubeadmTags[0].etcd, false
	}
	return last.coreDNS, last.etcd, false
}

// comparePatch compares the patch numbers of two versions of one minor ("v1.30.2" < "v1.30.14");
// a pre-release counts as its patch.
func comparePatch(a, b string) int {
	return patchOf(a) - patchOf(b)
}

func patchOf(v string) int {
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	if len(parts) < 3 {
		return 0
	}
	n := 0
	for _, c := range parts[2] {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
	}
	return n
}
