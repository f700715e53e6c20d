package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// kubekeyCluster is the part of KubeKey's kubekey.kubesphere.io/v1alpha2 Cluster that maps onto
// ksboot. It is decoded leniently: KubeKey files carry many fields ksboot has no use for.
type kubekeyCluster struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		Hosts []struct {
			Name            string            `yaml:"name"`
			Address         string            `yaml:"address"`
			InternalAddress string            `yaml:"internalAddress"`
			Port            int               `yaml:"port"`
			User            string            `yaml:"user"`
			Password        string            `yaml:"password"`
			PrivateKeyPath  string            `yaml:"privateKeyPath"`
			PrivateKey      string            `yaml:"privateKey"`
			Arch            string            `yaml:"arch"`
			Labels          map[string]string `yaml:"labels"`
		} `yaml:"hosts"`
		RoleGroups           map[string][]string `yaml:"roleGroups"`
		ControlPlaneEndpoint struct {
			InternalLoadbalancer string `yaml:"internalLoadbalancer"`
			Domain               string `yaml:"domain"`
			Address              string `yaml:"address"`
			Port                 int    `yaml:"port"`
			KubeVip              struct {
				Mode string `yaml:"mode"`
			} `yaml:"kubevip"`
		} `yaml:"controlPlaneEndpoint"`
		System struct {
			NTPServers []string `yaml:"ntpServers"`
			Timezone   string   `yaml:"timezone"`
		} `yaml:"system"`
		Kubernetes struct {
			Version                string   `yaml:"version"`
			ClusterName            string   `yaml:"clusterName"`
			ContainerManager       string   `yaml:"containerManager"`
			ProxyMode              string   `yaml:"proxyMode"`
			APIServerCertExtraSans []string `yaml:"apiserverCertExtraSans"`
			APIServerArgs          []string `yaml:"apiserverArgs"`
			ControllerManagerArgs  []string `yaml:"controllerManagerArgs"`
			SchedulerArgs          []string `yaml:"schedulerArgs"`
			KubeletArgs            []string `yaml:"kubeletArgs"`
		} `yaml:"kubernetes"`
		Etcd struct {
			HeartbeatInterval int      `yaml:"heartbeatInterval"`
			ElectionTimeout   int      `yaml:"electionTimeout"`
			ExtraArgs         []string `yaml:"extraArgs"`
		} `yaml:"etcd"`
		Network struct {
			Plugin          string `yaml:"plugin"`
			KubePodsCIDR    string `yaml:"kubePodsCIDR"`
			KubeServiceCIDR string `yaml:"kubeServiceCIDR"`
		} `yaml:"network"`
		Registry struct {
			PrivateRegistry    string          `yaml:"privateRegistry"`
			NamespaceOverride  string          `yaml:"namespaceOverride"`
			RegistryMirrors    []string        `yaml:"registryMirrors"`
			InsecureRegistries []string        `yaml:"insecureRegistries"`
			Auths              map[string]Auth `yaml:"auths"`
		} `yaml:"registry"`
		Addons []struct {
			Name string `yaml:"name"`
		} `yaml:"addons"`
	} `yaml:"spec"`
}

// kubekeyClusterConfiguration is the ks-installer ClusterConfiguration KubeKey appends with
// --with-kubesphere; its spec becomes spec.kubesphere.configuration.
type kubekeyClusterConfiguration struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Spec map[string]any `yaml:"spec"`
}

