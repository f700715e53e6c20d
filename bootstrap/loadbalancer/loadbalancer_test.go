package loadbalancer

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/ksboot/ksboot/bootstrap/host"
	"github.com/ksboot/ksboot/cluster"
	"github.com/ksboot/ksboot/internal/golden"
	"github.com/ksboot/ksboot/versions"
)

// haCluster is three control planes (cp1..cp3) and two workers, w2 on DHCP, with the internal
// load balancer lb ("": an external one).
func haCluster(t testing.TB, lb string) *cluster.Cluster {
	t.Helper()
	c := cluster.Sample(cluster.SampleOptions{})
	c.Spec.Hosts = []cluster.Host{
		{Name: "cp1", Address: "192.168.0.11/24", Interface: "ens3"},
		{Name: "cp2", Address: "192.168.0.12/24", Interface: "ens3"},
		{Name: "cp3", Address: "192.168.0.13/24", MAC: "52:54:00:00:00:13"},
		{Name: "w1", Address: "192.168.0.21/24", Interface: "ens3"},
		{Name: "w2"},
	}
	c.Spec.RoleGroups = cluster.RoleGroups{
		Etcd: []string{"cp1", "cp2", "cp3"}, ControlPlane: []string{"cp1", "cp2", "cp3"}, Worker: []string{"w1", "w2"},
	}
	c.Spec.ControlPlaneEndpoint.InternalLoadbalancer = lb
	if lb != cluster.InternalLBHAProxy {
		c.Spec.ControlPlaneEndpoint.Address = "192.168.0.100" // kube-vip's VIP, or the operator's load balancer
	}
	c.Spec.Discovery.Mode = ""
	cluster.SetDefaults(c)
	if ps := cluster.Validate(c, nil); ps.Err() != nil {
		t.Fatalf("test cluster is invalid: %v", ps.Err())
	}
	return c
}

// TestFiles pins which node holds which file when: haproxy and its configuration on every node
// that is not a control plane, before and after kubeadm; kube-vip on the init node before
// kubeadm init (with super-admin.conf from v1.29) and on every control plane after kubeadm,
// with admin.conf.
func TestFiles(t *testing.T) {
	for _, tc := range []struct {
		name    string
		lb      string
		version string
		node    Node
		stage   Stage
		want    []string // paths, in order
		conf    string   // the kube-vip pod's kubeconfig on the host
	}{
		{"no load balancer", "", "", Node{Name: "w1"}, BeforeKubeadm, nil, ""},
		{"haproxy worker before join", cluster.InternalLBHAProxy, "", Node{Name: "w1"}, BeforeKubeadm, []string{HAProxyConfigFile, HAProxyManifest}, ""},
		{"haproxy worker after join", cluster.InternalLBHAProxy, "", Node{Name: "w2"}, AfterKubeadm, []string{HAProxyConfigFile, HAProxyManifest}, ""},
		{"haproxy generic worker", cluster.InternalLBHAProxy, "", Node{Name: "worker-0123456789"}, BeforeKubeadm, []string{HAProxyConfigFile, HAProxyManifest}, ""},
		{"haproxy control plane", cluster.InternalLBHAProxy, "", Node{Name: "cp1", ControlPlane: true, Init: true}, BeforeKubeadm, nil, ""},
		{"kube-vip init node before init v1.37", cluster.InternalLBKubeVIP, "v1.37.2", Node{Name: "cp1", ControlPlane: true, Init: true}, BeforeKubeadm, []string{KubeVIPManifest}, SuperAdminConf},
		{"kube-vip init node before init v1.29", cluster.InternalLBKubeVIP, "v1.29.15", Node{Name: "cp1", ControlPlane: true, Init: true}, BeforeKubeadm, []string{KubeVIPManifest}, SuperAdminConf},
		{"kube-vip init node before init v1.28", cluster.InternalLBKubeVIP, "v1.28.15", Node{Name: "cp1", ControlPlane: true, Init: true}, BeforeKubeadm, []string{KubeVIPManifest}, AdminConf},
		{"kube-vip init node after init", cluster.InternalLBKubeVIP, "v1.37.2", Node{Name: "cp1", ControlPlane: true, Init: true}, AfterKubeadm, []string{KubeVIPManifest}, AdminConf},
		{"kube-vip joiner before join", cluster.InternalLBKubeVIP, "v1.37.2", Node{Name: "cp2", ControlPlane: true}, BeforeKubeadm, nil, ""},
		{"kube-vip joiner after join", cluster.InternalLBKubeVIP, "v1.37.2", Node{Name: "cp2", ControlPlane: true}, AfterKubeadm, []string{KubeVIPManifest}, AdminConf},
		{"kube-vip worker", cluster.InternalLBKubeVIP, "v1.37.2", Node{Name: "w1"}, AfterKubeadm, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := haCluster(t, tc.lb)
			if tc.version != "" {
				c.Spec.Kubernetes.Version = tc.version
			}
			files, err := Files(c, tc.node, tc.stage)
			if err != nil {
				t.Fatal(err)
			}
			var paths []string
			for _, f := range files {
				paths = append(paths, f.Path)
				if f.Path == KubeVIPManifest {
					if got := podOf(t, f.Data).Spec.Volumes[0].HostPath.Path; got != tc.conf {
						t.Errorf("kube-vip uses %s, want %s", got, tc.conf)
					}
				}
			}
			if !slices.Equal(paths, tc.want) {
				t.Errorf("files %v, want %v", paths, tc.want)
			}
		})
	}
}

