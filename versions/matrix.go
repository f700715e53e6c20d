package versions

import (
	"fmt"
	"slices"
)

// kubeadm configuration API versions. v1beta3 is read by kubeadm v1.22 to v1.36 (deprecated
// from v1.31, removed in v1.37); v1beta4 by kubeadm v1.31 and later. ksboot renders v1beta3
// below v1.31 and v1beta4 from v1.31, the newest API each kubeadm reads.
const (
	KubeadmV1Beta3 = "kubeadm.k8s.io/v1beta3"
	KubeadmV1Beta4 = "kubeadm.k8s.io/v1beta4"
)

// CgroupV1 is how a kubelet minor treats a node on cgroup v1.
type CgroupV1 string

const (
	// CgroupV1Supported: cgroup v1 works as well as v2.
	CgroupV1Supported CgroupV1 = "supported"
	// CgroupV1Maintenance: it works, but upstream only fixes it (KEP-4569, v1.31) and the
	// kubelet warns at start.
	CgroupV1Maintenance CgroupV1 = "maintenance"
	// CgroupV1Refused: the kubelet refuses to start on cgroup v1 unless failCgroupV1 is set
	// to false (the field's default became true in v1.35).
	CgroupV1Refused CgroupV1 = "refused"
)

// Minor is one row of the matrix: what a node of a Kubernetes minor release gets.
type Minor struct {
	// Minor is the Kubernetes minor number: 26 for v1.26.
	Minor int
	// Default is the patch release ksboot picks for this minor when only the minor is
	// chosen (create config --with-kubesphere): the newest patch release, except where a
	// guide names one and ksboot proves it (v1.26.5, KubeSphere's guide for v3.4).
	Default string
	// KubeadmAPI is the kubeadm configuration API rendered for this minor.
	KubeadmAPI string
	// Containerd is the containerd release, from containerd's own Kubernetes support table:
	// 1.7 where no 2.x release supports the minor.
	Containerd string
	// Runc is the runc release that containerd release is built and tested with.
	Runc string
	// Crictl follows the Kubernetes minor, as cri-tools asks.
	Crictl string
	// CNIPlugins is the containernetworking/plugins release (bridge, host-local, loopback,
	// portmap, …); its plugins speak every CNI spec version from 0.1.0 to 1.1.0.
	CNIPlugins string
	// Pause is kubeadm's PauseVersion of this minor; containerd's sandbox image must be this
	// exact tag, or containerd pulls a second pause image an offline node cannot get.
	Pause string
	// Calico is the Calico release (manifest install) whose system requirements list this
	// minor; its calico.yaml digest is pinned in CalicoManifestSHA256.
	Calico string
	// Flannel is the Flannel release deployed for this minor, and FlannelCNIPlugin its CNI
	// plugin image's tag.
	Flannel          string
	FlannelCNIPlugin string
	// CgroupV1 is how this minor's kubelet treats cgroup v1.
	CgroupV1 CgroupV1
}

// Version returns v1.MINOR as a string, for messages.
func (m Minor) Version() string { return fmt.Sprintf("v1.%d", m.Minor) }

// Shared releases. Where containerd's support table lists several containerd lines for a
// minor, the matrix takes one that is still maintained and shared by neighbouring minors, so
// that a bundle or a mirror holds few of them; runc is the release that containerd's own
// script/setup/runc-version names at that tag.
const (
	containerd16 = "v1.6.36" // containerd lists only 1.6 and 1.5 for Kubernetes 1.23
	runc16       = "v1.1.14"
	containerd17 = "v1.7.35" // 1.7.0+ for 1.24-1.28, 1.7.11+ for 1.29
	runc17       = "v1.3.6"
	containerd20 = "v2.0.14" // 2.0 LTS: listed for 1.30-1.34
	runc20       = "v1.3.6"
	containerd22 = "v2.2.9" // 2.2.0+ for 1.35 (2.1 is end of life)
	runc22       = "v1.3.6"
	containerd23 = "v2.3.7" // 2.3 LTS: listed for 1.36 and 1.37
	runc23       = "v1.5.2"
	containerd24 = "v2.4.2" // listed for 1.37; what the e2e suite proves at v1.37.2
	runc24       = "v1.5.2"
	cniPlugins   = "v1.10.0"
	flannel      = "v0.27.4" // upstream: "for Kubernetes v1.17+"; only apps/v1, rbac/v1, v1 objects
	flannelCNI   = "v1.8.0-flannel1"
)