// FromKubeKey converts a KubeKey config (Cluster, optionally followed by KubeSphere's
// ClusterConfiguration) into a ksboot cluster. SSH credentials are dropped; the returned notes
// name every host and field that was dropped or guessed (never the secret values).
func FromKubeKey(name string, data []byte) (*Cluster, []string, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var kk *kubekeyCluster
	var ksConf *kubekeyClusterConfiguration
	for i := 0; i < 16; i++ { // a KubeKey file has two documents; bound the loop anyway
		var node yaml.Node
		if err := dec.Decode(&node); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
		var head struct{ Kind string }
		if err := node.Decode(&head); err != nil {
			continue
		}
		switch head.Kind {
		case "Cluster":
			kk = &kubekeyCluster{}
			if err := node.Decode(kk); err != nil {
				return nil, nil, fmt.Errorf("%s: reading the KubeKey Cluster: %w", name, err)
			}
		case "ClusterConfiguration":
			ksConf = &kubekeyClusterConfiguration{}
			if err := node.Decode(ksConf); err != nil {
				return nil, nil, fmt.Errorf("%s: reading KubeSphere's ClusterConfiguration: %w", name, err)
			}
		}
	}
	if kk == nil {
		return nil, nil, fmt.Errorf("%s: no KubeKey Cluster (apiVersion kubekey.kubesphere.io/v1alpha2, kind Cluster) found", name)
	}
	if !strings.HasPrefix(kk.APIVersion, "kubekey.kubesphere.io/") {
		return nil, nil, fmt.Errorf("%s: apiVersion %q is not KubeKey's (kubekey.kubesphere.io/v1alpha2)", name, kk.APIVersion)
	}
	var notes []string
	s := kk.Spec
	c := &Cluster{APIVersion: APIVersion, Kind: Kind, Metadata: Metadata{Name: kk.Metadata.Name}}
	if c.Metadata.Name == "" {
		c.Metadata.Name = "sample"
	}
	for i, h := range s.Hosts {
		var dropped []string
		for _, f := range []struct{ name, value string }{
			{"user", h.User}, {"password", h.Password}, {"privateKeyPath", h.PrivateKeyPath}, {"privateKey", h.PrivateKey},
		} {
			if f.value != "" {
				dropped = append(dropped, f.name)
			}
		}
		if h.Port != 0 {
			dropped = append(dropped, "port")
		}
		if len(dropped) > 0 {
			notes = append(notes, fmt.Sprintf("hosts[%d] (%s): dropped SSH settings %s: ksboot nodes configure themselves from their seed",
				i, h.Name, strings.Join(dropped, ", ")))
		}
		addr := h.InternalAddress
		if addr == "" {
			addr = h.Address
		}
		host := Host{Name: h.Name, Arch: h.Arch, Labels: h.Labels}
		if addr != "" {
			if _, err := netip.ParsePrefix(addr); err == nil {
				host.Address = addr
			} else if ip, err := netip.ParseAddr(addr); err == nil {
				bits := 24
				if ip.Is6() {
					bits = 64
				}
				host.Address = netip.PrefixFrom(ip, bits).String()
				notes = append(notes, fmt.Sprintf("hosts[%d] (%s): static address %s assumed to be /%d; check the prefix, gateway and dns", i, h.Name, host.Address, bits))
			} else {
				notes = append(notes, fmt.Sprintf("hosts[%d] (%s): address %q is not an IP address; left out (DHCP)", i, h.Name, addr))
			}
		}
		if h.Address != "" && h.InternalAddress != "" && h.Address != h.InternalAddress {
			notes = append(notes, fmt.Sprintf("hosts[%d] (%s): the SSH address %s was dropped; the internal address is the node address", i, h.Name, h.Address))
		}
		c.Spec.Hosts = append(c.Spec.Hosts, host)
	}
	groups := make([]string, 0, len(s.RoleGroups))
	for g := range s.RoleGroups {
		groups = append(groups, g)
	}
	sort.Strings(groups)
	for _, g := range groups {
		members := s.RoleGroups[g]
		switch g {
		case "etcd":
			c.Spec.RoleGroups.Etcd = append(c.Spec.RoleGroups.Etcd, members...)
		case "control-plane", "master":
			c.Spec.RoleGroups.ControlPlane = append(c.Spec.RoleGroups.ControlPlane, members...)
		case "worker":
			c.Spec.RoleGroups.Worker = append(c.Spec.RoleGroups.Worker, members...)
		default:
			notes = append(notes, fmt.Sprintf("roleGroups.%s: not imported (ksboot has no %s role)", g, g))
		}
	}
	ep := s.ControlPlaneEndpoint
	c.Spec.ControlPlaneEndpoint = ControlPlaneEndpoint{Domain: ep.Domain, Address: ep.Address, Port: ep.Port}
	notes = append(notes, importInternalLB(&c.Spec.ControlPlaneEndpoint, ep.InternalLoadbalancer, ep.KubeVip.Mode)...)
	k := s.Kubernetes
	c.Spec.Kubernetes = Kubernetes{Version: k.Version, ClusterName: k.ClusterName, ContainerManager: k.ContainerManager,
		ProxyMode: k.ProxyMode, APIServerCertExtraSans: k.APIServerCertExtraSans,
		APIServerArgs: k.APIServerArgs, ControllerManagerArgs: k.ControllerManagerArgs,
		SchedulerArgs: k.SchedulerArgs, KubeletArgs: k.KubeletArgs}
	c.Spec.Etcd = Etcd{HeartbeatInterval: s.Etcd.HeartbeatInterval, ElectionTimeout: s.Etcd.ElectionTimeout, ExtraArgs: s.Etcd.ExtraArgs}
	if k.ContainerManager == "docker" {
		c.Spec.Kubernetes.ContainerManager = "containerd"
		notes = append(notes, "kubernetes.containerManager: docker replaced by containerd (ksboot supports containerd only)")
	}
	c.Spec.Network = Network{Plugin: s.Network.Plugin, KubePodsCIDR: s.Network.KubePodsCIDR, KubeServiceCIDR: s.Network.KubeServiceCIDR}
	r := s.Registry
	c.Spec.Registry = Registry{PrivateRegistry: r.PrivateRegistry, NamespaceOverride: r.NamespaceOverride,
		RegistryMirrors: r.RegistryMirrors, InsecureRegistries: r.InsecureRegistries, Auths: r.Auths}
	if r.PrivateRegistry != "" && r.NamespaceOverride == "" {
		// KubeKey pushes images to <privateRegistry>/kubesphere/<name>; ksboot treats a private
		// registry without an override as a path-for-path mirror, so keep KubeKey's layout.
		c.Spec.Registry.NamespaceOverride = "kubesphere"
		notes = append(notes, "registry.namespaceOverride: set to kubesphere, where KubeKey put the images in "+r.PrivateRegistry)
	}
	if k.ProxyMode == "" {
		// KubeKey's default; kept so an imported cluster behaves as before.
		c.Spec.Kubernetes.ProxyMode = "ipvs"
	}
	c.Spec.NTP = NTP{Servers: s.System.NTPServers, Timezone: s.System.Timezone}
	for _, a := range s.Addons {
		notes = append(notes, fmt.Sprintf("addons: %q not imported; install it after the cluster is up", a.Name))
	}
	if ksConf != nil {
		c.Spec.KubeSphere = KubeSphere{Enabled: true, Version: ksConf.Metadata.Labels["version"], Configuration: ksConf.Spec}
		if sc, ok := ksConf.Spec["persistence"].(map[string]any); ok {
			if name, ok := sc["storageClass"].(string); ok && name != "" {
				c.Spec.Storage.DefaultClass = name
			}
		}
	}
	SetDefaults(c)
	return c, notes, nil
}

