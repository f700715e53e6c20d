package collect

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"

	"github.com/ksboot/ksboot/bootstrap/addons"
	"github.com/ksboot/ksboot/bootstrap/install/artifacts"
	"github.com/ksboot/ksboot/bootstrap/install/artifacts/artifactstest"
	"github.com/ksboot/ksboot/bootstrap/install/artifacts/collect/collecttest"
	"github.com/ksboot/ksboot/cluster"
	"github.com/ksboot/ksboot/image"
	"github.com/ksboot/ksboot/versions"
)

// fixture is a mirror with the release binaries, Calico's fake manifest and the ks-core test
// chart, and a registry with every image the cluster needs.
type fixture struct {
	mirror   string
	hits     *artifactstest.Hits
	reg      *collecttest.Registry
	calico   addons.Artifact
	chartURL string
}

func newFixture(t *testing.T, arches ...string) *fixture {
	t.Helper()
	files := map[string][]byte{}
	for _, arch := range arches {
		for p, data := range artifactstest.MirrorFiles(t, artifactstest.Release(t, "v1.37.2", arch)) {
			if strings.HasSuffix(p, "/runc.sha256sum") {
				data = append(files[p], data...)
			}
			files[p] = data
		}
	}
	calico, err := os.ReadFile("../../../addons/testdata/calico-fake.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{calico: addons.Artifact{Name: addons.CalicoManifest.Name, URL: addons.CalicoManifest.URL, SHA256: artifactstest.SHA256(calico)}}
	files["/raw.githubusercontent.com/projectcalico/calico/"+addons.CalicoVersion+"/manifests/calico.yaml"] = calico
	files["/charts/ks-core-1.1.4.tgz"] = packChart(t)
	f.mirror, f.hits = artifactstest.Serve(t, files)
	f.chartURL = f.mirror + "/charts/ks-core-1.1.4.tgz"
	f.reg = collecttest.NewRegistry(t)
	return f
}

func packChart(t *testing.T) []byte {
	t.Helper()
	ch, err := loader.Load("../../../kubesphere/testdata/ks-core")
	if err != nil {
		t.Fatal(err)
	}
	p, err := chartutil.Save(ch, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// cluster is a one-node cluster whose private registry is the test registry (the air-gapped
// setup: the bundle is filled from the registry the nodes would use), with extra spec YAML.
func (f *fixture) cluster(t *testing.T, extra string) *cluster.Cluster {
	t.Helper()
	data := `apiVersion: ksboot.dev/v1alpha1
kind: Cluster
metadata: {name: collecttest}
spec:
  hosts:
    - {name: cp1, address: 10.0.0.10/24}
  roleGroups: {etcd: [cp1], control-plane: [cp1]}
  kubernetes: {version: v1.37.2}
  artifacts: {mirror: "` + f.mirror + `"}
  registry: {privateRegistry: "` + f.reg.Host + `"}
` + extra
	c, ps, err := cluster.Parse("cluster.yaml", []byte(data))
	if err != nil {
		t.Fatalf("%v\n%v", err, ps)
	}
	return c
}

func (f *fixture) options(t *testing.T, c *cluster.Cluster, dir string, arches ...string) (Options, *bytes.Buffer) {
	var out bytes.Buffer
	return Options{Cluster: c, Arches: arches, WorkDir: dir, Out: &out, CalicoManifest: &f.calico}, &out
}

func kubernetesRefs(host string) []string {
	return []string{host + "/coredns/coredns:v1.14.6", host + "/kube-proxy:v1.37.2", host + "/pause:3.10.2"}
}

func controlPlaneRefs(host string) []string {
	return []string{host + "/etcd:3.7.0-0", host + "/kube-apiserver:v1.37.2", host + "/kube-controller-manager:v1.37.2", host + "/kube-scheduler:v1.37.2"}
}

// kubesphereRefs are the images of the ks-core test chart under <host>/<namespace>/.
func kubesphereRefs(host, namespace string) []string {
	var refs []string
	for _, name := range []string{"ks-apiserver:v4.1.3", "ks-console:v4.1.3", "ks-controller-manager:v4.1.3", "ks-extensions-museum:v1.1.3", "kubectl:v1.27.16"} {
		refs = append(refs, host+"/"+namespace+"/"+name)
	}
	return refs
}

func TestCollect(t *testing.T) {
	f := newFixture(t, "amd64", "arm64")
	c := f.cluster(t, "  network: {plugin: flannel}\n  kubesphere: {enabled: true, version: v4.1.3, chart: \""+f.mirror+"/charts/ks-core-1.1.4.tgz\"}\n")
	h := f.reg.Host
	groups := map[string][]string{
		GroupKubernetes:   kubernetesRefs(h),
		GroupControlPlane: controlPlaneRefs(h),
		GroupCNI:          {h + "/flannel-io/flannel-cni-plugin:v1.8.0-flannel1", h + "/flannel-io/flannel:v0.27.4"},
		GroupStorage:      {h + "/openebs/linux-utils:4.3.0", h + "/openebs/provisioner-localpv:4.4.0"},
		// The chart's workloads, and kubectl of its hook Jobs, which the release manifest lacks.
		GroupKubeSphere: kubesphereRefs(h, "kubesphere"),
	}
	for _, refs := range groups {
		collecttest.Push(t, refs...)
	}
	dir := filepath.Join(t.TempDir(), "work")
	opts, out := f.options(t, c, dir, "arm64", "amd64")
	ctx := context.Background()

	// A missing image stops the run, naming the image and the registry; what was verified
	// before stays for the next run.
	f.reg.Fail("kubesphere/ks-apiserver")
	_, err := Collect(ctx, opts)
	if err == nil || !strings.Contains(err.Error(), h+"/kubesphere/ks-apiserver:v4.1.3") || !strings.Contains(err.Error(), "registry "+h) ||
		!strings.Contains(err.Error(), "MANIFEST_UNKNOWN") {
		t.Fatalf("Collect with an image missing: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, StateFile)); err != nil {
		t.Fatalf("no resume state after a failed run: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, artifacts.ManifestFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed run wrote %s: %v", artifacts.ManifestFile, err)
	}

	// The resumed run pulls only what is missing: KubeSphere's images.
	f.reg.Fail("")
	others, ks := f.reg.Total("")-f.reg.Total("kubesphere/"), f.reg.Total("kubesphere/")
	out.Reset()
	m, err := Collect(ctx, opts)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if got := f.reg.Total("") - f.reg.Total("kubesphere/") - others; got != 0 {
		t.Errorf("the resumed run made %d requests for images the first run had archived", got)
	}
	if f.reg.Total("kubesphere/") == ks {
		t.Error("the resumed run did not pull KubeSphere's image")
	}
	if n := strings.Count(out.String(), "already pulled"); n != 8 {
		t.Errorf("%d archives already pulled on resume, want 8:\n%s", n, out)
	}

	// 14 binaries, the chart, 5 image groups for 2 architectures.
	if len(m.Artifacts) != 14+1+10 {
		t.Errorf("manifest has %d entries, want 25:\n%v", len(m.Artifacts), m.Artifacts)
	}
	for _, e := range m.Artifacts {
		p := filepath.Join(dir, filepath.FromSlash(e.Path))
		if sum, err := artifacts.FileSHA256(p); err != nil || sum != e.SHA256 {
			t.Errorf("%s: sha256 %s, %v; the manifest says %s", e.Path, sum, err, e.SHA256)
		}
		switch e.Kind {
		case artifacts.KindImage:
			want := groups[e.Name]
			refs, err := image.ImageArchiveRefs(p)
			if err != nil || !slices.Equal(refs, want) || !slices.Equal(e.Images, want) {
				t.Errorf("%s: archive holds %q (%v), entry lists %q; want %q", e.Path, refs, err, e.Images, want)
			}
			if e.Path != "images/"+e.Name+"-"+e.Arch+".tar" {
				t.Errorf("image archive at %s", e.Path)
			}
		case artifacts.KindChart:
			if e.Name != "ks-core" || e.Version != "1.1.4" || e.Path != "charts/ks-core-1.1.4.tgz" {
				t.Errorf("chart entry %+v", e)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, StateFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the state file outlived a finished run: %v", err)
	}
	// The work directory is a bundle directory: it packs, and the agent opens it.
	if _, _, err := image.ReadBundleDir(dir, image.BundleSpec{}); err != nil {
		t.Errorf("the work directory does not pack: %v", err)
	}
	if _, err := artifacts.OpenBundle(dir, dir); err != nil {
		t.Error(err)
	}

	// A third run asks the registry nothing and downloads no file again.
	before, mirrorBefore := f.reg.Total(""), f.hits.Total()
	out.Reset()
	if _, err := Collect(ctx, opts); err != nil {
		t.Fatal(err)
	}
	if got := f.reg.Total("") - before; got != 0 {
		t.Errorf("a run over a finished work directory made %d registry requests", got)
	}
	// One checksum request and one unread file request per binary; the chart is not fetched.
	if got := f.hits.Total() - mirrorBefore; got != 28 {
		t.Errorf("a run over a finished work directory made %d mirror requests, want 28", got)
	}
	if n := strings.Count(out.String(), "already pulled"); n != 10 {
		t.Errorf("%d archives already pulled, want 10:\n%s", n, out)
	}
}

// TestCollectImageGroups: which archives a cluster gets and the names in them follow the
// cluster's network plugin, storage, KubeSphere version and registry layout.
func TestCollectImageGroups(t *testing.T) {
	f := newFixture(t, "amd64")
	h := f.reg.Host
	tests := []struct {
		name     string
		extra    string
		override bool // spec.registry.namespaceOverride: kubesphereio
		groups   map[string][]string
		calico   bool
	}{
		{
			name:  "calico and openebs",
			extra: "  network: {plugin: calico}\n",
			groups: map[string][]string{
				GroupKubernetes:   kubernetesRefs(h),
				GroupControlPlane: controlPlaneRefs(h),
				GroupCNI:          {h + "/calico/cni:v3.32.1", h + "/calico/kube-controllers:v3.32.1", h + "/calico/node:v3.32.1"},
				GroupStorage:      {h + "/openebs/linux-utils:4.3.0", h + "/openebs/provisioner-localpv:4.4.0"},
			},
			calico: true,
		},
		{
			name:  "no CNI, own storage, KubeSphere v3",
			extra: "  network: {plugin: none}\n  storage: {defaultClass: local-path}\n  kubesphere: {enabled: true, version: v3.4.1}\n",
			groups: map[string][]string{
				GroupKubernetes:   kubernetesRefs(h),
				GroupControlPlane: controlPlaneRefs(h),
				GroupKubeSphere:   {h + "/kubesphere/ks-installer:v3.4.1"},
			},
		},
		{
			// KubeKey's flat layout: every image under one namespace.
			name:     "namespace override",
			extra:    "  network: {plugin: flannel}\n  kubesphere: {enabled: true, version: v3.4.1}\n",
			override: true,
			groups: map[string][]string{
				GroupKubernetes: {h + "/kubesphereio/coredns:v1.14.6", h + "/kubesphereio/kube-proxy:v1.37.2", h + "/kubesphereio/pause:3.10.2"},
				GroupControlPlane: {h + "/kubesphereio/etcd:3.7.0-0", h + "/kubesphereio/kube-apiserver:v1.37.2",
					h + "/kubesphereio/kube-controller-manager:v1.37.2", h + "/kubesphereio/kube-scheduler:v1.37.2"},
				GroupCNI:        {h + "/kubesphereio/flannel-cni-plugin:v1.8.0-flannel1", h + "/kubesphereio/flannel:v0.27.4"},
				GroupStorage:    {h + "/kubesphereio/linux-utils:4.3.0", h + "/kubesphereio/provisioner-localpv:4.4.0"},
				GroupKubeSphere: {h + "/kubesphereio/ks-installer:v3.4.1"},
			},
		},
		{
			// The internal load balancer's image is a group of its own, named as the nodes
			// pull it (a path-for-path mirror here).
			name:  "haproxy",
			extra: "  network: {plugin: none}\n  storage: {defaultClass: local-path}\n  controlPlaneEndpoint: {internalLoadbalancer: haproxy}\n",
			groups: map[string][]string{
				GroupKubernetes:   kubernetesRefs(h),
				GroupControlPlane: controlPlaneRefs(h),
				GroupLoadBalancer: {h + "/library/haproxy:" + versions.HAProxyVersion},
			},
		},
		{
			name:     "kube-vip, namespace override",
			extra:    "  network: {plugin: none}\n  storage: {defaultClass: local-path}\n  controlPlaneEndpoint: {internalLoadbalancer: kube-vip, address: 10.0.0.100}\n",
			override: true,
			groups: map[string][]string{
				GroupKubernetes: {h + "/kubesphereio/coredns:v1.14.6", h + "/kubesphereio/kube-proxy:v1.37.2", h + "/kubesphereio/pause:3.10.2"},
				GroupControlPlane: {h + "/kubesphereio/etcd:3.7.0-0", h + "/kubesphereio/kube-apiserver:v1.37.2",
					h + "/kubesphereio/kube-controller-manager:v1.37.2", h + "/kubesphereio/kube-scheduler:v1.37.2"},
				GroupLoadBalancer: {h + "/kubesphereio/kube-vip:" + versions.KubeVIPVersion},
			},
		},
		{
			// v4: every image of the chart, its hooks' included, moves under the namespace.
			name:     "namespace override, KubeSphere v4",
			extra:    "  network: {plugin: none}\n  storage: {defaultClass: local-path}\n  kubesphere: {enabled: true, version: v4.1.3, chart: \"" + f.chartURL + "\"}\n",
			override: true,
			groups: map[string][]string{
				GroupKubernetes: {h + "/kubesphereio/coredns:v1.14.6", h + "/kubesphereio/kube-proxy:v1.37.2", h + "/kubesphereio/pause:3.10.2"},
				GroupControlPlane: {h + "/kubesphereio/etcd:3.7.0-0", h + "/kubesphereio/kube-apiserver:v1.37.2",
					h + "/kubesphereio/kube-controller-manager:v1.37.2", h + "/kubesphereio/kube-scheduler:v1.37.2"},
				GroupKubeSphere: kubesphereRefs(h, "kubesphereio"),
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			extra := tc.extra
			if tc.override {
				extra += "  registry: {privateRegistry: \"" + h + "\", namespaceOverride: kubesphereio}\n"
			}
			c := f.clusterWith(t, extra)
			for _, refs := range tc.groups {
				collecttest.Push(t, refs...)
			}
			opts, out := f.options(t, c, t.TempDir(), "amd64")
			m, err := Collect(context.Background(), opts)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			got := map[string][]string{}
			var manifests []string
			for _, e := range m.Artifacts {
				switch e.Kind {
				case artifacts.KindImage:
					got[e.Name] = e.Images
				case artifacts.KindManifest:
					manifests = append(manifests, e.Path)
				}
			}
			if len(got) != len(tc.groups) {
				t.Errorf("image groups %v, want %v", got, tc.groups)
			}
			for g, want := range tc.groups {
				if !slices.Equal(got[g], want) {
					t.Errorf("group %s: %q, want %q", g, got[g], want)
				}
			}
			if wantCalico := []string{"manifests/calico-" + addons.CalicoVersion + ".yaml"}; tc.calico != slices.Equal(manifests, wantCalico) {
				t.Errorf("manifest entries %q (calico %v)", manifests, tc.calico)
			}
		})
	}
}

// clusterWith is cluster with a registry section of its own.
func (f *fixture) clusterWith(t *testing.T, extra string) *cluster.Cluster {
	t.Helper()
	if !strings.Contains(extra, "registry:") {
		return f.cluster(t, extra)
	}
	data := `apiVersion: ksboot.dev/v1alpha1
kind: Cluster
metadata: {name: collecttest}
spec:
  hosts:
    - {name: cp1, address: 10.0.0.10/24}
  roleGroups: {etcd: [cp1], control-plane: [cp1]}
  kubernetes: {version: v1.37.2}
  artifacts: {mirror: "` + f.mirror + `"}
` + extra
	c, ps, err := cluster.Parse("cluster.yaml", []byte(data))
	if err != nil {
		t.Fatalf("%v\n%v", err, ps)
	}
	return c
}

func TestCollectErrors(t *testing.T) {
	f := newFixture(t, "amd64", "arm64")
	h := f.reg.Host
	tests := []struct {
		name   string
		extra  string
		arches []string
		setup  func(t *testing.T, o *Options)
		want   []string
	}{
		{
			name: "image for another architecture", extra: "  network: {plugin: none}\n  storage: {defaultClass: local-path}\n", arches: []string{"arm64"},
			setup: func(t *testing.T, o *Options) {
				refs := kubernetesRefs(h)
				collecttest.Push(t, refs[1:]...)
				// Published for amd64 only, not as a multi-architecture index.
				collecttest.PushSingle(t, refs[0], "amd64")
			},
			want: []string{"pulling image " + h + "/coredns/coredns:v1.14.6 from registry " + h, "no linux/arm64 image", "linux/amd64"},
		},
		{
			name: "calico manifest not the pinned one", extra: "  network: {plugin: calico}\n", arches: []string{"amd64"},
			setup: func(t *testing.T, o *Options) {
				a := f.calico
				a.SHA256 = strings.Repeat("0", 64)
				o.CalicoManifest = &a
			},
			want: []string{"downloading the Calico manifest", "SHA-256 mismatch"},
		},
		{
			name: "chart path in the bundle", extra: "  network: {plugin: none}\n  kubesphere: {enabled: true, version: v4.1.3, chart: charts/ks-core-1.1.4.tgz}\n", arches: []string{"amd64"},
			want: []string{`spec.kubesphere.chart "charts/ks-core-1.1.4.tgz" is a path in the offline bundle`, "--from-dir"},
		},
		{
			name: "chart missing", extra: "  network: {plugin: none}\n  kubesphere: {enabled: true, version: v4.1.3, chart: \"" + f.mirror + "/charts/ks-core-9.9.9.tgz\"}\n", arches: []string{"amd64"},
			want: []string{"ks-core-9.9.9.tgz", "404"},
		},
		{
			name: "unknown architecture", arches: []string{"s390x"},
			want: []string{`architecture "s390x"`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := f.cluster(t, tc.extra)
			opts, out := f.options(t, c, t.TempDir(), tc.arches...)
			if tc.setup != nil {
				tc.setup(t, &opts)
			}
			_, err := Collect(context.Background(), opts)
			if err == nil {
				t.Fatalf("no error\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

// TestCollectCleansUp: leftovers of an interrupted run are removed at the start, and files of
// an earlier bundle that the new one does not list are removed at the end, so the directory
// packs.
func TestCollectCleansUp(t *testing.T) {
	f := newFixture(t, "amd64")
	dir := t.TempDir()
	collecttest.Push(t, append(kubernetesRefs(f.reg.Host), controlPlaneRefs(f.reg.Host)...)...)
	collecttest.Push(t, f.reg.Host+"/flannel-io/flannel:v0.27.4", f.reg.Host+"/flannel-io/flannel-cni-plugin:v1.8.0-flannel1")
	opts, out := f.options(t, f.cluster(t, "  network: {plugin: flannel}\n  storage: {defaultClass: local-path}\n"), dir, "amd64")
	if _, err := Collect(context.Background(), opts); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	leftovers := []string{
		".ksboot-tmp-kubelet-123",
		"bin/linux/amd64/.ksboot-tmp-kubeadm-1",
		"images/.kubernetes-amd64.tar.tmp-99",
		".manifest.json.ksboot-42",
		".ksboot-tmp-apt-7/amd64/state/status",
	}
	for _, p := range leftovers {
		mustWriteFile(t, filepath.Join(dir, p), "partial")
	}
	opts.Cluster = f.cluster(t, "  network: {plugin: none}\n  storage: {defaultClass: local-path}\n")
	out.Reset()
	if _, err := Collect(context.Background(), opts); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, p := range append(leftovers, "images/cni-amd64.tar", ".ksboot-tmp-apt-7") {
		if _, err := os.Stat(filepath.Join(dir, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is still there: %v", p, err)
		}
	}
	if !strings.Contains(out.String(), "removed images/cni-amd64.tar") {
		t.Errorf("output:\n%s", out)
	}
	if _, _, err := image.ReadBundleDir(dir, image.BundleSpec{}); err != nil {
		t.Error(err)
	}
}

func mustWriteFile(t *testing.T, p, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestMeter(t *testing.T) {
	var buf bytes.Buffer
	m := newMeter(&buf, "kubelet v1.37.2 (linux/amd64)", 2<<20)
	if _, err := io.Copy(io.Discard, m.reader(bytes.NewReader(make([]byte, 2<<20)))); err != nil {
		t.Fatal(err)
	}
	m.finish()
	if got := buf.String(); !strings.Contains(got, "kubelet v1.37.2 (linux/amd64)  ") || !strings.Contains(got, "/ 2.0 MiB") || !strings.HasSuffix(got, "\r\033[K") {
		t.Errorf("progress output %q", got)
	}
	none := newMeter(nil, "x", 1) // no Progress writer: nothing happens
	none.add(1)
	none.finish()
	if r := none.reader(&buf); r != &buf {
		t.Error("a nil meter wrapped a reader")
	}
}

// TestKubernetesImagesInexact: for a release whose CoreDNS and etcd tags ksboot has not read,
// the bundle says which tags it carries and how to check them.
func TestKubernetesImagesInexact(t *testing.T) {
	for _, tc := range []struct {
		version string
		warn    bool
	}{{"v1.37.2", false}, {"v1.36.1", false}, {"v1.30.5", true}} {
		var out bytes.Buffer
		c := &collector{o: Options{Out: &out}, c: &cluster.Cluster{}}
		c.o, _, _ = Options{Cluster: c.c, Out: &out, Arches: []string{"amd64"}, WorkDir: "x"}.check()
		c.c.Spec.Kubernetes.Version = tc.version
		ig, err := c.group(context.Background(), GroupKubernetes)
		if err != nil || len(ig.refs) != 3 || ig.version != tc.version {
			t.Fatalf("%s: %+v, %v", tc.version, ig, err)
		}
		warned := strings.Contains(out.String(), "warning: ksboot has not read the CoreDNS and etcd tags of kubeadm "+tc.version) &&
			strings.Contains(out.String(), "kubeadm config images list --kubernetes-version "+tc.version)
		if warned != tc.warn {
			t.Errorf("%s: warning %v, want %v:\n%s", tc.version, warned, tc.warn, out.String())
		}
	}
}
