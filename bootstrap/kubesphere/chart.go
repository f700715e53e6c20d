package kubesphere

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	neturl "net/url"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/storage/driver"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"

	"github.com/ksboot/ksboot/bootstrap/addons/kube"
	"github.com/ksboot/ksboot/bootstrap/install/artifacts"
)

// ReleaseName is the Helm release of the ks-core chart, as KubeSphere's guide names it.
const ReleaseName = "ks-core"

// maxChartSize bounds a chart download; ks-core is a few hundred kilobytes.
const maxChartSize = 64 << 20

// MirrorHint is appended to errors about KubeSphere images and charts that could not be had.
const MirrorHint = "KubeSphere's open-source downloads were suspended upstream in 2025: copy the images to a registry " +
	"the nodes can reach and set spec.kubesphere.imageRegistry (and spec.kubesphere.installerImage for v3), " +
	"or point spec.kubesphere.chart at a mirror URL or a path in the offline bundle (ksboot bundle)"

// ChartError says which chart could not be had, and why.
type ChartError struct {
	Source string
	Err    error
}

func (e *ChartError) Error() string {
	return fmt.Sprintf("fetching the ks-core chart %s: %v\n%s", e.Source, e.Err, MirrorHint)
}

func (e *ChartError) Unwrap() error { return e.Err }

// ChartsDir is the directory of an offline bundle that holds chart archives, under the file
// name of the URL they were downloaded from ("charts/ks-core-1.1.4.tgz"); `ksboot bundle` puts
// them there and lists them in the manifest as kind chart.
const ChartsDir = "charts"

// LoadChart loads the chart named by source: an http(s) URL is taken from the offline bundle
// in bundleDir when the bundle's manifest lists a chart of the URL's file name (checked against
// its sha256), and downloaded otherwise (bounded in size and time by client); anything else is
// a chart archive or directory, relative paths being inside bundleDir (the mounted offline
// bundle).
func LoadChart(ctx context.Context, source, bundleDir string, client *http.Client) (*chart.Chart, error) {
	switch {
	case strings.HasPrefix(source, "http://") || strings.HasPrefix(source, "https://"):
		if bundleDir != "" {
			p, ok, err := BundleChart(bundleDir, source)
			if err != nil {
				return nil, &ChartError{Source: source, Err: err}
			}
			if ok {
				c, err := loader.Load(p)
				if err != nil {
					return nil, &ChartError{Source: p, Err: err}
				}
				return c, nil
			}
		}
		_, c, err := FetchChart(ctx, source, client)
		return c, err
	case strings.Contains(source, "://"):
		return nil, &ChartError{Source: source, Err: errors.New("unsupported scheme: use an http(s) URL or a path in the offline bundle")}
	}
	path := source
	if !filepath.IsAbs(path) {
		if bundleDir == "" {
			return nil, &ChartError{Source: source, Err: errors.New("a relative chart path is a path in the offline bundle, and no bundle is mounted")}
		}
		path = filepath.Join(bundleDir, path)
	}
	c, err := loader.Load(path)
	if err != nil {
		return nil, &ChartError{Source: path, Err: err}
	}
	return c, nil
}

// FetchChart downloads a chart archive from an http(s) URL, bounded in size and time by client
// (nil: a five-minute timeout), and returns the archive and the chart it holds.
func FetchChart(ctx context.Context, url string, client *http.Client) ([]byte, *chart.Chart, error) {
	data, err := download(ctx, url, client)
	if err != nil {
		return nil, nil, &ChartError{Source: url, Err: err}
	}
	c, err := loader.LoadArchive(bytes.NewReader(data))
	if err != nil {
		return nil, nil, &ChartError{Source: url, Err: fmt.Errorf("not a chart archive: %w", err)}
	}
	return data, c, nil
}

// BundleChartPath is where a bundle keeps the chart downloaded from url:
// charts/<the URL's file name>.
func BundleChartPath(url string) (string, error) {
	u, err := neturl.Parse(url)
	if err != nil {
		return "", fmt.Errorf("chart URL %s: %w", url, err)
	}
	name := path.Base(u.Path)
	if name == "/" || name == "." || name == "" {
		return "", fmt.Errorf("chart URL %s names no file", url)
	}
	return path.Join(ChartsDir, name), nil
}

