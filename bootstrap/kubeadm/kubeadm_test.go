package kubeadm

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ksboot/ksboot/bootstrap/host"
	"github.com/ksboot/ksboot/cluster"
	"github.com/ksboot/ksboot/internal/golden"
	"gopkg.in/yaml.v3"
)

// Fixed secrets for golden files; real ones are random. The pin is of no real CA.
const (
	testToken   = "abcdef.0123456789abcdef"
	testPin     = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	testCertKey = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
)

var (
	secretsOnce sync.Once
	secrets     *cluster.Secrets
	secretsErr  error
)

// testSecrets makes one real set of cluster secrets per test binary (RSA key generation is slow).
func testSecrets(t testing.TB) *cluster.Secrets {
	t.Helper()
	secretsOnce.Do(func() { secrets, secretsErr = cluster.NewSecrets() })
	if secretsErr != nil {
		t.Fatal(secretsErr)
	}
	return secrets
}

// sampleCluster is `ksboot create config`'s cluster: node1 control plane + etcd, node2 and
// node3 workers, all with static addresses.
func sampleCluster() *cluster.Cluster { return cluster.Sample(cluster.SampleOptions{}) }

// haCluster has three control planes behind a load balancer; node3 is also a worker.
func haCluster() *cluster.Cluster {
	c := sampleCluster()
	c.Spec.Hosts = append(c.Spec.Hosts, cluster.Host{Name: "node4", Address: "192.168.0.14/24", Gateway: "192.168.0.1"})
	c.Spec.RoleGroups = cluster.RoleGroups{
		Etcd:         []string{"node1", "node2", "node3"},
		ControlPlane: []string{"node1", "node2", "node3"},
		Worker:       []string{"node3", "node4"},
	}
	c.Spec.ControlPlaneEndpoint.Address = "192.168.0.100"
	c.Spec.Kubernetes.APIServerCertExtraSans = []string{"api.example.com", "203.0.113.7"}
	c.Spec.Kubernetes.ProxyMode = "iptables"
	cluster.SetDefaults(c)
	return c
}

// nodeConfig builds a node's config with real secrets, then fixes the token and pin so the
// output is stable. host "" means the generic worker seed.
func nodeConfig(t testing.TB, c *cluster.Cluster, host string) *cluster.NodeConfig {
	t.Helper()
	if probs := cluster.Validate(c, nil); probs.Err() != nil {
		t.Fatalf("test cluster is invalid: %v", probs.Err())
	}
	var nc *cluster.NodeConfig
	var err error
	if host == "" {
		nc, err = cluster.GenericWorkerConfig(c, testSecrets(t))
	} else {
		nc, err = cluster.NodeConfigFor(c, testSecrets(t), host)
	}
	if err != nil {
		t.Fatal(err)
	}
	nc.Secrets.BootstrapToken, nc.Secrets.CACertHash = testToken, testPin
	return nc
}

// renderCase is one node whose kubeadm configuration is pinned by a golden file and judged by
// the real kubeadm in the integration tests.
type renderCase struct {
	name string
	role Role
	// params derives the node's parameters.
	params func(t testing.TB) Params
}

