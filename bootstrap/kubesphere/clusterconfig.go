package kubesphere

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/ksboot/ksboot/versions"
)

// CCSpec is the spec of ks-installer's ClusterConfiguration with every block of upstream's
// default object (deploy/cluster-configuration.yaml of ks-installer) for a KubeSphere minor.
// ks-installer reads many of these keys without a default of its own (installRunner.py
// indexes spec.common.es["enabled"] on every run, for example), so the object ksboot applies
// must have them all, not only the ones ksboot changes. Fields that exist in one minor only
// are pointers and left out of the others. Field order follows upstream's file.
type CCSpec struct {
	Persistence       CCPersistence    `json:"persistence"`
	Authentication    CCAuthentication `json:"authentication"`
	LocalRegistry     string           `json:"local_registry"`
	NamespaceOverride string           `json:"namespace_override,omitempty"`
	Zone              string           `json:"zone"`
	Etcd              CCEtcd           `json:"etcd"`
	Common            CCCommon         `json:"common"`
	Alerting          CCEnabled        `json:"alerting"`
	Auditing          CCEnabled        `json:"auditing"`
	DevOps            CCDevOps         `json:"devops"`
	Events            CCEvents         `json:"events"`
	Logging           CCLogging        `json:"logging"`
	MetricsServer     CCEnabled        `json:"metrics_server"`
	Monitoring        CCMonitoring     `json:"monitoring"`
	Multicluster      CCMulticluster   `json:"multicluster"`
	Network           CCNetwork        `json:"network"`
	Openpitrix        CCOpenpitrix     `json:"openpitrix"`
	Servicemesh       CCServicemesh    `json:"servicemesh"`
	EdgeRuntime       CCEdgeRuntime    `json:"edgeruntime"`
	Gatekeeper        CCEnabled        `json:"gatekeeper"`
	Terminal          CCTerminal       `json:"terminal"`
}

// CCEnabled is a component switch.
type CCEnabled struct {
	Enabled bool `json:"enabled"`
}

// CCPersistence names the StorageClass of KubeSphere's volumes.
type CCPersistence struct {
	StorageClass string `json:"storageClass"`
}

// CCAuthentication holds the JWT secret. adminPassword is deliberately absent: upstream's
// installer treats an absent key (P@88w0rd), an empty one (a random password) and a set one
// differently, so only spec.kubesphere.configuration may add it.
type CCAuthentication struct {
	JWTSecret string `json:"jwtSecret"`
}

// CCEtcd is where KubeSphere's etcd monitoring finds etcd.
type CCEtcd struct {
	Monitoring  bool   `json:"monitoring"`
	EndpointIPs string `json:"endpointIps"`
	Port        int    `json:"port"`
	TLSEnable   bool   `json:"tlsEnable"`
}

// CCCommon is the shared middleware block.
type CCCommon struct {
	Core       CCCore             `json:"core"`
	Redis      CCRedis            `json:"redis"`
	OpenLDAP   CCVolume           `json:"openldap"`
	Minio      CCMinio            `json:"minio"`
	Monitoring CCCommonMonitoring `json:"monitoring"`
	GPU        CCGPU              `json:"gpu"`
	ES         CCES               `json:"es"`
	OpenSearch *CCOpenSearch      `json:"opensearch,omitempty"` // from v3.4
}

// CCCore configures the console.
type CCCore struct {
	Console CCConsole `json:"console"`
}

// CCConsole is the console Service.
type CCConsole struct {
	EnableMultiLogin bool   `json:"enableMultiLogin"`
	Port             int    `json:"port"`
	Type             string `json:"type"`
}

// CCRedis is KubeSphere's Redis.
type CCRedis struct {
	Enabled    bool   `json:"enabled"`
	EnableHA   bool   `json:"enableHA"`
	VolumeSize string `json:"volumeSize"`
}

// CCVolume is a switch with a volume size.
type CCVolume struct {
	Enabled    bool   `json:"enabled"`
	VolumeSize string `json:"volumeSize"`
}

