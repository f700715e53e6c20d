package install

import (
	"strings"

	"github.com/ksboot/ksboot/versions"
)

// DefaultImageRepository is kubeadm's default image repository.
const DefaultImageRepository = "registry.k8s.io"

// PauseImage is the pause image kubeadm uses for a Kubernetes version with an image
// repository ("" for kubeadm's default, registry.k8s.io): <repository>/pause:<kubeadm's tag>.
// containerd's sandbox image must be exactly this, or containerd pulls a second pause image
// that an offline node cannot get. The tag is the version matrix's (versions.PauseTag).
func PauseImage(kubernetesVersion, imageRepository string) string {
	repo := strings.TrimSuffix(imageRepository, "/")
	if repo == "" {
		repo = DefaultImageRepository
	}
	return repo + "/pause:" + versions.PauseTag(kubernetesVersion)
}
