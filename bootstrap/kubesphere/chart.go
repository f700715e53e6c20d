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
	neturl "net/url"
	"path"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/storage/driver"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

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

// ChartValues are the values ksboot gives ks-core: the image registry override, with
// spec.kubesphere.configuration merged over them.
func ChartValues(p Params) map[string]any {
	base := map[string]any{
		"global":    map[string]any{"imageRegistry": p.ImageRegistry},
		"extension": map[string]any{"imageRegistry": p.ImageRegistry},
	}
	return merge(base, p.Configuration)
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

// InstallChart installs the ks-core release, or upgrades it when it exists with another
// chart version or other values. A release that is deployed with this chart version and these
// values is left alone, so running the step again adds no Helm revision and changes nothing.
// It does not wait for the workloads; see ChartDeployments.
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
	if len(hist) == 0 {
		in := action.NewInstall(cfg)
		in.ReleaseName, in.Namespace, in.CreateNamespace = ReleaseName, Namespace, true
		in.Timeout = timeout
		rel, err := in.RunWithContext(ctx, ch, values)
		if err != nil {
			return nil, fmt.Errorf("installing chart %s-%s as Helm release %s/%s: %w", ch.Name(), ch.Metadata.Version, Namespace, ReleaseName, err)
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
	rel, err := up.RunWithContext(ctx, ReleaseName, ch, values)
	if err != nil {
		return nil, fmt.Errorf("upgrading Helm release %s/%s to chart %s-%s: %w", Namespace, ReleaseName, ch.Name(), ch.Metadata.Version, err)
	}
	return rel, nil
}

// RenderChart renders the chart as `helm template` does, without a cluster, for --dry-run.
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
	return rel.Manifest, nil
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