// CCMinio is MinIO's volume.
type CCMinio struct {
	VolumeSize string `json:"volumeSize"`
}

// CCCommonMonitoring is the Prometheus endpoint KubeSphere reads metrics from.
type CCCommonMonitoring struct {
	Endpoint      string    `json:"endpoint"`
	GPUMonitoring CCEnabled `json:"GPUMonitoring"`
}

// CCGPU lists the GPU kinds KubeSphere knows.
type CCGPU struct {
	Kinds []CCGPUKind `json:"kinds"`
}

// CCGPUKind is one GPU resource.
type CCGPUKind struct {
	ResourceName string `json:"resourceName"`
	ResourceType string `json:"resourceType"`
	Default      bool   `json:"default"`
}

// CCES is the Elasticsearch backend of logging, events and auditing.
type CCES struct {
	Enabled                   *bool       `json:"enabled,omitempty"` // from v3.4
	LogMaxAge                 int         `json:"logMaxAge"`
	ElkPrefix                 string      `json:"elkPrefix"`
	BasicAuth                 CCBasicAuth `json:"basicAuth"`
	ExternalElasticsearchHost string      `json:"externalElasticsearchHost"`
	ExternalElasticsearchPort string      `json:"externalElasticsearchPort"`
}

// CCOpenSearch is the OpenSearch backend (v3.4), enabled by default upstream; it is installed
// only with logging, events or auditing.
type CCOpenSearch struct {
	Enabled                bool        `json:"enabled"`
	LogMaxAge              int         `json:"logMaxAge"`
	OpensearchPrefix       string      `json:"opensearchPrefix"`
	BasicAuth              CCBasicAuth `json:"basicAuth"`
	ExternalOpensearchHost string      `json:"externalOpensearchHost"`
	ExternalOpensearchPort string      `json:"externalOpensearchPort"`
	Dashboard              CCEnabled   `json:"dashboard"`
}

// CCBasicAuth is a backend's credentials.
type CCBasicAuth struct {
	Enabled  bool   `json:"enabled"`
	Username string `json:"username"`
	Password string `json:"password"`
}

// CCDevOps is Jenkins's sizing. The CPU fields exist from v3.4.
type CCDevOps struct {
	Enabled           bool     `json:"enabled"`
	JenkinsCPUReq     *float64 `json:"jenkinsCpuReq,omitempty"`
	JenkinsCPULim     *float64 `json:"jenkinsCpuLim,omitempty"`
	JenkinsMemoryReq  string   `json:"jenkinsMemoryReq"`
	JenkinsMemoryLim  string   `json:"jenkinsMemoryLim"`
	JenkinsVolumeSize string   `json:"jenkinsVolumeSize"`
}

// CCEvents is the events exporter; the ruler block exists from v3.4.
type CCEvents struct {
	Enabled bool       `json:"enabled"`
	Ruler   *CCReplica `json:"ruler,omitempty"`
}

// CCReplica is a switch with a replica count.
type CCReplica struct {
	Enabled  bool `json:"enabled"`
	Replicas int  `json:"replicas"`
}

// CCLogging is the logging system.
type CCLogging struct {
	Enabled    bool      `json:"enabled"`
	Logsidecar CCReplica `json:"logsidecar"`
}

// CCMonitoring is the monitoring stack.
type CCMonitoring struct {
	StorageClass string          `json:"storageClass"`
	NodeExporter CCNodeExporter  `json:"node_exporter"`
	GPU          CCMonitoringGPU `json:"gpu"`
}

// CCNodeExporter is node-exporter's port.
type CCNodeExporter struct {
	Port int `json:"port"`
}

// CCMonitoringGPU is the GPU exporter.
type CCMonitoringGPU struct {
	NvidiaDCGMExporter CCEnabled `json:"nvidia_dcgm_exporter"`
}

// CCMulticluster is the cluster's role: host, member or none.
type CCMulticluster struct {
	ClusterRole string `json:"clusterRole"`
}