var renderCases = []renderCase{
	{"init", RoleInit, func(t testing.TB) Params {
		return ParamsFromNode(nodeConfig(t, sampleCluster(), "node1"), "", "", "")
	}},
	{"init-ha-schedulable", RoleInit, func(t testing.TB) Params {
		c := haCluster()
		// node1 is also a worker here: no control-plane taint.
		c.Spec.RoleGroups.Worker = append([]string{"node1"}, c.Spec.RoleGroups.Worker...)
		return ParamsFromNode(nodeConfig(t, c, "node1"), "", "", "")
	}},
	{"control-plane-joiner", RoleControlPlane, func(t testing.TB) Params {
		// Discovery found the first control plane directly.
		return ParamsFromNode(nodeConfig(t, haCluster(), "node2"), "", "", "192.168.0.11:6443")
	}},
	{"control-plane-joiner-schedulable", RoleControlPlane, func(t testing.TB) Params {
		return ParamsFromNode(nodeConfig(t, haCluster(), "node3"), "", "", "")
	}},
	{"control-plane-joiner-certificate-key", RoleControlPlane, func(t testing.TB) Params {
		p := ParamsFromNode(nodeConfig(t, haCluster(), "node2"), "", "", "")
		p.CertificateKey = testCertKey
		return p
	}},
	{"worker", RoleWorker, func(t testing.TB) Params {
		return ParamsFromNode(nodeConfig(t, sampleCluster(), "node2"), "", "", "")
	}},
	{"generic-worker", RoleWorker, func(t testing.TB) Params {
		// The generic seed has no name or address; the agent names the node on the machine.
		return ParamsFromNode(nodeConfig(t, sampleCluster(), ""), "worker-5254000000aa", "", "")
	}},
	{"mirror-registry", RoleInit, func(t testing.TB) Params {
		c := sampleCluster()
		c.Spec.Registry.PrivateRegistry = "registry.example.internal:5000"
		c.Spec.Registry.RegistryMirrors = []string{"https://mirror.example.internal"}
		c.Spec.Kubernetes.ProxyMode = "nftables"
		return ParamsFromNode(nodeConfig(t, c, "node1"), "", "", "")
	}},
	{"namespace-override-registry", RoleInit, func(t testing.TB) Params {
		c := sampleCluster()
		c.Spec.Registry.PrivateRegistry = "dockerhub.kubekey.local"
		c.Spec.Registry.NamespaceOverride = "kubesphereio"
		return ParamsFromNode(nodeConfig(t, c, "node1"), "", "", "")
	}},
	{"component-args", RoleInit, func(t testing.TB) Params {
		// KubeKey-style flags for slow machines: longer leases, slower etcd timing.
		c := sampleCluster()
		c.Spec.Kubernetes.APIServerArgs = []string{"--request-timeout=2m"}
		c.Spec.Kubernetes.ControllerManagerArgs = []string{"leader-elect-lease-duration=60s", "leader-elect-renew-deadline=40s"}
		c.Spec.Kubernetes.SchedulerArgs = []string{"leader-elect-lease-duration=60s"}
		c.Spec.Kubernetes.KubeletArgs = []string{"node-status-update-frequency=20s"}
		c.Spec.Etcd = cluster.Etcd{HeartbeatInterval: 500, ElectionTimeout: 10000, ExtraArgs: []string{"snapshot-count=5000"}}
		c.Spec.Kubernetes.Patches = []cluster.Patch{{Target: "kube-apiserver", Type: "strategic", Patch: apiserverProbePatch}}
		return ParamsFromNode(nodeConfig(t, c, "node1"), "", "", "")
	}},
	{"init-kube-vip-ipvs", RoleInit, func(t testing.TB) Params {
		// kube-vip holds the VIP (controlPlaneEndpoint.address) on the control planes; kube-proxy
		// in IPVS mode is told to leave it alone.
		c := haCluster()
		c.Spec.ControlPlaneEndpoint.InternalLoadbalancer = cluster.InternalLBKubeVIP
		c.Spec.Kubernetes.ProxyMode = "ipvs"
		return ParamsFromNode(nodeConfig(t, c, "node1"), "", "", "")
	}},
	{"worker-kubelet-args", RoleWorker, func(t testing.TB) Params {
		c := sampleCluster()
		c.Spec.Kubernetes.KubeletArgs = []string{"node-status-update-frequency=20s"}
		c.Spec.Kubernetes.Patches = []cluster.Patch{{Target: "kubeletconfiguration", Type: "merge", Patch: "nodeStatusReportFrequency: 5m\n"}}
		return ParamsFromNode(nodeConfig(t, c, "node2"), "", "", "")
	}},
}

// apiserverProbePatch gives the API server's probes more patience, as on slow machines.
const apiserverProbePatch = `spec:
  containers:
    - name: kube-apiserver
      livenessProbe: {timeoutSeconds: 45, failureThreshold: 20}
      startupProbe: {timeoutSeconds: 45, failureThreshold: 90}
`

