package kubesphere

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ksboot/ksboot/bootstrap/addons/kube"
	"github.com/ksboot/ksboot/cluster"
	"github.com/ksboot/ksboot/internal/golden"
)

// testChart loads testdata/ks-core, a stand-in with the value names and object kinds of
// upstream's ks-core chart.
func testChart(t *testing.T) *chart.Chart {
	t.Helper()
	ch, err := loader.Load("testdata/ks-core")
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

func testParams(t *testing.T, version string, change func(*cluster.Cluster)) Params {
	t.Helper()
	p, err := ParamsFromCluster(testCluster(t, version, change), "")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func privateRegistry(reg, override string) func(*cluster.Cluster) {
	return func(c *cluster.Cluster) {
		c.Spec.Registry.PrivateRegistry, c.Spec.Registry.NamespaceOverride = reg, override
	}
}

// containers lists the containers and init containers of the workloads among objs.
func containers(t *testing.T, objs []*unstructured.Unstructured) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, u := range objs {
		p, ok := kube.PodSpecPaths[u.GetKind()]
		if !ok {
			continue
		}
		spec, _, _ := unstructured.NestedMap(u.Object, p...)
		for _, key := range []string{"initContainers", "containers"} {
			list, _ := spec[key].([]any)
			for _, item := range list {
				c := item.(map[string]any)
				out[u.GetKind()+" "+u.GetName()+" "+c["name"].(string)] = c
			}
		}
	}
	return out
}

func TestChartValues(t *testing.T) {
	ch := testChart(t)
	for _, tc := range []struct {
		name    string
		version string
		change  func(*cluster.Cluster)
		want    map[string]any
		absent  [][]string
	}{
		{name: "defaults", version: "v4.1.3", want: map[string]any{
			"global.imageRegistry": "docker.io", "portal.hostname": "192.168.0.11", "portal.http.port": int64(30880),
		}, absent: [][]string{{"extension"}, {"apiserver"}, {"ksExtensionRepository"}}},
		{name: "zone cn", version: "v4.1.3", change: func(c *cluster.Cluster) { c.Spec.Zone = "cn" }, want: map[string]any{
			"global.imageRegistry": DefaultImageRegistryCN, "extension.imageRegistry": DefaultImageRegistryCN,
		}},
		{name: "private registry", version: "v4.1.3", change: privateRegistry("reg.local:5000", ""), want: map[string]any{
			"global.imageRegistry": "reg.local:5000", "extension.imageRegistry": "reg.local:5000",
		}, absent: [][]string{{"apiserver"}}},
		{name: "namespace override", version: "v4.1.3", change: privateRegistry("reg.local:5000", "kubesphereio"), want: map[string]any{
			"apiserver.image.repository":             "kubesphereio/ks-apiserver",
			"ksCRDs.kubectl.image.repository":        "kubesphereio/kubectl",
			"ksExtensionRepository.image.repository": "kubesphereio/ks-extensions-museum",
			"helmExecutor.image.repository":          "kubesphereio/kubectl",
		}, absent: [][]string{{"apiserver", "image", "registry"}, {"apiserver", "image", "tag"}}},
		{name: "IPv6 console", version: "v4.1.3", change: func(c *cluster.Cluster) { c.Spec.Hosts[0].Address = "fd00::11/64" },
			want: map[string]any{"portal.hostname": "[fd00::11]"}},
		{name: "configuration wins", version: "v4.1.3", change: func(c *cluster.Cluster) {
			c.Spec.KubeSphere.Configuration = map[string]any{
				"console": map[string]any{"nodePort": 31000},
				"portal":  map[string]any{"hostname": "ks.example.com"},
			}
		}, want: map[string]any{"portal.hostname": "ks.example.com", "portal.http.port": int64(31000), "console.nodePort": int64(31000)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := ChartValues(testParams(t, tc.version, tc.change), ch)
			for path, want := range tc.want {
				if got, _ := lookup(v, strings.Split(path, ".")...); got != want {
					t.Errorf("%s = %#v, want %#v", path, got, want)
				}
			}
			for _, path := range tc.absent {
				if got, ok := lookup(v, path...); ok {
					t.Errorf("%s is set (%v); upstream's default should stay", strings.Join(path, "."), got)
				}
			}
		})
	}
}

func TestChartImageValues(t *testing.T) {
	var got []string
	for _, iv := range chartImageValues(testChart(t)) {
		got = append(got, strings.Join(iv.path, ".")+"="+iv.repository)
	}
	want := []string{
		"apiserver.image=kubesphere/ks-apiserver", "console.image=kubesphere/ks-console",
		"controller.image=kubesphere/ks-controller-manager", "helmExecutor.image=kubesphere/kubectl",
		"ksCRDs.kubectl.image=kubesphere/kubectl", "ksExtensionRepository.image=kubesphere/ks-extensions-museum",
		"kubectl.image=kubesphere/kubectl", "nodeShell.image=kubesphere/kubectl",
	}
	if !slices.Equal(got, want) {
		t.Errorf("image values\n%q\nwant\n%q", got, want)
	}
}

// TestRenderChartHooks: the rendering carries the chart's hooks (the post-install Job and the
// subchart's pre-upgrade Job), which Helm keeps out of the release manifest, but not test hooks.
func TestRenderChartHooks(t *testing.T) {
	ch := testChart(t)
	ch.Templates = append(ch.Templates, &chart.File{Name: "templates/test-connection.yaml", Data: []byte(`apiVersion: v1
kind: Pod
metadata:
  name: ks-core-test
  annotations: {"helm.sh/hook": test}
spec:
  containers: [{name: test, image: "busybox:1.36"}]
`)})
	p := testParams(t, "v4.1.3", nil)
	r, err := RenderParams(ch, p, "v1.37.2")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"# Source: ks-core/templates/post-install-job.yaml\napiVersion: batch/v1\nkind: Job",
		"# Source: ks-core/charts/ksCRDs/templates/pre-upgrade-job.yaml\napiVersion: batch/v1\nkind: Job",
		`"helm.sh/hook": post-install,post-upgrade`,
	} {
		if !strings.Contains(r.Manifest, want) {
			t.Errorf("rendering lacks %q:\n%s", want, r.Manifest)
		}
	}
	if strings.Contains(r.Manifest, "ks-core-test") {
		t.Errorf("rendering has the test hook:\n%s", r.Manifest)
	}
	var hooks []string
	for _, u := range r.Objects {
		if h := u.GetAnnotations()[hookAnnotation]; h != "" {
			hooks = append(hooks, u.GetKind()+" "+u.GetName()+" "+h)
		}
	}
	if want := []string{"Job ks-core-crds-pre-upgrade pre-upgrade", "Job ks-core-post-install post-install,post-upgrade"}; !slices.Equal(hooks, want) {
		t.Errorf("hook objects %q, want %q", hooks, want)
	}
	want := []string{"docker.io/kubesphere/ks-apiserver:v4.1.3", "docker.io/kubesphere/ks-console:v4.1.3",
		"docker.io/kubesphere/ks-controller-manager:v4.1.3", "docker.io/kubesphere/ks-extensions-museum:v1.1.3",
		"docker.io/kubesphere/kubectl:v1.27.16"}
	if !slices.Equal(r.Images, want) {
		t.Errorf("images %q, want %q", r.Images, want)
	}
}

