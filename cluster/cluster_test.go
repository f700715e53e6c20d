package cluster

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ksboot/ksboot/internal/golden"
)

func TestValidFiles(t *testing.T) {
	files, _ := filepath.Glob("testdata/valid/*.yaml")
	if len(files) == 0 {
		t.Fatal("no test files")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			c, ps, err := Load(f)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			for _, p := range ps {
				t.Logf("warning: %s", p)
			}
			if c.Spec.Kubernetes.ContainerManager != "containerd" || c.Spec.ControlPlaneEndpoint.Port != 6443 {
				t.Errorf("defaults not applied: %+v", c.Spec)
			}
		})
	}
}

func TestRangesExpand(t *testing.T) {
	c, _, err := Load("testdata/valid/three-nodes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.Spec.RoleGroups.Worker, ","); got != "w1,w2" {
		t.Errorf("worker range: got %s", got)
	}
}

// TestInvalidFiles pins the full list of problems, with lines and field paths, for each file.
func TestInvalidFiles(t *testing.T) {
	files, _ := filepath.Glob("testdata/invalid/*.yaml")
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, ps, err := Load(f)
			var b strings.Builder
			if err != nil && !IsInvalid(err) {
				t.Fatalf("want an InvalidError, got %T: %v", err, err)
			}
			if ie, ok := err.(*InvalidError); ok && len(ps) == 0 {
				ps = ie.Problems
			}
			for _, p := range ps.sorted() {
				b.WriteString(p.String() + "\n")
			}
			golden.Assert(t, strings.TrimSuffix(f[len("testdata/"):], ".yaml")+".golden", []byte(b.String()))
		})
	}
}

func TestProblemsNameLineAndField(t *testing.T) {
	_, _, err := Load("testdata/invalid/many.yaml")
	if err == nil {
		t.Fatal("want errors")
	}
	msg := err.Error()
	for _, want := range []string{
		"testdata/invalid/many.yaml:9: spec.hosts[0].pasword: unknown field",
		"testdata/invalid/many.yaml:10: spec.hosts[1].name: duplicate host name \"node1\"",
		"spec.roleGroups.master: unknown field: use control-plane",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not contain %q:\n%s", want, msg)
		}
	}
}

