package loadbalancer

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/ksboot/ksboot/bootstrap/addons"
	"github.com/ksboot/ksboot/cluster"
	"github.com/ksboot/ksboot/versions"
)

// kube-vip's control-plane lease. Its timing is the cluster file's
// (controlPlaneEndpoint.LeaderElection): by default what `kube-vip manifest pod --arp
// --controlplane --leaderElection` writes (kube-vip's static-pod guide, KubeKey's template).
const (
	kubeVIPLease = "plndr-cp-lock"
	// kubeVIPKubeconfig is where kube-vip reads its kubeconfig in the container, whichever of
	// the host's admin.conf or super-admin.conf is mounted there (kube-vip's generator mounts
	// --k8sConfigPath at this path).
	kubeVIPKubeconfig = "/etc/kubernetes/admin.conf"
)

// KubeVIPPod is the kube-vip static pod of a control plane: ARP mode, leader election over a
// Lease, the VIP of controlPlaneEndpoint.address, as `kube-vip manifest pod --arp
// --controlplane --leaderElection` generates it. kubeconfig is the host's kubeconfig kube-vip
// uses (AdminConf, or SuperAdminConf during kubeadm init from v1.29); kube-vip talks to the API
// server of its own node at kubernetes:<port>, which hostAliases maps to 127.0.0.1.
//
// The interface is the host's (spec.hosts[].interface: the name cloud-init gives the NIC, the
// default eth0 included) when the cluster file names one; otherwise vip_interface is left out
// and kube-vip binds the VIP to the interface of the default route, which it detects at start.
func KubeVIPPod(c *cluster.Cluster, node, kubeconfig string) *corev1.Pod {
	e := c.Spec.ControlPlaneEndpoint
	lease, renew, retry := e.LeaderElection()
	env := []corev1.EnvVar{
		{Name: "vip_arp", Value: "true"},
		{Name: "port", Value: strconv.Itoa(e.Port)},
	}
	if h, ok := c.Host(node); ok && h.Interface != "" {
		env = append(env, corev1.EnvVar{Name: "vip_interface", Value: h.Interface})
	}
	env = append(env,
		corev1.EnvVar{Name: "vip_cidr", Value: strconv.Itoa(vipBits(e))},
		corev1.EnvVar{Name: "cp_enable", Value: "true"},
		corev1.EnvVar{Name: "cp_namespace", Value: metav1.NamespaceSystem},
		corev1.EnvVar{Name: "vip_ddns", Value: "false"},
		corev1.EnvVar{Name: "vip_leaderelection", Value: "true"},
		corev1.EnvVar{Name: "vip_leasename", Value: kubeVIPLease},
		corev1.EnvVar{Name: "vip_leaseduration", Value: strconv.Itoa(lease)},
		corev1.EnvVar{Name: "vip_renewdeadline", Value: strconv.Itoa(renew)},
		corev1.EnvVar{Name: "vip_retryperiod", Value: strconv.Itoa(retry)},
		corev1.EnvVar{Name: "address", Value: e.Address},
	)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-vip", Namespace: metav1.NamespaceSystem},
		Spec: corev1.PodSpec{
			HostNetwork: true,
			HostAliases: []corev1.HostAlias{{IP: "127.0.0.1", Hostnames: []string{"kubernetes"}}},
			Containers: []corev1.Container{{
				Name:            "kube-vip",
				Image:           addons.Image(c.Spec.Registry, versions.KubeVIPImage),
				ImagePullPolicy: corev1.PullIfNotPresent,
				Args:            []string{"manager"},
				Env:             env,
				SecurityContext: &corev1.SecurityContext{Capabilities: &corev1.Capabilities{
					Add: []corev1.Capability{"NET_ADMIN", "NET_RAW"},
				}},
				VolumeMounts: []corev1.VolumeMount{{Name: "kubeconfig", MountPath: kubeVIPKubeconfig}},
			}},
			Volumes: []corev1.Volume{{Name: "kubeconfig", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{
				// File: the pod waits for kubeadm to write the kubeconfig; an unset type would
				// make the kubelet create a directory in its place.
				Path: kubeconfig, Type: ptr.To(corev1.HostPathFile),
			}}}},
		},
	}
}

// vipBits is the VIP's prefix length as kube-vip binds it: the single address.
func vipBits(e cluster.ControlPlaneEndpoint) int {
	if p, ok := e.KubeVIP(); ok {
		return p.Bits()
	}
	return 32
}
