package kubeadm

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/ksboot/ksboot/versions"
)

// API groups and versions of the rendered documents. The kubeadm API depends on the
// Kubernetes version (versions.Minor.KubeadmAPI): v1beta3 below v1.31 (render_v1beta3.go),
// v1beta4 from v1.31 (this file).
const (
	KubeletAPIVersion   = "kubelet.config.k8s.io/v1beta1"
	KubeProxyAPIVersion = "kubeproxy.config.k8s.io/v1alpha1"
)

// The structs below mirror the fields ksboot sets of kubeadm's v1beta4 types
// (cmd/kubeadm/app/apis/kubeadm/v1beta4/types.go), the kubelet's v1beta1 and kube-proxy's
// v1alpha1 configuration, with the same field names and order. Everything else is left to
// kubeadm's defaulting.

type typeMeta struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
}

type initConfiguration struct {
	typeMeta         `yaml:",inline"`
	BootstrapTokens  []bootstrapToken `yaml:"bootstrapTokens,omitempty"`
	NodeRegistration nodeRegistration `yaml:"nodeRegistration"`
	LocalAPIEndpoint apiEndpoint      `yaml:"localAPIEndpoint"`
	CertificateKey   string           `yaml:"certificateKey,omitempty"`
	Patches          *patches         `yaml:"patches,omitempty"`
	Timeouts         timeouts         `yaml:"timeouts"`
}

// patches is v1beta4's Patches: the directory kubeadm init and join read patches from.
type patches struct {
	Directory string `yaml:"directory"`
}

// timeouts is v1beta4's Timeouts: how long kubeadm itself waits. Its defaults (4 minutes for
// the control plane to answer, 5 for discovery and TLS bootstrap) assume an operator at a
// terminal who retries; a self-bootstrapping node on slow hardware (a small ARM board, a VM
// without hardware virtualisation) has nobody to retry for it, and an init that gives up at 4
// minutes leaves a half-made control plane. So ksboot waits longer and reports progress itself.
type timeouts struct {
	ControlPlaneComponentHealthCheck string `yaml:"controlPlaneComponentHealthCheck"`
	KubeletHealthCheck               string `yaml:"kubeletHealthCheck"`
	KubernetesAPICall                string `yaml:"kubernetesAPICall"`
	EtcdAPICall                      string `yaml:"etcdAPICall"`
	TLSBootstrap                     string `yaml:"tlsBootstrap"`
	Discovery                        string `yaml:"discovery"`
}

// kubeadmTimeouts are the waits ksboot gives kubeadm: three to ten times its defaults.
// KubernetesAPICall matters most: kubeadm init's wait-control-plane phase first bootstraps the
// admin user, retrying API calls for that long, before it waits for the control plane at all,
// so on a slow machine it is the real bound on the API server's start.
var kubeadmTimeouts = timeouts{
	ControlPlaneComponentHealthCheck: "15m0s",
	KubeletHealthCheck:               "10m0s",
	KubernetesAPICall:                "10m0s",
	EtcdAPICall:                      "5m0s",
	TLSBootstrap:                     "15m0s",
	Discovery:                        "15m0s",
}

type bootstrapToken struct {
	Token       string   `yaml:"token"`
	Description string   `yaml:"description,omitempty"`
	TTL         string   `yaml:"ttl"`
	Usages      []string `yaml:"usages,omitempty"`
	Groups      []string `yaml:"groups,omitempty"`
}

type nodeRegistration struct {
	Name      string `yaml:"name,omitempty"`
	CRISocket string `yaml:"criSocket,omitempty"`
	// Taints distinguishes nil (omitted: kubeadm's default for the role) from empty
	// (rendered as [], no taints at all).
	Taints           *[]taint `yaml:"taints,omitempty"`
	KubeletExtraArgs []Arg    `yaml:"kubeletExtraArgs,omitempty"`
}

type taint struct {
	Key    string `yaml:"key"`
	Effect string `yaml:"effect"`
}

// Arg is one command-line flag of a component, as kubeadm v1beta4's extraArgs lists them.
type Arg struct {
	Name  string `yaml:"name"`
	Value string `yaml:"value"`
}

type apiEndpoint struct {
	AdvertiseAddress string `yaml:"advertiseAddress,omitempty"`
	BindPort         int    `yaml:"bindPort,omitempty"`
}