func TestSemanticChecks(t *testing.T) {
	base := func() *Cluster {
		c := Sample(SampleOptions{})
		return c
	}
	cases := []struct {
		name    string
		mutate  func(*Cluster)
		field   string
		warning bool
	}{
		{"duplicate address", func(c *Cluster) { c.Spec.Hosts[1].Address = "192.168.0.11/24" }, "spec.hosts[1].address", false},
		{"unknown host in role group", func(c *Cluster) { c.Spec.RoleGroups.Worker = append(c.Spec.RoleGroups.Worker, "ghost") }, "spec.roleGroups.worker[2]", false},
		{"no control plane", func(c *Cluster) { c.Spec.RoleGroups.ControlPlane = nil }, "spec.roleGroups.control-plane", false},
		{"no etcd", func(c *Cluster) { c.Spec.RoleGroups.Etcd = nil }, "spec.roleGroups.etcd", false},
		{"even etcd", func(c *Cluster) {
			c.Spec.RoleGroups.Etcd = []string{"node1", "node2"}
			c.Spec.RoleGroups.ControlPlane = []string{"node1", "node2"}
			c.Spec.ControlPlaneEndpoint.Address = "192.168.0.100"
		}, "spec.roleGroups.etcd", true},
		{"uppercase host", func(c *Cluster) { c.Spec.Hosts[0].Name = "Node1" }, "spec.hosts[0].name", false},
		{"pods overlap services", func(c *Cluster) { c.Spec.Network.KubeServiceCIDR = "10.233.0.0/16" }, "spec.network.kubeServiceCIDR", false},
		{"host overlaps pods", func(c *Cluster) { c.Spec.Hosts[2].Address = "10.233.70.3/24"; c.Spec.Hosts[2].Gateway = "" }, "spec.hosts[2].address", false},
		{"malformed version", func(c *Cluster) { c.Spec.Kubernetes.Version = "1.26" }, "spec.kubernetes.version", false},
		{"two control planes without endpoint", func(c *Cluster) {
			c.Spec.RoleGroups.ControlPlane = []string{"node1", "node2"}
			c.Spec.RoleGroups.Etcd = []string{"node1", "node2", "node3"}
			c.Spec.RoleGroups.ControlPlane = append(c.Spec.RoleGroups.ControlPlane, "node3")
		}, "spec.controlPlaneEndpoint.address", false},
		{"incompatible kubesphere", func(c *Cluster) {
			c.Spec.KubeSphere = KubeSphere{Enabled: true, Version: "v3.4.1"}
		}, "spec.kubesphere.version", true},
		{"v3 password ks-installer refuses", func(c *Cluster) {
			c.Spec.Kubernetes.Version = "v1.26.5"
			c.Spec.KubeSphere = KubeSphere{Enabled: true, Version: "v3.4.1", Configuration: map[string]any{
				"authentication": map[string]any{"adminPassword": "ALLUPPER123"}}}
		}, "spec.kubesphere.configuration.authentication.adminPassword", false},
		{"v3.3.0 ignores the password", func(c *Cluster) {
			c.Spec.Kubernetes.Version = "v1.24.17"
			c.Spec.KubeSphere = KubeSphere{Enabled: true, Version: "v3.3.0", Configuration: map[string]any{
				"authentication": map[string]any{"adminPassword": "Secr3tPw"}}}
		}, "spec.kubesphere.configuration.authentication.adminPassword", true},
		{"static discovery without address", func(c *Cluster) {
			c.Spec.Discovery.Mode = "static"
			c.Spec.Hosts[0].Address = ""
			c.Spec.Hosts[0].Gateway = ""
			c.Spec.Hosts[0].DNS = nil
		}, "spec.discovery.mode", false},
		{"bad mirror", func(c *Cluster) { c.Spec.Registry.RegistryMirrors = []string{"mirror.example.com"} }, "spec.registry.registryMirrors[0]", false},
		{"etcd off control plane", func(c *Cluster) { c.Spec.RoleGroups.Etcd = []string{"node2"} }, "spec.roleGroups.etcd[0]", false},
		{"flag without value", func(c *Cluster) {
			c.Spec.Kubernetes.ControllerManagerArgs = []string{"leader-elect-lease-duration=60s", "--profiling"}
		}, "spec.kubernetes.controllerManagerArgs[1]", false},
		{"election shorter than five heartbeats", func(c *Cluster) { c.Spec.Etcd.ElectionTimeout = 1000 }, "spec.etcd.electionTimeout", false},
		{"election over etcd's maximum", func(c *Cluster) { c.Spec.Etcd.ElectionTimeout = 60000 }, "spec.etcd.electionTimeout", false},
		{"bad etcd flag", func(c *Cluster) { c.Spec.Etcd.ExtraArgs = []string{"=1"} }, "spec.etcd.extraArgs[0]", false},
		{"unknown patch target", func(c *Cluster) {
			c.Spec.Kubernetes.Patches = []Patch{{Target: "kube-apiserver", Type: "strategic", Patch: "spec: {}"}, {Target: "apiserver", Type: "strategic", Patch: "spec: {}"}}
		}, "spec.kubernetes.patches[1].target", false},
		{"unknown patch type", func(c *Cluster) {
			c.Spec.Kubernetes.Patches = []Patch{{Target: "etcd", Type: "jsonpatch", Patch: "spec: {}"}}
		}, "spec.kubernetes.patches[0].type", false},
		{"strategic patch as a list", func(c *Cluster) {
			c.Spec.Kubernetes.Patches = []Patch{{Target: "etcd", Type: "strategic", Patch: "- {op: add, path: /x, value: 1}"}}
		}, "spec.kubernetes.patches[0].patch", false},
		{"json patch as an object", func(c *Cluster) {
			c.Spec.Kubernetes.Patches = []Patch{{Target: "etcd", Type: "json", Patch: "spec: {}"}}
		}, "spec.kubernetes.patches[0].patch", false},
		{"json patch without op", func(c *Cluster) {
			c.Spec.Kubernetes.Patches = []Patch{{Target: "etcd", Type: "json", Patch: "- {path: /x, value: 1}"}}
		}, "spec.kubernetes.patches[0].patch", false},
		{"empty patch", func(c *Cluster) {
			c.Spec.Kubernetes.Patches = []Patch{{Target: "etcd", Type: "merge", Patch: ""}}
		}, "spec.kubernetes.patches[0].patch", false},
		{"patch that is a single value", func(c *Cluster) {
			c.Spec.Kubernetes.Patches = []Patch{{Target: "etcd", Type: "strategic", Patch: "livenessProbe"}}
		}, "spec.kubernetes.patches[0].patch", false},
		{"haproxy control plane without an address", func(c *Cluster) {
			threeControlPlanes(c)
			c.Spec.ControlPlaneEndpoint.InternalLoadbalancer = InternalLBHAProxy
			c.Spec.Hosts[1].Address, c.Spec.Hosts[1].Gateway = "", ""
		}, "spec.hosts[1].address", false},
		{"DHCP control plane behind a load balancer", func(c *Cluster) {
			threeControlPlanes(c)
			c.Spec.ControlPlaneEndpoint.Address = "192.168.0.100"
			c.Spec.Hosts[2].Address, c.Spec.Hosts[2].Gateway, c.Spec.Hosts[2].DNS = "", "", nil
		}, "spec.hosts[2].address", false},
		{"DHCP control plane with kube-vip", func(c *Cluster) {
			threeControlPlanes(c)
			c.Spec.ControlPlaneEndpoint.InternalLoadbalancer = InternalLBKubeVIP
			c.Spec.ControlPlaneEndpoint.Address = "192.168.0.100"
			c.Spec.Hosts[0].Address, c.Spec.Hosts[0].Gateway, c.Spec.Hosts[0].DNS = "", "", nil
		}, "spec.hosts[0].address", false},
		{"haproxy with an endpoint address", func(c *Cluster) {
			threeControlPlanes(c)
			c.Spec.ControlPlaneEndpoint.InternalLoadbalancer = InternalLBHAProxy
			c.Spec.ControlPlaneEndpoint.Address = "192.168.0.100"
		}, "spec.controlPlaneEndpoint.address", false},
		{"kube-vip without a VIP", func(c *Cluster) {
			threeControlPlanes(c)
			c.Spec.ControlPlaneEndpoint.InternalLoadbalancer = InternalLBKubeVIP
		}, "spec.controlPlaneEndpoint.address", false},
		{"kube-vip VIP that is a host's address", func(c *Cluster) {
			threeControlPlanes(c)
			c.Spec.ControlPlaneEndpoint.InternalLoadbalancer = InternalLBKubeVIP
			c.Spec.ControlPlaneEndpoint.Address = "192.168.0.12"
		}, "spec.controlPlaneEndpoint.address", false},
		{"kube-vip VIP off the control planes' network", func(c *Cluster) {
			threeControlPlanes(c)
			c.Spec.ControlPlaneEndpoint.InternalLoadbalancer = InternalLBKubeVIP
			c.Spec.ControlPlaneEndpoint.Address = "10.0.0.100"
		}, "spec.controlPlaneEndpoint.address", true},
		{"kube-vip lease not longer than its renew deadline", func(c *Cluster) {
			threeControlPlanes(c)
			c.Spec.ControlPlaneEndpoint.InternalLoadbalancer = InternalLBKubeVIP
			c.Spec.ControlPlaneEndpoint.Address = "192.168.0.100"
			c.Spec.ControlPlaneEndpoint.KubeVIPTuning = &KubeVIPTuning{LeaseDuration: 20, RenewDeadline: 20}
		}, "spec.controlPlaneEndpoint.kubeVIP.leaseDuration", false},
		{"kube-vip renew deadline within 1.2 retry periods", func(c *Cluster) {
			threeControlPlanes(c)
			c.Spec.ControlPlaneEndpoint.InternalLoadbalancer = InternalLBKubeVIP
			c.Spec.ControlPlaneEndpoint.Address = "192.168.0.100"
			c.Spec.ControlPlaneEndpoint.KubeVIPTuning = &KubeVIPTuning{LeaseDuration: 60, RenewDeadline: 11, RetryPeriod: 10}
		}, "spec.controlPlaneEndpoint.kubeVIP.renewDeadline", false},
		{"kube-vip tuning with a negative value", func(c *Cluster) {
			threeControlPlanes(c)
			c.Spec.ControlPlaneEndpoint.InternalLoadbalancer = InternalLBKubeVIP
			c.Spec.ControlPlaneEndpoint.Address = "192.168.0.100"
			c.Spec.ControlPlaneEndpoint.KubeVIPTuning = &KubeVIPTuning{RetryPeriod: -1}
		}, "spec.controlPlaneEndpoint.kubeVIP.retryPeriod", false},
		{"kube-vip tuning without kube-vip", func(c *Cluster) {
			c.Spec.ControlPlaneEndpoint.KubeVIPTuning = &KubeVIPTuning{LeaseDuration: 60}
		}, "spec.controlPlaneEndpoint.kubeVIP", false},
		{"unknown internal load balancer", func(c *Cluster) {
			c.Spec.ControlPlaneEndpoint.InternalLoadbalancer = "nginx"
		}, "spec.controlPlaneEndpoint.internalLoadbalancer", false},
		{"static discovery with haproxy and no first control plane address", func(c *Cluster) {
			threeControlPlanes(c)
			c.Spec.ControlPlaneEndpoint.InternalLoadbalancer = InternalLBHAProxy
			c.Spec.Discovery.Mode = DiscoveryStatic
			c.Spec.Hosts[0].Address, c.Spec.Hosts[0].Gateway, c.Spec.Hosts[0].DNS = "", "", nil
		}, "spec.discovery.mode", false},
		{"patch that is not YAML", func(c *Cluster) {
			c.Spec.Kubernetes.Patches = []Patch{{Target: "etcd", Type: "merge", Patch: "spec: {a: [}"}}
		}, "spec.kubernetes.patches[0].patch", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			if ps := Validate(c, nil); len(ps) != 0 {
				t.Fatalf("sample is not clean: %v", ps)
			}
			tc.mutate(c)
			ps := Validate(c, nil)
			for _, p := range ps {
				if p.Field == tc.field && p.Warning == tc.warning {
					return
				}
			}
			t.Errorf("want a problem at %s (warning=%v), got %v", tc.field, tc.warning, ps)
		})
	}
}