func podOf(t *testing.T, data []byte) *corev1.Pod {
	t.Helper()
	var p corev1.Pod
	if err := yaml.UnmarshalStrict(data, &p); err != nil {
		t.Fatalf("not a Pod: %v\n%s", err, data)
	}
	if p.Kind != "Pod" || p.APIVersion != "v1" || p.Namespace != "kube-system" || !p.Spec.HostNetwork {
		t.Errorf("not a host-network static pod in kube-system: %+v", p.TypeMeta)
	}
	return &p
}

// TestGolden pins haproxy.cfg, the haproxy pod and the kube-vip pod of the init node (during
// kubeadm init) and of a joined control plane whose interface is left to kube-vip.
func TestGolden(t *testing.T) {
	hc := haCluster(t, cluster.InternalLBHAProxy)
	files, err := Files(hc, Node{Name: "w1"}, BeforeKubeadm)
	if err != nil {
		t.Fatal(err)
	}
	golden.Assert(t, "haproxy.cfg", files[0].Data)
	golden.Assert(t, "haproxy.yaml", files[1].Data)
	pod := podOf(t, files[1].Data)
	if pod.Spec.Containers[0].Image != versions.HAProxyImage {
		t.Errorf("haproxy image %s, want %s", pod.Spec.Containers[0].Image, versions.HAProxyImage)
	}

	kc := haCluster(t, cluster.InternalLBKubeVIP)
	for _, tc := range []struct {
		file  string
		node  Node
		stage Stage
	}{
		{"kube-vip-init.yaml", Node{Name: "cp1", ControlPlane: true, Init: true}, BeforeKubeadm},
		{"kube-vip.yaml", Node{Name: "cp3", ControlPlane: true}, AfterKubeadm},
	} {
		files, err := Files(kc, tc.node, tc.stage)
		if err != nil {
			t.Fatal(err)
		}
		golden.Assert(t, tc.file, files[0].Data)
		podOf(t, files[0].Data)
	}
}

