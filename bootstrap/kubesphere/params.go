package kubesphere

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/json"

	"github.com/ksboot/ksboot/cluster"
)

// Where KubeSphere comes from by default. Upstream suspended the open-source downloads in
// 2025, so these are only defaults: every one is overridden by the cluster file
// (spec.kubesphere.imageRegistry, installerImage, chart), and the errors of a failed pull or
// download say so.
const (
	// DefaultImageRegistry is where KubeSphere images were published.
	DefaultImageRegistry = "docker.io"
	// DefaultImageRegistryCN is KubeSphere's documented registry for mainland China
	// (spec.zone: cn) for v4: images are <registry>/kubesphere/<name>.
	DefaultImageRegistryCN = "swr.cn-southwest-2.myhuaweicloud.com/ks"
	// DefaultImageRegistryCNv3 and DefaultNamespaceOverrideCNv3 are KubeKey's China mirror for
	// v3 (KKZONE=cn): images are <registry>/kubesphereio/<name>.
	DefaultImageRegistryCNv3     = "registry.cn-beijing.aliyuncs.com"
	DefaultNamespaceOverrideCNv3 = "kubesphereio"
	// InstallerRepository is the ks-installer image of v3 without registry and tag.
	InstallerRepository = "kubesphere/ks-installer"
	// DefaultChartBaseURL and DefaultChartBaseURLCN are where ks-core chart archives were
	// published: <base>/ks-core-<chart version>.tgz.
	DefaultChartBaseURL   = "https://charts.kubesphere.io/main"
	DefaultChartBaseURLCN = "https://charts.kubesphere.com.cn/main"
	// DefaultAdminPassword is the initial password of the admin account, as KubeSphere
	// documents it.
	DefaultAdminPassword = "P@88w0rd"
	// AdminAccount is KubeSphere's initial account.
	AdminAccount = "admin"
	// DefaultConsolePort is the console's NodePort.
	DefaultConsolePort = 30880
)

// chartVersions maps KubeSphere releases to the version of the ks-core chart that installs
// them, as KubeSphere's installation guide gives them. Other versions need
// spec.kubesphere.chart.
var chartVersions = map[string]string{
	"v4.1.2": "1.1.3",
	"v4.1.3": "1.1.4",
}

// Params is everything the kubesphere step depends on. ParamsFromCluster fills it from the
// cluster file; tests may set fields directly.
type Params struct {
	// Version is the KubeSphere release, e.g. v3.4.1 or v4.1.3.
	Version string
	// Major is 3 (ks-installer) or 4 (ks-core chart).
	Major int
	// ImageRegistry is the prefix of KubeSphere images: <ImageRegistry>/kubesphere/<name>
	// (v3: ks-installer's local_registry; v4: the chart's global.imageRegistry).
	ImageRegistry string
	// NamespaceOverride replaces the namespace of KubeSphere's images, KubeKey's flat registry
	// layout (spec.registry.namespaceOverride, with privateRegistry): v3 ks-installer's
	// namespace_override; v4 the repository of every image value of the chart (ChartValues).
	NamespaceOverride string
	// InstallerImage is the v3 ks-installer image.
	InstallerImage string
	// Chart is the v4 ks-core chart: an http(s) URL, or a path (relative paths are inside the
	// offline bundle).
	Chart string
	// StorageClass is the class KubeSphere's volumes use (the cluster's default class).
	StorageClass string
	// EtcdEndpoints are the etcd member addresses (stacked etcd: the control planes).
	EtcdEndpoints []string
	// ConsoleAddress is the host of the console URL: the first control plane's address.
	ConsoleAddress string
	// ConsolePort is the console NodePort.
	ConsolePort int
	// AdminPassword is the initial admin password the banner shows.
	AdminPassword string
	// PasswordGenerated is true when ks-installer generates the password (v3, an empty
	// authentication.adminPassword): the banner reads it from the installer's Secret.
	PasswordGenerated bool
	// Zone is the cluster file's zone ("cn" or empty).
	Zone string
	// Configuration is spec.kubesphere.configuration, normalised to JSON types: the
	// ClusterConfiguration spec (v3) or chart values (v4), merged over ksboot's.
	Configuration map[string]any
}

var versionPattern = regexp.MustCompile(`^v(\d+)\.(\d+)\.(\d+)`)