// threeControlPlanes makes the sample's three hosts control planes and etcd members.
func threeControlPlanes(c *Cluster) {
	c.Spec.RoleGroups.ControlPlane = []string{"node1", "node2", "node3"}
	c.Spec.RoleGroups.Etcd = []string{"node1", "node2", "node3"}
}

// TestInternalLoadBalancerNeedsNoExternalAddress: with haproxy or kube-vip, several control
// planes are valid without a load balancer of the operator's, and discovery defaults follow
// (mDNS for haproxy, which has no address; static to the VIP for kube-vip).
func TestInternalLoadBalancerNeedsNoExternalAddress(t *testing.T) {
	for _, tc := range []struct {
		lb, address, discovery string
	}{
		{InternalLBHAProxy, "", DiscoveryMDNS},
		{InternalLBKubeVIP, "192.168.0.100", DiscoveryStatic},
	} {
		t.Run(tc.lb, func(t *testing.T) {
			c := Sample(SampleOptions{})
			threeControlPlanes(c)
			c.Spec.ControlPlaneEndpoint.InternalLoadbalancer = tc.lb
			c.Spec.ControlPlaneEndpoint.Address = tc.address
			c.Spec.Discovery.Mode = ""
			SetDefaults(c)
			if ps := Validate(c, nil); len(ps) != 0 {
				t.Errorf("three control planes with internalLoadbalancer %s: %v", tc.lb, ps)
			}
			if c.Spec.Discovery.Mode != tc.discovery {
				t.Errorf("discovery defaults to %s, want %s", c.Spec.Discovery.Mode, tc.discovery)
			}
			// Static discovery works with haproxy too: the joins go to the first control plane.
			c.Spec.Discovery.Mode = DiscoveryStatic
			if ps := Validate(c, nil); len(ps) != 0 {
				t.Errorf("static discovery with internalLoadbalancer %s: %v", tc.lb, ps)
			}
		})
	}
}

