package cluster

// Defaults. The network ranges and endpoint are KubeKey's, so a cluster imported from KubeKey
// keeps its addresses. The Kubernetes version is the one this project builds and proves end to
// end (see test/e2e); KubeKey users usually set it explicitly.
const (
	DefaultKubernetesVersion = "v1.37.2"
	DefaultKubeSphereVersion = "v4.1.3"
	DefaultClusterDomain     = "cluster.local"
	DefaultContainerManager  = "containerd"
	// DefaultProxyMode is kube-proxy's own default. KubeKey defaults to ipvs, but kube-proxy
	// deprecated ipvs in v1.35; set proxyMode: ipvs explicitly to keep it.
	DefaultProxyMode      = "iptables"
	DefaultNetworkPlugin  = "calico"
	DefaultPodsCIDR       = "10.233.64.0/18"
	DefaultServiceCIDR    = "10.233.0.0/18"
	DefaultEndpointDomain = "lb.kubesphere.local"
	DefaultAPIServerPort  = 6443
	DefaultStorageClass   = "openebs-hostpath"
	DefaultArch           = "amd64"

	// KubeKey's etcd timing (its etcd.env), in milliseconds.
	DefaultEtcdHeartbeatMillis = 250
	DefaultEtcdElectionMillis  = 5000
	DefaultInterface           = "eth0"

	DiscoveryMDNS   = "mdns"
	DiscoveryStatic = "static"
)

// SetDefaults fills every field the user may leave out. It is idempotent.
func SetDefaults(c *Cluster) {
	s := &c.Spec
	if s.ControlPlaneEndpoint.Domain == "" {
		s.ControlPlaneEndpoint.Domain = DefaultEndpointDomain
	}
	if s.ControlPlaneEndpoint.Port == 0 {
		s.ControlPlaneEndpoint.Port = DefaultAPIServerPort
	}
	k := &s.Kubernetes
	if k.Version == "" {
		k.Version = DefaultKubernetesVersion
	}
	if k.ClusterName == "" {
		k.ClusterName = DefaultClusterDomain
	}
	if k.ContainerManager == "" {
		k.ContainerManager = DefaultContainerManager
	}
	if k.ProxyMode == "" {
		k.ProxyMode = DefaultProxyMode
	}
	for i := range s.Kubernetes.Patches {
		if s.Kubernetes.Patches[i].Type == "" {
			s.Kubernetes.Patches[i].Type = "strategic"
		}
	}
	if s.Etcd.HeartbeatInterval == 0 {
		s.Etcd.HeartbeatInterval = DefaultEtcdHeartbeatMillis
	}
	if s.Etcd.ElectionTimeout == 0 {
		s.Etcd.ElectionTimeout = DefaultEtcdElectionMillis
	}
	n := &s.Network
	if n.Plugin == "" {
		n.Plugin = DefaultNetworkPlugin
	}
	if n.KubePodsCIDR == "" {
		n.KubePodsCIDR = DefaultPodsCIDR
	}
	if n.KubeServiceCIDR == "" {
		n.KubeServiceCIDR = DefaultServiceCIDR
	}
	if s.Storage.DefaultClass == "" {
		s.Storage.DefaultClass = DefaultStorageClass
	}
	if s.KubeSphere.Enabled && s.KubeSphere.Version == "" {
		s.KubeSphere.Version = DefaultKubeSphereVersion
	}
	if s.Discovery.Mode == "" {
		// Static when there is an address to go to: the operator's load balancer, or kube-vip's
		// VIP, which nodes retry (with the CA check) until the first control plane's kube-vip
		// holds it. haproxy has no endpoint address: nodes find a control plane by mDNS, join
		// through it and then reach the API through their own haproxy.
		s.Discovery.Mode = DiscoveryMDNS
		if s.ControlPlaneEndpoint.Address != "" {
			s.Discovery.Mode = DiscoveryStatic
		}
	}
	for i := range s.Hosts {
		h := &s.Hosts[i]
		if h.Arch == "" {
			h.Arch = DefaultArch
		}
		if h.Address != "" && h.MAC == "" && h.Interface == "" {
			h.Interface = DefaultInterface
		}
	}
	// KubeKey's range syntax (node[1:3]) is expanded here so that everything after decoding sees
	// plain host names.
	s.RoleGroups.Etcd = expandRanges(s.RoleGroups.Etcd)
	s.RoleGroups.ControlPlane = expandRanges(s.RoleGroups.ControlPlane)
	s.RoleGroups.Worker = expandRanges(s.RoleGroups.Worker)
}