// BundleChart finds the chart downloaded from url in the offline bundle at bundleDir (a host
// path): the manifest must list it, as kind chart at BundleChartPath(url), and the file must
// have the listed sha256. ok is false, without an error, when the directory is not a bundle or
// its manifest lists no such chart.
func BundleChart(bundleDir, url string) (p string, ok bool, err error) {
	rel, err := BundleChartPath(url)
	if err != nil {
		return "", false, err
	}
	b, err := artifacts.OpenBundle(bundleDir, bundleDir)
	if err != nil {
		if errors.Is(err, artifacts.ErrNotFound) {
			return "", false, nil
		}
		return "", false, err
	}
	for _, e := range b.Files(artifacts.KindChart) {
		if e.Path == rel {
			p, err := b.LocalPath(e)
			return p, err == nil, err
		}
	}
	return "", false, nil
}

func download(ctx context.Context, url string, client *http.Client) ([]byte, error) {
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Minute}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("server answered %s", resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxChartSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxChartSize {
		return nil, fmt.Errorf("larger than %d bytes", maxChartSize)
	}
	return data, nil
}

// ChartValues are the values ksboot gives the ks-core chart ch, with
// spec.kubesphere.configuration merged over them (the operator's word wins). Each is a value
// upstream's chart has (config/ks-core/values.yaml of v4.1.2 and v4.1.3):
//
//   - global.imageRegistry: Params.ImageRegistry. Every image of the chart that names no
//     registry of its own is pulled from it.
//   - extension.imageRegistry: the same, but only when it is not docker.io. Upstream leaves it
//     empty (each extension pulls from where it is published); KubeSphere's guide sets it to the
//     private registry or the China mirror, which is what a non-default registry is.
//   - <image>.repository for every image value of the chart (apiserver.image, kubectl.image,
//     ksCRDs.kubectl.image, ksExtensionRepository.image, …; see chartImageValues), only with
//     spec.registry.namespaceOverride: <namespaceOverride>/<name>, KubeKey's flat layout; an
//     image value that names a registry of its own also gets Params.ImageRegistry there.
//   - portal.hostname and portal.http.port: the console address and NodePort of the banner.
//     KubeSphere uses them as its own URL (the OAuth issuer, the console's links); upstream's
//     default is the in-cluster service name, which a browser cannot reach.
//   - ksExtensionRepository.image.tag: a pinned tag when the chart names the extensions museum
//     :latest (museumTags).
func ChartValues(p Params, ch *chart.Chart) map[string]any {
	host := p.ConsoleAddress
	if a, err := netip.ParseAddr(host); err == nil && a.Is6() {
		host = "[" + host + "]" // the chart prints http://<hostname>:<port>
	}
	base := map[string]any{
		"global": map[string]any{"imageRegistry": p.ImageRegistry},
		"portal": map[string]any{
			"hostname": host,
			"http":     map[string]any{"port": int64(p.ConsolePort)},
		},
	}
	if p.ImageRegistry != DefaultImageRegistry {
		base["extension"] = map[string]any{"imageRegistry": p.ImageRegistry}
	}
	if p.NamespaceOverride != "" && ch != nil {
		for _, iv := range chartImageValues(ch) {
			img := map[string]any{"repository": p.NamespaceOverride + "/" + path.Base(iv.repository)}
			if iv.registry != "" {
				img["registry"] = p.ImageRegistry
			}
			base = merge(base, nested(iv.path, img))
		}
	}
	if ch != nil {
		if tag, ok := museumTags[p.Version]; ok {
			if v, _ := lookup(ch.Values, "ksExtensionRepository", "image", "tag"); v == "latest" {
				base = merge(base, nested([]string{"ksExtensionRepository", "image"}, map[string]any{"tag": tag}))
			}
		}
	}
	return merge(base, p.Configuration)
}

