package kubeadm

import (
	"fmt"

	"github.com/ksboot/ksboot/versions"
)

// The structs below mirror the fields ksboot sets of kubeadm's v1beta3 types
// (cmd/kubeadm/app/apis/kubeadm/v1beta3/types.go), which kubeadm below v1.31 reads: they carry
// the same decisions as the v1beta4 ones in render.go, in v1beta3's shape. Differences that
// matter: extraArgs and kubeletExtraArgs are maps (one value per flag), and there is no
// timeouts block; v1beta3's only configurable waits are apiServer.timeoutForControlPlane and
// discovery.timeout, which get the same values as v1beta4's controlPlaneComponentHealthCheck
// and discovery.

type initConfigurationV1Beta3 struct {
	typeMeta         `yaml:",inline"`
	BootstrapTokens  []bootstrapToken        `yaml:"bootstrapTokens,omitempty"`
	NodeRegistration nodeRegistrationV1Beta3 `yaml:"nodeRegistration"`
	LocalAPIEndpoint apiEndpoint             `yaml:"localAPIEndpoint"`
	CertificateKey   string                  `yaml:"certificateKey,omitempty"`
	Patches          *patches                `yaml:"patches,omitempty"`
}

type nodeRegistrationV1Beta3 struct {
	Name             string            `yaml:"name,omitempty"`
	CRISocket        string            `yaml:"criSocket,omitempty"`
	Taints           *[]taint          `yaml:"taints,omitempty"`
	KubeletExtraArgs map[string]string `yaml:"kubeletExtraArgs,omitempty"`
}

type clusterConfigurationV1Beta3 struct {
	typeMeta             `yaml:",inline"`
	Networking           networking       `yaml:"networking"`
	KubernetesVersion    string           `yaml:"kubernetesVersion"`
	ControlPlaneEndpoint string           `yaml:"controlPlaneEndpoint,omitempty"`
	Etcd                 etcdV1Beta3      `yaml:"etcd,omitempty"`
	APIServer            apiServerV1Beta3 `yaml:"apiServer,omitempty"`
	ControllerManager    componentV1Beta3 `yaml:"controllerManager,omitempty"`
	Scheduler            componentV1Beta3 `yaml:"scheduler,omitempty"`
	DNS                  imageMeta        `yaml:"dns,omitempty"`
	CertificatesDir      string           `yaml:"certificatesDir,omitempty"`
	ImageRepository      string           `yaml:"imageRepository,omitempty"`
	ClusterName          string           `yaml:"clusterName,omitempty"`
}

type apiServerV1Beta3 struct {
	ExtraArgs              map[string]string `yaml:"extraArgs,omitempty"`
	CertSANs               []string          `yaml:"certSANs,omitempty"`
	TimeoutForControlPlane string            `yaml:"timeoutForControlPlane,omitempty"`
}

type componentV1Beta3 struct {
	ExtraArgs map[string]string `yaml:"extraArgs,omitempty"`
}

type etcdV1Beta3 struct {
	Local *componentV1Beta3 `yaml:"local,omitempty"`
}

type joinConfigurationV1Beta3 struct {
	typeMeta         `yaml:",inline"`
	NodeRegistration nodeRegistrationV1Beta3 `yaml:"nodeRegistration"`
	Discovery        discoveryV1Beta3        `yaml:"discovery"`
	ControlPlane     *joinControlPlane       `yaml:"controlPlane,omitempty"`
	Patches          *patches                `yaml:"patches,omitempty"`
}

type discoveryV1Beta3 struct {
	BootstrapToken bootstrapTokenDiscovery `yaml:"bootstrapToken"`
	Timeout        string                  `yaml:"timeout,omitempty"`
}

// argMap turns an extraArgs list into v1beta3's map. v1beta3 holds one value per flag, so a
// flag given twice cannot be rendered faithfully: that is an error naming the flag, not a
// silent choice of one value.
func argMap(field string, args []Arg) (map[string]string, error) {
	if len(args) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(args))
	for _, a := range args {
		if _, dup := m[a.Name]; dup {
			return nil, fmt.Errorf("kubeadm parameters: %s: --%s is given twice, and kubeadm's %s configuration (Kubernetes below v1.31) holds one value per flag", field, a.Name, versions.KubeadmV1Beta3)
		}
		m[a.Name] = a.Value
	}
	return m, nil
}

