package addons

import (
	"encoding/json"
	"fmt"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/ksboot/ksboot/bootstrap/addons/kube"
	"github.com/ksboot/ksboot/cluster"
)

// Flannel release ksboot deploys. The objects follow upstream's Documentation/kube-flannel.yml
// of this release; the versions are pinned so that a cluster built today and one built next
// year from the same ksboot run the same network.
const (
	FlannelVersion          = "v0.27.4"
	FlannelImage            = "ghcr.io/flannel-io/flannel:" + FlannelVersion
	FlannelCNIPluginImage   = "ghcr.io/flannel-io/flannel-cni-plugin:v1.8.0-flannel1"
	FlannelNamespace        = "kube-flannel"
	FlannelDaemonSet        = "kube-flannel-ds"
	flannelConfigMap        = "kube-flannel-cfg"
	flannelServiceAccount   = "flannel"
	flannelBackend          = "vxlan"
	flannelCNIConfList      = "10-flannel.conflist"
	flannelConfigMountPoint = "/etc/kube-flannel/"
)

// flannelNetConf is net-conf.json: flanneld's view of the pod network. Network must be the
// cluster's pod CIDR (kubeadm's podSubnet), from which the node IPAM controller hands every
// node its podCIDR; flanneld in --kube-subnet-mgr mode uses those.
type flannelNetConf struct {
	Network        string             `json:"Network"`
	EnableNFTables bool               `json:"EnableNFTables"`
	Backend        flannelBackendConf `json:"Backend"`
}

type flannelBackendConf struct {
	Type string `json:"Type"`
}

// flannelCNIConf is upstream's cni-conf.json: the flannel plugin delegating to bridge, plus
// portmap for hostPort.
const flannelCNIConf = `{
  "name": "cbr0",
  "cniVersion": "0.3.1",
  "plugins": [
    {
      "type": "flannel",
      "delegate": {
        "hairpinMode": true,
        "isDefaultGateway": true
      }
    },
    {
      "type": "portmap",
      "capabilities": {
        "portMappings": true
      }
    }
  ]
}
`