// goldenAPIs are the kubeadm APIs the golden files cover: each case is rendered at a release
// of each (testdata/<case>.yaml at the default Kubernetes version, v1beta4;
// testdata/v1beta3/<case>.yaml at the guide's v1.26.5).
var goldenAPIs = []struct{ version, dir string }{
	{"", ""},
	{"v1.26.5", "v1beta3/"},
}

func TestRenderGolden(t *testing.T) {
	for _, api := range goldenAPIs {
		for _, tc := range renderCases {
			t.Run(api.dir+tc.name, func(t *testing.T) {
				p := tc.params(t)
				if api.version != "" {
					p.KubernetesVersion = api.version
				}
				if p.Role != tc.role {
					t.Fatalf("role = %q, want %q", p.Role, tc.role)
				}
				got, err := Render(p)
				if err != nil {
					t.Fatal(err)
				}
				golden.Assert(t, api.dir+tc.name+".yaml", got)
				checkDocuments(t, got, tc.role)
			})
		}
	}
}

// TestKubeProxyExcludesVIP: in IPVS mode kube-proxy's ipvs.excludeCIDRs holds kube-vip's VIP as
// a /32, in both kubeadm APIs (they share the KubeProxyConfiguration); in other modes, and with
// an external load balancer, kube-proxy's configuration has no ipvs block.
func TestKubeProxyExcludesVIP(t *testing.T) {
	for _, tc := range []struct {
		name, lb, mode string
		want           bool
	}{
		{"kube-vip ipvs", cluster.InternalLBKubeVIP, "ipvs", true},
		{"kube-vip iptables", cluster.InternalLBKubeVIP, "iptables", false},
		{"external load balancer ipvs", "", "ipvs", false},
	} {
		for _, version := range []string{"v1.26.5", "v1.37.2"} {
			t.Run(tc.name+" "+version, func(t *testing.T) {
				c := haCluster()
				c.Spec.ControlPlaneEndpoint.InternalLoadbalancer = tc.lb
				c.Spec.Kubernetes.ProxyMode = tc.mode
				c.Spec.Kubernetes.Version = version
				out, err := Render(ParamsFromNode(nodeConfig(t, c, "node1"), "", "", ""))
				if err != nil {
					t.Fatal(err)
				}
				var proxy struct {
					Mode string
					IPVS *struct {
						ExcludeCIDRs []string `yaml:"excludeCIDRs"`
					} `yaml:"ipvs"`
				}
				for _, doc := range strings.Split(string(out), "\n---\n") {
					if strings.Contains(doc, "kind: KubeProxyConfiguration") {
						if err := yaml.Unmarshal([]byte(doc), &proxy); err != nil {
							t.Fatal(err)
						}
					}
				}
				if proxy.Mode != tc.mode {
					t.Fatalf("kube-proxy mode %q, want %s:\n%s", proxy.Mode, tc.mode, out)
				}
				got := proxy.IPVS != nil && slices.Equal(proxy.IPVS.ExcludeCIDRs, []string{"192.168.0.100/32"})
				if got != tc.want || (!tc.want && proxy.IPVS != nil) {
					t.Errorf("ipvs %+v, want excludeCIDRs [192.168.0.100/32]: %v\n%s", proxy.IPVS, tc.want, out)
				}
			})
		}
	}
}

// TestRenderV1Beta3DuplicateFlag: v1beta3 holds one value per flag, so a flag given twice is
// an error naming it rather than a silently dropped value; v1beta4 keeps both.
func TestRenderV1Beta3DuplicateFlag(t *testing.T) {
	p := renderCases[0].params(t)
	p.APIServerArgs = []Arg{{"audit-log-path", "/a"}, {"audit-log-path", "/b"}}
	p.KubernetesVersion = "v1.26.5"
	if _, err := Render(p); err == nil || !strings.Contains(err.Error(), "APIServerArgs: --audit-log-path is given twice") {
		t.Errorf("v1.26.5: Render error %v, want one naming the duplicate flag", err)
	}
	p.KubernetesVersion = "v1.31.13"
	if out, err := Render(p); err != nil || strings.Count(string(out), "audit-log-path") != 2 {
		t.Errorf("v1.31.13: %v\n%s", err, out)
	}
}

