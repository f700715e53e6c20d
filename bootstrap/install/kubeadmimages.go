package install

import (
	"strings"

	"github.com/ksboot/ksboot/versions"
)

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
	coreDNS, etcd, exact := versions.KubeadmTags(kubernetesVersion)
	tag := releaseTag(kubernetesVersion)
	for _, name := range releaseImages {
		images = append(images, repo+"/"+name+":"+tag)
	}
	images = append(images,
		dnsRepo+"/coredns:"+coreDNS,
		PauseImage(kubernetesVersion, repo),
		repo+"/etcd:"+etcd)
	return images, exact
}

// releaseTag is the tag kubeadm gives its release images: the version with "+" written as "_"
// (kubeadm's KubernetesVersionToImageTag).
func releaseTag(kubernetesVersion string) string {
	return "v" + strings.ReplaceAll(strings.TrimPrefix(kubernetesVersion, "v"), "+", "_")
}