// Flannel returns the Flannel objects for the cluster, in apply order.
func Flannel(c *cluster.Cluster) ([]*unstructured.Unstructured, error) {
	netConf, err := json.MarshalIndent(flannelNetConf{
		Network: c.Spec.Network.KubePodsCIDR,
		// kube-proxy in ipvs or iptables mode uses iptables; nftables mode wants flannel's
		// rules in nftables too.
		EnableNFTables: c.Spec.Kubernetes.ProxyMode == "nftables",
		Backend:        flannelBackendConf{Type: flannelBackend},
	}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding flannel net-conf.json: %w", err)
	}
	labels := map[string]string{"app": "flannel", "k8s-app": "flannel", "tier": "node"}
	selector := map[string]string{"app": "flannel", "k8s-app": "flannel"}
	meta := func(name string, l map[string]string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: FlannelNamespace, Labels: l}
	}
	flannel := Image(c.Spec.Registry, FlannelImage)
	hostPath := func(name, path string, t *corev1.HostPathType) corev1.Volume {
		return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: path, Type: t}}}
	}
	fieldEnv := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
	}
	objs := []runtime.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: FlannelNamespace, Labels: map[string]string{
			"k8s-app": "flannel",
			// flanneld needs host networking and NET_ADMIN.
			"pod-security.kubernetes.io/enforce": "privileged",
		}}},
		&corev1.ServiceAccount{ObjectMeta: meta(flannelServiceAccount, map[string]string{"k8s-app": "flannel"})},
		&rbacv1.ClusterRole{
			ObjectMeta: metav1.ObjectMeta{Name: "flannel", Labels: map[string]string{"k8s-app": "flannel"}},
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get"}},
				{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"}},
				{APIGroups: []string{""}, Resources: []string{"nodes/status"}, Verbs: []string{"patch"}},
			},
		},
		&rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "flannel", Labels: map[string]string{"k8s-app": "flannel"}},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "flannel"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: flannelServiceAccount, Namespace: FlannelNamespace}},
		},
		&corev1.ConfigMap{
			ObjectMeta: meta(flannelConfigMap, labels),
			Data:       map[string]string{"cni-conf.json": flannelCNIConf, "net-conf.json": string(netConf) + "\n"},
		},
		&appsv1.DaemonSet{
			ObjectMeta: meta(FlannelDaemonSet, labels),
			Spec: appsv1.DaemonSetSpec{
				Selector: &metav1.LabelSelector{MatchLabels: selector},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{
						Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
							RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
								MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelOSStable, Operator: corev1.NodeSelectorOpIn, Values: []string{"linux"}}},
							}}},
						}},
						HostNetwork:        true,
						PriorityClassName:  "system-node-critical",
						ServiceAccountName: flannelServiceAccount,
						// The network must come up on every node, control planes included,
						// before anything else can run there.
						Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
						InitContainers: []corev1.Container{
							{
								Name: "install-cni-plugin", Image: Image(c.Spec.Registry, FlannelCNIPluginImage),
								Command:      []string{"cp"},
								Args:         []string{"-f", "/flannel", "/opt/cni/bin/flannel"},
								VolumeMounts: []corev1.VolumeMount{{Name: "cni-plugin", MountPath: "/opt/cni/bin"}},
							},
							{
								Name: "install-cni", Image: flannel,
								Command: []string{"cp"},
								Args:    []string{"-f", flannelConfigMountPoint + "cni-conf.json", "/etc/cni/net.d/" + flannelCNIConfList},
								VolumeMounts: []corev1.VolumeMount{
									{Name: "cni", MountPath: "/etc/cni/net.d"},
									{Name: "flannel-cfg", MountPath: flannelConfigMountPoint},
								},
							},
						},
						Containers: []corev1.Container{{
							Name: "kube-flannel", Image: flannel,
							Command: []string{"/opt/bin/flanneld"},
							Args:    []string{"--ip-masq", "--kube-subnet-mgr"},
							Env: append([]corev1.EnvVar{
								fieldEnv("POD_NAME", "metadata.name"),
								fieldEnv("POD_NAMESPACE", "metadata.namespace"),
								{Name: "EVENT_QUEUE_DEPTH", Value: "5000"},
								{Name: "CONT_WHEN_CACHE_NOT_READY", Value: "false"},
							}, apiServerEnv(c)...),
							Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
								corev1.ResourceCPU:    resource.MustParse("100m"),
								corev1.ResourceMemory: resource.MustParse("50Mi"),
							}},
							SecurityContext: &corev1.SecurityContext{
								Privileged:   ptr.To(false),
								Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN", "NET_RAW"}},
							},
							VolumeMounts: []corev1.VolumeMount{
								{Name: "run", MountPath: "/run/flannel"},
								{Name: "flannel-cfg", MountPath: flannelConfigMountPoint},
								{Name: "xtables-lock", MountPath: "/run/xtables.lock"},
							},
						}},
						Volumes: []corev1.Volume{
							hostPath("run", "/run/flannel", nil),
							hostPath("cni-plugin", "/opt/cni/bin", nil),
							hostPath("cni", "/etc/cni/net.d", nil),
							{Name: "flannel-cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
								LocalObjectReference: corev1.LocalObjectReference{Name: flannelConfigMap},
							}}},
							// Shared with kube-proxy so the two never edit iptables at once.
							hostPath("xtables-lock", "/run/xtables.lock", ptr.To(corev1.HostPathFileOrCreate)),
						},
					},
				},
			},
		},
	}
	return kube.ToUnstructured(objs...)
}

// apiServerEnv points flanneld at the control-plane endpoint (controlPlaneEndpoint, which every
// node resolves through its /etc/hosts, as the kubelet does) instead of the kubernetes Service
// IP. The Service IP works only once kube-proxy has written its rules on the node, and until
// then flanneld exits at start ("dial tcp 10.233.0.1:443: i/o timeout"): the node's pods wait
// for Flannel's restarts with back-off. The e2e suite measured that wait at 5-10 minutes under
// TCG, and on a starved worker containerd could not clean up the exited container at all (runs
// 8 and 18). Calico (kubernetes-services-endpoint) and Cilium (k8sServiceHost) offer the same
// setting for the same reason; client-go's in-cluster configuration reads these two variables,
// and a container's own environment takes precedence over the kubelet's service variables.
func apiServerEnv(c *cluster.Cluster) []corev1.EnvVar {
	e := c.Spec.ControlPlaneEndpoint
	if e.Domain == "" || e.Port == 0 {
		return nil
	}
	return []corev1.EnvVar{
		{Name: "KUBERNETES_SERVICE_HOST", Value: e.Domain},
		{Name: "KUBERNETES_SERVICE_PORT", Value: strconv.Itoa(e.Port)},
	}
}
