package addons

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ksboot/ksboot/bootstrap/addons/kube"
	"github.com/ksboot/ksboot/cluster"
)

// calicoStructure is the hand-written manifest with the structure of upstream's calico.yaml.
const calicoStructure = "testdata/calico-structure.yaml"

// Lines of calicoStructure that upstream ships commented out, and the same lines enabled, as an
// operator's edited copy would have them.
var (
	commentedPoolCIDR = []byte("            # - name: CALICO_IPV4POOL_CIDR\n            #   value: \"192.168.0.0/16\"\n")
	enabledPoolCIDR   = []byte("            - name: CALICO_IPV4POOL_CIDR\n              value: \"192.168.0.0/16\"\n" +
		"            - name: IP_AUTODETECTION_METHOD\n              value: \"first-found\"\n")
)

// serveCalico serves data as Calico's manifest on loopback and returns its pinned artifact.
func serveCalico(t *testing.T, name string, data []byte) Artifact {
	t.Helper()
	const path = "/projectcalico/calico/" + CalicoVersion + "/manifests/calico.yaml"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != path {
			http.NotFound(w, r)
			return
		}
		w.Write(data)
	}))
	t.Cleanup(srv.Close)
	sum := sha256.Sum256(data)
	return Artifact{Name: name, URL: srv.URL + path, SHA256: hex.EncodeToString(sum[:])}
}

func readCalicoStructure(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile(calicoStructure)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, commentedPoolCIDR) {
		t.Fatalf("%s lost its commented-out CALICO_IPV4POOL_CIDR lines", calicoStructure)
	}
	return data
}

// podImages lists "container=image" of every init container and container of a workload.
func podImages(t *testing.T, u *unstructured.Unstructured) []string {
	t.Helper()
	var out []string
	for _, field := range []string{"initContainers", "containers"} {
		cs, _, err := unstructured.NestedSlice(u.Object, slices.Concat(kube.PodSpecPaths[u.GetKind()], []string{field})...)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			m := c.(map[string]any)
			out = append(out, m["name"].(string)+"="+m["image"].(string))
		}
	}
	return out
}

// containerEnv returns the env of a container of a workload, in order, as name=value (or
// name=<from> for a value taken from elsewhere).
func containerEnv(t *testing.T, u *unstructured.Unstructured, container string) []string {
	t.Helper()
	cs, _, _ := unstructured.NestedSlice(u.Object, slices.Concat(kube.PodSpecPaths[u.GetKind()], []string{"containers"})...)
	for _, c := range cs {
		m := c.(map[string]any)
		if m["name"] != container {
			continue
		}
		var out []string
		for _, e := range m["env"].([]any) {
			em := e.(map[string]any)
			v, ok := em["value"].(string)
			if !ok {
				v = "<from>"
			}
			out = append(out, em["name"].(string)+"="+v)
		}
		return out
	}
	t.Fatalf("%s has no container %s", kube.Describe(u), container)
	return nil
}

func envValues(env []string, name string) []string {
	var out []string
	for _, e := range env {
		if n, v, _ := strings.Cut(e, "="); n == name {
			out = append(out, v)
		}
	}
	return out
}

