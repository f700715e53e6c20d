package addons

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/ksboot/ksboot/bootstrap/addons/kube"
	"github.com/ksboot/ksboot/cluster"
	"github.com/ksboot/ksboot/internal/golden"
)

// testCluster is the built-in sample (node1 control plane, node2 and node3 workers) with a
// change applied, defaulted again.
func testCluster(t *testing.T, change func(*cluster.Cluster)) *cluster.Cluster {
	t.Helper()
	c := cluster.Sample(cluster.SampleOptions{})
	if change != nil {
		change(c)
	}
	cluster.SetDefaults(c)
	return c
}

func TestGoldenManifests(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*cluster.Cluster)
		build  func(*cluster.Cluster) ([]*unstructured.Unstructured, error)
		file   string
	}{
		{"flannel", func(c *cluster.Cluster) { c.Spec.Network.Plugin = "flannel" }, Flannel, "flannel.golden.yaml"},
		{"flannel private registry, nftables", func(c *cluster.Cluster) {
			c.Spec.Network.Plugin = "flannel"
			c.Spec.Network.KubePodsCIDR = "10.244.0.0/16"
			c.Spec.Kubernetes.ProxyMode = "nftables"
			c.Spec.Registry.PrivateRegistry = "https://registry.example.com:5000/"
		}, Flannel, "flannel-private-registry.golden.yaml"},
		{"openebs", nil, OpenEBS, "openebs.golden.yaml"},
		{"openebs namespace override", func(c *cluster.Cluster) {
			c.Spec.Registry.PrivateRegistry = "dockerhub.kubekey.local"
			c.Spec.Registry.NamespaceOverride = "kubesphereio"
		}, OpenEBS, "openebs-namespace-override.golden.yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := tc.build(testCluster(t, tc.change))
			if err != nil {
				t.Fatal(err)
			}
			data, err := kube.MarshalYAML(objs)
			if err != nil {
				t.Fatal(err)
			}
			golden.Assert(t, tc.file, data)
			// What is rendered must parse back into the same objects.
			back, err := kube.ParseYAML(tc.file, data)
			if err != nil || len(back) != len(objs) {
				t.Fatalf("parsing the rendered manifest: %d objects, %v", len(back), err)
			}
		})
	}
}

func TestFlannelNetConfUsesPodCIDR(t *testing.T) {
	c := testCluster(t, func(c *cluster.Cluster) {
		c.Spec.Network.Plugin = "flannel"
		c.Spec.Network.KubePodsCIDR = "172.30.0.0/16"
	})
	objs, err := Flannel(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range objs {
		if u.GetKind() != "ConfigMap" {
			continue
		}
		conf, _, _ := unstructured.NestedString(u.Object, "data", "net-conf.json")
		if !strings.Contains(conf, `"Network": "172.30.0.0/16"`) {
			t.Errorf("net-conf.json = %s, want the pod CIDR 172.30.0.0/16", conf)
		}
		return
	}
	t.Fatal("no ConfigMap in the Flannel objects")
}

func TestOpenEBSSkippedForOtherDefaultClass(t *testing.T) {
	c := testCluster(t, func(c *cluster.Cluster) { c.Spec.Storage.DefaultClass = "ceph-rbd" })
	objs, err := OpenEBS(c)
	if err != nil || len(objs) != 0 {
		t.Fatalf("OpenEBS() = %d objects, %v; want none when another default class is named", len(objs), err)
	}
}

func TestImage(t *testing.T) {
	for _, tc := range []struct {
		name     string
		reg      cluster.Registry
		upstream string
		want     string
	}{
		{"no registry", cluster.Registry{}, "ghcr.io/flannel-io/flannel:v0.27.4", "ghcr.io/flannel-io/flannel:v0.27.4"},
		{"mirror path for path", cluster.Registry{PrivateRegistry: "reg.local:5000"}, "ghcr.io/flannel-io/flannel:v0.27.4", "reg.local:5000/flannel-io/flannel:v0.27.4"},
		{"docker hub implicit", cluster.Registry{PrivateRegistry: "reg.local"}, "openebs/provisioner-localpv:4.4.0", "reg.local/openebs/provisioner-localpv:4.4.0"},
		{"docker hub library", cluster.Registry{PrivateRegistry: "reg.local"}, "busybox:1.36", "reg.local/library/busybox:1.36"},
		{"scheme and slash stripped", cluster.Registry{PrivateRegistry: "https://reg.local/"}, "quay.io/calico/node:v3.32.1", "reg.local/calico/node:v3.32.1"},
		{"namespace override", cluster.Registry{PrivateRegistry: "reg.local", NamespaceOverride: "kubesphereio"}, "quay.io/calico/node:v3.32.1", "reg.local/kubesphereio/node:v3.32.1"},
		{"digest kept", cluster.Registry{PrivateRegistry: "reg.local"}, "quay.io/calico/cni@sha256:abc", "reg.local/calico/cni@sha256:abc"},
		{"localhost registry", cluster.Registry{PrivateRegistry: "reg.local"}, "localhost:5000/x/y:1", "reg.local/x/y:1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Image(tc.reg, tc.upstream); got != tc.want {
				t.Errorf("Image(%+v, %q) = %q, want %q", tc.reg, tc.upstream, got, tc.want)
			}
		})
	}
}

