package cluster

import (
	"net/netip"
	"time"
)

// APIVersion and Kind identify a ksboot cluster file. The group mirrors KubeKey's
// kubekey.kubesphere.io/v1alpha2 Cluster so that KubeKey users recognise the shape.
const (
	APIVersion     = "ksboot.dev/v1alpha1"
	Kind           = "Cluster"
	NodeConfigKind = "NodeConfig"
)

// Role names as they appear in roleGroups and in a node's plan.
const (
	RoleEtcd         = "etcd"
	RoleControlPlane = "control-plane"
	RoleWorker       = "worker"
)

// Cluster is the whole cluster file: every host, how they find each other, and what runs on them.
type Cluster struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Metadata   Metadata `yaml:"metadata"`
	Spec       Spec     `yaml:"spec"`
}

// Metadata names the cluster. The name scopes mDNS discovery and the secrets directory.
type Metadata struct {
	Name string `yaml:"name"`
}

// Spec is the body of the cluster file. Field names follow KubeKey's where KubeKey has one.
type Spec struct {
	Hosts                []Host               `yaml:"hosts"`
	RoleGroups           RoleGroups           `yaml:"roleGroups"`
	ControlPlaneEndpoint ControlPlaneEndpoint `yaml:"controlPlaneEndpoint"`
	Kubernetes           Kubernetes           `yaml:"kubernetes"`
	Etcd                 Etcd                 `yaml:"etcd,omitempty"`
	Network              Network              `yaml:"network"`
	Registry             Registry             `yaml:"registry"`
	Storage              Storage              `yaml:"storage,omitempty"`
	KubeSphere           KubeSphere           `yaml:"kubesphere"`
	Discovery            Discovery            `yaml:"discovery"`
	Users                []User               `yaml:"users,omitempty"`
	NTP                  NTP                  `yaml:"ntp,omitempty"`
	Artifacts            Artifacts            `yaml:"artifacts,omitempty"`
	Preflight            Preflight            `yaml:"preflight,omitempty"`
	// Zone "cn" switches default download locations to mirrors reachable from mainland China,
	// as KubeKey's KKZONE=cn does.
	Zone string `yaml:"zone,omitempty"`
}

// Host is one machine. Unlike KubeKey there are no SSH fields: the machine configures itself
// from its seed. Address is the static address in CIDR form; empty means DHCP.
type Host struct {
	Name    string   `yaml:"name"`
	Address string   `yaml:"address,omitempty"`
	Gateway string   `yaml:"gateway,omitempty"`
	DNS     []string `yaml:"dns,omitempty"`
	// MAC selects the network interface the static address goes on. Without it the first
	// interface named by Interface (default eth0) is used.
	MAC       string            `yaml:"mac,omitempty"`
	Interface string            `yaml:"interface,omitempty"`
	Arch      string            `yaml:"arch,omitempty"`
	Labels    map[string]string `yaml:"labels,omitempty"`
}

// RoleGroups assigns hosts to roles by name, exactly like KubeKey's roleGroups.
type RoleGroups struct {
	Etcd         []string `yaml:"etcd"`
	ControlPlane []string `yaml:"control-plane"`
	Worker       []string `yaml:"worker"`
}

// ControlPlaneEndpoint is the address every node uses to reach the API server.
type ControlPlaneEndpoint struct {
	// InternalLoadbalancer is KubeKey's field of the same name: "haproxy" runs a local haproxy
	// on every node that is not a control plane, forwarding 127.0.0.1:port to every control
	// plane; "kube-vip" runs kube-vip on the control planes, holding the VIP in Address. Empty
	// means none: Address, if set, is a load balancer or VIP the operator provides.
	InternalLoadbalancer string `yaml:"internalLoadbalancer,omitempty"`
	Domain               string `yaml:"domain"`
	Address              string `yaml:"address"`
	Port                 int    `yaml:"port"`
	// KubeVIP tunes kube-vip's leader election (internalLoadbalancer: kube-vip only).
	KubeVIPTuning *KubeVIPTuning `yaml:"kubeVIP,omitempty"`
}

// KubeVIPTuning is kube-vip's leader election over its Lease, in seconds (its vip_leaseduration,
// vip_renewdeadline and vip_retryperiod). Unset, kube-vip's own defaults apply (5, 3 and 1,
// what KubeKey writes): the VIP moves within about five seconds of losing its holder. kube-vip
// exits when a renewal misses the deadline, so on slow machines, where one API call takes
// seconds, longer values keep it from restarting in a loop, at the price of a slower failover.
type KubeVIPTuning struct {
	LeaseDuration int `yaml:"leaseDuration,omitempty"`
	RenewDeadline int `yaml:"renewDeadline,omitempty"`
	RetryPeriod   int `yaml:"retryPeriod,omitempty"`
}

