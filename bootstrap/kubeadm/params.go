package kubeadm

import (
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ksboot/ksboot/cluster"
)

// Role is what kubeadm does on the node.
type Role string

const (
	// RoleInit runs `kubeadm init`: the first control-plane host.
	RoleInit Role = "init"
	// RoleControlPlane runs `kubeadm join --control-plane`.
	RoleControlPlane Role = "control-plane"
	// RoleWorker runs `kubeadm join`: named and generic workers.
	RoleWorker Role = "worker"
)

const (
	// CRISocket is containerd's CRI endpoint, the only runtime ksboot installs.
	CRISocket = "unix:///run/containerd/containerd.sock"
	// SeedTokenTTL is the lifetime of the seed's bootstrap token: zero, which kubeadm renders
	// as a token that never expires. Seeds are built once and booted whenever a machine is
	// added (see the package documentation).
	SeedTokenTTL time.Duration = 0
	// ControlPlaneTaintKey is kubeadm's taint on control-plane nodes that run no workloads.
	ControlPlaneTaintKey = "node-role.kubernetes.io/control-plane"
)

// Params is everything the rendered kubeadm configuration depends on. ParamsFromNode fills it
// from a node config; tests and special callers may set fields directly.
type Params struct {
	// Role selects the documents: InitConfiguration, ClusterConfiguration,
	// KubeletConfiguration and KubeProxyConfiguration for RoleInit, one JoinConfiguration
	// otherwise.
	Role Role

	// NodeName is the Node object's name; empty lets kubeadm use the host name.
	NodeName string
	// AdvertiseAddress is the address this control plane's API server announces
	// (localAPIEndpoint.advertiseAddress); empty lets kubeadm pick the default route's
	// address. Unused on workers.
	AdvertiseAddress string
	// BindPort is the API server's port on this control plane (localAPIEndpoint.bindPort).
	BindPort int
	// NodeIP, when set, becomes the kubelet's --node-ip, so a multi-homed host registers the
	// address the cluster file gave it rather than whichever address the kubelet finds first.
	NodeIP string
	// Schedulable is true on a control plane that is also a worker: it gets no
	// control-plane taint.
	Schedulable bool
	// CRISocket is the container runtime endpoint (CRISocket unless overridden).
	CRISocket string

	// ControlPlaneEndpoint is the stable "host:port" of the API (controlPlaneEndpoint), which
	// ends up in every kubeconfig; ksboot uses the endpoint domain, mapped in /etc/hosts.
	ControlPlaneEndpoint string
	// APIServerEndpoint is the "host:port" a joining node first contacts for discovery
	// (discovery.bootstrapToken.apiServerEndpoint): what mDNS or the static endpoint found.
	APIServerEndpoint string

	// KubernetesVersion is the control plane's version, e.g. v1.37.2.
	KubernetesVersion string
	// ClusterName is kubeadm's clusterName (kubeconfig cluster entries).
	ClusterName string
	// DNSDomain is the cluster DNS domain (networking.dnsDomain).
	DNSDomain string
	// PodSubnet and ServiceSubnet are the cluster's CIDRs.
	PodSubnet     string
	ServiceSubnet string
	// CertSANs are extra subject alternative names of the API server certificate.
	CertSANs []string
	// ImageRepository is where control-plane images come from; empty is kubeadm's default
	// (registry.k8s.io).
	ImageRepository string
	// DNSImageRepository overrides the repository of the CoreDNS image only; see
	// imageRepositories for when it is needed.
	DNSImageRepository string
	// ProxyMode is kube-proxy's mode: ipvs, iptables or nftables.
	ProxyMode string
	// IPVSExcludeCIDRs become kube-proxy's ipvs.excludeCIDRs in IPVS mode: kube-vip's VIP, so
	// that kube-proxy's clean-up of IPVS virtual servers it does not know leaves kube-vip's
	// alone.
	IPVSExcludeCIDRs []string
	// Extra flags of the components (extraArgs): the API server, controller manager,
	// scheduler and local etcd are cluster-wide (init only); the kubelet's are per node.
	APIServerArgs         []Arg
	ControllerManagerArgs []Arg
	SchedulerArgs         []Arg
	EtcdArgs              []Arg
	KubeletArgs           []Arg
	// Patches are kubeadm patches (spec.kubernetes.patches), written by Run into PatchesDir
	// before kubeadm runs, and named there in patches.directory.
	Patches []cluster.Patch
	// PatchesDir overrides where the patches go (PatchesDir, a node path). Tests set it.
	PatchesDir string

	// Token is the bootstrap token "[a-z0-9]{6}.[a-z0-9]{16}". It is a secret.
	Token string
	// TokenTTL is the token's lifetime when kubeadm init creates it; zero never expires.
	TokenTTL time.Duration
	// CACertHashes pin the cluster CA for discovery ("sha256:<hex>"). Joins refuse to run
	// without one: CA verification is never skipped.
	CACertHashes []string
	// CertificateKey, when set, makes init upload and control-plane joins download the shared
	// certificates (kubeadm's --upload-certs). ParamsFromNode leaves it empty because seeds
	// carry the CA key pairs. It is a secret.
	CertificateKey string
	// CertificatesDir overrides kubeadm's /etc/kubernetes/pki (ClusterConfiguration
	// certificatesDir). Products leave it empty; tests use it to keep kubeadm off the host.
	CertificatesDir string
}