// TestRenderKubeadmAPIByVersion: the API follows the version matrix at its boundary.
func TestRenderKubeadmAPIByVersion(t *testing.T) {
	for v, want := range map[string]string{"v1.23.17": "kubeadm.k8s.io/v1beta3", "v1.30.14": "kubeadm.k8s.io/v1beta3", "v1.31.0": "kubeadm.k8s.io/v1beta4", "v1.37.2": "kubeadm.k8s.io/v1beta4"} {
		for _, tc := range renderCases {
			p := tc.params(t)
			p.KubernetesVersion = v
			out, err := Render(p)
			if err != nil {
				t.Fatalf("%s %s: %v", v, tc.name, err)
			}
			if got := strings.Count(string(out), "apiVersion: "+want); got == 0 || strings.Contains(string(out), "timeouts:") != (want == "kubeadm.k8s.io/v1beta4") {
				t.Errorf("%s %s: rendered\n%s\nwant %s documents (timeouts only in v1beta4)", v, tc.name, out, want)
			}
		}
	}
	p := renderCases[0].params(t)
	p.KubernetesVersion = "v1.22.17"
	if _, err := Render(p); err == nil || !strings.Contains(err.Error(), "KubernetesVersion") {
		t.Errorf("v1.22.17: Render error %v, want one naming KubernetesVersion", err)
	}
}

// checkDocuments decodes the output strictly into the package's structs and checks the kinds:
// what Render emits must be exactly what the structs describe.
func checkDocuments(t *testing.T, out []byte, role Role) {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(out))
	dec.KnownFields(true)
	var kinds []string
	for {
		var node yaml.Node
		err := dec.Decode(&node)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("decoding output: %v", err)
		}
		var tm typeMeta
		if err := node.Decode(&tm); err != nil {
			t.Fatal(err)
		}
		var target any
		v1beta3 := tm.APIVersion == "kubeadm.k8s.io/v1beta3"
		switch tm.Kind {
		case "InitConfiguration":
			target = &initConfiguration{}
			if v1beta3 {
				target = &initConfigurationV1Beta3{}
			}
		case "ClusterConfiguration":
			target = &clusterConfiguration{}
			if v1beta3 {
				target = &clusterConfigurationV1Beta3{}
			}
		case "KubeletConfiguration":
			target = &kubeletConfiguration{}
		case "KubeProxyConfiguration":
			target = &kubeProxyConfiguration{}
		case "JoinConfiguration":
			target = &joinConfiguration{}
			if v1beta3 {
				target = &joinConfigurationV1Beta3{}
			}
		default:
			t.Fatalf("unexpected kind %q", tm.Kind)
		}
		var buf bytes.Buffer
		if err := yaml.NewEncoder(&buf).Encode(&node); err != nil {
			t.Fatal(err)
		}
		strict := yaml.NewDecoder(&buf)
		strict.KnownFields(true)
		if err := strict.Decode(target); err != nil {
			t.Errorf("%s: %v", tm.Kind, err)
		}
		kinds = append(kinds, tm.Kind)
	}
	want := []string{"JoinConfiguration"}
	if role == RoleInit {
		want = []string{"InitConfiguration", "ClusterConfiguration", "KubeletConfiguration", "KubeProxyConfiguration"}
	}
	if !slices.Equal(kinds, want) {
		t.Errorf("kinds = %v, want %v", kinds, want)
	}
}