type clusterConfiguration struct {
	typeMeta             `yaml:",inline"`
	Networking           networking `yaml:"networking"`
	KubernetesVersion    string     `yaml:"kubernetesVersion"`
	ControlPlaneEndpoint string     `yaml:"controlPlaneEndpoint,omitempty"`
	Etcd                 etcd       `yaml:"etcd,omitempty"`
	APIServer            apiServer  `yaml:"apiServer,omitempty"`
	ControllerManager    component  `yaml:"controllerManager,omitempty"`
	Scheduler            component  `yaml:"scheduler,omitempty"`
	DNS                  imageMeta  `yaml:"dns,omitempty"`
	CertificatesDir      string     `yaml:"certificatesDir,omitempty"`
	ImageRepository      string     `yaml:"imageRepository,omitempty"`
	ClusterName          string     `yaml:"clusterName,omitempty"`
}

type networking struct {
	ServiceSubnet string `yaml:"serviceSubnet,omitempty"`
	PodSubnet     string `yaml:"podSubnet,omitempty"`
	DNSDomain     string `yaml:"dnsDomain,omitempty"`
}

type apiServer struct {
	ExtraArgs []Arg    `yaml:"extraArgs,omitempty"`
	CertSANs  []string `yaml:"certSANs,omitempty"`
}

// component is v1beta4's ControlPlaneComponent (controllerManager, scheduler).
type component struct {
	ExtraArgs []Arg `yaml:"extraArgs,omitempty"`
}

type etcd struct {
	Local *localEtcd `yaml:"local,omitempty"`
}

type localEtcd struct {
	ExtraArgs []Arg `yaml:"extraArgs,omitempty"`
}

type imageMeta struct {
	ImageRepository string `yaml:"imageRepository,omitempty"`
}

type kubeletConfiguration struct {
	typeMeta     `yaml:",inline"`
	CgroupDriver string `yaml:"cgroupDriver"`
}

type kubeProxyConfiguration struct {
	typeMeta `yaml:",inline"`
	Mode     string         `yaml:"mode"`
	IPVS     *kubeProxyIPVS `yaml:"ipvs,omitempty"`
}

// kubeProxyIPVS is KubeProxyIPVSConfiguration.
type kubeProxyIPVS struct {
	// ExcludeCIDRs are addresses whose IPVS virtual servers kube-proxy leaves alone when it
	// cleans up the ones it does not know.
	ExcludeCIDRs []string `yaml:"excludeCIDRs"`
}

type joinConfiguration struct {
	typeMeta         `yaml:",inline"`
	NodeRegistration nodeRegistration  `yaml:"nodeRegistration"`
	Discovery        discovery         `yaml:"discovery"`
	ControlPlane     *joinControlPlane `yaml:"controlPlane,omitempty"`
	Patches          *patches          `yaml:"patches,omitempty"`
	Timeouts         timeouts          `yaml:"timeouts"`
}

type discovery struct {
	BootstrapToken bootstrapTokenDiscovery `yaml:"bootstrapToken"`
}

type bootstrapTokenDiscovery struct {
	Token             string   `yaml:"token"`
	APIServerEndpoint string   `yaml:"apiServerEndpoint"`
	CACertHashes      []string `yaml:"caCertHashes"`
}

type joinControlPlane struct {
	LocalAPIEndpoint apiEndpoint `yaml:"localAPIEndpoint"`
	CertificateKey   string      `yaml:"certificateKey,omitempty"`
}