// museumTags pins the extensions museum image of releases whose chart names it :latest. The
// chart of v4.1.2 (ks-core 1.1.3) does, and its Deployment sets no imagePullPolicy (the chart's
// ksExtensionRepository.image.pullPolicy is not used by the template), so Kubernetes pulls it
// Always: a node of an offline cluster that has the image from the bundle still cannot start
// it, and a bundle would carry whatever :latest was on the day it was made. The tag is the one
// KubeSphere's offline installation guide for v4.1.2 sets (--set
// ksExtensionRepository.image.tag=v1.1.2). v4.1.3's chart pins v1.1.3 itself.
var museumTags = map[string]string{"v4.1.2": "v1.1.2"}

// imageValue is an image of the chart as its values name it: <path>.registry, .repository and
// .tag, which the chart's templates read with global.imageRegistry and global.tag as fallbacks.
type imageValue struct {
	// path is where the image is in the values, e.g. apiserver.image or ksCRDs.kubectl.image.
	path []string
	// repository is the chart's default, e.g. kubesphere/ks-apiserver.
	repository string
	// registry is the chart's default; empty means global.imageRegistry.
	registry string
}

// chartImageValues lists the image values of a chart and its subcharts (under their alias in
// the parent's values), sorted by path: every map under a key ending in "image" ("image",
// "sysctlImage") that has a repository.
func chartImageValues(ch *chart.Chart) []imageValue {
	var out []imageValue
	seen := map[string]bool{}
	var walk func(prefix []string, vals map[string]any)
	walk = func(prefix []string, vals map[string]any) {
		for k, v := range vals {
			m, ok := v.(map[string]any)
			if !ok || (len(prefix) == 0 && k == "global") {
				continue
			}
			p := append(slices.Clone(prefix), k)
			repo, _ := m["repository"].(string)
			if repo == "" || !strings.HasSuffix(strings.ToLower(k), "image") {
				walk(p, m)
				continue
			}
			key := strings.Join(p, ".")
			if seen[key] {
				continue
			}
			seen[key] = true
			reg, _ := m["registry"].(string)
			out = append(out, imageValue{path: p, repository: repo, registry: reg})
		}
	}
	walk(nil, ch.Values)
	for _, sub := range ch.Dependencies() {
		key := sub.Name()
		if ch.Metadata != nil {
			for _, d := range ch.Metadata.Dependencies {
				if d.Name == sub.Name() && d.Alias != "" {
					key = d.Alias
				}
			}
		}
		walk([]string{key}, sub.Values)
	}
	slices.SortFunc(out, func(a, b imageValue) int {
		return strings.Compare(strings.Join(a.path, "."), strings.Join(b.path, "."))
	})
	return out
}

// nested returns {path[0]: {path[1]: … leaf}}.
func nested(path []string, leaf map[string]any) map[string]any {
	out := leaf
	for i := len(path) - 1; i >= 0; i-- {
		out = map[string]any{path[i]: out}
	}
	return out
}

// restGetter hands Helm the step's client configuration and the same discovery cache and
// REST mapper as the rest of the step, instead of a kubeconfig file.
type restGetter struct {
	kc        *kube.Client
	namespace string
}

func (g restGetter) ToRESTConfig() (*rest.Config, error) { return rest.CopyConfig(g.kc.Config), nil }

func (g restGetter) ToDiscoveryClient() (discovery.CachedDiscoveryInterface, error) {
	return g.kc.Discovery, nil
}

func (g restGetter) ToRESTMapper() (meta.RESTMapper, error) { return g.kc.RESTMapper(), nil }

func (g restGetter) ToRawKubeConfigLoader() clientcmd.ClientConfig {
	// Only the namespace is read from it; the REST config comes from ToRESTConfig.
	return clientcmd.NewDefaultClientConfig(*clientcmdapi.NewConfig(),
		&clientcmd.ConfigOverrides{Context: clientcmdapi.Context{Namespace: g.namespace}})
}