func TestCompatibilityTable(t *testing.T) {
	cases := []struct {
		ks, k8s string
		ok      bool
	}{
		{"v3.4.1", "v1.26.5", true},
		{"v3.4.0", "v1.21.0", true},
		{"v3.4.1", "v1.27.0", false},
		{"v3.3.2", "v1.24.9", true},
		{"v3.3.2", "v1.25.0", false},
		{"v4.1.3", "v1.30.2", true},
		{"v4.1.3", "v1.37.2", false},
		{"v9.9.9", "v1.30.0", false},
	}
	for _, tc := range cases {
		ok, msg := CheckCompatibility(tc.ks, tc.k8s)
		if ok != tc.ok {
			t.Errorf("%s on %s: got %v (%s), want %v", tc.ks, tc.k8s, ok, msg, tc.ok)
		}
		if !ok && msg == "" {
			t.Errorf("%s on %s: no message", tc.ks, tc.k8s)
		}
	}
}

func TestSampleRoundTrip(t *testing.T) {
	for _, o := range []SampleOptions{{}, {KubernetesVersion: "v1.26.5", KubeSphereVersion: "v3.4.0"}} {
		data, err := MarshalCommented(Sample(o))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), "# Every machine of the cluster.") {
			t.Error("comments missing")
		}
		c, _, err := Parse("sample.yaml", data)
		if err != nil {
			t.Fatalf("the written sample does not load: %v\n%s", err, data)
		}
		if c.Spec.KubeSphere.Enabled != (o.KubeSphereVersion != "") {
			t.Errorf("kubesphere enabled = %v", c.Spec.KubeSphere.Enabled)
		}
	}
	data, _ := MarshalCommented(Sample(SampleOptions{KubernetesVersion: "v1.26.5", KubeSphereVersion: "v3.4.0"}))
	golden.Assert(t, "sample-v1.26.5-v3.4.0.yaml", data)
}