// importInternalLB maps KubeKey's internalLoadbalancer onto ksboot's, which has KubeKey's
// meaning: haproxy on every node that is not a control plane (KubeKey ignores address then,
// ksboot refuses one, so it is dropped), or kube-vip holding the VIP in address on the control
// planes (ARP mode; KubeKey's BGP mode has no counterpart).
func importInternalLB(e *ControlPlaneEndpoint, lb, kubeVIPMode string) []string {
	var notes []string
	switch lb {
	case "":
	case InternalLBHAProxy:
		e.InternalLoadbalancer = lb
		if e.Address != "" {
			notes = append(notes, fmt.Sprintf("controlPlaneEndpoint.address (%s): dropped: with internalLoadbalancer haproxy every other node reaches the API through its own haproxy", e.Address))
			e.Address = ""
		}
	case InternalLBKubeVIP:
		e.InternalLoadbalancer = lb
		if kubeVIPMode != "" && !strings.EqualFold(kubeVIPMode, "ARP") {
			notes = append(notes, fmt.Sprintf("controlPlaneEndpoint.kubevip.mode (%s): ksboot runs kube-vip in ARP mode; the VIP %s must be on the control planes' network", kubeVIPMode, e.Address))
		}
	default:
		notes = append(notes, fmt.Sprintf("controlPlaneEndpoint.internalLoadbalancer (%s): not imported (ksboot runs haproxy or kube-vip); put a load balancer or VIP at controlPlaneEndpoint.address", lb))
	}
	return notes
}