func helmConfig(kc *kube.Client, namespace string, log *slog.Logger) (*action.Configuration, error) {
	cfg := &action.Configuration{}
	debug := func(format string, v ...any) { log.Debug(fmt.Sprintf(format, v...), "component", "helm") }
	if err := cfg.Init(restGetter{kc: kc, namespace: namespace}, namespace, "secret", debug); err != nil {
		return nil, fmt.Errorf("initialising Helm: %w", err)
	}
	return cfg, nil
}

// hookGrace is how long InstallChart waits past its timeout for Helm to give up on a hook by
// itself (delete it by its policy, record the failed release) before it stops waiting.
const hookGrace = 30 * time.Second

// HookError is an install or upgrade that failed in a chart hook: Helm created the hook's
// objects (Jobs, for ks-core) and they did not complete in time, or failed.
type HookError struct {
	// Hooks are the hooks that failed or were still running, as Helm recorded them in the
	// release.
	Hooks []*release.Hook
	// Err is the install or upgrade error.
	Err error
}

func (e *HookError) Error() string { return e.Err.Error() }

func (e *HookError) Unwrap() error { return e.Err }

// InstallChart installs the ks-core release, or upgrades it when it exists with another
// chart version or other values. A release that is deployed with this chart version and these
// values is left alone, so running the step again adds no Helm revision and changes nothing.
// It does not wait for the workloads; see ChartDeployments.
//
// Helm waits for the chart's hooks (ks-core's post-install Jobs), each for up to timeout; the
// call as a whole also returns by timeout (plus a short grace for Helm to record a failure),
// however many hooks there are. A failure in a hook is a *HookError naming the hooks; one that
// ran out of time also wraps kube.ErrTimeout.
func InstallChart(ctx context.Context, kc *kube.Client, ch *chart.Chart, values map[string]any, timeout time.Duration, log *slog.Logger) (*release.Release, error) {
	cfg, err := helmConfig(kc, Namespace, log)
	if err != nil {
		return nil, err
	}
	// Helm stores values as JSON; compare in that form so int and float64 agree.
	want, err := jsonRoundTrip(values)
	if err != nil {
		return nil, fmt.Errorf("encoding chart values: %w", err)
	}
	hist, err := action.NewHistory(cfg).Run(ReleaseName)
	if err != nil && !errors.Is(err, driver.ErrReleaseNotFound) {
		return nil, fmt.Errorf("reading Helm release %s/%s: %w", Namespace, ReleaseName, err)
	}
	// Helm gives each hook the whole timeout, one after the other; this bounds them together.
	hctx, cancel := context.WithTimeout(ctx, timeout+hookGrace)
	defer cancel()
	if len(hist) == 0 {
		in := action.NewInstall(cfg)
		in.ReleaseName, in.Namespace, in.CreateNamespace = ReleaseName, Namespace, true
		in.Timeout = timeout
		rel, err := in.RunWithContext(hctx, ch, values)
		if err != nil {
			return nil, releaseError(ctx, cfg, timeout, fmt.Errorf("installing chart %s-%s as Helm release %s/%s: %w", ch.Name(), ch.Metadata.Version, Namespace, ReleaseName, helmError{err}))
		}
		return rel, nil
	}
	last := hist[0]
	for _, r := range hist {
		if r.Version > last.Version {
			last = r
		}
	}
	if last.Info != nil && last.Info.Status == release.StatusDeployed && last.Chart != nil && last.Chart.Metadata != nil &&
		last.Chart.Metadata.Name == ch.Name() && last.Chart.Metadata.Version == ch.Metadata.Version {
		have, err := jsonRoundTrip(last.Config)
		if err == nil && reflect.DeepEqual(have, want) {
			log.Info("Helm release is up to date", "release", Namespace+"/"+ReleaseName, "revision", last.Version)
			return last, nil
		}
	}
	up := action.NewUpgrade(cfg)
	up.Namespace, up.Timeout = Namespace, timeout
	// The step's values are the whole truth; values of an earlier run are not inherited.
	up.ResetValues = true
	rel, err := up.RunWithContext(hctx, ReleaseName, ch, values)
	if err != nil {
		return nil, releaseError(ctx, cfg, timeout, fmt.Errorf("upgrading Helm release %s/%s to chart %s-%s: %w", Namespace, ReleaseName, ch.Name(), ch.Metadata.Version, helmError{err}))
	}
	return rel, nil
}