// CCNetwork is network policy, IP pools and topology.
type CCNetwork struct {
	NetworkPolicy CCEnabled `json:"networkpolicy"`
	IPPool        CCType    `json:"ippool"`
	Topology      CCType    `json:"topology"`
}

// CCType selects an implementation ("none" for off).
type CCType struct {
	Type string `json:"type"`
}

// CCOpenpitrix is the App Store.
type CCOpenpitrix struct {
	Store CCEnabled `json:"store"`
}

// CCServicemesh is Istio.
type CCServicemesh struct {
	Enabled bool    `json:"enabled"`
	Istio   CCIstio `json:"istio"`
}

// CCIstio is the Istio installation's components.
type CCIstio struct {
	Components CCIstioComponents `json:"components"`
}

// CCIstioComponents are Istio's optional components.
type CCIstioComponents struct {
	IngressGateways []CCNamedSwitch `json:"ingressGateways"`
	CNI             CCEnabled       `json:"cni"`
}

// CCNamedSwitch is a named component switch.
type CCNamedSwitch struct {
	Name    string `json:"name"`
	Enabled bool   `json:"enabled"`
}

// CCEdgeRuntime is KubeEdge.
type CCEdgeRuntime struct {
	Enabled  bool       `json:"enabled"`
	KubeEdge CCKubeEdge `json:"kubeedge"`
}

// CCKubeEdge is KubeEdge's cloud side.
type CCKubeEdge struct {
	Enabled         bool          `json:"enabled"`
	CloudCore       CCCloudCore   `json:"cloudCore"`
	IptablesManager CCIptablesMgr `json:"iptables-manager"`
}

// CCCloudCore is CloudCore's address and NodePorts.
type CCCloudCore struct {
	CloudHub CCCloudHub     `json:"cloudHub"`
	Service  CCCloudCoreSvc `json:"service"`
}

// CCCloudHub lists the addresses edge nodes reach CloudCore on.
type CCCloudHub struct {
	AdvertiseAddress []string `json:"advertiseAddress"`
}

// CCCloudCoreSvc are CloudCore's NodePorts, strings as upstream has them.
type CCCloudCoreSvc struct {
	CloudhubNodePort      string `json:"cloudhubNodePort"`
	CloudhubQuicNodePort  string `json:"cloudhubQuicNodePort"`
	CloudhubHTTPSNodePort string `json:"cloudhubHttpsNodePort"`
	CloudstreamNodePort   string `json:"cloudstreamNodePort"`
	TunnelNodePort        string `json:"tunnelNodePort"`
}

// CCIptablesMgr is KubeEdge's iptables manager.
type CCIptablesMgr struct {
	Enabled bool   `json:"enabled"`
	Mode    string `json:"mode"`
}

// CCTerminal is the web terminal's timeout in seconds.
type CCTerminal struct {
	Timeout int `json:"timeout"`
}

// ccLayouts are the KubeSphere minors whose default ClusterConfiguration ksboot carries; a
// release of another v3 minor gets the layout of the nearest one (older minors: 3.3's).
var ccLayouts = []string{"3.3", "3.4"}

// CCLayout is the KubeSphere minor ("3.3", "3.4") whose upstream default ClusterConfiguration
// DefaultCCSpec follows for the given release.
func CCLayout(version string) string {
	v, err := versions.Parse(version)
	if err != nil || v.Major != 3 || v.Minor <= 3 {
		return ccLayouts[0]
	}
	return ccLayouts[len(ccLayouts)-1]
}