// The token format and the groups kubeadm gives the tokens it creates itself, so the cluster's
// RBAC (kubeadm:kubelet-bootstrap, node auto-approval) applies to ksboot's token unchanged.
var (
	tokenDescription = "ksboot: joins nodes booted from ksboot seeds"
	tokenPattern     = regexp.MustCompile(`^[a-z0-9]{6}\.[a-z0-9]{16}$`)
	caHashPattern    = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	tokenGroups      = []string{"system:bootstrappers:kubeadm:default-node-token"}
	tokenUsages      = []string{"signing", "authentication"}
	certKeyPattern   = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// Render returns the kubeadm configuration file of the node as multi-document YAML: for
// RoleInit an InitConfiguration, a ClusterConfiguration, a KubeletConfiguration and a
// KubeProxyConfiguration; for joins one JoinConfiguration (joining nodes take the cluster-wide
// kubelet and kube-proxy configuration from the cluster). The output contains the bootstrap
// token: write it 0600 and never log it.
func Render(p Params) ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	var docs []any
	switch api := p.KubeadmAPI(); {
	case api == versions.KubeadmV1Beta3 && p.Role == RoleInit:
		docs = initDocumentsV1Beta3(p)
	case api == versions.KubeadmV1Beta3:
		docs = []any{joinDocumentV1Beta3(p)}
	case p.Role == RoleInit:
		docs = initDocuments(p)
	default:
		docs = []any{joinDocument(p)}
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	for _, d := range docs {
		if err := enc.Encode(d); err != nil {
			return nil, fmt.Errorf("encoding kubeadm configuration: %w", err)
		}
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encoding kubeadm configuration: %w", err)
	}
	return buf.Bytes(), nil
}

func initDocuments(p Params) []any {
	ic := initConfiguration{
		typeMeta: typeMeta{versions.KubeadmV1Beta4, "InitConfiguration"},
		BootstrapTokens: []bootstrapToken{{
			Token:       p.Token,
			Description: tokenDescription,
			TTL:         p.TokenTTL.String(),
			Usages:      tokenUsages,
			Groups:      tokenGroups,
		}},
		NodeRegistration: p.nodeRegistration(),
		LocalAPIEndpoint: apiEndpoint{AdvertiseAddress: p.AdvertiseAddress, BindPort: p.BindPort},
		CertificateKey:   p.CertificateKey,
		Patches:          p.patches(),
		Timeouts:         kubeadmTimeouts,
	}
	cc := clusterConfiguration{
		typeMeta: typeMeta{versions.KubeadmV1Beta4, "ClusterConfiguration"},
		Networking: networking{
			ServiceSubnet: p.ServiceSubnet,
			PodSubnet:     p.PodSubnet,
			DNSDomain:     p.DNSDomain,
		},
		KubernetesVersion:    p.KubernetesVersion,
		ControlPlaneEndpoint: p.ControlPlaneEndpoint,
		APIServer:            apiServer{ExtraArgs: p.APIServerArgs, CertSANs: p.CertSANs},
		ControllerManager:    component{ExtraArgs: p.ControllerManagerArgs},
		Scheduler:            component{ExtraArgs: p.SchedulerArgs},
		DNS:                  imageMeta{ImageRepository: p.DNSImageRepository},
		CertificatesDir:      p.CertificatesDir,
		ImageRepository:      p.ImageRepository,
		ClusterName:          p.ClusterName,
	}
	if len(p.EtcdArgs) > 0 {
		cc.Etcd.Local = &localEtcd{ExtraArgs: p.EtcdArgs}
	}
	return []any{ic, cc, kubeletDocument(), kubeProxyDocument(p)}
}

// kubeletDocument is the cluster-wide KubeletConfiguration, the same for both kubeadm APIs.
func kubeletDocument() kubeletConfiguration {
	return kubeletConfiguration{
		typeMeta: typeMeta{KubeletAPIVersion, "KubeletConfiguration"},
		// containerd from ksboot uses the systemd cgroup driver; both must agree.
		CgroupDriver: "systemd",
	}
}

// kubeProxyDocument is the cluster-wide KubeProxyConfiguration, the same for both kubeadm APIs.
func kubeProxyDocument(p Params) kubeProxyConfiguration {
	kp := kubeProxyConfiguration{
		typeMeta: typeMeta{KubeProxyAPIVersion, "KubeProxyConfiguration"},
		Mode:     p.ProxyMode,
	}
	if p.ProxyMode == "ipvs" && len(p.IPVSExcludeCIDRs) > 0 {
		kp.IPVS = &kubeProxyIPVS{ExcludeCIDRs: p.IPVSExcludeCIDRs}
	}
	return kp
}

// KubeadmAPI is the kubeadm configuration API rendered for the parameters' Kubernetes version
// (the version matrix's); the newest API for a version outside it, which Validate refuses.
func (p Params) KubeadmAPI() string {
	return versions.MustLookup(p.KubernetesVersion).KubeadmAPI
}

func joinDocument(p Params) joinConfiguration {
	jc := joinConfiguration{
		typeMeta:         typeMeta{versions.KubeadmV1Beta4, "JoinConfiguration"},
		NodeRegistration: p.nodeRegistration(),
		Discovery: discovery{BootstrapToken: bootstrapTokenDiscovery{
			Token:             p.Token,
			APIServerEndpoint: p.APIServerEndpoint,
			CACertHashes:      p.CACertHashes,
		}},
		Patches:  p.patches(),
		Timeouts: kubeadmTimeouts,
	}
	if p.Role == RoleControlPlane {
		jc.ControlPlane = &joinControlPlane{
			LocalAPIEndpoint: apiEndpoint{AdvertiseAddress: p.AdvertiseAddress, BindPort: p.BindPort},
			CertificateKey:   p.CertificateKey,
		}
	}
	return jc
}

// patches points kubeadm at the patches directory when there are patches.
func (p Params) patches() *patches {
	if len(p.Patches) == 0 {
		return nil
	}
	return &patches{Directory: p.patchesDir()}
}

func (p Params) nodeRegistration() nodeRegistration {
	nr := nodeRegistration{Name: p.NodeName, CRISocket: p.CRISocket}
	if p.Role != RoleWorker {
		// Explicit on control planes: an empty list is how kubeadm is told "no taint" for a
		// control plane that also runs workloads (nil would mean its default taint).
		taints := []taint{}
		if !p.Schedulable {
			taints = append(taints, taint{Key: ControlPlaneTaintKey, Effect: "NoSchedule"})
		}
		nr.Taints = &taints
	}
	if p.NodeIP != "" {
		nr.KubeletExtraArgs = []Arg{{Name: "node-ip", Value: p.NodeIP}}
	}
	nr.KubeletExtraArgs = append(nr.KubeletExtraArgs, p.KubeletArgs...)
	return nr
}

// Validate checks that the parameters make a configuration kubeadm accepts for the role, so a
// bad node config fails here, naming the field, rather than in kubeadm on the machine.
func (p Params) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("kubeadm parameters: %s: %s", field, fmt.Sprintf(format, args...)))
	}
	switch p.Role {
	case RoleInit, RoleControlPlane, RoleWorker:
	default:
		bad("Role", "%q is not init, control-plane or worker", p.Role)
	}
	if !tokenPattern.MatchString(p.Token) {
		// Never echo the value: it is a secret.
		bad("Token", "not a bootstrap token of the form [a-z0-9]{6}.[a-z0-9]{16}")
	}
	if p.CertificateKey != "" && !certKeyPattern.MatchString(p.CertificateKey) {
		bad("CertificateKey", "not 64 lowercase hex digits")
	}
	if p.TokenTTL < 0 {
		bad("TokenTTL", "%s is negative", p.TokenTTL)
	}
	for _, f := range []struct{ name, value string }{{"AdvertiseAddress", p.AdvertiseAddress}, {"NodeIP", p.NodeIP}} {
		if f.value == "" {
			continue
		}
		if a, err := netip.ParseAddr(f.value); err != nil {
			bad(f.name, "%q is not an IP address", f.value)
		} else if f.name == "AdvertiseAddress" && (a.IsLoopback() || a.IsUnspecified()) {
			bad(f.name, "%s cannot be advertised to other nodes", a)
		}
	}
	if p.Role != RoleWorker && (p.BindPort < 1 || p.BindPort > 65535) {
		bad("BindPort", "%d is not a TCP port", p.BindPort)
	}
	if m, err := versions.Lookup(p.KubernetesVersion); err != nil {
		bad("KubernetesVersion", "%v", err)
	} else if m.KubeadmAPI == versions.KubeadmV1Beta3 {
		_, dups := p.argMaps()
		errs = append(errs, dups...)
	}
	if p.Role == RoleInit {
		checkEndpoint(bad, "ControlPlaneEndpoint", p.ControlPlaneEndpoint)
		for _, f := range []struct{ name, value string }{{"PodSubnet", p.PodSubnet}, {"ServiceSubnet", p.ServiceSubnet}} {
			if _, err := netip.ParsePrefix(f.value); err != nil {
				bad(f.name, "%q is not a CIDR", f.value)
			}
		}
		switch p.ProxyMode {
		case "ipvs", "iptables", "nftables":
		default:
			bad("ProxyMode", "%q is not ipvs, iptables or nftables", p.ProxyMode)
		}
		for i, cidr := range p.IPVSExcludeCIDRs {
			if _, err := netip.ParsePrefix(cidr); err != nil {
				bad(fmt.Sprintf("IPVSExcludeCIDRs[%d]", i), "%q is not a CIDR", cidr)
			}
		}
	} else {
		checkEndpoint(bad, "APIServerEndpoint", p.APIServerEndpoint)
		if len(p.CACertHashes) == 0 {
			bad("CACertHashes", "a join needs the CA pin (CA verification is never skipped)")
		}
		for i, h := range p.CACertHashes {
			if !caHashPattern.MatchString(h) {
				bad(fmt.Sprintf("CACertHashes[%d]", i), "%q is not sha256:<64 hex digits>", h)
			}
		}
	}
	return errors.Join(errs...)
}

func checkEndpoint(bad func(field, format string, args ...any), field, hostPort string) {
	host, port, err := net.SplitHostPort(hostPort)
	if err != nil || strings.TrimSpace(host) == "" || port == "" {
		bad(field, "%q is not host:port", hostPort)
	}
}