// fakeCalico serves testdata/calico-fake.yaml on loopback and returns its artifact.
func fakeCalico(t *testing.T) (*httptest.Server, Artifact) {
	t.Helper()
	data, err := os.ReadFile("testdata/calico-fake.yaml")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/projectcalico/calico/v3.32.1/manifests/calico.yaml" {
			http.NotFound(w, r)
			return
		}
		w.Write(data)
	}))
	t.Cleanup(srv.Close)
	sum := sha256.Sum256(data)
	return srv, Artifact{
		Name:   "calico-fake.yaml",
		URL:    srv.URL + "/projectcalico/calico/v3.32.1/manifests/calico.yaml",
		SHA256: hex.EncodeToString(sum[:]),
	}
}

func TestCalicoFetchVerifyPatch(t *testing.T) {
	srv, art := fakeCalico(t)
	c := testCluster(t, func(c *cluster.Cluster) {
		c.Spec.Network.KubePodsCIDR = "10.100.0.0/16"
		c.Spec.Registry.PrivateRegistry = "reg.local"
	})
	ctx := context.Background()

	t.Run("patched", func(t *testing.T) {
		objs, err := Calico(ctx, c, HTTPSource{Client: srv.Client()}, art)
		if err != nil {
			t.Fatal(err)
		}
		if len(objs) != 3 {
			t.Fatalf("%d objects, want 3 (the comment-only first document is skipped)", len(objs))
		}
		ds := objs[1]
		cs, _, _ := unstructured.NestedSlice(ds.Object, "spec", "template", "spec", "containers")
		env := cs[0].(map[string]any)["env"].([]any)
		var cidr string
		for _, e := range env {
			if m := e.(map[string]any); m["name"] == "CALICO_IPV4POOL_CIDR" {
				cidr, _ = m["value"].(string)
			}
		}
		if cidr != "10.100.0.0/16" {
			t.Errorf("CALICO_IPV4POOL_CIDR = %q, want the pod CIDR", cidr)
		}
		data, _ := kube.MarshalYAML(objs)
		for _, img := range []string{"reg.local/calico/node:v3.32.1", "reg.local/calico/cni:v3.32.1", "reg.local/calico/kube-controllers:v3.32.1"} {
			if !bytes.Contains(data, []byte("image: "+img)) {
				t.Errorf("patched manifest lacks image %s", img)
			}
		}
		if bytes.Contains(data, []byte("quay.io")) {
			t.Error("patched manifest still names quay.io")
		}
	})
	t.Run("mirror layout", func(t *testing.T) {
		up := art
		up.URL = "https://raw.githubusercontent.com/projectcalico/calico/v3.32.1/manifests/calico.yaml"
		// The mirror is the test server; it serves <mirror>/<host>/<path>.
		mirror := httptest.NewServer(http.StripPrefix("/raw.githubusercontent.com", srv.Config.Handler))
		defer mirror.Close()
		if _, err := Calico(ctx, c, HTTPSource{Mirror: mirror.URL + "/", Client: mirror.Client()}, up); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("digest mismatch", func(t *testing.T) {
		bad := art
		bad.SHA256 = strings.Repeat("0", 64)
		_, err := Calico(ctx, c, HTTPSource{Client: srv.Client()}, bad)
		if !errors.Is(err, ErrDigestMismatch) || !strings.Contains(err.Error(), srv.URL) {
			t.Fatalf("err = %v, want a SHA-256 mismatch naming the URL", err)
		}
	})
	t.Run("not found", func(t *testing.T) {
		missing := art
		missing.URL = srv.URL + "/nothing.yaml"
		_, err := Calico(ctx, c, HTTPSource{Client: srv.Client()}, missing)
		if err == nil || !strings.Contains(err.Error(), "404") || !strings.Contains(err.Error(), missing.URL) {
			t.Fatalf("err = %v, want a 404 naming the URL", err)
		}
	})
	t.Run("unpinned", func(t *testing.T) {
		unpinned := art
		unpinned.SHA256 = ""
		if _, err := Calico(ctx, c, HTTPSource{Client: srv.Client()}, unpinned); err == nil {
			t.Fatal("an artifact without a pinned digest was used")
		}
	})
	t.Run("bundle", func(t *testing.T) {
		dir := t.TempDir()
		data, _ := os.ReadFile("testdata/calico-fake.yaml")
		os.MkdirAll(filepath.Join(dir, "manifests"), 0o755)
		os.WriteFile(filepath.Join(dir, "manifests", art.Name), data, 0o644)
		if _, err := Calico(ctx, c, DirSource{Dir: dir}, art); err != nil {
			t.Fatal(err)
		}
		_, err := Calico(ctx, c, DirSource{Dir: t.TempDir()}, art)
		if err == nil || !strings.Contains(err.Error(), art.Name) {
			t.Fatalf("err = %v, want a missing bundle file named", err)
		}
	})
}

func TestRender(t *testing.T) {
	for _, tc := range []struct {
		name        string
		change      func(*cluster.Cluster)
		wantCNI     string // substring of cni.yaml; "" means empty
		wantStorage string
	}{
		{"flannel and openebs", func(c *cluster.Cluster) { c.Spec.Network.Plugin = "flannel" }, "kube-flannel-ds", "openebs-hostpath"},
		{"no cni, own storage", func(c *cluster.Cluster) {
			c.Spec.Network.Plugin = "none"
			c.Spec.Storage.DefaultClass = "ceph-rbd"
		}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			paths, err := Render(context.Background(), dir, Options{Cluster: testCluster(t, tc.change)})
			if err != nil {
				t.Fatal(err)
			}
			if len(paths) != 2 || filepath.Base(paths[0]) != CNIFile || filepath.Base(paths[1]) != StorageFile {
				t.Fatalf("paths = %v", paths)
			}
			for _, f := range []struct{ path, want string }{{paths[0], tc.wantCNI}, {paths[1], tc.wantStorage}} {
				data, err := os.ReadFile(f.path)
				if err != nil {
					t.Fatal(err)
				}
				if (f.want == "") != (len(data) == 0) || !strings.Contains(string(data), f.want) {
					t.Errorf("%s = %q…, want it to contain %q", f.path, truncate(data), f.want)
				}
			}
		})
	}
}

func truncate(b []byte) string {
	if len(b) > 200 {
		b = b[:200]
	}
	return string(b)
}

func TestNodeLabels(t *testing.T) {
	c := testCluster(t, func(c *cluster.Cluster) {
		c.Spec.Hosts[1].Labels = map[string]string{"disk": "ssd"}
		c.Spec.RoleGroups.Worker = append(c.Spec.RoleGroups.Worker, "node1")
	})
	for _, tc := range []struct {
		node string
		want map[string]string
	}{
		{"node1", map[string]string{LabelControlPlane: "", LabelWorker: ""}},
		{"node2", map[string]string{LabelWorker: "", "disk": "ssd"}},
		{"worker-0123456789", map[string]string{LabelWorker: ""}},
	} {
		got := NodeLabels(c, tc.node)
		if len(got) != len(tc.want) {
			t.Errorf("NodeLabels(%s) = %v, want %v", tc.node, got, tc.want)
			continue
		}
		for k, v := range tc.want {
			if got[k] != v {
				t.Errorf("NodeLabels(%s) = %v, want %v", tc.node, got, tc.want)
			}
		}
	}
}

func TestCheckNodes(t *testing.T) {
	c := testCluster(t, func(c *cluster.Cluster) {
		// An etcd-only host runs no kubelet and is never waited for.
		c.Spec.Hosts = append(c.Spec.Hosts, cluster.Host{Name: "etcd9"})
		c.Spec.RoleGroups.Etcd = append(c.Spec.RoleGroups.Etcd, "etcd9")
	})
	node := func(name string, st corev1.ConditionStatus, reason, msg string) corev1.Node {
		return corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{
			{Type: corev1.NodeReady, Status: st, Reason: reason, Message: msg},
		}}}
	}
	r := CheckNodes(c, []corev1.Node{
		node("node1", corev1.ConditionTrue, "KubeletReady", ""),
		node("node2", corev1.ConditionFalse, "KubeletNotReady", "container runtime network not ready: cni plugin not initialized"),
		node("worker-abc", corev1.ConditionUnknown, "NodeStatusUnknown", "Kubelet stopped posting node status."),
	})
	if r.Done() {
		t.Fatal("report done with node3 missing")
	}
	s := r.String()
	for _, want := range []string{
		"1 Ready", "not joined: node3",
		"node2 NotReady (KubeletNotReady: container runtime network not ready: cni plugin not initialized)",
		"worker-abc NotReady (NodeStatusUnknown: Kubelet stopped posting node status.)",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("report %q lacks %q", s, want)
		}
	}
	if strings.Contains(s, "etcd9") {
		t.Errorf("report %q waits for the etcd-only host", s)
	}
}