// TestImagesFollowTheRegistry: the load balancer's images are renamed for spec.registry like
// every other image, so a private registry laid out for KubeKey serves them.
func TestImagesFollowTheRegistry(t *testing.T) {
	for _, tc := range []struct {
		lb, registry, namespace string
		want                    string
	}{
		{cluster.InternalLBHAProxy, "", "", "docker.io/library/haproxy:" + versions.HAProxyVersion},
		{cluster.InternalLBKubeVIP, "", "", "ghcr.io/kube-vip/kube-vip:" + versions.KubeVIPVersion},
		{cluster.InternalLBHAProxy, "dockerhub.kubekey.local", "kubesphereio", "dockerhub.kubekey.local/kubesphereio/haproxy:" + versions.HAProxyVersion},
		{cluster.InternalLBKubeVIP, "dockerhub.kubekey.local", "kubesphereio", "dockerhub.kubekey.local/kubesphereio/kube-vip:" + versions.KubeVIPVersion},
		{cluster.InternalLBKubeVIP, "registry.example.internal:5000", "", "registry.example.internal:5000/kube-vip/kube-vip:" + versions.KubeVIPVersion},
	} {
		c := haCluster(t, tc.lb)
		c.Spec.Registry.PrivateRegistry, c.Spec.Registry.NamespaceOverride = tc.registry, tc.namespace
		if got := Images(c); !slices.Equal(got, []string{tc.want}) {
			t.Errorf("%s via %q/%q: images %v, want %s", tc.lb, tc.registry, tc.namespace, got, tc.want)
		}
		node := Node{Name: "w1"}
		if tc.lb == cluster.InternalLBKubeVIP {
			node = Node{Name: "cp1", ControlPlane: true}
		}
		files, err := Files(c, node, AfterKubeadm)
		if err != nil {
			t.Fatal(err)
		}
		if got := podOf(t, files[len(files)-1].Data).Spec.Containers[0].Image; got != tc.want {
			t.Errorf("%s via %q/%q: the pod runs %s, want %s", tc.lb, tc.registry, tc.namespace, got, tc.want)
		}
	}
	if got := Images(haCluster(t, "")); got != nil {
		t.Errorf("no internal load balancer, images %v", got)
	}
}

// TestHAProxyChecksumFollowsConfig: a changed configuration (another control plane) changes the
// pod's annotation, so the kubelet restarts haproxy with it.
func TestHAProxyChecksumFollowsConfig(t *testing.T) {
	c := haCluster(t, cluster.InternalLBHAProxy)
	before, _ := Files(c, Node{Name: "w1"}, AfterKubeadm)
	c.Spec.Hosts[2].Address = "192.168.0.23/24"
	after, _ := Files(c, Node{Name: "w1"}, AfterKubeadm)
	if string(before[0].Data) == string(after[0].Data) || string(before[1].Data) == string(after[1].Data) {
		t.Errorf("a new control-plane address changed neither the configuration nor the pod")
	}
	if !strings.Contains(string(after[0].Data), "server cp3 192.168.0.23:6443 check check-ssl verify none") {
		t.Errorf("haproxy.cfg lacks the new address:\n%s", after[0].Data)
	}
}

func TestEndpointIP(t *testing.T) {
	h := haCluster(t, cluster.InternalLBHAProxy)
	k := haCluster(t, cluster.InternalLBKubeVIP)
	for _, tc := range []struct {
		c    *cluster.Cluster
		node Node
		want string
	}{
		{h, Node{Name: "w1"}, "127.0.0.1"},
		{h, Node{Name: "worker-0123456789"}, "127.0.0.1"},
		{h, Node{Name: "cp2", ControlPlane: true}, "192.168.0.12"},
		{k, Node{Name: "w1"}, ""},
		{k, Node{Name: "cp2", ControlPlane: true}, ""},
	} {
		if got := EndpointIP(tc.c, tc.node); got != tc.want {
			t.Errorf("%s %s: %q, want %q", Kind(tc.c), tc.node.Name, got, tc.want)
		}
	}
}