// ParamsFromNode derives the kubeadm parameters of one node from its node config.
//
// nodeName overrides the node config's name (a generic worker learns its name on the machine);
// advertiseAddress is this node's API address on control planes (empty: the host's static
// address, else kubeadm's choice); endpoint is the "host:port" at which discovery found the API
// (empty: the control-plane endpoint domain and port, which /etc/hosts maps).
func ParamsFromNode(nc *cluster.NodeConfig, nodeName, advertiseAddress string, endpoint string) Params {
	c := &nc.Cluster
	spec := &c.Spec
	if nodeName == "" {
		nodeName = nc.Node.Name
	}
	// A host's static address, if the cluster file has one for this node.
	var staticIP string
	if h, ok := c.Host(nodeName); ok && !nc.Node.Generic {
		staticIP = hostIP(h.Address)
	}
	if advertiseAddress == "" {
		advertiseAddress = staticIP
	}
	cpe := net.JoinHostPort(spec.ControlPlaneEndpoint.Domain, strconv.Itoa(spec.ControlPlaneEndpoint.Port))
	if endpoint == "" {
		endpoint = cpe
	}

	p := Params{
		Role:                 RoleWorker,
		NodeName:             nodeName,
		NodeIP:               staticIP,
		Schedulable:          nc.Node.HasRole(cluster.RoleWorker),
		CRISocket:            CRISocket,
		ControlPlaneEndpoint: cpe,
		APIServerEndpoint:    endpoint,
		// With no load balancer the endpoint domain resolves straight to a control plane, so
		// the API server must listen on the endpoint's port.
		BindPort:          spec.ControlPlaneEndpoint.Port,
		KubernetesVersion: spec.Kubernetes.Version,
		ClusterName:       spec.Kubernetes.ClusterName,
		DNSDomain:         spec.Kubernetes.ClusterName,
		PodSubnet:         spec.Network.KubePodsCIDR,
		ServiceSubnet:     spec.Network.KubeServiceCIDR,
		CertSANs:          certSANs(c),
		ProxyMode:         spec.Kubernetes.ProxyMode,
		Token:             nc.Secrets.BootstrapToken,
		TokenTTL:          SeedTokenTTL,
		CACertHashes:      []string{nc.Secrets.CACertHash},

		APIServerArgs:         flagArgs(spec.Kubernetes.APIServerArgs),
		ControllerManagerArgs: flagArgs(spec.Kubernetes.ControllerManagerArgs),
		SchedulerArgs:         flagArgs(spec.Kubernetes.SchedulerArgs),
		EtcdArgs:              etcdArgs(spec.Etcd),
		KubeletArgs:           flagArgs(spec.Kubernetes.KubeletArgs),
		Patches:               spec.Kubernetes.Patches,
	}
	p.ImageRepository, p.DNSImageRepository = imageRepositories(c)
	if vip, ok := spec.ControlPlaneEndpoint.KubeVIP(); ok && spec.Kubernetes.ProxyMode == "ipvs" {
		p.IPVSExcludeCIDRs = []string{vip.String()}
	}
	switch {
	case nc.Node.Init:
		p.Role = RoleInit
	case nc.Node.IsControlPlane():
		p.Role = RoleControlPlane
	}
	if p.Role != RoleWorker {
		p.AdvertiseAddress = advertiseAddress
	}
	return p
}