// DefaultCCSpec is upstream's default ClusterConfiguration spec for the release's minor (see
// CCLayout): ks-installer v3.3.2's and v3.4.1's deploy/cluster-configuration.yaml, every
// component off, as upstream ships it.
func DefaultCCSpec(version string) CCSpec {
	off := CCEnabled{}
	s := CCSpec{
		Etcd: CCEtcd{EndpointIPs: "localhost", Port: 2379, TLSEnable: true},
		Common: CCCommon{
			Core:       CCCore{Console: CCConsole{EnableMultiLogin: true, Port: DefaultConsolePort, Type: "NodePort"}},
			Redis:      CCRedis{VolumeSize: "2Gi"},
			OpenLDAP:   CCVolume{VolumeSize: "2Gi"},
			Minio:      CCMinio{VolumeSize: "20Gi"},
			Monitoring: CCCommonMonitoring{Endpoint: "http://prometheus-operated.kubesphere-monitoring-system.svc:9090"},
			GPU:        CCGPU{Kinds: []CCGPUKind{{ResourceName: "nvidia.com/gpu", ResourceType: "GPU", Default: true}}},
			ES:         CCES{LogMaxAge: 7, ElkPrefix: "logstash"},
		},
		DevOps:       CCDevOps{JenkinsMemoryReq: "2Gi", JenkinsMemoryLim: "4Gi", JenkinsVolumeSize: "8Gi"},
		Logging:      CCLogging{Logsidecar: CCReplica{Enabled: true, Replicas: 2}},
		Monitoring:   CCMonitoring{NodeExporter: CCNodeExporter{Port: 9100}},
		Multicluster: CCMulticluster{ClusterRole: "none"},
		Network:      CCNetwork{IPPool: CCType{Type: "none"}, Topology: CCType{Type: "none"}},
		Servicemesh: CCServicemesh{Istio: CCIstio{Components: CCIstioComponents{
			IngressGateways: []CCNamedSwitch{{Name: "istio-ingressgateway"}},
		}}},
		EdgeRuntime: CCEdgeRuntime{KubeEdge: CCKubeEdge{
			CloudCore: CCCloudCore{
				CloudHub: CCCloudHub{AdvertiseAddress: []string{""}},
				Service: CCCloudCoreSvc{
					CloudhubNodePort: "30000", CloudhubQuicNodePort: "30001", CloudhubHTTPSNodePort: "30002",
					CloudstreamNodePort: "30003", TunnelNodePort: "30004",
				},
			},
			IptablesManager: CCIptablesMgr{Enabled: true, Mode: "external"},
		}},
		Gatekeeper: off,
		Terminal:   CCTerminal{Timeout: 600},
	}
	if CCLayout(version) == "3.4" {
		s.Common.ES.Enabled = new(bool)
		s.Common.OpenSearch = &CCOpenSearch{
			Enabled: true, LogMaxAge: 7, OpensearchPrefix: "whizard",
			BasicAuth: CCBasicAuth{Enabled: true, Username: "admin", Password: "admin"},
		}
		cpuReq, cpuLim := 0.5, 1.0
		s.DevOps = CCDevOps{
			JenkinsCPUReq: &cpuReq, JenkinsCPULim: &cpuLim,
			JenkinsMemoryReq: "4Gi", JenkinsMemoryLim: "4Gi", JenkinsVolumeSize: "16Gi",
		}
		s.Events.Ruler = &CCReplica{Enabled: true, Replicas: 2}
	}
	return s
}

// ccSpec is the spec ksboot applies: upstream's defaults for the minor with the cluster's
// settings (storage class, etcd endpoints, registry, zone, console port), as JSON-typed data
// ready for spec.kubesphere.configuration to be merged over it.
func ccSpec(p Params) (map[string]any, error) {
	s := DefaultCCSpec(p.Version)
	s.Persistence.StorageClass = p.StorageClass
	s.Common.Core.Console.Port = p.ConsolePort
	if len(p.EtcdEndpoints) > 0 {
		s.Etcd.EndpointIPs = strings.Join(p.EtcdEndpoints, ",")
	}
	// local_registry makes ks-installer pull every image, third-party ones included, from
	// that registry; for upstream's own layout it stays empty, as upstream ships it.
	if p.ImageRegistry != DefaultImageRegistry {
		s.LocalRegistry = p.ImageRegistry
	}
	s.NamespaceOverride = p.NamespaceOverride
	s.Zone = p.Zone
	data, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("encoding the ClusterConfiguration: %w", err)
	}
	return normaliseJSON(data)
}