func TestWriteReportsChanges(t *testing.T) {
	root := host.Root(t.TempDir())
	files, err := Files(haCluster(t, cluster.InternalLBHAProxy), Node{Name: "w1"}, BeforeKubeadm)
	if err != nil {
		t.Fatal(err)
	}
	if changed, err := Write(root, files); err != nil || len(changed) != 2 {
		t.Fatalf("first write: changed %v, %v", changed, err)
	}
	if changed, err := Write(root, files); err != nil || len(changed) != 0 {
		t.Errorf("second write: changed %v, %v", changed, err)
	}
	fi, err := os.Stat(root.Path(HAProxyConfigFile))
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("haproxy.cfg: %v, mode %v (the image's unprivileged haproxy must read it)", err, fi.Mode())
	}
}

// TestHAProxyAcceptsConfig has the real haproxy check the configurations ksboot writes
// (`haproxy -c`), for IPv4 and IPv6 control planes.
func TestHAProxyAcceptsConfig(t *testing.T) {
	haproxy, err := exec.LookPath("haproxy")
	if err != nil {
		// Debian installs it in /usr/sbin, which is not on every user's PATH.
		if st, serr := os.Stat("/usr/sbin/haproxy"); serr == nil && st.Mode()&0o111 != 0 {
			haproxy = "/usr/sbin/haproxy"
		} else {
			t.Skip("haproxy is not installed (Debian package haproxy; hack/install-deps.sh installs it): the real haproxy cannot judge haproxy.cfg")
		}
	}
	v4 := haCluster(t, cluster.InternalLBHAProxy)
	v6 := haCluster(t, cluster.InternalLBHAProxy)
	for i := range v6.Spec.Hosts[:3] {
		v6.Spec.Hosts[i].Address = "fd00::1" + string(rune('1'+i)) + "/64"
	}
	for name, c := range map[string]*cluster.Cluster{"ipv4": v4, "ipv6": v6} {
		t.Run(name, func(t *testing.T) {
			cfg, err := HAProxyConfigFor(c)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "haproxy.cfg")
			if err := os.WriteFile(path, cfg.Render(), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.CommandContext(t.Context(), haproxy, "-c", "-f", path).CombinedOutput()
			if err != nil {
				t.Fatalf("haproxy -c: %v\n%s\n%s", err, out, cfg.Render())
			}
			if strings.Contains(strings.ToLower(string(out)), "warning") {
				t.Errorf("haproxy -c warns:\n%s", out)
			}
			t.Logf("haproxy -c: %s", strings.TrimSpace(string(out)))
		})
	}
}

// TestKubeVIPLeaderElection: kube-vip's lease timing is kube-vip's default unless the cluster
// file tunes it, field by field.
func TestKubeVIPLeaderElection(t *testing.T) {
	env := func(c *cluster.Cluster) map[string]string {
		out := map[string]string{}
		for _, e := range KubeVIPPod(c, c.Spec.RoleGroups.ControlPlane[0], "/etc/kubernetes/admin.conf").Spec.Containers[0].Env {
			out[e.Name] = e.Value
		}
		return out
	}
	c := cluster.Sample(cluster.SampleOptions{})
	c.Spec.ControlPlaneEndpoint.InternalLoadbalancer = cluster.InternalLBKubeVIP
	c.Spec.ControlPlaneEndpoint.Address = "192.168.0.100"
	if e := env(c); e["vip_leaseduration"] != "5" || e["vip_renewdeadline"] != "3" || e["vip_retryperiod"] != "1" {
		t.Errorf("defaults: %v, want kube-vip's 5/3/1", e)
	}
	c.Spec.ControlPlaneEndpoint.KubeVIPTuning = &cluster.KubeVIPTuning{LeaseDuration: 60, RenewDeadline: 40}
	if e := env(c); e["vip_leaseduration"] != "60" || e["vip_renewdeadline"] != "40" || e["vip_retryperiod"] != "1" {
		t.Errorf("tuned: %v, want 60/40 and the default retry period", e)
	}
}
