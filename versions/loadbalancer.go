package versions

// Images of the internal load balancer ksboot deploys for
// spec.controlPlaneEndpoint.internalLoadbalancer (bootstrap/loadbalancer). Unlike the rows of
// the matrix they do not follow the Kubernetes minor: haproxy forwards TCP and checks /healthz,
// and kube-vip speaks only the stable coordination.k8s.io/v1 Lease API, so one release of each
// serves every minor. They are the releases KubeKey v3 pins (its images.go: haproxy
// 2.9.6-alpine, kube-vip v0.7.2), so a cluster moved from KubeKey runs the same load balancer
// and a private registry laid out for KubeKey already holds them. kube-vip is named at its own
// registry (ghcr.io/kube-vip/kube-vip, what kube-vip's documentation and `kube-vip manifest`
// use); KubeKey's copy under docker.io/plndr is the same release.
const (
	HAProxyVersion = "2.9.6-alpine"
	HAProxyImage   = "docker.io/library/haproxy:" + HAProxyVersion
	KubeVIPVersion = "v0.7.2"
	KubeVIPImage   = "ghcr.io/kube-vip/kube-vip:" + KubeVIPVersion
)

// superAdminConfSince is the first minor whose kubeadm init writes
// /etc/kubernetes/super-admin.conf and binds admin.conf's user to the kubeadm:cluster-admins
// group instead of system:masters (kubeadm v1.29 release notes, "urgent upgrade notes").
const superAdminConfSince = 29

// SuperAdminConf reports whether kubeadm init of this minor writes super-admin.conf and leaves
// admin.conf without rights until init has bound kubeadm:cluster-admins. A static pod that must
// talk to the API server during init (kube-vip on the first control plane) then has to use
// super-admin.conf, and admin.conf afterwards (kube-vip issue 684, kube-vip's static-pod guide).
func (m Minor) SuperAdminConf() bool { return m.Minor >= superAdminConfSince }