// matrix lists the supported minors, oldest first. See docs/versions.md for the sources.
var matrix = []Minor{
	{Minor: 23, Default: "v1.23.17", KubeadmAPI: KubeadmV1Beta3, Containerd: containerd16, Runc: runc16, Crictl: "v1.23.0", CNIPlugins: cniPlugins, Pause: "3.6", Calico: "v3.25.2", Flannel: flannel, FlannelCNIPlugin: flannelCNI, CgroupV1: CgroupV1Supported},
	{Minor: 24, Default: "v1.24.17", KubeadmAPI: KubeadmV1Beta3, Containerd: containerd17, Runc: runc17, Crictl: "v1.24.2", CNIPlugins: cniPlugins, Pause: "3.7", Calico: "v3.26.5", Flannel: flannel, FlannelCNIPlugin: flannelCNI, CgroupV1: CgroupV1Supported},
	{Minor: 25, Default: "v1.25.16", KubeadmAPI: KubeadmV1Beta3, Containerd: containerd17, Runc: runc17, Crictl: "v1.25.0", CNIPlugins: cniPlugins, Pause: "3.8", Calico: "v3.26.5", Flannel: flannel, FlannelCNIPlugin: flannelCNI, CgroupV1: CgroupV1Supported},
	{Minor: 26, Default: "v1.26.5", KubeadmAPI: KubeadmV1Beta3, Containerd: containerd17, Runc: runc17, Crictl: "v1.26.1", CNIPlugins: cniPlugins, Pause: "3.9", Calico: "v3.26.5", Flannel: flannel, FlannelCNIPlugin: flannelCNI, CgroupV1: CgroupV1Supported},
	{Minor: 27, Default: "v1.27.16", KubeadmAPI: KubeadmV1Beta3, Containerd: containerd17, Runc: runc17, Crictl: "v1.27.1", CNIPlugins: cniPlugins, Pause: "3.9", Calico: "v3.28.5", Flannel: flannel, FlannelCNIPlugin: flannelCNI, CgroupV1: CgroupV1Supported},
	{Minor: 28, Default: "v1.28.15", KubeadmAPI: KubeadmV1Beta3, Containerd: containerd17, Runc: runc17, Crictl: "v1.28.0", CNIPlugins: cniPlugins, Pause: "3.9", Calico: "v3.28.5", Flannel: flannel, FlannelCNIPlugin: flannelCNI, CgroupV1: CgroupV1Supported},
	{Minor: 29, Default: "v1.29.15", KubeadmAPI: KubeadmV1Beta3, Containerd: containerd17, Runc: runc17, Crictl: "v1.29.0", CNIPlugins: cniPlugins, Pause: "3.9", Calico: "v3.29.7", Flannel: flannel, FlannelCNIPlugin: flannelCNI, CgroupV1: CgroupV1Supported},
	{Minor: 30, Default: "v1.30.14", KubeadmAPI: KubeadmV1Beta3, Containerd: containerd20, Runc: runc20, Crictl: "v1.30.1", CNIPlugins: cniPlugins, Pause: "3.9", Calico: "v3.29.7", Flannel: flannel, FlannelCNIPlugin: flannelCNI, CgroupV1: CgroupV1Supported},
	{Minor: 31, Default: "v1.31.13", KubeadmAPI: KubeadmV1Beta4, Containerd: containerd20, Runc: runc20, Crictl: "v1.31.1", CNIPlugins: cniPlugins, Pause: "3.10", Calico: "v3.30.7", Flannel: flannel, FlannelCNIPlugin: flannelCNI, CgroupV1: CgroupV1Maintenance},
	{Minor: 32, Default: "v1.32.13", KubeadmAPI: KubeadmV1Beta4, Containerd: containerd20, Runc: runc20, Crictl: "v1.32.0", CNIPlugins: cniPlugins, Pause: "3.10", Calico: "v3.31.7", Flannel: flannel, FlannelCNIPlugin: flannelCNI, CgroupV1: CgroupV1Maintenance},
	{Minor: 33, Default: "v1.33.13", KubeadmAPI: KubeadmV1Beta4, Containerd: containerd20, Runc: runc20, Crictl: "v1.33.0", CNIPlugins: cniPlugins, Pause: "3.10", Calico: "v3.31.7", Flannel: flannel, FlannelCNIPlugin: flannelCNI, CgroupV1: CgroupV1Maintenance},
	{Minor: 34, Default: "v1.34.4", KubeadmAPI: KubeadmV1Beta4, Containerd: containerd20, Runc: runc20, Crictl: "v1.34.0", CNIPlugins: cniPlugins, Pause: "3.10.1", Calico: "v3.32.1", Flannel: flannel, FlannelCNIPlugin: flannelCNI, CgroupV1: CgroupV1Maintenance},
	{Minor: 35, Default: "v1.35.4", KubeadmAPI: KubeadmV1Beta4, Containerd: containerd22, Runc: runc22, Crictl: "v1.35.0", CNIPlugins: cniPlugins, Pause: "3.10.1", Calico: "v3.32.1", Flannel: flannel, FlannelCNIPlugin: flannelCNI, CgroupV1: CgroupV1Refused},
	{Minor: 36, Default: "v1.36.3", KubeadmAPI: KubeadmV1Beta4, Containerd: containerd23, Runc: runc23, Crictl: "v1.36.0", CNIPlugins: cniPlugins, Pause: "3.10.2", Calico: "v3.32.1", Flannel: flannel, FlannelCNIPlugin: flannelCNI, CgroupV1: CgroupV1Refused},
	{Minor: 37, Default: "v1.37.2", KubeadmAPI: KubeadmV1Beta4, Containerd: containerd24, Runc: runc24, Crictl: "v1.37.0", CNIPlugins: cniPlugins, Pause: "3.10.2", Calico: "v3.32.1", Flannel: flannel, FlannelCNIPlugin: flannelCNI, CgroupV1: CgroupV1Refused},
}

