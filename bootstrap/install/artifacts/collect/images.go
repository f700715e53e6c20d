package collect

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"helm.sh/helm/v3/pkg/chart/loader"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ksboot/ksboot/bootstrap/addons"
	"github.com/ksboot/ksboot/bootstrap/addons/kube"
	"github.com/ksboot/ksboot/bootstrap/install"
	"github.com/ksboot/ksboot/bootstrap/install/artifacts"
	"github.com/ksboot/ksboot/bootstrap/kubeadm"
	"github.com/ksboot/ksboot/bootstrap/kubesphere"
	"github.com/ksboot/ksboot/bootstrap/loadbalancer"
	"github.com/ksboot/ksboot/cluster"
	"github.com/ksboot/ksboot/image"
)

// imagesDir holds the image archives: images/<group>-<arch>.tar.
const imagesDir = "images"

// Image groups: one archive per group and architecture, named after the group, which is also
// the manifest entry's name.
const (
	// GroupKubernetes is what kubeadm deploys on every node: kube-proxy, CoreDNS, pause.
	GroupKubernetes = "kubernetes"
	// GroupControlPlane is what kubeadm runs on control planes only: the API server,
	// controller manager, scheduler and etcd. Workers skip its archive.
	GroupControlPlane = "kubernetes-control-plane"
	// GroupCNI is the network plugin's (Flannel or Calico).
	GroupCNI = "cni"
	// GroupStorage is OpenEBS LocalPV's.
	GroupStorage = "storage"
	// GroupKubeSphere is KubeSphere's: ks-installer (v3) or the ks-core chart's workloads, hook
	// Jobs and configured tool images (v4).
	GroupKubeSphere = "kubesphere"
	// GroupLoadBalancer is the internal load balancer's (controlPlaneEndpoint.
	// internalLoadbalancer): haproxy, which every node that is not a control plane runs, or
	// kube-vip, which only control planes run (workers skip its archive).
	GroupLoadBalancer = "loadbalancer"
)

// imageGroups lists the groups the cluster needs, in install order.
func (c *collector) imageGroups() []string {
	groups := []string{GroupKubernetes, GroupControlPlane}
	if loadbalancer.Kind(c.c) != "" {
		// Before kubeadm: the static pods start with the kubelet kubeadm starts.
		groups = append(groups, GroupLoadBalancer)
	}
	switch c.c.Spec.Network.Plugin {
	case "flannel", "calico":
		groups = append(groups, GroupCNI)
	}
	if c.c.Spec.Storage.DefaultClass == addons.OpenEBSStorageClass {
		groups = append(groups, GroupStorage)
	}
	if c.c.Spec.KubeSphere.Enabled {
		groups = append(groups, GroupKubeSphere)
	}
	return groups
}

// imageGroup is a group's references, sorted, and the version its manifest entry carries.
type imageGroup struct {
	refs    []string
	version string
}