func TestParamsFromNode(t *testing.T) {
	sample, ha := sampleCluster(), haCluster()
	for _, tc := range []struct {
		name                       string
		c                          *cluster.Cluster
		host, nodeName, adv, endpt string
		check                      func(t *testing.T, p Params)
	}{
		{name: "init uses the static address", c: sample, host: "node1", check: func(t *testing.T, p Params) {
			eq(t, "Role", p.Role, RoleInit)
			eq(t, "AdvertiseAddress", p.AdvertiseAddress, "192.168.0.11")
			eq(t, "NodeIP", p.NodeIP, "192.168.0.11")
			eq(t, "ControlPlaneEndpoint", p.ControlPlaneEndpoint, "lb.kubesphere.local:6443")
			eq(t, "APIServerEndpoint", p.APIServerEndpoint, "lb.kubesphere.local:6443")
			eq(t, "Schedulable", p.Schedulable, false)
			eq(t, "TokenTTL", p.TokenTTL, SeedTokenTTL)
			eq(t, "CertificateKey", p.CertificateKey, "")
			eq(t, "DNSDomain", p.DNSDomain, "cluster.local")
			eq(t, "ImageRepository", p.ImageRepository, "")
			eq(t, "CertSANs", strings.Join(p.CertSANs, ","), "lb.kubesphere.local,node1,192.168.0.11,127.0.0.1,localhost")
		}},
		{name: "explicit advertise address wins", c: sample, host: "node1", adv: "10.0.0.5", check: func(t *testing.T, p Params) {
			eq(t, "AdvertiseAddress", p.AdvertiseAddress, "10.0.0.5")
			eq(t, "NodeIP", p.NodeIP, "192.168.0.11")
		}},
		{name: "HA SANs cover every control plane and the load balancer", c: ha, host: "node2", check: func(t *testing.T, p Params) {
			eq(t, "Role", p.Role, RoleControlPlane)
			eq(t, "CertSANs", strings.Join(p.CertSANs, ","),
				"lb.kubesphere.local,192.168.0.100,node1,192.168.0.11,node2,192.168.0.12,node3,192.168.0.13,api.example.com,203.0.113.7,127.0.0.1,localhost")
		}},
		{name: "control plane that is a worker is schedulable", c: ha, host: "node3", check: func(t *testing.T, p Params) {
			eq(t, "Schedulable", p.Schedulable, true)
		}},
		{name: "worker has no advertise address", c: sample, host: "node2", endpt: "192.168.0.11:6443", check: func(t *testing.T, p Params) {
			eq(t, "Role", p.Role, RoleWorker)
			eq(t, "AdvertiseAddress", p.AdvertiseAddress, "")
			eq(t, "NodeIP", p.NodeIP, "192.168.0.12")
			eq(t, "APIServerEndpoint", p.APIServerEndpoint, "192.168.0.11:6443")
			eq(t, "CACertHashes", strings.Join(p.CACertHashes, ","), testPin)
		}},
		{name: "generic worker takes the name given on the machine", c: sample, nodeName: "node1", check: func(t *testing.T, p Params) {
			// Even a name that matches a host of the file must not borrow that host's address.
			eq(t, "NodeName", p.NodeName, "node1")
			eq(t, "NodeIP", p.NodeIP, "")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.check(t, ParamsFromNode(nodeConfig(t, tc.c, tc.host), tc.nodeName, tc.adv, tc.endpt))
		})
	}
}

func TestImageRepositories(t *testing.T) {
	for _, tc := range []struct {
		name                          string
		imageRepo, private, namespace string
		wantRepo, wantDNS             string
	}{
		{name: "kubeadm default", wantRepo: "", wantDNS: ""},
		{name: "explicit repository wins", imageRepo: "repo.example/k8s", private: "r.example", wantRepo: "repo.example/k8s"},
		{name: "private registry mirrors upstream paths", private: "r.example:5000", wantRepo: "r.example:5000", wantDNS: "r.example:5000/coredns"},
		{name: "scheme and slash are dropped", private: "https://r.example/", wantRepo: "r.example", wantDNS: "r.example/coredns"},
		{name: "namespace override flattens", private: "r.example", namespace: "kubesphereio", wantRepo: "r.example/kubesphereio"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := sampleCluster()
			c.Spec.Kubernetes.ImageRepository = tc.imageRepo
			c.Spec.Registry.PrivateRegistry, c.Spec.Registry.NamespaceOverride = tc.private, tc.namespace
			repo, dns := imageRepositories(c)
			eq(t, "repository", repo, tc.wantRepo)
			eq(t, "dns repository", dns, tc.wantDNS)
		})
	}
}