// kube-vip's leader election defaults, in seconds.
const (
	KubeVIPLeaseDuration = 5
	KubeVIPRenewDeadline = 3
	KubeVIPRetryPeriod   = 1
)

// LeaderElection returns kube-vip's lease duration, renew deadline and retry period in seconds:
// the tuning's, or kube-vip's defaults for what it leaves out.
func (e ControlPlaneEndpoint) LeaderElection() (lease, renew, retry int) {
	lease, renew, retry = KubeVIPLeaseDuration, KubeVIPRenewDeadline, KubeVIPRetryPeriod
	if t := e.KubeVIPTuning; t != nil {
		if t.LeaseDuration > 0 {
			lease = t.LeaseDuration
		}
		if t.RenewDeadline > 0 {
			renew = t.RenewDeadline
		}
		if t.RetryPeriod > 0 {
			retry = t.RetryPeriod
		}
	}
	return lease, renew, retry
}

// Internal load balancers (controlPlaneEndpoint.internalLoadbalancer), KubeKey's names.
const (
	InternalLBHAProxy = "haproxy"
	InternalLBKubeVIP = "kube-vip"
)

// KubeVIP returns the VIP kube-vip holds as a single-address prefix (a.b.c.d/32), and false
// unless internalLoadbalancer is kube-vip with a valid address.
func (e ControlPlaneEndpoint) KubeVIP() (netip.Prefix, bool) {
	if e.InternalLoadbalancer != InternalLBKubeVIP {
		return netip.Prefix{}, false
	}
	a, err := netip.ParseAddr(e.Address)
	if err != nil {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, a.BitLen()), true
}

// Kubernetes selects the Kubernetes release and its main knobs.
type Kubernetes struct {
	Version                string   `yaml:"version"`
	ClusterName            string   `yaml:"clusterName"`
	ContainerManager       string   `yaml:"containerManager"`
	ProxyMode              string   `yaml:"proxyMode"`
	APIServerCertExtraSans []string `yaml:"apiserverCertExtraSans,omitempty"`
	// ImageRepository overrides where kubeadm pulls control-plane images from.
	ImageRepository string `yaml:"imageRepository,omitempty"`
	// Extra command-line flags, each "name=value" (a leading "--" is allowed), for the
	// control-plane components and the kubelet: KubeKey's fields of the same names. They become
	// kubeadm's extraArgs and override kubeadm's own flags of the same name.
	APIServerArgs         []string `yaml:"apiserverArgs,omitempty"`
	ControllerManagerArgs []string `yaml:"controllerManagerArgs,omitempty"`
	SchedulerArgs         []string `yaml:"schedulerArgs,omitempty"`
	KubeletArgs           []string `yaml:"kubeletArgs,omitempty"`
	// Patches change what kubeadm generates (static pod manifests, the kubelet's and
	// kube-proxy's configuration, CoreDNS) where no flag reaches: kubeadm's own patches
	// mechanism, applied by kubeadm init and join on every node.
	Patches []Patch `yaml:"patches,omitempty"`
}

// Patch is one kubeadm patch: a strategic merge, JSON merge or JSON patch for one of the
// objects kubeadm generates, written into kubeadm's patches directory on every node.
type Patch struct {
	// Target is what it patches: etcd, kube-apiserver, kube-controller-manager,
	// kube-scheduler, kubeletconfiguration, kubeproxydaemonset or corednsdeployment.
	Target string `yaml:"target"`
	// Type is strategic (the default), merge or json.
	Type string `yaml:"type,omitempty"`
	// Patch is the patch document in YAML (or JSON).
	Patch string `yaml:"patch"`
}

// PatchTargets are the objects kubeadm can patch (kubeadm's own list).
var PatchTargets = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
	"kubeletconfiguration", "kubeproxydaemonset", "corednsdeployment"}

// PatchTypes are kubeadm's patch types.
var PatchTypes = []string{"strategic", "merge", "json"}

// Etcd tunes the etcd that kubeadm runs on the etcd hosts (kubeadm's local etcd). Field names
// and defaults follow KubeKey's etcd settings: 250 ms heartbeats and a 5 s election timeout
// instead of etcd's 100 ms and 1 s, which suit the disks and networks of ordinary VMs better.
type Etcd struct {
	// HeartbeatInterval is etcd's --heartbeat-interval in milliseconds.
	HeartbeatInterval int `yaml:"heartbeatInterval,omitempty"`
	// ElectionTimeout is etcd's --election-timeout in milliseconds; etcd wants at least five
	// heartbeats in it.
	ElectionTimeout int `yaml:"electionTimeout,omitempty"`
	// ExtraArgs are further etcd flags, each "name=value".
	ExtraArgs []string `yaml:"extraArgs,omitempty"`
}