func TestSchedulableNode(t *testing.T) {
	node := func(name string, unschedulable bool, effects ...corev1.TaintEffect) *corev1.Node {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{Unschedulable: unschedulable}}
		for _, e := range effects {
			n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: "node-role.kubernetes.io/control-plane", Effect: e})
		}
		return n
	}
	for _, tc := range []struct {
		name  string
		nodes []runtime.Object
		want  bool
	}{
		{"no nodes", nil, false},
		{"tainted control plane alone", []runtime.Object{node("cp1", false, corev1.TaintEffectNoSchedule)}, false},
		{"cordoned worker", []runtime.Object{node("cp1", false, corev1.TaintEffectNoSchedule), node("w1", true)}, false},
		{"NoExecute", []runtime.Object{node("w1", false, corev1.TaintEffectNoExecute)}, false},
		{"PreferNoSchedule only", []runtime.Object{node("w1", false, corev1.TaintEffectPreferNoSchedule)}, true},
		{"not-ready taint of a Ready node", []runtime.Object{&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "w1"},
			Spec: corev1.NodeSpec{Taints: []corev1.Taint{{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoSchedule}}}}}, true},
		{"a worker", []runtime.Object{node("cp1", false, corev1.TaintEffectNoSchedule), node("w1", false)}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := SchedulableNode(context.Background(), fake.NewSimpleClientset(tc.nodes...))
			if err != nil || got != tc.want {
				t.Errorf("SchedulableNode = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}