// registryPattern is a registry host with optional port and path ("reg.example.com:5000/ks").
var registryPattern = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]+)?(/[a-z0-9]+([._/-][a-z0-9]+)*)?$`)

// ParamsFromCluster derives the parameters from a defaulted cluster file. consoleAddress is
// the init node's address when the cluster file has none for it (DHCP); it may be empty.
func ParamsFromCluster(c *cluster.Cluster, consoleAddress string) (Params, error) {
	ks := c.Spec.KubeSphere
	m := versionPattern.FindStringSubmatch(ks.Version)
	if m == nil {
		return Params{}, fmt.Errorf("spec.kubesphere.version %q is not a version like v3.4.1 or v4.1.3", ks.Version)
	}
	major, _ := strconv.Atoi(m[1])
	if major != 3 && major != 4 {
		return Params{}, fmt.Errorf("spec.kubesphere.version %s: ksboot installs KubeSphere v3.x or v4.x", ks.Version)
	}
	p := Params{
		Version: ks.Version, Major: major, Zone: c.Spec.Zone,
		StorageClass: c.Spec.Storage.DefaultClass, ConsolePort: DefaultConsolePort,
		AdminPassword: DefaultAdminPassword,
	}
	conf, err := normalise(ks.Configuration)
	if err != nil {
		return Params{}, fmt.Errorf("spec.kubesphere.configuration: %w", err)
	}
	p.Configuration = conf

	if err := p.setRegistry(c); err != nil {
		return Params{}, err
	}
	p.InstallerImage = ks.InstallerImage
	if p.InstallerImage == "" && major == 3 {
		p.InstallerImage = p.Image(InstallerRepository, ks.Version)
	}
	p.Chart = ks.Chart
	if p.Chart == "" && major == 4 {
		cv, ok := chartVersions[ks.Version]
		if !ok {
			return Params{}, fmt.Errorf("ksboot knows no ks-core chart for KubeSphere %s; set spec.kubesphere.chart to the chart's URL or its path in the offline bundle", ks.Version)
		}
		base := DefaultChartBaseURL
		if p.Zone == "cn" {
			base = DefaultChartBaseURLCN
		}
		p.Chart = base + "/ks-core-" + cv + ".tgz"
	}

	// The console is reached on a node address; the first control plane is the one that
	// surely exists when this step runs (it runs there).
	init := c.InitNode()
	if h, ok := c.Host(init); ok {
		p.ConsoleAddress = hostIP(h.Address)
	}
	if p.ConsoleAddress == "" {
		p.ConsoleAddress = consoleAddress
	}
	if p.ConsoleAddress == "" {
		p.ConsoleAddress = init
	}
	for _, name := range c.Spec.RoleGroups.ControlPlane {
		h, _ := c.Host(name)
		ip := hostIP(h.Address)
		if ip == "" && name == init {
			ip = consoleAddress
		}
		if ip != "" {
			p.EtcdEndpoints = append(p.EtcdEndpoints, ip)
		}
	}

	portPath := []string{"common", "core", "console", "port"} // ClusterConfiguration
	if major == 4 {
		portPath = []string{"console", "nodePort"} // ks-core values
	}
	if v, ok := lookup(p.Configuration, portPath...); ok {
		if n, ok := v.(int64); ok && n > 0 && n < 65536 {
			p.ConsolePort = int(n)
		} else {
			return Params{}, fmt.Errorf("spec.kubesphere.configuration.%s: %v is not a port", strings.Join(portPath, "."), v)
		}
	}
	if err := p.setPassword(); err != nil {
		return Params{}, err
	}
	return p, nil
}

// Where ks-installer (v3.3.1 and later) keeps the initial admin password it set: the
// base64-free value of data.initAdminPassword of this Secret, which its own welcome banner
// reads.
const (
	InstallerSecret            = "kubesphere-secret"
	InstallerSecretPasswordKey = "initAdminPassword"
)

// GeneratedPassword is what the banner says when ks-installer generated the password and
// ksboot could not read it.
const GeneratedPassword = "(generated by ks-installer: kubectl -n " + Namespace + " get secret " + InstallerSecret +
	" -o jsonpath='{.data." + InstallerSecretPasswordKey + "}' | base64 -d)"

// setPassword decides the initial admin password as upstream does. v4 (ks-core's
// authentication.adminPassword): empty or absent is P@88w0rd. v3 (the ClusterConfiguration's
// authentication.adminPassword, from ks-installer v3.3.1): absent is P@88w0rd, empty makes
// ks-installer generate a random one (PasswordGenerated; the banner then reads it from the
// installer's Secret), anything else is used as given. ks-installer v3.3.0 ignores the key.
func (p *Params) setPassword() error {
	v, ok := lookup(p.Configuration, "authentication", "adminPassword")
	if !ok || v == nil {
		return nil
	}
	s, isString := v.(string)
	if !isString {
		return fmt.Errorf("spec.kubesphere.configuration.authentication.adminPassword: must be a string, not %T", v)
	}
	if p.Major == 3 && !InstallerSetsPassword(p.Version) {
		return nil
	}
	switch {
	case s != "":
		p.AdminPassword = s
	case p.Major == 3:
		p.PasswordGenerated = true
	}
	return nil
}

// InstallerSetsPassword says whether ks-installer of this v3 release reads
// authentication.adminPassword (v3.3.1 and later; v3.3.0 and older always create P@88w0rd).
func InstallerSetsPassword(version string) bool {
	m := versionPattern.FindStringSubmatch(version)
	if m == nil {
		return false
	}
	minor, _ := strconv.Atoi(m[2])
	patch, _ := strconv.Atoi(m[3])
	return minor > 3 || minor == 3 && patch >= 1
}

// setRegistry decides the KubeSphere image prefix: spec.kubesphere.imageRegistry, else the
// cluster's private registry, else the China mirror for zone cn, else docker.io.
func (p *Params) setRegistry(c *cluster.Cluster) error {
	ks := c.Spec.KubeSphere
	reg := c.Spec.Registry
	switch {
	case ks.ImageRegistry != "":
		r := trimScheme(ks.ImageRegistry)
		if !registryPattern.MatchString(r) {
			return fmt.Errorf("spec.kubesphere.imageRegistry %q is not a registry like registry.example.com[:port][/namespace]", ks.ImageRegistry)
		}
		p.ImageRegistry = r
	case reg.PrivateRegistry != "":
		r := trimScheme(reg.PrivateRegistry)
		if !registryPattern.MatchString(r) {
			return fmt.Errorf("spec.registry.privateRegistry %q is not a registry like registry.example.com[:port]", reg.PrivateRegistry)
		}
		p.ImageRegistry = r
		p.NamespaceOverride = strings.Trim(reg.NamespaceOverride, "/")
	case c.Spec.Zone == "cn" && p.Major == 3:
		p.ImageRegistry, p.NamespaceOverride = DefaultImageRegistryCNv3, DefaultNamespaceOverrideCNv3
	case c.Spec.Zone == "cn":
		p.ImageRegistry = DefaultImageRegistryCN
	default:
		p.ImageRegistry = DefaultImageRegistry
	}
	return nil
}

// Image names a KubeSphere image: <ImageRegistry>/<namespace>/<name>:<tag>, the namespace
// being "kubesphere" unless NamespaceOverride replaces it.
func (p Params) Image(repository, tag string) string {
	if p.NamespaceOverride != "" {
		repository = p.NamespaceOverride + "/" + repository[strings.LastIndex(repository, "/")+1:]
	}
	return p.ImageRegistry + "/" + repository + ":" + tag
}

func trimScheme(r string) string {
	r = strings.TrimSpace(r)
	for _, s := range []string{"https://", "http://"} {
		r = strings.TrimPrefix(r, s)
	}
	return strings.TrimSuffix(r, "/")
}

func hostIP(cidr string) string {
	if cidr == "" {
		return ""
	}
	if p, err := netip.ParsePrefix(cidr); err == nil {
		return p.Addr().String()
	}
	if a, err := netip.ParseAddr(cidr); err == nil {
		return a.String()
	}
	return ""
}

// normalise turns YAML-decoded configuration into JSON types (map[string]any, []any, string,
// int64, float64, bool), which unstructured objects and Helm values require; yaml.v3 decodes
// integers as int, which they reject.
func normalise(in map[string]any) (map[string]any, error) {
	if len(in) == 0 {
		return map[string]any{}, nil
	}
	data, err := json.Marshal(in)
	if err != nil {
		return nil, fmt.Errorf("not representable as JSON: %w", err)
	}
	return normaliseJSON(data)
}

// normaliseJSON decodes a JSON object into JSON types, whole numbers as int64.
func normaliseJSON(data []byte) (map[string]any, error) {
	out := map[string]any{}
	// k8s.io/apimachinery's json decodes whole numbers as int64.
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("not representable as JSON: %w", err)
	}
	return out, nil
}

func lookup(m map[string]any, path ...string) (any, bool) {
	var cur any = m
	for _, k := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = mm[k]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// merge returns base with over merged into it, recursively for maps; over wins everywhere
// else. Neither argument is modified.
func merge(base, over map[string]any) map[string]any {
	out := make(map[string]any, len(base)+len(over))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		bm, bok := out[k].(map[string]any)
		om, ook := v.(map[string]any)
		if bok && ook {
			out[k] = merge(bm, om)
			continue
		}
		out[k] = v
	}
	return out
}