// TestCalicoPatchesRealStructure patches a manifest with the structure of upstream's
// calico.yaml: the pool CIDR is added where upstream only has it as a comment and replaced
// where it is set, the node address follows the kubelet's, every image (init containers too)
// is renamed for the registry, and every other object and field is left as it was.
func TestCalicoPatchesRealStructure(t *testing.T) {
	ctx := context.Background()
	upstream := readCalicoStructure(t)
	edited := bytes.Replace(upstream, commentedPoolCIDR, enabledPoolCIDR, 1)
	for _, tc := range []struct {
		name       string
		manifest   []byte
		registry   cluster.Registry
		wantImages []string
	}{
		{"upstream, no registry", upstream, cluster.Registry{}, []string{
			"upgrade-ipam=docker.io/calico/cni:v3.28.2", "install-cni=docker.io/calico/cni:v3.28.2",
			"mount-bpffs=docker.io/calico/node:v3.28.2", "calico-node=docker.io/calico/node:v3.28.2",
			"calico-kube-controllers=docker.io/calico/kube-controllers:v3.28.2",
		}},
		{"upstream, private registry", upstream, cluster.Registry{PrivateRegistry: "https://reg.local:5000/"}, []string{
			"upgrade-ipam=reg.local:5000/calico/cni:v3.28.2", "install-cni=reg.local:5000/calico/cni:v3.28.2",
			"mount-bpffs=reg.local:5000/calico/node:v3.28.2", "calico-node=reg.local:5000/calico/node:v3.28.2",
			"calico-kube-controllers=reg.local:5000/calico/kube-controllers:v3.28.2",
		}},
		{"edited, namespace override", edited, cluster.Registry{PrivateRegistry: "dockerhub.kubekey.local", NamespaceOverride: "kubesphereio"}, []string{
			"upgrade-ipam=dockerhub.kubekey.local/kubesphereio/cni:v3.28.2", "install-cni=dockerhub.kubekey.local/kubesphereio/cni:v3.28.2",
			"mount-bpffs=dockerhub.kubekey.local/kubesphereio/node:v3.28.2", "calico-node=dockerhub.kubekey.local/kubesphereio/node:v3.28.2",
			"calico-kube-controllers=dockerhub.kubekey.local/kubesphereio/kube-controllers:v3.28.2",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testCluster(t, func(c *cluster.Cluster) {
				c.Spec.Network.KubePodsCIDR = "10.233.64.0/18"
				c.Spec.Registry = tc.registry
			})
			art := serveCalico(t, "calico-"+CalicoVersion+".yaml", tc.manifest)
			orig, err := kube.ParseYAML(art.Name, tc.manifest)
			if err != nil {
				t.Fatal(err)
			}
			objs, err := Calico(ctx, c, HTTPSource{}, art)
			if err != nil {
				t.Fatal(err)
			}
			if len(objs) != len(orig) || len(objs) != 17 {
				t.Fatalf("%d objects after patching, %d parsed, want 17 both", len(objs), len(orig))
			}
			crds, images := 0, []string{}
			for i, u := range objs {
				o := orig[i]
				if kube.Describe(u) != kube.Describe(o) {
					t.Fatalf("object %d is %s, was %s: the order changed", i, kube.Describe(u), kube.Describe(o))
				}
				if _, workload := kube.PodSpecPaths[u.GetKind()]; !workload {
					if u.GetKind() == "CustomResourceDefinition" {
						crds++
					}
					if !reflect.DeepEqual(u.Object, o.Object) {
						t.Errorf("%s was changed by the patch", kube.Describe(u))
					}
					continue
				}
				images = append(images, podImages(t, u)...)
				// Apart from images and calico-node's env, the workload is as upstream wrote it.
				rest, restOrig := u.DeepCopy(), o.DeepCopy()
				for _, w := range []*unstructured.Unstructured{rest, restOrig} {
					for _, field := range []string{"initContainers", "containers"} {
						path := slices.Concat(kube.PodSpecPaths[w.GetKind()], []string{field})
						cs, _, _ := unstructured.NestedSlice(w.Object, path...)
						for _, ctr := range cs {
							m := ctr.(map[string]any)
							delete(m, "image")
							if m["name"] == "calico-node" {
								delete(m, "env")
							}
						}
						if len(cs) > 0 {
							unstructured.SetNestedSlice(w.Object, cs, path...)
						}
					}
				}
				if !reflect.DeepEqual(rest.Object, restOrig.Object) {
					t.Errorf("%s: the patch changed more than images and calico-node's env", kube.Describe(u))
				}
			}
			if crds != 4 {
				t.Errorf("%d CustomResourceDefinitions, want 4", crds)
			}
			if !slices.Equal(images, tc.wantImages) {
				t.Errorf("images:\n  %v\nwant\n  %v", images, tc.wantImages)
			}

			ds := objs[15]
			env := containerEnv(t, ds, "calico-node")
			origEnv := containerEnv(t, orig[15], "calico-node")
			for name, want := range map[string]string{"CALICO_IPV4POOL_CIDR": "10.233.64.0/18", "IP_AUTODETECTION_METHOD": CalicoIPAutodetection} {
				if got := envValues(env, name); !slices.Equal(got, []string{want}) {
					t.Errorf("calico-node %s = %q, want exactly one, %q", name, got, want)
				}
			}
			// Every other variable is kept, in its place.
			patched := func(e string) bool {
				n, _, _ := strings.Cut(e, "=")
				return n == "CALICO_IPV4POOL_CIDR" || n == "IP_AUTODETECTION_METHOD"
			}
			kept := slices.DeleteFunc(slices.Clone(env), patched)
			origKept := slices.DeleteFunc(slices.Clone(origEnv), patched)
			if !slices.Equal(kept, origKept) || !slices.Contains(kept, "IP=autodetect") {
				t.Errorf("calico-node env:\n  %v\nwas\n  %v", env, origEnv)
			}
			// The rendered form (dry run, bundle image lists) names no upstream registry when a
			// private one is set.
			data, err := kube.MarshalYAML(objs)
			if err != nil {
				t.Fatal(err)
			}
			if tc.registry.PrivateRegistry != "" && bytes.Contains(data, []byte("docker.io/")) {
				t.Error("the patched manifest still names docker.io")
			}
		})
	}
}

// TestCalicoPatchErrors: a manifest whose calico-node DaemonSet lacks its container is refused
// with a message naming what is missing, rather than applied without the pod CIDR.
func TestCalicoPatchErrors(t *testing.T) {
	upstream := readCalicoStructure(t)
	renamed := bytes.Replace(upstream, []byte("        - name: calico-node\n          image:"), []byte("        - name: node\n          image:"), 1)
	noDS := bytes.Replace(upstream, []byte("kind: DaemonSet"), []byte("kind: Deployment"), 1)
	c := testCluster(t, nil)
	for name, data := range map[string][]byte{"container renamed": renamed, "no DaemonSet": noDS} {
		t.Run(name, func(t *testing.T) {
			art := serveCalico(t, "calico.yaml", data)
			_, err := Calico(context.Background(), c, HTTPSource{}, art)
			if err == nil || !strings.Contains(err.Error(), "calico-node") {
				t.Fatalf("err = %v, want the missing calico-node named", err)
			}
		})
	}
}