// TestRenderNamespaceOverride: with spec.registry.namespaceOverride every image the chart
// names (Deployments, init containers, hooks of the chart and its subchart, the museum, the
// images kubesphere-config names) is <registry>/<namespaceOverride>/<name>; an image the
// values cannot move is refused, naming both fields.
func TestRenderNamespaceOverride(t *testing.T) {
	p := testParams(t, "v4.1.3", privateRegistry("reg.local:5000", "kubesphereio"))
	r, err := RenderParams(testChart(t), p, "v1.37.2")
	if err != nil {
		t.Fatal(err)
	}
	golden.Assert(t, "ks-core-namespace-override.golden.yaml", []byte(r.Manifest))
	cs := containers(t, r.Objects)
	if len(cs) != 7 {
		t.Errorf("%d containers, want 7 (4 Deployments, an init container, 2 hook Jobs): %v", len(cs), slices.Sorted(maps.Keys(cs)))
	}
	for name, c := range cs {
		img := c["image"].(string)
		rest, ok := strings.CutPrefix(img, "reg.local:5000/kubesphereio/")
		if !ok || strings.Contains(rest, "/") {
			t.Errorf("%s: image %s is not under reg.local:5000/kubesphereio/", name, img)
		}
	}
	for _, img := range r.Images {
		if !strings.HasPrefix(img, "reg.local:5000/kubesphereio/") {
			t.Errorf("image %s is not under reg.local:5000/kubesphereio/", img)
		}
	}
	for _, want := range []string{
		`image: "reg.local:5000/kubesphereio/kubectl:v1.27.16"`, // kubesphere-config's terminal and helm executor
		`imageRegistry: "reg.local:5000"`,                       // extension.imageRegistry
	} {
		if !strings.Contains(r.Manifest, want) {
			t.Errorf("rendering lacks %q", want)
		}
	}

	t.Run("refused", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			change func(*cluster.Cluster, *chart.Chart)
			want   []string
		}{
			{name: "repository set in the configuration", change: func(c *cluster.Cluster, _ *chart.Chart) {
				c.Spec.KubeSphere.Configuration = map[string]any{"apiserver": map[string]any{"image": map[string]any{"repository": "other/ks-apiserver"}}}
			}, want: []string{"reg.local:5000/other/ks-apiserver:v4.1.3", "Deployment kubesphere-system/ks-apiserver"}},
			{name: "image not in the values", change: func(_ *cluster.Cluster, ch *chart.Chart) {
				ch.Templates = append(ch.Templates, &chart.File{Name: "templates/sidecar.yaml", Data: []byte(
					"apiVersion: v1\nkind: Pod\nmetadata: {name: sidecar}\nspec:\n  containers: [{name: c, image: \"busybox:1.36\"}]\n")})
			}, want: []string{"busybox:1.36", "Pod sidecar"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				ch := testChart(t)
				c := testCluster(t, "v4.1.3", func(c *cluster.Cluster) {
					privateRegistry("reg.local:5000", "kubesphereio")(c)
					tc.change(c, ch)
				})
				p, err := ParamsFromCluster(c, "")
				if err != nil {
					t.Fatal(err)
				}
				_, err = RenderParams(ch, p, "v1.37.2")
				if err == nil {
					t.Fatal("rendered although an image is not under the namespace override")
				}
				for _, w := range append(tc.want, "spec.registry.namespaceOverride", "spec.registry.privateRegistry", "reg.local:5000/kubesphereio/") {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error lacks %q:\n%v", w, err)
					}
				}
			})
		}
	})
}

