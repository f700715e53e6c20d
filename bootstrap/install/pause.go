package install

import (
	"strconv"
	"strings"
)

// DefaultImageRepository is kubeadm's default image repository.
const DefaultImageRepository = "registry.k8s.io"

// pauseTags is kubeadm's PauseVersion (cmd/kubeadm/app/constants) by Kubernetes minor release,
// read from the k8s.io/kubernetes module of the first and the latest patch release of each
// minor (v1.24.0 … v1.37.2): patch releases never changed it.
var pauseTags = []struct {
	fromMinor int
	tag       string
}{
	{24, "3.7"},
	{25, "3.8"},
	{26, "3.9"}, // to 1.30
	{31, "3.10"},
	{34, "3.10.1"},
	{36, "3.10.2"}, // 1.36 and 1.37
}

// PauseImage is the pause image kubeadm uses for a Kubernetes version with an image
// repository ("" for kubeadm's default, registry.k8s.io): <repository>/pause:<kubeadm's tag>.
// containerd's sandbox image must be exactly this, or containerd pulls a second pause image
// that an offline node cannot get. A minor release newer than the table gets the newest tag
// known; an unreadable version gets the same.
func PauseImage(kubernetesVersion, imageRepository string) string {
	repo := strings.TrimSuffix(imageRepository, "/")
	if repo == "" {
		repo = DefaultImageRepository
	}
	tag := pauseTags[len(pauseTags)-1].tag
	if minor, ok := minorOf(kubernetesVersion); ok {
		tag = pauseTags[0].tag
		for _, t := range pauseTags {
			if minor >= t.fromMinor {
				tag = t.tag
			}
		}
	}
	return repo + "/pause:" + tag
}

// minorOf returns the minor number of "v1.MINOR.PATCH".
func minorOf(v string) (int, bool) {
	parts := strings.Split(strings.TrimPrefix(v, "v"), ".")
	if len(parts) < 2 || parts[0] != "1" {
		return 0, false
	}
	n, err := strconv.Atoi(parts[1])
	return n, err == nil
}