// calicoManifests pins the SHA-256 of upstream's manifests/calico.yaml at each Calico release
// the matrix names. A mirror or a bundle can make the addons phase fail but never make it
// apply another file.
//
// Each Calico release is the newest whose "system requirements" page lists the minor as
// tested (Calico's docs, per release); no release lists v1.37 yet, so v1.37 takes the newest,
// v3.32, whose docs say newer Kubernetes versions may also work. The digests are of the file at
// the release tag.
var calicoManifests = map[string]string{
	"v3.25.2": "67244318479625fc58bbd01653cf2b397ee0227d0cd143f2f4d55c7a96ce0945",
	"v3.26.5": "2468a8c939658b959860b0e78c3d2f420c53bb08af7511f3d335e051f9db8b22",
	"v3.28.5": "206678e7adb2e931bb97385300c408490635616f371941d68468207d6e0f9713",
	"v3.29.7": "b200cb3c2c7341717abe98e4acc80a13117bcd2c9c46ad46e8c209c5753f0b2f",
	"v3.30.7": "ed105288f27c7ba4cae143bcaa3f6425f02d84fa94a4786cc8e3d371412c1a36",
	"v3.31.7": "d6d8a489a4ed8e5b8efd8b339047b496ca657b55ee2e3618e791507b0a853e8d",
	"v3.32.1": "a1df919d9721cf667accdc3e72848911b0cb25cfab7d2478ad0c996302c95744",
}

// CalicoManifestSHA256 is the pinned digest of a Calico release's calico.yaml.
func CalicoManifestSHA256(calico string) (string, bool) {
	s, ok := calicoManifests[calico]
	return s, ok
}

// Minors returns the matrix, oldest minor first. The slice is a copy.
func Minors() []Minor { return slices.Clone(matrix) }

// Oldest and Newest are the ends of the matrix.
func Oldest() Minor { return matrix[0] }

// Newest is the newest minor of the matrix.
func Newest() Minor { return matrix[len(matrix)-1] }

// Range is "v1.23 to v1.37", for messages.
func Range() string { return Oldest().Version() + " to " + Newest().Version() }

// ErrUnsupported is wrapped by Lookup for a well-formed version outside the matrix.
var ErrUnsupported = fmt.Errorf("not in ksboot's version matrix")

// Lookup returns the row of a Kubernetes version. A malformed version, a major other than 1,
// a pre-release and a minor outside the matrix are errors that name the supported range.
func Lookup(kubernetesVersion string) (Minor, error) {
	v, err := Parse(kubernetesVersion)
	if err != nil {
		return Minor{}, err
	}
	if v.Pre != "" {
		return Minor{}, fmt.Errorf("%s is a pre-release: %w (ksboot installs releases %s)", v, ErrUnsupported, Range())
	}
	if v.Major == 1 {
		for _, m := range matrix {
			if m.Minor == v.Minor {
				return m, nil
			}
		}
	}
	return Minor{}, fmt.Errorf("%s is %w, which supports %s", v, ErrUnsupported, Range())
}

// MustLookup is Lookup for versions already validated (a node config that passed `validate`),
// falling back to the newest row so that a caller never has to invent a component version.
func MustLookup(kubernetesVersion string) Minor {
	if m, err := Lookup(kubernetesVersion); err == nil {
		return m
	}
	return Newest()
}

// Judged says which releases of the matrix a real consumer has judged in ksboot's own tests:
// Kubeadm is the real kubeadm of that release running `config validate` (where it has it),
// `init --dry-run` and `join --dry-run` on what ksboot renders (bootstrap/kubeadm's
// integration tests build it and iterate over this list); Cluster is the e2e suite forming a
// real cluster of qemu guests at that release (test/e2e/scenarios).
var Judged = []Proof{
	{Version: "v1.26.5", Kubeadm: true, Cluster: true},
	{Version: "v1.30.14", Kubeadm: true},
	{Version: "v1.31.1", Kubeadm: true},
	{Version: "v1.37.2", Kubeadm: true, Cluster: true},
}

// Proof is what has judged one release (see Judged).
type Proof struct {
	Version string
	Kubeadm bool
	Cluster bool
}
