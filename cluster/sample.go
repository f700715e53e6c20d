package cluster

import (
	"bytes"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// SampleOptions shape the file `ksboot create config` writes.
type SampleOptions struct {
	Name              string
	KubernetesVersion string // empty: DefaultKubernetesVersion
	KubeSphereVersion string // empty: KubeSphere disabled, as KubeKey without --with-kubesphere
}

// Sample is the cluster `create config` writes and build-seed uses when no file is given: one
// control plane (also etcd) and two workers with static addresses, like KubeKey's sample.
func Sample(o SampleOptions) *Cluster {
	name := o.Name
	if name == "" {
		name = "sample"
	}
	c := &Cluster{
		APIVersion: APIVersion, Kind: Kind, Metadata: Metadata{Name: name},
		Spec: Spec{
			Hosts: []Host{
				{Name: "node1", Address: "192.168.0.11/24", Gateway: "192.168.0.1", DNS: []string{"192.168.0.1"}, MAC: "52:54:00:00:00:11"},
				{Name: "node2", Address: "192.168.0.12/24", Gateway: "192.168.0.1", DNS: []string{"192.168.0.1"}, MAC: "52:54:00:00:00:12"},
				{Name: "node3", Address: "192.168.0.13/24", Gateway: "192.168.0.1", DNS: []string{"192.168.0.1"}, MAC: "52:54:00:00:00:13"},
			},
			RoleGroups: RoleGroups{Etcd: []string{"node1"}, ControlPlane: []string{"node1"}, Worker: []string{"node2", "node3"}},
			Kubernetes: Kubernetes{Version: o.KubernetesVersion},
		},
	}
	if o.KubeSphereVersion != "" {
		c.Spec.KubeSphere = KubeSphere{Enabled: true, Version: o.KubeSphereVersion}
	}
	SetDefaults(c)
	return c
}

// sampleComments are the comments of the written cluster file, by field path.
var sampleComments = map[string]string{
	"apiVersion": "ksboot cluster file. Check it with `ksboot validate -f FILE`, then make one seed\n" +
		"per machine with `ksboot build-seed -f FILE -o seeds/` and boot the machines from them.",
	"metadata.name": "Names the cluster on the network (mDNS) and the secrets directory beside this file.",
	"spec.hosts": "Every machine of the cluster. There are no SSH users or passwords: each machine\n" +
		"configures itself from its seed. address is the static address in CIDR form (leave it\n" +
		"out for DHCP); mac selects the network card it goes on.",
	"spec.roleGroups": "What each host does, as in KubeKey. The first control-plane host runs kubeadm init;\n" +
		"etcd runs on control-plane hosts. Ranges such as node[2:9] are accepted.",
	"spec.controlPlaneEndpoint": "How nodes reach the API server. With several control planes, set address to the\n" +
		"load balancer or VIP in front of them (domain resolves to it), or let ksboot run one,\n" +
		"as KubeKey does: internalLoadbalancer: haproxy (a local haproxy on every other node, no\n" +
		"address) or internalLoadbalancer: kube-vip (address is the VIP it moves between them).",
	"spec.kubernetes": "Kubernetes release and settings (containerd is the runtime). apiserverArgs,\n" +
		"controllerManagerArgs, schedulerArgs and kubeletArgs add name=value flags, as in KubeKey.\n" +
		"patches change what kubeadm generates where no flag reaches (kubeadm's patches):\n" +
		"  patches: [{target: kube-apiserver, patch: \"spec: {containers: [{name: kube-apiserver,\n" +
		"    livenessProbe: {failureThreshold: 30}}]}\"}]",
	"spec.etcd": "etcd's heartbeat and election timeout in milliseconds (KubeKey's defaults); raise\n" +
		"them on slow disks or networks.",
	"spec.network":    "CNI plugin (calico or flannel) and address ranges (KubeKey's defaults).",
	"spec.registry":   "Where images come from: a private registry, mirrors, insecure registries, credentials.",
	"spec.storage":    "openebs-hostpath deploys OpenEBS LocalPV as the default StorageClass; name another\nclass to bring your own.",
	"spec.kubesphere": "KubeSphere on top of the cluster. Upstream downloads are suspended: point\nimageRegistry / installerImage / chart at a mirror or the offline bundle.",
	"spec.discovery":  "How nodes find the control plane: mdns on one network segment, or static\n(controlPlaneEndpoint.address). Trust comes from the cluster CA, never from the network.",
	"spec.users":      "Optional administrator accounts with SSH keys, for humans only.",
	"spec.ntp":        "Time servers and time zone for every node.",
	"spec.zone":       "Set to cn to use mirrors reachable from mainland China.",
}

// MarshalCommented renders a cluster file with explanatory comments, for humans to edit.
func MarshalCommented(c *Cluster) ([]byte, error) {
	var doc yaml.Node
	if err := doc.Encode(c); err != nil {
		return nil, fmt.Errorf("encoding cluster: %w", err)
	}
	addComments(&doc, "")
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("encoding cluster: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encoding cluster: %w", err)
	}
	return buf.Bytes(), nil
}

func addComments(n *yaml.Node, path string) {
	if n.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		p := join(path, k.Value)
		if c, ok := sampleComments[p]; ok {
			k.HeadComment = "# " + strings.ReplaceAll(c, "\n", "\n# ")
		}
		addComments(n.Content[i+1], p)
	}
}