// group decides a group's images once (they are the same for every architecture). The names
// are those the nodes ask for: the cluster's registry settings are applied exactly as the
// kubeadm, addons and kubesphere steps apply them, so a node finds the imported image under the
// name its manifests use.
func (c *collector) group(ctx context.Context, g string) (imageGroup, error) {
	if ig, ok := c.groups[g]; ok {
		return ig, nil
	}
	var ig imageGroup
	var err error
	spec := c.c.Spec
	switch g {
	case GroupKubernetes, GroupControlPlane:
		p := kubeadm.ParamsFromNode(&cluster.NodeConfig{Cluster: *c.c}, "", "", "")
		// In kubeadm's order: four Kubernetes images, CoreDNS, pause, etcd.
		refs, exact := install.KubeadmImages(spec.Kubernetes.Version, p.ImageRepository, p.DNSImageRepository)
		ig.version = spec.Kubernetes.Version
		if !exact && g == GroupKubernetes {
			c.warn(fmt.Sprintf("ksboot has not read the CoreDNS and etcd tags of kubeadm %s; the bundle carries those of the nearest release it knows (%s): compare with `kubeadm config images list --kubernetes-version %s`",
				spec.Kubernetes.Version, refs[4]+", "+refs[6], spec.Kubernetes.Version))
		}
		for _, r := range refs {
			if install.RunsOnEveryNode(r) == (g == GroupKubernetes) {
				ig.refs = append(ig.refs, r)
			}
		}
	case GroupCNI, GroupStorage:
		ig.refs, err = c.addonImages(ctx, g)
		ig.version = addons.OpenEBSVersion
		if g == GroupCNI {
			ig.version = addons.FlannelVersion
			if spec.Network.Plugin == "calico" {
				ig.version = addons.CalicoVersion
			}
		}
	case GroupLoadBalancer:
		ig.refs, ig.version = loadbalancer.Images(c.c), loadbalancer.Version(c.c)
	case GroupKubeSphere:
		ig, err = c.kubesphereImages()
	default:
		err = fmt.Errorf("unknown image group %q", g)
	}
	if err != nil {
		return ig, fmt.Errorf("listing the %s images: %w", g, err)
	}
	for i, r := range ig.refs {
		if ig.refs[i], err = normalizeRef(r); err != nil {
			return ig, fmt.Errorf("listing the %s images: %w", g, err)
		}
	}
	slices.Sort(ig.refs)
	ig.refs = slices.Compact(ig.refs)
	if len(ig.refs) == 0 {
		return ig, fmt.Errorf("listing the %s images: the manifests name no image", g)
	}
	if c.groups == nil {
		c.groups = map[string]imageGroup{}
	}
	c.groups[g] = ig
	return ig, nil
}

// addonImages are the images of the objects the addons step applies: the CNI's (Calico's
// manifest as downloaded into the work directory, patched for the registry) and OpenEBS's,
// whose helper image is named in an environment variable rather than a container.
func (c *collector) addonImages(ctx context.Context, g string) ([]string, error) {
	a := c.calicoArtifact()
	comps, err := addons.Manifests(ctx, addons.Options{Cluster: c.c, CalicoSource: addons.DirSource{Dir: c.dir}, CalicoArtifact: &a})
	if err != nil {
		return nil, err
	}
	for _, comp := range comps {
		if comp.Name != g {
			continue
		}
		refs := podImages(comp.Objects)
		if g == GroupStorage && len(comp.Objects) > 0 {
			refs = append(refs, addons.Image(c.c.Spec.Registry, addons.OpenEBSHelperImage))
		}
		return refs, nil
	}
	return nil, nil
}

// kubesphereImages are the ks-installer image for v3 (the installer then pulls images of its
// own, which ksboot does not know), or for v4 the images of the ks-core chart rendered with the
// values the kubesphere step gives it (kubesphere.RenderParams): its workloads, its hook Jobs
// (Helm keeps those out of the release manifest; ks-core's post-install hooks run
// kubesphere/kubectl, and an install without that image waits for them until its deadline) and
// the images kubesphere-config names for pods ks-core starts later. The extensions KubeSphere
// installs later are not included.
func (c *collector) kubesphereImages() (imageGroup, error) {
	p, err := kubesphere.ParamsFromCluster(c.c, "")
	if err != nil {
		return imageGroup{}, err
	}
	ig := imageGroup{version: p.Version}
	if p.Major == 3 {
		ig.refs = []string{p.InstallerImage}
		return ig, nil
	}
	ch, err := loader.Load(filepath.Join(c.dir, filepath.FromSlash(c.chartPath)))
	if err != nil {
		return ig, fmt.Errorf("loading the ks-core chart %s: %w", c.chartPath, err)
	}
	r, err := kubesphere.RenderParams(ch, p, c.c.Spec.Kubernetes.Version)
	if err != nil {
		return ig, err
	}
	ig.refs = r.Images
	return ig, nil
}