// Network selects the CNI and the address ranges. Defaults are KubeKey's.
type Network struct {
	Plugin          string `yaml:"plugin"`
	KubePodsCIDR    string `yaml:"kubePodsCIDR"`
	KubeServiceCIDR string `yaml:"kubeServiceCIDR"`
}

// Registry configures where images come from, as in KubeKey.
type Registry struct {
	PrivateRegistry    string          `yaml:"privateRegistry,omitempty"`
	NamespaceOverride  string          `yaml:"namespaceOverride,omitempty"`
	RegistryMirrors    []string        `yaml:"registryMirrors,omitempty"`
	InsecureRegistries []string        `yaml:"insecureRegistries,omitempty"`
	Auths              map[string]Auth `yaml:"auths,omitempty"`
}

// Auth is a credential for one registry. It is secret: see Cluster.Redacted.
type Auth struct {
	Username string `yaml:"username,omitempty"`
	Password string `yaml:"password,omitempty"`
}

// Storage chooses the default StorageClass. "openebs-hostpath" (the default) makes ksboot deploy
// OpenEBS LocalPV; any other name means the operator provides that class and ksboot deploys none.
type Storage struct {
	DefaultClass string `yaml:"defaultClass,omitempty"`
}

// KubeSphere configures the KubeSphere deployment. Upstream suspended open-source downloads in
// 2025, so where images and charts come from is configuration, not a constant.
type KubeSphere struct {
	Enabled bool   `yaml:"enabled"`
	Version string `yaml:"version,omitempty"`
	// ImageRegistry is the registry (and optional namespace) KubeSphere images are pulled from.
	ImageRegistry string `yaml:"imageRegistry,omitempty"`
	// InstallerImage is the ks-installer image for v3.x.
	InstallerImage string `yaml:"installerImage,omitempty"`
	// Chart is the ks-core chart for v4.x: a URL, or a path inside the offline bundle.
	Chart string `yaml:"chart,omitempty"`
	// Configuration is passed through: the ClusterConfiguration spec (v3) or chart values (v4).
	Configuration map[string]any `yaml:"configuration,omitempty"`
	// Timeout bounds the wait for KubeSphere to come up ("45m"); empty is the agent's
	// default (30m). A slow registry or slow machines need more.
	Timeout string `yaml:"timeout,omitempty"`
}

// WaitTimeout is Timeout as a duration; zero when empty or invalid (Validate reports that).
func (k KubeSphere) WaitTimeout() time.Duration {
	d, err := time.ParseDuration(k.Timeout)
	if err != nil || d <= 0 {
		return 0
	}
	return d
}

// Discovery says how nodes find the control plane.
type Discovery struct {
	// Mode is "mdns" (default) or "static" (use controlPlaneEndpoint.address).
	Mode string `yaml:"mode"`
	// Interface restricts mDNS to one network interface.
	Interface string `yaml:"interface,omitempty"`
	// IPv6 enables mDNS over IPv6 as well.
	IPv6 bool `yaml:"ipv6,omitempty"`
}

// User is an optional administrator account for SSH access to the nodes; never used by ksboot.
type User struct {
	Name              string   `yaml:"name"`
	SSHAuthorizedKeys []string `yaml:"sshAuthorizedKeys"`
	Sudo              bool     `yaml:"sudo,omitempty"`
}

// NTP configures time synchronisation on every node.
type NTP struct {
	Servers  []string `yaml:"servers,omitempty"`
	Timezone string   `yaml:"timezone,omitempty"`
}

// Artifacts says where nodes get Kubernetes binaries and images from.
type Artifacts struct {
	// Mirror is a base URL laid out like the upstream release sites; empty means upstream.
	Mirror string `yaml:"mirror,omitempty"`
	// Bundle is a path on the node (or a volume label, "label:KSBUNDLE") holding an offline bundle.
	Bundle string `yaml:"bundle,omitempty"`
}

// Preflight tunes the node checks the agent runs before changing anything.
type Preflight struct {
	// WarnOnly turns failures of the named checks into warnings (arch, cpu, memory, disk, os,
	// time, nameserver, ports, hostname, cgroup, existing-runtime), e.g. for small test machines.
	WarnOnly []string `yaml:"warnOnly,omitempty"`
}