func TestFromKubeKey(t *testing.T) {
	data, err := os.ReadFile("testdata/kubekey-sample.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, notes, err := FromKubeKey("config-sample.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(notes, "\n")
	for _, want := range []string{"hosts[0] (master): dropped SSH settings user, password", "hosts[1] (node1): dropped SSH settings user, privateKeyPath", "port", "nfs-client", "docker replaced by containerd", "assumed to be /24"} {
		if !strings.Contains(joined, want) {
			t.Errorf("notes lack %q:\n%s", want, joined)
		}
	}
	if strings.Contains(joined, "Qcloud@123") {
		t.Error("a note prints a password")
	}
	if got := strings.Join(c.Spec.RoleGroups.ControlPlane, ","); got != "master" {
		t.Errorf("master group not mapped: %q", got)
	}
	if h, _ := c.Host("node1"); h.Address != "172.16.0.3/24" {
		t.Errorf("node1 address %q, want the internal address", h.Address)
	}
	if !c.Spec.KubeSphere.Enabled || c.Spec.KubeSphere.Version != "v3.4.0" || c.Spec.KubeSphere.Configuration["devops"] == nil {
		t.Errorf("ClusterConfiguration not imported: %+v", c.Spec.KubeSphere)
	}
	out, err := MarshalCommented(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Parse("imported.yaml", out); err != nil {
		t.Fatalf("imported file does not validate: %v", err)
	}
	golden.Assert(t, "kubekey-imported.yaml", out)
}

// TestFromKubeKeyInternalLoadBalancer: KubeKey's internalLoadbalancer is imported with its
// meaning, and what ksboot does differently is said in a note.
func TestFromKubeKeyInternalLoadBalancer(t *testing.T) {
	for _, tc := range []struct {
		file, lb, address string
		notes             []string
	}{
		{"kubekey-haproxy.yaml", InternalLBHAProxy, "", nil},
		{"kubekey-kube-vip.yaml", InternalLBKubeVIP, "172.16.0.100", []string{"controlPlaneEndpoint.kubevip.mode (BGP): ksboot runs kube-vip in ARP mode"}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			c, notes, err := FromKubeKey(tc.file, data)
			if err != nil {
				t.Fatal(err)
			}
			joined := strings.Join(notes, "\n")
			if strings.Contains(joined, "internalLoadbalancer") {
				t.Errorf("internalLoadbalancer is noted as dropped:\n%s", joined)
			}
			for _, want := range tc.notes {
				if !strings.Contains(joined, want) {
					t.Errorf("notes lack %q:\n%s", want, joined)
				}
			}
			e := c.Spec.ControlPlaneEndpoint
			if e.InternalLoadbalancer != tc.lb || e.Address != tc.address {
				t.Errorf("controlPlaneEndpoint = %+v, want internalLoadbalancer %s, address %q", e, tc.lb, tc.address)
			}
			out, err := MarshalCommented(c)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := Parse("imported.yaml", out); err != nil {
				t.Fatalf("imported file does not validate: %v\n%s", err, out)
			}
			golden.Assert(t, strings.TrimSuffix(tc.file, ".yaml")+"-imported.yaml", out)
		})
	}
	// KubeKey ignores address with haproxy; ksboot refuses it, so the importer drops it.
	c, notes, err := FromKubeKey("x.yaml", []byte("apiVersion: kubekey.kubesphere.io/v1alpha2\nkind: Cluster\nspec:\n"+
		"  controlPlaneEndpoint: {internalLoadbalancer: haproxy, address: 10.0.0.9}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Spec.ControlPlaneEndpoint.Address != "" || !strings.Contains(strings.Join(notes, "\n"), "controlPlaneEndpoint.address (10.0.0.9): dropped") {
		t.Errorf("address %q kept with haproxy; notes %q", c.Spec.ControlPlaneEndpoint.Address, notes)
	}
}

func TestExpandRanges(t *testing.T) {
	got := strings.Join(expandRanges([]string{"a", "n[1:3]", "h[08:10]x", "bad[3:1]"}), ",")
	if want := "a,n1,n2,n3,h08x,h09x,h10x,bad[3:1]"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}