// podImages lists the images of the containers and init containers of workload objects.
func podImages(objs []*unstructured.Unstructured) []string {
	var refs []string
	for _, u := range objs {
		refs = append(refs, kube.ContainerImages(u)...)
	}
	return refs
}

// normalizeRef spells a reference as containerd names the image ("busybox" is
// docker.io/library/busybox:latest), which is what image archives and the manifest must say.
func normalizeRef(ref string) (string, error) {
	r, err := name.ParseReference(ref, name.WeakValidation)
	if err != nil {
		return "", fmt.Errorf("image reference %q: %w", ref, err)
	}
	reg := r.Context().RegistryStr()
	if reg == name.DefaultRegistry {
		reg = "docker.io"
	}
	repo := reg + "/" + r.Context().RepositoryStr()
	if d, ok := r.(name.Digest); ok {
		return repo + "@" + d.DigestStr(), nil
	}
	return repo + ":" + r.Identifier(), nil
}

// imageArchive makes images/<group>-<arch>.tar. An archive that an earlier run recorded with
// the same references, and whose file still has the recorded sha256, is kept without asking a
// registry anything.
func (c *collector) imageArchive(ctx context.Context, g, arch string) ([]artifacts.Entry, string, error) {
	ig, err := c.group(ctx, g)
	if err != nil {
		return nil, "", err
	}
	rel := path.Join(imagesDir, g+"-"+arch+".tar")
	dst := filepath.Join(c.dir, filepath.FromSlash(rel))
	e := artifacts.Entry{Name: g, Version: ig.version, Arch: arch, Kind: artifacts.KindImage, Path: rel, Images: ig.refs}
	if prev, ok := c.state.find(rel); ok && prev.Kind == artifacts.KindImage && slices.Equal(prev.Images, ig.refs) {
		if sum, err := artifacts.FileSHA256(dst); err == nil && sum == prev.SHA256 {
			e.SHA256 = sum
			return []artifacts.Entry{e}, "already pulled (" + images(len(ig.refs)) + ")", nil
		}
	}
	var imgs []image.RefImage
	var total int64
	seen := map[v1.Hash]bool{}
	var registries []string
	for _, ref := range ig.refs {
		img, reg, err := c.pull(ctx, ref, arch)
		if err != nil {
			return nil, "", err
		}
		m, err := img.Manifest()
		if err != nil {
			return nil, "", fmt.Errorf("pulling image %s for linux/%s from registry %s: %w", ref, arch, reg, err)
		}
		for _, l := range m.Layers {
			if !seen[l.Digest] {
				seen[l.Digest] = true
				total += l.Size
			}
		}
		imgs = append(imgs, image.RefImage{Ref: ref, Image: img})
		if !slices.Contains(registries, reg) {
			registries = append(registries, reg)
		}
	}
	bar := newMeter(c.o.Progress, fmt.Sprintf("images %s (linux/%s)", g, arch), total)
	if bar != nil {
		for i := range imgs {
			imgs[i].Image = progressImage{imgs[i].Image, bar}
		}
	}
	c.o.Logger.Debug("writing image archive", "path", rel, "images", strings.Join(ig.refs, ","))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return nil, "", err
	}
	err = image.WriteImageArchive(dst, imgs, image.Options{ModTime: c.o.ModTime})
	bar.finish()
	if err != nil {
		return nil, "", err
	}
	if e.SHA256, err = artifacts.FileSHA256(dst); err != nil {
		return nil, "", fmt.Errorf("reading back %s: %w", rel, err)
	}
	return []artifacts.Entry{e}, "pulled " + images(len(ig.refs)) + " from " + strings.Join(registries, ", "), nil
}

func images(n int) string {
	if n == 1 {
		return "1 image"
	}
	return fmt.Sprintf("%d images", n)
}