// TestRenderMuseumPullable: v4.1.2's chart names the extensions museum :latest and its
// Deployment sets no pull policy, so Kubernetes would pull it Always and an offline node could
// not start it from the bundle's copy. The rendering pins the tag KubeSphere's offline guide
// gives, and no container of the chart is then pulled Always.
func TestRenderMuseumPullable(t *testing.T) {
	v412 := func(t *testing.T) *chart.Chart {
		ch := testChart(t)
		ch.Metadata.Version, ch.Metadata.AppVersion = "1.1.3", "v4.1.2"
		ch.Values["global"].(map[string]any)["tag"] = "v4.1.2"
		img := ch.Values["ksExtensionRepository"].(map[string]any)["image"].(map[string]any)
		img["tag"], img["pullPolicy"] = "latest", "Always"
		return ch
	}
	for _, tc := range []struct {
		name, version string
		chart         func(*testing.T) *chart.Chart
		change        func(*cluster.Cluster)
		museum        string
	}{
		{name: "v4.1.2 pinned", version: "v4.1.2", chart: v412, museum: "docker.io/kubesphere/ks-extensions-museum:v1.1.2"},
		{name: "v4.1.3 as the chart pins it", version: "v4.1.3", chart: testChart, museum: "docker.io/kubesphere/ks-extensions-museum:v1.1.3"},
		{name: "configuration wins", version: "v4.1.2", chart: v412, change: func(c *cluster.Cluster) {
			c.Spec.KubeSphere.Configuration = map[string]any{"ksExtensionRepository": map[string]any{"image": map[string]any{"tag": "v1.1.2-patched"}}}
		}, museum: "docker.io/kubesphere/ks-extensions-museum:v1.1.2-patched"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := RenderParams(tc.chart(t), testParams(t, tc.version, tc.change), "v1.37.2")
			if err != nil {
				t.Fatal(err)
			}
			cs := containers(t, r.Objects)
			if got := cs["Deployment extensions-museum extensions-museum"]["image"]; got != tc.museum {
				t.Errorf("museum image %v, want %s", got, tc.museum)
			}
			for name, c := range cs {
				if pullsAlways(c) {
					t.Errorf("%s: image %v is pulled Always (imagePullPolicy %v), which a node with the image from the bundle cannot do offline",
						name, c["image"], c["imagePullPolicy"])
				}
			}
		})
	}
}

// pullsAlways applies Kubernetes' default pull policy: Always for :latest or no tag.
func pullsAlways(c map[string]any) bool {
	if p, _ := c["imagePullPolicy"].(string); p != "" {
		return p == "Always"
	}
	img := c["image"].(string)
	if i := strings.LastIndex(img, "@"); i >= 0 {
		return false
	}
	tag := ""
	if i := strings.LastIndex(img, ":"); i > strings.LastIndex(img, "/") {
		tag = img[i+1:]
	}
	return tag == "" || tag == "latest"
}

func TestHelmErrorOneLine(t *testing.T) {
	inner := errors.New("failed post-install: 1 error occurred:\n\t* timed out waiting for the condition\n\n")
	err := helmError{inner}
	if got, want := err.Error(), "failed post-install: timed out waiting for the condition"; got != want {
		t.Errorf("%q, want %q", got, want)
	}
	if !errors.Is(err, inner) {
		t.Error("helmError does not wrap Helm's error")
	}
}