func TestValidate(t *testing.T) {
	good := ParamsFromNode(nodeConfig(t, sampleCluster(), "node2"), "", "", "")
	if err := good.Validate(); err != nil {
		t.Fatalf("worker params: %v", err)
	}
	for _, tc := range []struct {
		name   string
		modify func(p *Params)
		want   string
	}{
		{"bad role", func(p *Params) { p.Role = "master" }, "Role"},
		{"bad token", func(p *Params) { p.Token = "not-a-token" }, "Token"},
		{"no pin", func(p *Params) { p.CACertHashes = nil }, "CACertHashes"},
		{"bad pin", func(p *Params) { p.CACertHashes = []string{"md5:00"} }, "CACertHashes[0]"},
		{"no endpoint", func(p *Params) { p.APIServerEndpoint = "lb.kubesphere.local" }, "APIServerEndpoint"},
		{"loopback advertise", func(p *Params) { p.Role, p.AdvertiseAddress = RoleControlPlane, "127.0.0.1" }, "AdvertiseAddress"},
		{"bad node ip", func(p *Params) { p.NodeIP = "node2" }, "NodeIP"},
		{"bad certificate key", func(p *Params) { p.CertificateKey = "xyz" }, "CertificateKey"},
		{"init without version", func(p *Params) { p.Role, p.KubernetesVersion = RoleInit, "" }, "KubernetesVersion"},
		{"init with bad proxy mode", func(p *Params) { p.Role, p.ProxyMode = RoleInit, "userspace" }, "ProxyMode"},
		{"init with bad subnet", func(p *Params) { p.Role, p.PodSubnet = RoleInit, "10.0.0.0" }, "PodSubnet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := good
			p.CACertHashes = slices.Clone(good.CACertHashes)
			tc.modify(&p)
			err := p.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want+":") {
				t.Fatalf("Validate() = %v, want an error about %s", err, tc.want)
			}
			if strings.Contains(err.Error(), testToken) || (p.Token != testToken && strings.Contains(err.Error(), p.Token)) {
				t.Errorf("the error reveals the token: %v", err)
			}
			if _, err := Render(p); err == nil {
				t.Error("Render accepted invalid parameters")
			}
		})
	}
}

func TestWritePKI(t *testing.T) {
	s := testSecrets(t)
	cp, err := cluster.NodeConfigFor(sampleCluster(), s, "node1")
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	written, err := WritePKI(root, cp.Secrets)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		mode os.FileMode
		data []byte
	}{
		"ca.key": {0o600, s.CAKey}, "ca.crt": {0o644, s.CACert},
		"etcd/ca.key": {0o600, s.EtcdCAKey}, "etcd/ca.crt": {0o644, s.EtcdCACert},
		"front-proxy-ca.key": {0o600, s.FrontProxyCAKey}, "front-proxy-ca.crt": {0o644, s.FrontProxyCACert},
		"sa.key": {0o600, s.ServiceAccountKey}, "sa.pub": {0o600, s.ServiceAccountPub},
	}
	if len(written) != len(want) {
		t.Errorf("wrote %v, want the %d files of %v", written, len(want), want)
	}
	for name, w := range want {
		path := filepath.Join(root, PKIDir, name)
		if !slices.Contains(written, filepath.Join(PKIDir, name)) {
			t.Errorf("%s not reported as written", name)
		}
		st, err := os.Stat(path)
		if err != nil {
			t.Error(err)
			continue
		}
		if st.Mode().Perm() != w.mode {
			t.Errorf("%s: mode %o, want %o", name, st.Mode().Perm(), w.mode)
		}
		if data, _ := os.ReadFile(path); !bytes.Equal(data, w.data) {
			t.Errorf("%s: content differs from the seed", name)
		}
	}
	for _, d := range []string{PKIDir, filepath.Join(PKIDir, "etcd")} {
		if st, err := os.Stat(filepath.Join(root, d)); err != nil || st.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v, mode %v; want a 0700 directory", d, err, st)
		}
	}

	// Again, over a directory someone widened: same files, tightened directory, no leftovers.
	if err := os.Chmod(filepath.Join(root, PKIDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if again, err := WritePKI(root, cp.Secrets); err != nil || !slices.Equal(again, written) {
		t.Fatalf("second WritePKI = %v, %v; want %v", again, err, written)
	}
	if st, _ := os.Stat(filepath.Join(root, PKIDir)); st.Mode().Perm() != 0o700 {
		t.Errorf("pki directory mode %o after rewrite, want 0700", st.Mode().Perm())
	}
	filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if strings.Contains(d.Name(), ".tmp-") {
			t.Errorf("temporary file left behind: %s", path)
		}
		return nil
	})
}