// pull opens an image for linux/<arch> (the architecture's image of a multi-platform index).
// Layers are fetched later, while the archive is written. Credentials come from the cluster
// file's registry.auths, then from the Docker configuration of the user running the command;
// registry.insecureRegistries are reached as the nodes' containerd reaches them (plain HTTP
// allowed, certificate unchecked).
func (c *collector) pull(ctx context.Context, ref, arch string) (v1.Image, string, error) {
	insecure := c.insecure(ref)
	var nopts []name.Option
	if insecure {
		nopts = append(nopts, name.Insecure)
	}
	r, err := name.ParseReference(ref, nopts...)
	if err != nil {
		return nil, "", fmt.Errorf("image reference %q: %w", ref, err)
	}
	reg := r.Context().RegistryStr()
	if reg == name.DefaultRegistry {
		reg = "docker.io"
	}
	opts := []remote.Option{
		remote.WithPlatform(v1.Platform{OS: "linux", Architecture: arch}),
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(authn.NewMultiKeychain(clusterKeychain(c.c.Spec.Registry.Auths), authn.DefaultKeychain)),
	}
	if tr := c.transport(insecure); tr != nil {
		opts = append(opts, remote.WithTransport(tr))
	}
	c.o.Logger.Debug("pulling image", "image", ref, "platform", "linux/"+arch)
	img, err := remote.Image(r, opts...)
	if err != nil {
		return nil, reg, fmt.Errorf("pulling image %s for linux/%s from registry %s: %w", ref, arch, reg, err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, reg, fmt.Errorf("pulling image %s for linux/%s from registry %s: %w", ref, arch, reg, err)
	}
	if (cfg.OS != "" && cfg.OS != "linux") || (cfg.Architecture != "" && cfg.Architecture != arch) {
		return nil, reg, fmt.Errorf("pulling image %s from registry %s: it has no linux/%s image (it is built for %s/%s)", ref, reg, arch, cfg.OS, cfg.Architecture)
	}
	return img, reg, nil
}

// insecure reports whether the reference's registry is one of registry.insecureRegistries.
func (c *collector) insecure(ref string) bool {
	host, _, _ := strings.Cut(ref, "/")
	for _, r := range c.c.Spec.Registry.InsecureRegistries {
		if trimRegistry(r) == host {
			return true
		}
	}
	return false
}

func (c *collector) transport(insecure bool) http.RoundTripper {
	tr := c.o.RegistryTransport
	if !insecure {
		return tr
	}
	if tr == nil {
		tr = remote.DefaultTransport
	}
	if t, ok := tr.(*http.Transport); ok {
		t = t.Clone()
		if t.TLSClientConfig == nil {
			t.TLSClientConfig = &tls.Config{}
		}
		t.TLSClientConfig.InsecureSkipVerify = true // the operator listed the registry in insecureRegistries
		return t
	}
	return tr
}

func trimRegistry(r string) string {
	r = strings.TrimSpace(r)
	for _, s := range []string{"https://", "http://"} {
		r = strings.TrimPrefix(r, s)
	}
	return strings.TrimSuffix(r, "/")
}

// clusterKeychain answers with the cluster file's registry.auths.
type clusterKeychain map[string]cluster.Auth

func (k clusterKeychain) Resolve(res authn.Resource) (authn.Authenticator, error) {
	want := res.RegistryStr()
	for host, a := range k {
		h := trimRegistry(host)
		if h == "docker.io" {
			h = name.DefaultRegistry
		}
		if h == want {
			return authn.FromConfig(authn.AuthConfig{Username: a.Username, Password: a.Password}), nil
		}
	}
	return authn.Anonymous, nil
}

// progressImage counts the layer bytes read while an archive is written.
type progressImage struct {
	v1.Image
	bar *meter
}

func (p progressImage) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	l, err := p.Image.LayerByDigest(h)
	if err != nil {
		return nil, err
	}
	return progressLayer{l, p.bar}, nil
}

type progressLayer struct {
	v1.Layer
	bar *meter
}

func (l progressLayer) Compressed() (io.ReadCloser, error) {
	rc, err := l.Layer.Compressed()
	if err != nil {
		return nil, err
	}
	return readCloser{l.bar.reader(rc), rc}, nil
}