// releaseError makes a failed install or upgrade a *HookError when the release Helm recorded
// has hooks that failed or did not finish. Helm passes a hook's timeout on as text ("timed out
// waiting for the condition"), and its own deadline as the context's; both become
// kube.ErrTimeout unless ctx, the caller's, is what ended.
func releaseError(ctx context.Context, cfg *action.Configuration, timeout time.Duration, err error) error {
	if ctx.Err() != nil {
		return err
	}
	timedOut := errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "timed out waiting for the condition")
	if timedOut {
		err = fmt.Errorf("%w after %s: %w", kube.ErrTimeout, timeout.Round(100*time.Millisecond), err)
	}
	rel, rerr := cfg.Releases.Last(ReleaseName)
	if rerr != nil {
		return err
	}
	var hooks []*release.Hook
	for _, h := range rel.Hooks {
		switch h.LastRun.Phase {
		case release.HookPhaseFailed, release.HookPhaseRunning, release.HookPhaseUnknown:
			hooks = append(hooks, h)
		}
	}
	if len(hooks) == 0 {
		return err
	}
	return &HookError{Hooks: hooks, Err: err}
}

// helmError keeps Helm's error for errors.Is and errors.As but prints it on one line: Helm
// joins hook errors in go-multierror's layout ("1 error occurred:\n\t* …\n\n").
type helmError struct{ err error }

func (e helmError) Error() string {
	s := strings.ReplaceAll(e.err.Error(), "1 error occurred:\n\t* ", "")
	s = strings.ReplaceAll(s, "\n\t* ", " * ")
	return strings.Join(strings.Fields(s), " ")
}

func (e helmError) Unwrap() error { return e.err }

// RenderChart renders the chart as `helm template --skip-tests` does, without a cluster: the
// release's objects, then its hooks (pre/post-install, pre/post-upgrade, post-delete, …), each
// after a "# Source:" line. Helm keeps hooks out of the release manifest, but they run images
// too (ks-core's post-install Jobs run kubesphere/kubectl), which an offline bundle must carry.
// Test hooks are left out: only `helm test` runs them.
func RenderChart(ch *chart.Chart, values map[string]any, kubernetesVersion string) (string, error) {
	cfg := &action.Configuration{Log: func(string, ...any) {}}
	in := action.NewInstall(cfg)
	in.ReleaseName, in.Namespace = ReleaseName, Namespace
	in.DryRun, in.ClientOnly, in.Replace, in.IncludeCRDs = true, true, true, true
	if kv, err := chartutil.ParseKubeVersion(kubernetesVersion); err == nil {
		in.KubeVersion = kv
	}
	rel, err := in.RunWithContext(context.Background(), ch, values)
	if err != nil {
		return "", fmt.Errorf("rendering chart %s-%s: %w", ch.Name(), ch.Metadata.Version, err)
	}
	var b strings.Builder
	b.WriteString(strings.TrimSpace(rel.Manifest))
	b.WriteString("\n")
	for _, h := range rel.Hooks {
		if slices.Contains(h.Events, release.HookTest) {
			continue
		}
		fmt.Fprintf(&b, "---\n# Source: %s\n%s\n", h.Path, strings.TrimSpace(h.Manifest))
	}
	return b.String(), nil
}

// Rendered is the ks-core chart rendered with the values the kubesphere step gives it.
type Rendered struct {
	// Manifest is what RenderChart returns: the objects, then the hooks.
	Manifest string
	// Objects are the objects of Manifest, hooks included.
	Objects []*unstructured.Unstructured
	// Images are the images KubeSphere's core runs, sorted: those of the workloads and hook
	// Jobs, and those kubesphere-config names for pods ks-core starts later (the kubectl
	// terminal, the node shell, the Helm executor that installs extensions).
	Images []string
}