// argMaps converts every extraArgs list of the parameters at once, so all duplicates are
// reported together.
type argMaps struct {
	apiServer, controllerManager, scheduler, etcd, kubelet map[string]string
}

func (p Params) argMaps() (argMaps, []error) {
	var out argMaps
	var errs []error
	for _, f := range []struct {
		field string
		args  []Arg
		dst   *map[string]string
	}{
		{"APIServerArgs", p.APIServerArgs, &out.apiServer},
		{"ControllerManagerArgs", p.ControllerManagerArgs, &out.controllerManager},
		{"SchedulerArgs", p.SchedulerArgs, &out.scheduler},
		{"EtcdArgs", p.EtcdArgs, &out.etcd},
		{"KubeletArgs", p.nodeRegistration().KubeletExtraArgs, &out.kubelet},
	} {
		m, err := argMap(f.field, f.args)
		if err != nil {
			errs = append(errs, err)
		}
		*f.dst = m
	}
	return out, errs
}

func (p Params) nodeRegistrationV1Beta3(kubeletArgs map[string]string) nodeRegistrationV1Beta3 {
	nr := p.nodeRegistration()
	return nodeRegistrationV1Beta3{Name: nr.Name, CRISocket: nr.CRISocket, Taints: nr.Taints, KubeletExtraArgs: kubeletArgs}
}

func initDocumentsV1Beta3(p Params) []any {
	m, _ := p.argMaps() // Validate has reported duplicates already
	ic := initConfigurationV1Beta3{
		typeMeta: typeMeta{versions.KubeadmV1Beta3, "InitConfiguration"},
		BootstrapTokens: []bootstrapToken{{
			Token:       p.Token,
			Description: tokenDescription,
			TTL:         p.TokenTTL.String(),
			Usages:      tokenUsages,
			Groups:      tokenGroups,
		}},
		NodeRegistration: p.nodeRegistrationV1Beta3(m.kubelet),
		LocalAPIEndpoint: apiEndpoint{AdvertiseAddress: p.AdvertiseAddress, BindPort: p.BindPort},
		CertificateKey:   p.CertificateKey,
		Patches:          p.patches(),
	}
	cc := clusterConfigurationV1Beta3{
		typeMeta: typeMeta{versions.KubeadmV1Beta3, "ClusterConfiguration"},
		Networking: networking{
			ServiceSubnet: p.ServiceSubnet,
			PodSubnet:     p.PodSubnet,
			DNSDomain:     p.DNSDomain,
		},
		KubernetesVersion:    p.KubernetesVersion,
		ControlPlaneEndpoint: p.ControlPlaneEndpoint,
		APIServer: apiServerV1Beta3{
			ExtraArgs:              m.apiServer,
			CertSANs:               p.CertSANs,
			TimeoutForControlPlane: kubeadmTimeouts.ControlPlaneComponentHealthCheck,
		},
		ControllerManager: componentV1Beta3{ExtraArgs: m.controllerManager},
		Scheduler:         componentV1Beta3{ExtraArgs: m.scheduler},
		DNS:               imageMeta{ImageRepository: p.DNSImageRepository},
		CertificatesDir:   p.CertificatesDir,
		ImageRepository:   p.ImageRepository,
		ClusterName:       p.ClusterName,
	}
	if len(m.etcd) > 0 {
		cc.Etcd.Local = &componentV1Beta3{ExtraArgs: m.etcd}
	}
	return []any{ic, cc, kubeletDocument(), kubeProxyDocument(p)}
}

func joinDocumentV1Beta3(p Params) joinConfigurationV1Beta3 {
	m, _ := p.argMaps()
	jc := joinConfigurationV1Beta3{
		typeMeta:         typeMeta{versions.KubeadmV1Beta3, "JoinConfiguration"},
		NodeRegistration: p.nodeRegistrationV1Beta3(m.kubelet),
		Discovery: discoveryV1Beta3{
			BootstrapToken: bootstrapTokenDiscovery{
				Token:             p.Token,
				APIServerEndpoint: p.APIServerEndpoint,
				CACertHashes:      p.CACertHashes,
			},
			Timeout: kubeadmTimeouts.Discovery,
		},
		Patches: p.patches(),
	}
	if p.Role == RoleControlPlane {
		jc.ControlPlane = &joinControlPlane{
			LocalAPIEndpoint: apiEndpoint{AdvertiseAddress: p.AdvertiseAddress, BindPort: p.BindPort},
			CertificateKey:   p.CertificateKey,
		}
	}
	return jc
}