func TestWritePKIWorkerWritesNothing(t *testing.T) {
	for _, host := range []string{"node2", ""} {
		nc := nodeConfig(t, sampleCluster(), host)
		root := t.TempDir()
		written, err := WritePKI(root, nc.Secrets)
		if err != nil || len(written) != 0 {
			t.Fatalf("WritePKI(worker %q) = %v, %v; want nothing written", host, written, err)
		}
		if _, err := os.Stat(filepath.Join(root, "etc")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("worker %q: %s/etc exists (%v); kubeadm join refuses a worker with a CA file", host, root, err)
		}
	}
}

func TestWritePKIRejectsBadPairs(t *testing.T) {
	s := testSecrets(t)
	base, err := cluster.NodeConfigFor(sampleCluster(), s, "node1")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		modify func(ns *cluster.NodeSecrets)
		want   string
	}{
		{"mismatched CA pair", func(ns *cluster.NodeSecrets) { ns.CAKey = ns.EtcdCAKey }, "cluster CA certificate and key do not form a pair"},
		{"key without certificate", func(ns *cluster.NodeSecrets) { ns.FrontProxyCACert = "" }, "front-proxy-ca.crt is missing"},
		{"foreign sa.pub", func(ns *cluster.NodeSecrets) { ns.ServiceAccountKey = ns.CAKey }, "does not belong"},
		{"garbage key", func(ns *cluster.NodeSecrets) { ns.EtcdCAKey = "not pem" }, "etcd CA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := base.Secrets
			tc.modify(&ns)
			root := t.TempDir()
			_, err := WritePKI(root, ns)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("WritePKI() = %v, want an error containing %q", err, tc.want)
			}
			// Checked before writing: nothing half-done.
			if _, err := os.Stat(filepath.Join(root, "etc")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("files were written despite the error")
			}
		})
	}
}

func eq[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func TestWritePatches(t *testing.T) {
	root := host.Root(t.TempDir())
	p := Params{Patches: []cluster.Patch{
		{Target: "kube-apiserver", Type: "strategic", Patch: apiserverProbePatch},
		{Target: "kubeletconfiguration", Type: "merge", Patch: "nodeStatusReportFrequency: 5m\n"},
		{Target: "kube-apiserver", Type: "json", Patch: "- {op: add, path: /metadata/labels/x, value: y}\n"},
	}}
	if err := WritePatches(root, p); err != nil {
		t.Fatal(err)
	}
	// A file from an earlier cluster file must not be applied again.
	stale := path.Join(PatchesDir, "etcd000+strategic.yaml")
	if _, err := root.WriteFile(stale, []byte("spec: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WritePatches(root, p); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(root.Path(PatchesDir))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
		if info, _ := e.Info(); info.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v", e.Name(), info.Mode().Perm())
		}
	}
	want := []string{"kube-apiserver000+strategic.yaml", "kube-apiserver002+json.yaml", "kubeletconfiguration001+merge.yaml"}
	if !slices.Equal(names, want) {
		t.Errorf("patch files %v, want %v", names, want)
	}
	if got, _ := root.ReadFile(path.Join(PatchesDir, want[0])); string(got) != apiserverProbePatch {
		t.Errorf("patch content %q", got)
	}
	// Without patches nothing is written and kubeadm is not pointed at a directory.
	if err := WritePatches(root, Params{}); err != nil || (Params{}).patches() != nil {
		t.Errorf("no patches: err %v, patches %v", err, (Params{}).patches())
	}
}