// RenderParams renders the chart with ChartValues(p, ch) and checks the images it names
// against the registry settings: with spec.registry.namespaceOverride every one must be
// <registry>/<namespaceOverride>/<name>, and an image the values cannot move there is an
// error naming both fields. Render writes its manifest, `ksboot bundle` collects its images,
// and the kubesphere step runs it before installing, so a refused pair fails before anything
// is applied.
func RenderParams(ch *chart.Chart, p Params, kubernetesVersion string) (*Rendered, error) {
	m, err := RenderChart(ch, ChartValues(p, ch), kubernetesVersion)
	if err != nil {
		return nil, err
	}
	objs, err := kube.ParseYAML("chart "+ch.Name()+"-"+ch.Metadata.Version, []byte(m))
	if err != nil {
		return nil, err
	}
	r := &Rendered{Manifest: m, Objects: objs}
	uses := imageUses(objs)
	for _, u := range uses {
		if !slices.Contains(r.Images, u.image) {
			r.Images = append(r.Images, u.image)
		}
	}
	slices.Sort(r.Images)
	if p.NamespaceOverride != "" {
		prefix := p.ImageRegistry + "/" + p.NamespaceOverride + "/"
		for _, u := range uses {
			if rest, ok := strings.CutPrefix(u.image, prefix); !ok || strings.Contains(rest, "/") {
				return nil, fmt.Errorf("spec.registry.namespaceOverride %q with spec.registry.privateRegistry %q: the ks-core chart %s-%s names image %s (%s), "+
					"not %s<name>, and ksboot cannot move it there through the chart's values; set that image's repository in spec.kubesphere.configuration, "+
					"or remove spec.registry.namespaceOverride", p.NamespaceOverride, p.ImageRegistry, ch.Name(), ch.Metadata.Version, u.image, u.object, prefix)
			}
		}
	}
	return r, nil
}

// imageUse is an image and the object that names it.
type imageUse struct{ image, object string }

// configImagePaths are the images kubesphere-config (kubesphere.yaml) names for pods ks-core
// starts itself.
var configImagePaths = [][]string{
	{"terminal", "kubectl", "image"},
	{"terminal", "node", "image"},
	{"helmExecutor", "image"},
}

// imageUses lists the images of the containers and init containers of workloads, and those of
// the kubesphere-config ConfigMap, in object order.
func imageUses(objs []*unstructured.Unstructured) []imageUse {
	var out []imageUse
	for _, u := range objs {
		if u.GetKind() == "ConfigMap" && u.GetName() == "kubesphere-config" {
			data, _, _ := unstructured.NestedString(u.Object, "data", "kubesphere.yaml")
			conf := map[string]any{}
			if yaml.Unmarshal([]byte(data), &conf) == nil {
				for _, p := range configImagePaths {
					v, _ := lookup(conf, p...)
					if s, ok := v.(string); ok && s != "" {
						out = append(out, imageUse{s, kube.Describe(u) + " " + strings.Join(p, ".")})
					}
				}
			}
			continue
		}
		for _, img := range kube.ContainerImages(u) {
			out = append(out, imageUse{img, kube.Describe(u)})
		}
	}
	return out
}

// ChartDeployments lists the Deployments a release created (namespace defaulted to the
// release's): what must be available for KubeSphere to be up.
func ChartDeployments(rel *release.Release) ([]types.NamespacedName, error) {
	objs, err := kube.ParseYAML("release "+rel.Name, []byte(rel.Manifest))
	if err != nil {
		return nil, err
	}
	var out []types.NamespacedName
	for _, u := range objs {
		if u.GetKind() != "Deployment" {
			continue
		}
		ns := u.GetNamespace()
		if ns == "" {
			ns = rel.Namespace
		}
		out = append(out, types.NamespacedName{Namespace: ns, Name: u.GetName()})
	}
	return out, nil
}

func jsonRoundTrip(v map[string]any) (map[string]any, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	out := map[string]any{}
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, err
	}
	return out, nil
}