// flagArgs turns the cluster file's "name=value" flags (validated there) into extraArgs.
func flagArgs(flags []string) []Arg {
	var out []Arg
	for _, f := range flags {
		name, value, _ := strings.Cut(strings.TrimPrefix(f, "--"), "=")
		out = append(out, Arg{Name: name, Value: value})
	}
	return out
}

// etcdArgs is etcd's timing from the cluster file, then its extra flags; zero timings (a
// cluster file that was not defaulted) leave etcd's own defaults.
func etcdArgs(e cluster.Etcd) []Arg {
	var out []Arg
	if e.HeartbeatInterval > 0 {
		out = append(out, Arg{Name: "heartbeat-interval", Value: strconv.Itoa(e.HeartbeatInterval)})
	}
	if e.ElectionTimeout > 0 {
		out = append(out, Arg{Name: "election-timeout", Value: strconv.Itoa(e.ElectionTimeout)})
	}
	return append(out, flagArgs(e.ExtraArgs)...)
}

// hostIP returns the address of a host's "address/prefix" (or bare address); "" for DHCP.
func hostIP(addr string) string {
	if addr == "" {
		return ""
	}
	if pfx, err := netip.ParsePrefix(addr); err == nil {
		return pfx.Addr().String()
	}
	if a, err := netip.ParseAddr(addr); err == nil {
		return a.String()
	}
	return ""
}

// certSANs lists the API server certificate's extra names: every way a client may reach any
// control plane. kubeadm adds its own (kubernetes.default.svc…, the service IP, the node's name
// and advertise address); the list is the same on every control plane, so certificates agree.
func certSANs(c *cluster.Cluster) []string {
	e := c.Spec.ControlPlaneEndpoint
	sans := []string{e.Domain, e.Address}
	for _, name := range c.Spec.RoleGroups.ControlPlane {
		sans = append(sans, name)
		if h, ok := c.Host(name); ok {
			sans = append(sans, hostIP(h.Address))
		}
	}
	sans = append(sans, c.Spec.Kubernetes.APIServerCertExtraSans...)
	sans = append(sans, "127.0.0.1", "localhost")
	var out []string
	for _, s := range sans {
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// imageRepositories decides where kubeadm pulls control-plane images from:
//
//   - kubernetes.imageRepository, when set, is used as is;
//   - registry.privateRegistry with registry.namespaceOverride is KubeKey's flat layout: every
//     image, CoreDNS included, is <registry>/<namespace>/<name>;
//   - registry.privateRegistry alone is treated as a mirror of registry.k8s.io, path for path,
//     so CoreDNS lives at <registry>/coredns/coredns as upstream; kubeadm would otherwise look
//     for <registry>/coredns (it only special-cases its own default registry);
//   - otherwise kubeadm's default (registry.k8s.io), left empty. registryMirrors are
//     containerd's business and do not change image names.
func imageRepositories(c *cluster.Cluster) (repo, dnsRepo string) {
	if r := c.Spec.Kubernetes.ImageRepository; r != "" {
		return r, ""
	}
	reg := c.Spec.Registry
	host := strings.TrimSuffix(reg.PrivateRegistry, "/")
	for _, scheme := range []string{"https://", "http://"} {
		host = strings.TrimPrefix(host, scheme)
	}
	if host == "" {
		return "", ""
	}
	if ns := strings.Trim(reg.NamespaceOverride, "/"); ns != "" {
		return host + "/" + ns, ""
	}
	return host, host + "/coredns"
}
